"""`python -m tests.stack fetch|up|down|status|demo`: the local stack from the command line.

fetch  download the broker jars with Maven (skipped when already there) - run by `make setup`
up     start the whole local stack of configs/config.dev.yaml, left running: a Kafka broker
       (default 127.0.0.1:9092), the Doris emulator (FE 8030, BE 8040, MySQL 9030) with table
       demo.events, and the topic events; state in .stack/kafka.json and .stack/doris.json
down   stop what `up` started
status is it running?
demo   run tests/stack/demo.py (broker + Doris emulator + sinker, in the foreground)
serve-doris  the emulator alone in the foreground (what `up` runs in the background)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from tests.stack import kafka

STATE_FILE = kafka.STATE / "kafka.json"
DORIS_STATE = kafka.STATE / "doris.json"
DORIS_LOG = kafka.STATE / "doris-emulator.log"


def _alive(pid: int) -> bool:
    """Is `pid` still our broker? (The cmdline check guards against a reused pid.)"""
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _emulator_alive(pid: int) -> bool:
    try:
        return b"serve-doris" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _start_doris(timeout: float) -> dict:
    """The emulator in its own session, left running; returns its state once it is ready."""
    import subprocess
    import time
    if DORIS_STATE.exists():
        state = json.loads(DORIS_STATE.read_text())
        if _emulator_alive(state["pid"]):
            return state
        DORIS_STATE.unlink()
    log = open(DORIS_LOG, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.stack", "serve-doris"], cwd=str(kafka.ROOT),
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    while b"ready:" not in DORIS_LOG.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the Doris emulator did not start; see {DORIS_LOG}:\n"
                               + DORIS_LOG.read_text()[-2000:])
        time.sleep(0.1)
    state = {"pid": proc.pid, "log": str(DORIS_LOG),
             "ready": DORIS_LOG.read_text().split("ready:", 1)[1].splitlines()[0].strip()}
    DORIS_STATE.write_text(json.dumps(state, indent=2))
    return state


def _stop_doris() -> str:
    if not DORIS_STATE.exists():
        return "doris emulator: nothing to stop"
    state = json.loads(DORIS_STATE.read_text())
    DORIS_STATE.unlink()
    if _emulator_alive(state["pid"]) and kafka.kill_group(state["pid"]):
        return f"doris emulator stopped (pid {state['pid']})"
    return f"doris emulator was not running (pid {state['pid']})"


def cmd_fetch(_args) -> int:
    kafka.fetch()
    return 0


def cmd_up(args) -> int:
    """Kafka, then the emulator, then the demo topic: what configs/config.dev.yaml expects."""
    rc = _up_kafka(args)
    if rc:
        return rc
    state = _start_doris(args.timeout)
    from tests.stack.demo import yaml_config
    cfg = yaml_config()
    bootstrap = json.loads(STATE_FILE.read_text())["bootstrap"]
    topic = cfg["kafka"]["topics"][0]
    kafka.create_topic(bootstrap, topic, 4)
    print(f"doris emulator up: {state['ready']} (pid {state['pid']}, log "
          f"{Path(state['log']).relative_to(kafka.ROOT)})\n"
          f"topic {topic} (4 partitions) on {bootstrap}\n"
          "try: python sinker.py check -c configs/config.dev.yaml   (make stack-down stops it all)")
    return 0


def _up_kafka(args) -> int:
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if _alive(state["pid"]):
            print(f"kafka already up at {state['bootstrap']} (pid {state['pid']}); "
                  f"`python -m tests.stack down` stops it")
            return 0
        STATE_FILE.unlink()
    kafka.STATE.mkdir(exist_ok=True)
    data_dir = kafka.STATE / "kafka-data"
    shutil.rmtree(data_dir, ignore_errors=True)     # every `up` starts from an empty cluster
    log_path = kafka.STATE / "kafka.log"
    broker = kafka.KafkaBroker(port=args.port, controller_port=args.controller_port,
                               data_dir=str(data_dir), log_path=str(log_path), detach=True)
    try:
        broker.start(timeout=args.timeout)
    except RuntimeError as exc:
        broker.stop()
        print(f"kafka did not start: {exc}", file=sys.stderr)
        return 1
    STATE_FILE.write_text(json.dumps({"pid": broker.pid, "bootstrap": broker.bootstrap,
                                      "controller_port": broker.controller_port,
                                      "data_dir": str(data_dir), "log": str(log_path)}, indent=2))
    print(f"kafka up at {broker.bootstrap} (pid {broker.pid}, started in {broker.start_seconds:.1f}s, "
          f"log {log_path.relative_to(kafka.ROOT)}); `python -m tests.stack down` stops it")
    return 0


def cmd_down(_args) -> int:
    print(_stop_doris())
    if not STATE_FILE.exists():
        print("kafka: nothing to stop (no .stack/kafka.json)")
        return 0
    state = json.loads(STATE_FILE.read_text())
    if _alive(state["pid"]) and kafka.kill_group(state["pid"]):
        print(f"kafka at {state['bootstrap']} stopped (pid {state['pid']})")
    else:
        print(f"kafka at {state['bootstrap']} was not running (pid {state['pid']})")
    shutil.rmtree(state.get("data_dir", ""), ignore_errors=True)
    STATE_FILE.unlink()
    return 0


def cmd_status(_args) -> int:
    doris_up = False
    if DORIS_STATE.exists():
        d = json.loads(DORIS_STATE.read_text())
        doris_up = _emulator_alive(d["pid"])
        print(f"doris emulator: {'up' if doris_up else 'DEAD (run down, then up)'}: {d['ready']} "
              f"(pid {d['pid']})")
    else:
        print("doris emulator: down")
    if not STATE_FILE.exists():
        print("kafka: down")
        return 1
    state = json.loads(STATE_FILE.read_text())
    up = _alive(state["pid"])
    print(f"kafka: {'up' if up else 'DEAD (run down, then up)'} at {state['bootstrap']} (pid {state['pid']})")
    return 0 if up and doris_up else 1


def cmd_demo(_args) -> int:
    from tests.stack.demo import main
    return main()


def cmd_serve_doris(_args) -> int:
    from tests.stack.demo import serve_doris
    return serve_doris()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the Kafka broker jars with Maven").set_defaults(fn=cmd_fetch)
    up = sub.add_parser("up", help="start the local stack (Kafka, Doris emulator, demo topic and table)")
    up.add_argument("--port", type=int, default=9092)
    up.add_argument("--controller-port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=90)
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop what up started").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="is the `up` stack running?").set_defaults(fn=cmd_status)
    sub.add_parser("serve-doris", help="the Doris emulator in the foreground").set_defaults(
        fn=cmd_serve_doris)
    sub.add_parser("demo", help="run the demo (broker + Doris emulator + sinker)").set_defaults(fn=cmd_demo)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.chdir(Path(kafka.ROOT))
    sys.exit(main())
