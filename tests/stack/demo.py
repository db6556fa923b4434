"""`make demo`: the main job on the embedded default stack.

Starts a local Kafka broker (KRaft, from Maven Central jars) and the Doris emulator on the ports
of configs/config.dev.yaml, creates the demo table, produces sample events (a backlog, then a
steady trickle), runs `sinker run -c configs/config.dev.yaml`, and prints what landed in Doris
every few seconds. Ctrl-C stops sinker gracefully (it loads and commits what is in flight), then
the producer, the emulator and the broker.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
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


def main() -> int:
    import yaml
    from tests.doris_emulator import DorisEmulator
    from tests.stack.kafka import KafkaBroker, create_topic, produce

    cfg = yaml.safe_load(CONFIG.read_text())
    kafka_port = int(cfg["kafka"]["brokers"][0].rsplit(":", 1)[1])
    topic = cfg["kafka"]["topics"][0]
    doris_cfg = cfg["doris"]
    state = ROOT / ".stack"
    state.mkdir(exist_ok=True)

    print(f"starting Kafka on 127.0.0.1:{kafka_port} (first run downloads the broker with Maven)...")
    broker = KafkaBroker(port=kafka_port, log_path=str(state / "kafka-demo.log"))
    broker.start()
    emulator = DorisEmulator(fe_http_port=doris_cfg.get("http_port", 8030), be_http_port=8040,
                             query_port=doris_cfg.get("query_port", 9030))
    emulator.start()
    print(f"Doris emulator: FE http {emulator.fe_http_port}, BE http {emulator.be_http_port}, "
          f"MySQL {emulator.query_port}")
    sinker = None
    stop = threading.Event()
    try:
        emulator.query("CREATE DATABASE IF NOT EXISTS demo")
        emulator.query(DEMO_DDL)
        create_topic(broker.bootstrap, topic, 4)
        rng = random.Random(42)
        counter = [0]

        def events(n):
            for _ in range(n):
                counter[0] += 1
                yield sample_event(counter[0], rng)

        print("producing a backlog of 50,000 sample events...")
        produce(broker.bootstrap, topic, events(50_000))

        def trickle():
            while not stop.wait(1.0):
                produce(broker.bootstrap, topic, events(500))

        threading.Thread(target=trickle, name="demo-producer", daemon=True).start()
        print(f"running: sinker run -c {CONFIG.relative_to(ROOT)}   (Ctrl-C to stop)\n")
        # its own session: Ctrl-C reaches only this script, which then sends sinker ONE SIGTERM
        # (a second signal would make sinker exit at once without committing)
        sinker = subprocess.Popen([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(CONFIG)],
                                  cwd=str(ROOT), start_new_session=True)
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(5.0) and sinker.poll() is None:
            rows = emulator.query("SELECT COUNT(*), MAX(event_id) FROM demo.events")[0]
            by_type = emulator.query("SELECT event_type, COUNT(*) FROM demo.events "
                                     "GROUP BY event_type ORDER BY event_type")
            print(f"[demo] produced {counter[0]:,}  in Doris {int(rows[0]):,}  "
                  + "  ".join(f"{t}={int(n):,}" for t, n in by_type), flush=True)
    finally:
        stop.set()
        if sinker is not None and sinker.poll() is None:
            print("\nstopping sinker (it loads and commits what is in flight)...")
            sinker.send_signal(signal.SIGTERM)
            try:
                sinker.wait(60)
            except subprocess.TimeoutExpired:
                sinker.kill()
        try:
            rows = emulator.query("SELECT COUNT(*) FROM demo.events")[0][0]
            print(f"[demo] final: {int(rows):,} rows in demo.events; dead letters in "
                  f"{cfg['dead_letter']['path']}")
        except Exception:  # noqa: BLE001 - best effort summary
            pass
        emulator.stop()
        broker.stop()
        print("stack stopped.")
    return sinker.returncode if sinker is not None and sinker.returncode else 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
