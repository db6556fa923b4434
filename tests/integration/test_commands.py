"""Operator commands end to end (real broker + Doris emulator): the exit codes and the text a user sees."""
from __future__ import annotations

import json
import signal
import subprocess
import sys

from tests.integration.support import (
    ROOT, committed_offsets, count_rows, get_json, read_dead_letters, stack_config, start_process,
    status_section, stop_process, unique, wait_for, write_config)
from tests.stack.kafka import create_topic, produce

TABLE_DDL = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL, qty INT NOT NULL, name VARCHAR(8) NULL, day DATE NULL,
  status VARCHAR(8) NOT NULL DEFAULT 'new', part INT NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")
"""


def sinker(*args, timeout=120, env=None):
    return subprocess.run([sys.executable, str(ROOT / "sinker.py"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT), env=env)


def setup_table(doris, tmp_path, kafka_bootstrap, partitions=1, **sections):
    topic, db, table = unique("cmd"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, partitions)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(TABLE_DDL.format(db=db, table=table))
    sections.setdefault("mapping", {"format": "csv", "columns": {"part": "@kafka.partition"}})
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table, **sections)
    return cfg, write_config(tmp_path, cfg), topic, db, table


def test_version_and_help_everywhere():
    out = sinker("version")
    assert out.returncode == 0 and out.stdout.startswith("sinker 0.1.0 (python ")
    for cmd in ([], ["run"], ["schema"], ["schema", "describe"], ["dry-run"], ["replay"], ["check"],
                ["init"], ["dead-letters"], ["dead-letters", "resend"],
                ["version"]):
        r = sinker(*cmd, "--help")
        assert r.returncode == 0, (cmd, r.stderr)
        assert "Usage: sinker" in r.stdout


def test_schema_describe_shows_sources_and_warnings(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    r = sinker("schema", "describe", "-c", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["table"] == f"{db}.{table}"
    by_name = {c["name"]: c for c in doc["columns"]}
    assert list(by_name) == ["id", "qty", "name", "day", "status", "part"]
    assert by_name["name"]["type"] == "varchar(8)" and by_name["name"]["when_missing"] == "NULL"
    assert by_name["status"]["when_missing"] == "default new"
    assert by_name["part"]["source"] == "kafka partition"
    assert by_name["id"]["when_missing"] == "dead letter"
    assert any("column id is NOT NULL" in w for w in doc["warnings"])
    r = sinker("schema", "describe", "-c", str(path))
    assert r.returncode == 0, r.stderr
    for word in ("id", "varchar(8)", "kafka partition", "default new", "warning:"):
        assert word in r.stdout
    r = sinker("schema", "describe", "-c", str(path), "--table", f"{db}.missing_table")
    assert r.returncode == 3
    assert "not found" in r.stderr and "missing_table" in r.stderr


def test_dry_run_prints_the_exact_body_and_touches_nothing(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    produce(kafka_bootstrap, topic, [
        json.dumps({"id": 1, "qty": 2, "name": "a\tb", "day": "2024-01-01"}).encode(),
        json.dumps({"id": 2, "qty": 3, "status": "seen"}).encode(),
        b"{broken",
        json.dumps({"id": 4, "qty": "x"}).encode(),
    ])
    r = sinker("dry-run", "-c", str(path), "--limit", "10", "--from", "earliest", "--wait", "2")
    assert r.returncode == 5, r.stderr
    assert r.stdout == '1\t2\t"a\tb"\t2024-01-01\tnew\t0\n2\t3\t\\N\t\\N\tseen\t0\n'
    assert "dry-run: 4 messages read, 2 rows mapped" in r.stderr
    assert "2 would go to the dead-letter output" in r.stderr
    assert "invalid_json: 1" in r.stderr and "conversion: 1" in r.stderr
    assert "partition 0 offset 2" in r.stderr
    out = tmp_path / "body.csv"
    r = sinker("dry-run", "-c", str(path), "--limit", "2", "--from", "earliest", "--wait", "2",
               "--output", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_text().count("\n") == 2
    assert count_rows(doris, db, table) == 0
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1) == {0: None}


def test_replay_twice_loads_once_and_leaves_the_group_alone(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap, partitions=2,
                                              batch={"max_rows": 700, "max_interval_s": 0.5})
    values = [json.dumps({"id": i, "qty": i}).encode() for i in range(5000)]
    produce(kafka_bootstrap, topic, values, partition=lambda i: i % 2)
    args = ["replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path)]
    r = sinker(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay done: 5000 messages in range" in r.stdout
    assert count_rows(doris, db, table) == 5000
    r = sinker(*args)          # the cron job runs again: Doris answers Label Already Exists
    assert r.returncode == 0, r.stdout + r.stderr
    assert count_rows(doris, db, table) == 5000
    assert int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]) == 5000
    # a bounded slice of one partition, re-run inside the first range: still nothing twice
    r = sinker("replay", "-c", str(path), "--from-offset", "0:700", "--to-offset", "0:1399",
               "--partitions", "0", "--lock-dir", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "replay done: 700 messages in range" in r.stdout
    assert count_rows(doris, db, table) == 5000
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2) == {0: None, 1: None}


def test_replay_refuses_to_overlap_a_running_replay(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    produce(kafka_bootstrap, topic, [json.dumps({"id": 1, "qty": 1}).encode()])
    from sinker_lib.config import load_config
    from sinker_lib.commands.replay import ReplayLock, compute_plan
    from kafka import TopicPartition
    tp = TopicPartition(topic, 0)
    plan = compute_plan(topic, [0], {tp: 0}, {tp: 1}, from_offset=0, chunk_rows=10)
    with ReplayLock(load_config(path), plan, str(tmp_path)):
        r = sinker("replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path))
    assert r.returncode == 6, r.stdout + r.stderr
    assert "another run of this replay is still going" in r.stderr
    assert count_rows(doris, db, table) == 0


def test_replay_bad_arguments_are_usage_errors(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    r = sinker("replay", "-c", str(path))
    assert r.returncode == 2 and "give exactly one of --from-offset and --from-timestamp" in r.stderr
    r = sinker("replay", "-c", str(path), "--from-offset", "0", "--partitions", "7",
               "--lock-dir", str(tmp_path))
    assert r.returncode == 2 and "has no partition [7]" in r.stderr


def test_check_passes_on_a_healthy_stack_and_names_the_failing_step(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    produce(kafka_bootstrap, topic, [json.dumps({"id": 1, "qty": 1}).encode()])
    r = sinker("check", "-c", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 10 and all(x.startswith("PASS  ") for x in lines), r.stdout
    cfg["doris"]["password"] = "wrong"
    bad = write_config(tmp_path, cfg, "bad.yaml")
    r = sinker("check", "-c", str(bad), "--format", "json")
    assert r.returncode == 3, r.stdout + r.stderr
    steps = {s["name"]: s for s in json.loads(r.stdout)}
    assert steps["kafka brokers"]["ok"] and not steps["Doris FE HTTP + auth"]["ok"]
    assert "SINKER_DORIS_PASSWORD" in steps["Doris FE HTTP + auth"]["detail"]
    assert "wrong" not in r.stdout


def test_replay_that_cannot_finish_prints_the_resume_command(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap, batch={"max_rows": 100, "max_interval_s": 0.2},
        writer={"workers": 1, "max_retries": 1, "backoff_initial_s": 0.01, "backoff_max_s": 0.02})
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(300)])
    doris.faults.set("http_500", rate=1.0)
    r = sinker("replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path))
    doris.faults.clear()
    assert r.returncode == 4, r.stdout + r.stderr
    assert "replay incomplete" in r.stderr and "resume with:" in r.stderr
    resume = r.stderr.split("resume with:")[1].strip().splitlines()[0]
    assert resume.startswith(f"sinker replay -c {path} --topic {topic} --table {db}.{table} "
                             "--from-offset 0:0 ")
    assert "--to-offset 0:299" in resume
    # running the printed command (minus the program name) finishes the job
    r = sinker(*resume.split()[1:], "--lock-dir", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert count_rows(doris, db, table) == 300


def test_replay_plan_prints_the_ranges_and_touches_nothing(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap, partitions=2,
                                              batch={"max_rows": 100})
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(30)],
            partition=lambda i: i % 2)
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    r = sinker("replay", "-c", str(path), "--from-offset", "0:5,1:0", "--to-offset", "0:9,1:14",
               "--plan", "--lock-dir", str(lock_dir))
    assert r.returncode == 0, r.stderr
    assert "partition 0: offsets 5..9, 5 messages" in r.stdout
    assert "partition 1: offsets 0..14, 15 messages" in r.stdout and "total: 20 messages" in r.stdout
    r = sinker("replay", "-c", str(path), "--from-offset", "3", "--plan", "--format", "json",
               "--lock-dir", str(lock_dir))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["messages"] == 24 and doc["group_overlap"] == {}
    assert [(p["partition"], p["from_offset"], p["to_offset"]) for p in doc["partitions"]] == [
        (0, 3, 14), (1, 3, 14)]
    assert count_rows(doris, db, table) == 0
    assert list(lock_dir.iterdir()) == []          # not even the lock was taken
    assert committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 2) == {0: None, 1: None}


def test_replay_reversed_range_is_a_usage_error(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(20)])
    r = sinker("replay", "-c", str(path), "--from-offset", "10", "--to-offset", "5",
               "--lock-dir", str(tmp_path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--from-offset 10 is after --to-offset 5" in r.stderr
    assert count_rows(doris, db, table) == 0


def test_replay_resume_command_keeps_the_table(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap, batch={"max_rows": 100, "max_interval_s": 0.2},
        writer={"workers": 1, "max_retries": 1, "backoff_initial_s": 0.01, "backoff_max_s": 0.02})
    other = unique("other")
    doris.query(TABLE_DDL.format(db=db, table=other))
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(200)])
    doris.faults.set("http_500", rate=1.0)
    r = sinker("replay", "-c", str(path), "--from-offset", "0", "--table", f"{db}.{other}",
               "--lock-dir", str(tmp_path), "--format", "json")
    doris.faults.clear()
    assert r.returncode == 4, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert not doc["done"] and doc["exit_code"] == 4 and f"--table {db}.{other}" in doc["resume"]
    r = sinker(*doc["resume"].split()[1:], "--lock-dir", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert count_rows(doris, db, other) == 200 and count_rows(doris, db, table) == 0


def test_replay_beside_run_needs_force_where_the_group_committed(tmp_path, kafka_bootstrap, doris):
    server, port = status_section()          # run holds server.listen, a fixed port
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap, server=server,
                                              batch={"max_rows": 100, "max_interval_s": 0.2})
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(50)])
    proc = start_process(path, log_path=tmp_path / "run.log")
    try:
        wait_for(lambda: committed_offsets(kafka_bootstrap, cfg["kafka"]["group_id"], topic, 1)[0]
                 == 50, 60, 0.3, "run committed everything")
        r = sinker("replay", "-c", str(path), "--from-offset", "40", "--lock-dir", str(tmp_path))
        assert r.returncode == 2, r.stdout + r.stderr
        assert "partition 0 offsets 40..49 (committed 50)" in r.stderr and "--force" in r.stderr
        r = sinker("replay", "-c", str(path), "--from-offset", "40", "--plan", "--format", "json",
                   "--lock-dir", str(tmp_path))
        assert json.loads(r.stdout)["group_overlap"] == {
            "0": {"from_offset": 40, "to_offset": 49, "committed": 50}}
        r = sinker("replay", "-c", str(path), "--from-offset", "40", "--force", "--format", "json",
                   "--lock-dir", str(tmp_path))
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["loaded"] == 10
        assert get_json(port, "/health")[0] == 200       # run kept its port and kept running
    finally:
        assert stop_process(proc) == 0
    assert count_rows(doris, db, table) == 60            # --force loaded offsets 40..49 again


def test_replay_interrupted_exits_5_with_the_resume_command(tmp_path, kafka_bootstrap, doris):
    # small polls and queues: what is in flight when the signal comes is a few batches of 100
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap, kafka={"max_poll_records": 100},
        batch={"max_rows": 100, "max_interval_s": 0.2, "queue_size": 1})
    produce(kafka_bootstrap, topic, [json.dumps({"id": i, "qty": i}).encode() for i in range(5000)])
    doris.faults.set("slow", rate=1.0, delay_s=1.0)
    proc = subprocess.Popen([sys.executable, str(ROOT / "sinker.py"), "replay", "-c", str(path),
                             "--from-offset", "0", "--lock-dir", str(tmp_path)], cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: doris.faults.fired.get("slow", 0) >= 1, 60, 0.1, "a load in flight")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, out + err
    assert "replay incomplete: interrupted" in err and "resume with:" in err
    assert count_rows(doris, db, table) < 5000


def _bad_every(n):
    """Messages with ids 0..n-1; every 97th is malformed JSON (a dead letter with its offset)."""
    return [b"{not json" if i % 97 == 13 else json.dumps({"id": i, "qty": i}).encode()
            for i in range(n)]


def _dead_offsets(tmp_path) -> list[int]:
    return sorted(d["offset"] for d in read_dead_letters(tmp_path / "dead.jsonl"))


def test_replay_stopped_part_way_then_rerun_loads_every_row_once(tmp_path, kafka_bootstrap, doris):
    """Cron's Ctrl-C and re-run: when the stop comes, chunks are open (polls of 37 never line up
    with chunks of 100). The stopped run must load none of them partially (a partial chunk's
    label is one no re-run forms again), and the re-run with the same command loads every row
    once and writes every dead letter once."""
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap, kafka={"max_poll_records": 37},
        batch={"max_rows": 100, "max_interval_s": 0.2, "queue_size": 1})
    values = _bad_every(3000)
    bad = [i for i in range(3000) if values[i].startswith(b"{not")]
    produce(kafka_bootstrap, topic, values)
    doris.faults.set("slow", rate=1.0, delay_s=0.3)
    proc = subprocess.Popen([sys.executable, str(ROOT / "sinker.py"), "replay", "-c", str(path),
                             "--from-offset", "0", "--lock-dir", str(tmp_path)], cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: count_rows(doris, db, table) >= 300, 90, 0.1, "some batches loaded")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    doris.faults.clear()
    assert proc.returncode == 5, out + err
    assert "chunks not read to their end are not loaded" in out + err, \
        "no chunk was open at the stop: the test did not test the window"
    loaded = [x[1].split("_p0-")[1].split("_")[0] for x in
              doris.query(f"SHOW TRANSACTION FROM `{db}` WHERE LABEL LIKE 'replay%'") if x[3] == "VISIBLE"]
    assert loaded and all(int(r.split("-")[1]) % 100 == 99 for r in loaded), loaded
    first = count_rows(doris, db, table)
    assert first < 3000 - len(bad)
    r = sinker("replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path))
    assert r.returncode == 5, r.stdout + r.stderr        # 5: the range had dead letters
    assert "replay done: 3000 messages in range" in r.stdout
    assert count_rows(doris, db, table) == 3000 - len(bad)
    assert int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]) == 3000 - len(bad)
    assert _dead_offsets(tmp_path) == bad


def test_replay_rerun_after_the_end_moved_loads_only_the_new_rows(tmp_path, kafka_bootstrap, doris):
    """Without --to-offset the end is the topic's end when the run starts: the first run's last
    chunk is partial (100..149). The next run, with 100 more messages, must form 100..149 again
    (its label is in Doris: skipped, dead letter not written again) and load 150.. once."""
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap,
                                              batch={"max_rows": 100, "max_interval_s": 0.2})
    values = _bad_every(250)
    produce(kafka_bootstrap, topic, values[:150])
    args = ["replay", "-c", str(path), "--from-offset", "0", "--lock-dir", str(tmp_path)]
    r = sinker(*args)
    assert "replay done: 150 messages in range" in r.stdout, r.stdout + r.stderr
    produce(kafka_bootstrap, topic, values[150:])
    r = sinker(*args)
    assert "replay done: 250 messages in range" in r.stdout, r.stdout + r.stderr
    bad = [i for i in range(250) if values[i].startswith(b"{not")]
    assert count_rows(doris, db, table) == 250 - len(bad)
    assert int(doris.query(f"SELECT COUNT(DISTINCT id) FROM `{db}`.`{table}`")[0][0]) == 250 - len(bad)
    assert _dead_offsets(tmp_path) == bad
    assert "earlier runs of this replay loaded 2 batches" in r.stdout + r.stderr
