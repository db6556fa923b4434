"""`make demo`: the main job on the embedded default stack.

Starts a local Kafka broker (KRaft, from Maven Central jars) and the Doris emulator on the ports
of configs/config.dev.yaml, creates the demo table, produces sample events (a backlog, then a
steady trickle), runs `sinker run -c configs/config.dev.yaml`, and prints what landed in Doris,
the dead letters and the lag every few seconds. Ctrl-C (or SIGTERM, SIGHUP, a closed pipe, or
the demo's own death) stops sinker gracefully (it loads and commits what is in flight), then the
producer, the emulator and the broker, and prints a final summary.

`serve_doris()` is the emulator half alone, for `make stack-up` (tests/stack/__main__.py).
"""
from __future__ import annotations

import json
import logging
import os
import re
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "config.dev.yaml"

DEMO_DDL = """
CREATE TABLE IF NOT EXISTS demo.events (
  event_id BIGINT NOT NULL,
  event_time DATETIME(3) NOT NULL,
  user_id INT NULL,
  event_type VARCHAR(32) NULL,
  country CHAR(2) NULL,
  amount DECIMAL(12, 2) NULL,
  is_mobile BOOLEAN NULL,
  properties JSON NULL,
  status VARCHAR(16) NOT NULL DEFAULT 'new'
) DUPLICATE KEY(event_id) DISTRIBUTED BY HASH(event_id) BUCKETS 4
PROPERTIES ("replication_num" = "1")
"""

TYPES = ["view", "click", "add_to_cart", "purchase", "signup"]
COUNTRIES = ["US", "DE", "FR", "BR", "IN", "JP", "CN", "NG"]


def sample_event(i: int, rng: random.Random) -> bytes:
    now = time.time()
    ev = {
        "event_id": i,
        "event_time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}",
        "user_id": rng.randrange(1, 50_000),
        "event_type": rng.choice(TYPES),
        "country": rng.choice(COUNTRIES),
        "amount": f"{rng.randrange(0, 100_000) / 100:.2f}",
        "is_mobile": rng.random() < 0.6,
        "properties": {"page": f"/p/{rng.randrange(100)}", "ab": rng.choice(["a", "b"])},
    }
    if i % 997 == 0:
        return b'{"event_id": "oops", this is not json'   # shows the dead-letter output
    return json.dumps(ev).encode()


def demo_ports(cfg: dict) -> tuple[int, dict]:
    return int(cfg["kafka"]["brokers"][0].rsplit(":", 1)[1]), cfg["doris"]


def start_emulator(doris_cfg: dict):
    """The Doris emulator on the demo's ports, with the demo database and table."""
    from tests.doris_emulator import DorisEmulator
    emulator = DorisEmulator(fe_http_port=doris_cfg.get("http_port", 8030), be_http_port=8040,
                             query_port=doris_cfg.get("query_port", 9030))
    emulator.start()
    emulator.query("CREATE DATABASE IF NOT EXISTS demo")
    emulator.query(DEMO_DDL)
    return emulator


