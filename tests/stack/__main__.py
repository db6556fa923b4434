"""`python -m tests.stack fetch|up|down|status|demo`: the local Kafka broker from the command line.

fetch  download the broker jars with Maven (skipped when already there) - run by `make setup`
up     start a broker (default 127.0.0.1:9092) that keeps running; state in .stack/kafka.json
down   stop the broker that `up` started
demo   run tests/stack/demo.py (broker + Doris emulator + sinker)
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


def _alive(pid: int) -> bool:
    """Is `pid` still our broker? (The cmdline check guards against a reused pid.)"""
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def cmd_fetch(_args) -> int:
    kafka.fetch()
    return 0


def cmd_up(args) -> int:
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
    if not STATE_FILE.exists():
        print("kafka: down")
        return 1
    state = json.loads(STATE_FILE.read_text())
    up = _alive(state["pid"])
    print(f"kafka: {'up' if up else 'DEAD (run down, then up)'} at {state['bootstrap']} (pid {state['pid']})")
    return 0 if up else 1


def cmd_demo(_args) -> int:
    from tests.stack.demo import main
    return main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.stack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the Kafka broker jars with Maven").set_defaults(fn=cmd_fetch)
    up = sub.add_parser("up", help="start a broker that keeps running")
    up.add_argument("--port", type=int, default=9092)
    up.add_argument("--controller-port", type=int, default=None)
    up.add_argument("--timeout", type=float, default=90)
    up.set_defaults(fn=cmd_up)
    sub.add_parser("down", help="stop the broker started by up").set_defaults(fn=cmd_down)
    sub.add_parser("status", help="is the `up` broker running?").set_defaults(fn=cmd_status)
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
