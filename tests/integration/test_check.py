"""`sinker check` end to end: what each failing step means in its exit code (3 refused,
4 unreachable, 5 misfit), bad samples counted by reason against --max-bad-ratio, and the
steps `run` would otherwise only fail at start (mapped columns, the dead-letter output)."""
from __future__ import annotations

import json

import pytest

from tests.fakes import free_port
from tests.integration.support import write_config
from tests.integration.test_commands import setup_table, sinker
from tests.stack.kafka import create_topic, produce


def good(i):
    return json.dumps({"id": i, "qty": i}).encode()


def steps_of(r):
    return {s["name"]: s for s in json.loads(r.stdout)}


@pytest.mark.parametrize("partitions", [1, 3])
def test_sample_reads_as_many_messages_as_asked(tmp_path, kafka_bootstrap, doris, partitions):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap, partitions=partitions)
    produce(kafka_bootstrap, topic, [good(i) for i in range(3000)],
            partition=lambda i: i % partitions)
    r = sinker("check", "-c", str(path), "--sample", "2000", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert steps_of(r)["schema fits messages"]["detail"].startswith("2000 sampled, 2000 map cleanly")


def test_bad_messages_are_counted_by_reason_and_fail_only_past_the_ratio(tmp_path, kafka_bootstrap,
                                                                          doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    values = [good(i) for i in range(200)]
    values[10] = b"{not json"
    values[20] = json.dumps({"id": 20, "qty": "many"}).encode()
    produce(kafka_bootstrap, topic, values)
    r = sinker("check", "-c", str(path), "--sample", "200", "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr          # 2/200 = 1% is not past 1%
    step = steps_of(r)["schema fits messages"]
    assert step["ok"] and "200 sampled, 198 map, 2 would be dead letters" in step["detail"]
    assert "invalid_json: 1" in step["detail"] and "conversion: 1" in step["detail"]
    r = sinker("check", "-c", str(path), "--sample", "200", "--max-bad-ratio", "0.005",
               "--format", "json")
    assert r.returncode == 5, r.stdout + r.stderr
    step = steps_of(r)["schema fits messages"]
    assert step["status"] == "fail" and step["code"] == 5 and "above --max-bad-ratio 0.005" in step["detail"]


def test_mapped_columns_the_table_lacks_fail_the_check(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap,
        mapping={"format": "csv", "columns": {"part": "@kafka.partition", "src": "@kafka.offset"}})
    r = sinker("check", "-c", str(path), "--format", "json")
    assert r.returncode == 5, r.stdout + r.stderr
    step = steps_of(r)["mapped columns exist"]
    assert step["status"] == "fail" and "'src'" in step["detail"] and "mapping.columns" in step["detail"]


def test_a_dead_letter_path_run_cannot_open_fails_the_check_as_run_would(tmp_path, kafka_bootstrap,
                                                                           doris):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the dead-letter directory should be")
    cfg, path, topic, db, table = setup_table(
        doris, tmp_path, kafka_bootstrap,
        dead_letter={"type": "file", "path": str(blocker / "sub" / "dead.jsonl")})
    r = sinker("check", "-c", str(path), "--format", "json")
    assert r.returncode == 5, r.stdout + r.stderr
    step = steps_of(r)["dead-letter output"]
    assert step["status"] == "fail" and "dead_letter.path" in step["detail"]
    assert not (blocker / "sub").exists()
    r = sinker("run", "-c", str(path), timeout=120)
    assert r.returncode == 2 and "dead-letter file" in r.stderr      # what check predicted
    cfg["dead_letter"] = {"type": "kafka", "topic": f"{topic}-missing-dl"}
    r = sinker("check", "-c", str(write_config(tmp_path, cfg, "dl.yaml")), "--format", "json")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "does not exist" in steps_of(r)["dead-letter output"]["detail"]


def test_exit_codes_tell_refused_from_unreachable(tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    cfg["doris"]["password"] = "wrong"
    r = sinker("check", "-c", str(write_config(tmp_path, cfg, "pw.yaml")), "--format", "json")
    assert r.returncode == 3, r.stdout + r.stderr
    assert steps_of(r)["Doris FE HTTP + auth"]["code"] == 3
    cfg["doris"]["password"] = doris.password
    cfg["kafka"]["brokers"] = [f"127.0.0.1:{free_port()}"]     # nothing listens there
    cfg["kafka"]["request_timeout_ms"] = 5000                  # how long to try: not the point
    r = sinker("check", "-c", str(write_config(tmp_path, cfg, "down.yaml")), "--format", "json")
    assert r.returncode == 4, r.stdout + r.stderr
    steps = steps_of(r)
    assert steps["kafka brokers"]["code"] == 4
    assert steps["topics and partitions"]["status"] == "skip"
    assert steps["Doris FE HTTP + auth"]["status"] == "pass"


def test_check_reads_the_topics_a_pattern_matches_and_passes_when_none_match_yet(
        tmp_path, kafka_bootstrap, doris):
    cfg, path, topic, db, table = setup_table(doris, tmp_path, kafka_bootstrap)
    create_topic(kafka_bootstrap, f"{topic}.b", 2)
    produce(kafka_bootstrap, topic, [good(i) for i in range(100)])
    produce(kafka_bootstrap, f"{topic}.b", [good(i) for i in range(100, 150)],
            partition=lambda i: i % 2)
    cfg["kafka"].update(topics=[], topics_pattern=f"{topic}(\\.b)?")
    r = sinker("check", "-c", str(write_config(tmp_path, cfg)), "--sample", "500",
               "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = steps_of(r)
    assert steps["topics and partitions"]["detail"].startswith(
        f"{topic}: 1 partitions; {topic}.b: 2 partitions; topics_pattern")
    assert steps["schema fits messages"]["detail"].startswith("150 sampled, 150 map cleanly")
    cfg["kafka"].update(topics_pattern=f"{topic}\\.none")
    r = sinker("check", "-c", str(write_config(tmp_path, cfg)), "--format", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    steps = steps_of(r)
    assert "matches no topic yet" in steps["topics and partitions"]["detail"]
    assert steps["schema fits messages"]["detail"].startswith("no topic to sample")
