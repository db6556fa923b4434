"""`sinker init` writes a config that loads and checks green against the stack; `sinker
dead-letters resend` loads corrected dead letters once, however often it runs."""
from __future__ import annotations

import base64
import json
import os

from sinker_lib.config import load_config
from tests.integration.support import (
    InProcess, count_rows, read_dead_letters, wait_for)
from tests.integration.test_commands import TABLE_DDL, setup_table, sinker
from tests.integration.support import unique
from tests.stack.kafka import create_topic, produce


def test_init_writes_a_commented_config_that_loads_and_checks(tmp_path, kafka_bootstrap, doris):
    db, table, topic = unique("db"), unique("t"), unique("init")
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(TABLE_DDL.format(db=db, table=table))
    create_topic(kafka_bootstrap, topic, 1)
    produce(kafka_bootstrap, topic, [json.dumps({"id": 1, "qty": 1}).encode()])
    out = tmp_path / "new.yaml"
    env = {**os.environ, "SINKER_DORIS_PASSWORD": doris.password}
    env.pop("SINKER_KAFKA_BROKERS", None)
    args = ["init", "--table", f"{db}.{table}", "-c", str(out), "--brokers", kafka_bootstrap,
            "--topic", topic, "--fe-host", doris.host, "--http-port", str(doris.fe_http_port),
            "--query-port", str(doris.query_port), "--user", doris.user]
    r = sinker(*args, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    text = out.read_text()
    cfg = load_config(out, env={})
    assert (cfg.doris.database, cfg.doris.table, cfg.kafka.topics) == (db, table, (topic,))
    assert cfg.kafka.brokers == (kafka_bootstrap,) and cfg.kafka.group_id == f"sinker.{db}.{table}"
    for line in ("#   qty:", "int NOT NULL", "#   status:", "missing: default new"):
        assert line in text, text
    r = sinker(*args, env=env)
    assert r.returncode == 2 and "--force" in r.stderr
    assert out.read_text() == text
    r = sinker(*args, "--force", "--topic", topic, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = sinker("check", "-c", str(out), env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = sinker("init", "--table", f"{db}.nope", "-c", str(tmp_path / "x.yaml"), "--fe-host", doris.host,
               "--query-port", str(doris.query_port), "--user", doris.user, env=env)
    assert r.returncode == 3 and "not found" in r.stderr
    assert not (tmp_path / "x.yaml").exists()


def test_resend_loads_corrected_dead_letters_once(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    good = [json.dumps({"id": i, "qty": i}).encode() for i in range(10)]
    bad = [json.dumps({"id": 100, "qty": "x"}).encode(), b"{broken",
           json.dumps({"id": 102, "qty": 99999999999}).encode()]
    produce(kafka_bootstrap, topic, good + bad)
    dead_path = cfg["dead_letter"]["path"]
    with InProcess(cfg):
        wait_for(lambda: count_rows(doris, db, table) == 10 and len(read_dead_letters(dead_path)) == 3,
                 60, what="10 rows loaded and 3 dead letters")
    letters = read_dead_letters(dead_path)
    by_offset = {d["offset"]: d for d in letters}
    by_offset[10]["value"] = json.dumps({"id": 100, "qty": 1})              # fixed as text
    del by_offset[11]["value"]                                             # fixed as base64
    by_offset[11]["value_b64"] = base64.b64encode(b'{"id": 101, "qty": 2}').decode()
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text("".join(json.dumps(by_offset[o]) + "\n" for o in (10, 11, 12)))
    args = ["dead-letters", "resend", "-c", str(path), "--file", str(fixed)]

    r = sinker(*args, "--dry-run")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "2 would load" in r.stdout and count_rows(doris, db, table) == 10
    for run in range(2):      # the second run finds its labels in Doris: nothing twice
        r = sinker(*args)
        assert r.returncode == 5, r.stdout + r.stderr
        assert "3 sent" in r.stdout and "2 loaded" in r.stdout and "1 failed" in r.stdout
        assert count_rows(doris, db, table) == 12, f"run {run + 1}"
    failed = tmp_path / "fixed.failed.jsonl"
    [again] = read_dead_letters(failed)
    assert again["offset"] == 12 and again["category"] == "out_of_range"
    assert int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]) == 12

    again["value"] = json.dumps({"id": 102, "qty": 3})
    failed.write_text(json.dumps(again) + "\n")
    for _ in range(2):
        r = sinker("dead-letters", "resend", "-c", str(path), "--file", str(failed))
        assert r.returncode == 0, r.stdout + r.stderr
        assert count_rows(doris, db, table) == 13
    assert doris.query(f"SELECT qty FROM `{db}`.`{table}` WHERE id = 101")[0][0] in (2, "2")
    # lines recorded for another table are not sent unless --table names the target
    other = dict(by_offset[10], table="x.y")
    (tmp_path / "other.jsonl").write_text(json.dumps(other) + "\n")
    r = sinker("dead-letters", "resend", "-c", str(path), "--file", str(tmp_path / "other.jsonl"))
    assert r.returncode == 0 and "skipped 1: recorded for table x.y" in r.stdout
    assert count_rows(doris, db, table) == 13
