"""No command prints a secret: every command (run, replay, dry-run, check, schema describe) is
run with one password written in the config file and another taken from the environment, at
log level debug, and nothing it leaves behind holds either: stdout, stderr, the log file,
/debug/config, the dead-letter file. The emulator's FE puts user:password into its redirect
Location as real Doris does, so a URL logged unredacted would show here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from tests.integration.support import (
    ROOT, committed_offsets, count_rows, read_dead_letters, stack_config, start_process,
    status_section, stop_process, unique, wait_for, write_config)
from tests.stack.kafka import create_topic, produce

DORIS_PW = f"doris-pw-{uuid.uuid4().hex}"
KAFKA_PW = f"kafka-pw-{uuid.uuid4().hex}"
TOKEN = f"status-token-{uuid.uuid4().hex}"
SECRETS = (DORIS_PW, KAFKA_PW, TOKEN)
DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""
GOOD, BAD = 40, 3
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def doris_secret():
    from tests.doris_emulator import DorisEmulator
    emu = DorisEmulator(password=DORIS_PW)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def debug_config(port: int, token: str | None) -> tuple[int, bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/debug/config",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with OPENER.open(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def sinker(env, *args, timeout=120):
    return subprocess.run([sys.executable, str(ROOT / "sinker.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), env=env)


@pytest.mark.parametrize("in_file", ["doris", "kafka"])
def test_no_command_shows_a_password(tmp_path, kafka_bootstrap, doris_secret, in_file):
    doris = doris_secret
    topic, db, table, replay_table = unique("sec"), unique("db"), unique("t"), unique("r")
    create_topic(kafka_bootstrap, topic, 1)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    for t in (table, replay_table):
        doris.query(DDL.format(db=db, table=t))
    records = [json.dumps({"id": i, "qty": i}).encode() for i in range(GOOD)]
    records += [b"{not json" for _ in range(BAD)]
    produce(kafka_bootstrap, topic, records)

    server, port = status_section()
    log_file = tmp_path / "sinker.log"
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       server={**server, "debug": True},
                       logging={"format": "json", "level": "debug", "output": "both",
                                "file": str(log_file)})
    env = {k: v for k, v in os.environ.items() if not k.startswith("SINKER_")}
    env["SINKER_STATUS_TOKEN"] = TOKEN
    if in_file == "doris":                      # file: the Doris password; env: Kafka's
        cfg["doris"]["password"] = DORIS_PW
        env["SINKER_KAFKA_SASL_PASSWORD"] = KAFKA_PW
    else:                                       # file: Kafka's password; env: the Doris one
        cfg["doris"].pop("password")
        cfg["kafka"]["sasl_password"] = KAFKA_PW   # PLAINTEXT ignores it; it is still a secret
        env["SINKER_DORIS_PASSWORD"] = DORIS_PW
    path = write_config(tmp_path, cfg)
    path.chmod(0o644)
    assert any(s in path.read_text() for s in SECRETS)
    seen: dict[str, str] = {}

    # -- run, briefly: until every message is loaded or dead-lettered and committed
    run_out = tmp_path / "run.out"
    proc = start_process(path, log_path=run_out, env=env)
    try:
        wait_for(lambda: proc.poll() is not None or count_rows(doris, db, table) == GOOD, 60, 0.2,
                 "rows in Doris")
        assert proc.poll() is None, run_out.read_text()[-3000:]
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)
                 == {0: GOOD + BAD}, 60, 0.3, "offsets committed")
        assert debug_config(port, None)[0] == 401
        status, body = debug_config(port, TOKEN)
        assert status == 200, body
        shown = json.loads(body)
        assert shown["doris"]["password"] == "***" and shown["kafka"]["sasl_password"] == "***"
        assert shown["server"]["debug_token"] == "***"
        seen["/debug/config"] = body.decode()
    finally:
        code = stop_process(proc)
    seen["run output"] = run_out.read_text()
    assert code == 0, seen["run output"][-3000:]
    assert "readable by group or others" in seen["run output"]

    # -- the other commands
    commands = {
        # the range was loaded by `run` into the other table: --force says loading it again is meant
        "replay": (["replay", "-c", str(path), "--from-offset", "0", "--table",
                    f"{db}.{replay_table}", "--lock-dir", str(tmp_path), "--force"], (5,)),
        "dry-run": (["dry-run", "-c", str(path), "--from", "earliest", "--wait", "1"], (5,)),
        "check": (["check", "-c", str(path)], (0,)),
        "schema describe": (["schema", "describe", "-c", str(path)], (0,)),
    }
    for name, (args, codes) in commands.items():
        r = sinker(env, *args)
        assert r.returncode in codes, (name, r.returncode, r.stdout[-2000:], r.stderr[-2000:])
        seen[f"{name} stdout and stderr"] = r.stdout + r.stderr
        assert "readable by group or others" in r.stdout + r.stderr + log_file.read_text(), name
    assert count_rows(doris, db, replay_table) == GOOD

    seen["log file"] = "".join(p.read_text() for p in tmp_path.glob("sinker.log*"))
    seen["dead letters"] = (tmp_path / "dead.jsonl").read_text()
    assert len(read_dead_letters(tmp_path / "dead.jsonl")) == 2 * BAD    # run + replay
    assert "following redirect" in seen["log file"]       # the Location that carried userinfo
    for where, text in seen.items():
        assert text, f"nothing to look at in the {where}"
        for secret in SECRETS:
            assert secret not in text, f"a secret is in the {where}"