def serve_doris() -> int:
    """Run the emulator until SIGTERM/SIGINT (the `make stack-up` half of the stack)."""
    cfg = yaml_config()
    emulator = start_emulator(cfg["doris"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"ready: FE http {emulator.fe_http_port}, BE http {emulator.be_http_port}, "
          f"MySQL {emulator.query_port}, table demo.events", flush=True)
    stop.wait()
    emulator.stop()
    return 0


def yaml_config() -> dict:
    import yaml
    return yaml.safe_load(CONFIG.read_text())


def guard(argv: list[str]) -> int:
    """Run ``argv`` and send it ONE SIGTERM when our stdin closes, which is when the demo exits,
    however it exits (Ctrl-C, SIGPIPE from `| tee`, kill -9). The demo stops sinker this way too:
    by closing the pipe. (PR_SET_PDEATHSIG is not used: it can fire again when an orphan is
    reparented, and a second signal makes sinker exit without committing.)"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    child = subprocess.Popen(argv)
    stopped = threading.Event()

    def stop(*_):
        if not stopped.is_set() and child.poll() is None:
            stopped.set()
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)

    def watch_stdin():
        while sys.stdin.buffer.read(1):
            pass
        stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    return child.wait()


def say(text: str) -> None:
    """Print, unless stdout is gone (`make demo | tee log` and Ctrl-C: tee exits first)."""
    try:
        print(text, flush=True)
    except (BrokenPipeError, OSError):
        try:   # later prints and the interpreter's final flush would fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass


def lag(port: int) -> int | None:
    """The sum of sinker_consumer_lag from sinker's /metrics, None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    values = re.findall(r"^sinker_consumer_lag\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    return int(sum(float(v) for v in values)) if values else None


def dead_letters(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def main() -> int:
    from tests.stack.kafka import KafkaBroker, create_topic, produce

    # the demo's own producer: kafka-python's connection chatter is not what the demo shows
    for name in ("kafka", "asyncio"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cfg = yaml_config()
    kafka_port, doris_cfg = demo_ports(cfg)
    topic = cfg["kafka"]["topics"][0]
    table = f"{doris_cfg['database']}.{doris_cfg['table']}"
    dead_path = ROOT / cfg["dead_letter"]["path"]
    status_port = int(cfg["server"]["listen"].rsplit(":", 1)[1])
    state = ROOT / ".stack"
    state.mkdir(exist_ok=True)
    dead_before = dead_letters(dead_path)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, lambda *_: stop.set())
    say(f"starting Kafka on 127.0.0.1:{kafka_port} (first run downloads the broker with Maven)...")
    broker = KafkaBroker(port=kafka_port, log_path=str(state / "kafka-demo.log"))
    broker.start()
    emulator = start_emulator(doris_cfg)
    say(f"Doris emulator: FE http {emulator.fe_http_port}, BE http {emulator.be_http_port}, "
        f"MySQL {emulator.query_port}")
    sinker = None
    produced = [0]
    try:
        create_topic(broker.bootstrap, topic, 4)
        rng = random.Random(42)

        def events(n):
            for _ in range(n):
                produced[0] += 1
                yield sample_event(produced[0], rng)

        say("producing a backlog of 50,000 sample events...")
        produce(broker.bootstrap, topic, events(50_000))

        def trickle():
            while not stop.wait(1.0):
                produce(broker.bootstrap, topic, events(500))

        threading.Thread(target=trickle, name="demo-producer", daemon=True).start()
        if stop.is_set():
            return 0
        say(f"running: sinker run -c {CONFIG.relative_to(ROOT)}   (Ctrl-C to stop)\n")
        # its own session: Ctrl-C reaches only this script; sinker gets ONE SIGTERM from the
        # guard when our end of its stdin closes (a second signal would make sinker exit at
        # once without committing)
        sinker = subprocess.Popen([sys.executable, "-m", "tests.stack.demo", "--guard", sys.executable,
                                   str(ROOT / "sinker.py"), "run", "-c", str(CONFIG)],
                                  cwd=str(ROOT), start_new_session=True, stdin=subprocess.PIPE)
        while not stop.wait(5.0) and sinker.poll() is None:
            rows = int(emulator.query(f"SELECT COUNT(*) FROM {table}")[0][0])
            behind = lag(status_port)
            say(f"[demo] {table}: produced {produced[0]:,}  loaded {rows:,}  dead letters "
                f"{dead_letters(dead_path) - dead_before:,}  lag "
                f"{'?' if behind is None else f'{behind:,}'}")
    finally:
        stop.set()
        # stop sinker before anything that could fail (a print to a closed pipe, a query)
        if sinker is not None and sinker.poll() is None:
            sinker.stdin.close()            # the guard sends sinker its one SIGTERM
            say("\nstopping sinker (it loads and commits what is in flight)...")
            try:
                sinker.wait(90)
            except subprocess.TimeoutExpired:
                say("sinker did not stop within 90 s; killing it")
                os.killpg(sinker.pid, signal.SIGKILL)
                sinker.wait()
        try:
            rows = int(emulator.query(f"SELECT COUNT(*) FROM {table}")[0][0])
            dead = dead_letters(dead_path) - dead_before
            say(f"[demo] final: produced {produced[0]:,}; in {table} {rows:,}; dead letters "
                f"{dead:,} (in {cfg['dead_letter']['path']}); not loaded yet "
                f"{max(0, produced[0] - rows - dead):,}")
        except Exception as e:  # noqa: BLE001 - the summary must not keep the stack up
            say(f"[demo] no final summary: {e}")
        emulator.stop()
        broker.stop()
        say("stack stopped.")
    return sinker.returncode if sinker is not None and sinker.returncode else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--guard"]:
        sys.exit(guard(sys.argv[2:]))
    os.chdir(ROOT)
    sys.exit(main())
