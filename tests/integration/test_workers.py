"""`sinker run --workers N` as a user runs it: the shipped fixed server.listen, one status
endpoint for all workers, and a Ctrl-C / `timeout` / systemd stop that signals the whole process
group drains and commits (each worker gets the stop once)."""
from __future__ import annotations

import json
import os
import signal

from tests.integration.support import (
    ROOT, committed_offsets, count_rows, get, get_json, scrape_when_up, stack_config, status_section,
    unique, wait_for, write_config)
from tests.stack.kafka import create_topic, produce

DDL = """CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, qty INT NOT NULL)
DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1"""


def start_workers(path, n, log_path):
    import subprocess
    import sys
    return subprocess.Popen([sys.executable, str(ROOT / "sinker.py"), "run", "-c", str(path),
                             "--workers", str(n)], cwd=str(ROOT), stdout=open(log_path, "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def test_two_workers_one_endpoint_and_a_group_signal_drains_and_commits(tmp_path, kafka_bootstrap,
                                                                        doris):
    n, partitions = 4000, 2
    topic, db, table = unique("wk"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, partitions)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=table))
    server, port = status_section()         # a fixed port, like the shipped configs
    server["debug"] = True                  # /worker/<i>/debug/* below
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, server=server,
                       batch={"max_rows": 500, "max_interval_s": 0.3})
    path = write_config(tmp_path, cfg)
    log_path = tmp_path / "run.log"
    proc = start_workers(path, 2, log_path)
    try:
        produce(kafka_bootstrap, topic, (json.dumps({"id": i, "qty": i}).encode() for i in range(n)),
                partition=lambda i: i % partitions)
        wait_for(lambda: get_json(port, "/ready")[0] == 200 if scrape_when_up(port) else False,
                 120, 0.3, "the parent's /ready (every worker ready)")
        status, doc = get_json(port, "/ready")
        assert set(doc["workers"]) == {"0", "1"}, doc
        wait_for(lambda: (m := scrape_when_up(port)) and m.value("sinker_rows_loaded_total") == n,
                 120, 0.3, "the workers' rows in the parent's /metrics")
        m = scrape_when_up(port)
        # the second worker's join may move a partition: what the first dropped is read again
        assert m.value("sinker_messages_consumed_total") == n + m.value("sinker_messages_rewound_total")
        assert m.value("sinker_partitions_assigned") == partitions
        status, listed = get_json(port, "/workers")
        assert status == 200 and [x["state"] for x in listed] == ["running", "running"]
        status, doc = get_json(port, "/status")         # what `sinker status` shows
        assert status == 200 and doc["totals"]["loaded"] == n and doc["state"] == "ready"
        assert [x["index"] for x in doc["workers"]] == [0, 1]
        assert sum(x["assigned"] for x in doc["workers"]) == partitions
        status, body = get(port, "/worker/1/debug/threads")
        assert status == 200 and b"--- thread consumer" in body
        # what a terminal's Ctrl-C (and `timeout`) does: the signal goes to the whole group
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = log_path.read_text()
    assert code == 0, log[-3000:]
    assert "cannot listen" not in log and "second signal" not in log, log[-3000:]
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    assert {x.get("worker") for x in lines if x["logger"] != "sinker.workers"} == {0, 1}
    assert count_rows(doris, db, table) == n
    assert sum(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic,
                                 partitions).values()) == n


def test_workers_drain_and_commit_when_their_parent_is_killed(tmp_path, kafka_bootstrap, doris):
    n = 1000
    topic, db, table = unique("wk"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, 2)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(DDL.format(db=db, table=table))
    server, port = status_section()
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, server=server,
                       batch={"max_rows": 200, "max_interval_s": 0.3})
    path = write_config(tmp_path, cfg)
    log_path = tmp_path / "run.log"
    proc = start_workers(path, 2, log_path)
    pids = []
    try:
        produce(kafka_bootstrap, topic, (json.dumps({"id": i, "qty": i}).encode() for i in range(n)),
                partition=lambda i: i % 2)
        wait_for(lambda: (m := scrape_when_up(port)) and m.value("sinker_rows_loaded_total") == n,
                 120, 0.3, "everything loaded")
        pids = [w["pid"] for w in get_json(port, "/workers")[1]]
        proc.kill()                              # the supervisor dies; its workers must not linger
        proc.wait(30)

        def gone(pid):             # exited (a zombie until its new parent reaps it)
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True
        wait_for(lambda: all(gone(p) for p in pids), 90, 0.3, "the workers to stop")
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    log = log_path.read_text()
    assert log.count('"msg": "stopped cleanly') == 2, log[-3000:]
    assert sum(committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2).values()) == n
