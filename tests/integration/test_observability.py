"""Observability end to end: /metrics against what Doris holds and the dead letters written,
/ready and /health through their transitions, and the log file of a real `sinker run` process."""
from __future__ import annotations

import collections
import json
import threading
import time

import pytest
from sinker_lib.dead_letter import category
from sinker_lib.observability.metrics import is_known_series
from tests.stack.kafka import create_topic, produce
from tests.integration.support import (
    InProcess, committed_offsets, count_rows, create_table, get, get_json, read_dead_letters,
    scrape, stack_config, start_process, stop_process, unique, wait_committed, wait_for,
    write_config)

DDL = """
CREATE TABLE `{db}`.`{table}` (
  id BIGINT NOT NULL, qty INT NOT NULL, name VARCHAR(8) NULL, day DATE NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")
"""
SCHEMA = [{"name": "id", "type": "bigint", "nullable": False}, {"name": "qty", "type": "int", "nullable": False},
          {"name": "name", "type": "varchar(8)"}, {"name": "day", "type": "date"}]
PASSWORD = "Obs-s3cret-9f27"   # the password of the module's own emulator


@pytest.fixture(scope="module")
def doris_pw():
    """An emulator of our own with a password (and take_down() disturbs no other test)."""
    from tests.doris_emulator import DorisEmulator
    emu = DorisEmulator(password=PASSWORD)
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


def make_table(doris):
    return create_table(doris, DDL)


def good(i: int) -> bytes:
    return json.dumps({"id": i, "qty": i % 1000, "name": f"n{i % 100}", "day": "2024-01-01"}).encode()


POISON = [
    b"{not json",
    json.dumps({"id": 1_000_001, "qty": "many", "name": "x"}).encode(),          # wrong type
    json.dumps({"id": 1_000_002, "qty": 1, "name": "much too long"}).encode(),   # > varchar(8)
    json.dumps({"id": 1_000_003, "qty": 3, "day": "2024-02-30"}).encode(),       # no such day
    json.dumps([1, 2, 3]).encode(),                                               # not an object
    json.dumps({"id": 1_000_005, "name": "no qty"}).encode(),                     # NOT NULL missing
]


def server_port(run: InProcess, timeout: float = 60) -> int:
    def bound():
        srv = run.pipeline.status_server
        return srv.port if srv is not None and srv._server is not None else None
    return wait_for(bound, timeout, 0.05, "the status server to listen")


# -- /metrics against Doris -----------------------------------------------------------------------
def test_metrics_match_doris_rows_and_dead_letters(tmp_path, kafka_bootstrap, doris):
    n, partitions = 12_000, 2
    topic = unique("obs_metrics")
    create_topic(kafka_bootstrap, topic, partitions)
    db, table = make_table(doris)
    values = [good(i) for i in range(n)]
    for k, p in enumerate(POISON):          # poison spread over the stream and the partitions
        values.insert(1000 + k * 1500, p)
    total = len(values)
    sizes = {p: len(range(p, total, partitions)) for p in range(partitions)}

    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       batch={"max_rows": 500, "max_interval_s": 0.3})
    group = cfg["kafka"]["group_id"]
    started = time.time()
    doris.faults.set("slow", rate=1.0, delay_s=0.15)      # keep loads in flight while we scrape
    try:
        with InProcess(cfg) as run:
            port = server_port(run)
            # produce once the group is settled: a rebalance re-reads what is not committed
            # (sinker_messages_rewound_total), and this test counts every message exactly once
            wait_for(lambda: scrape(port).value("sinker_partitions_assigned") == partitions, 60,
                     0.1, "both partitions owned")
            produce(kafka_bootstrap, topic, values, partition=lambda idx: idx % partitions)
            # -- during the run: the invariant holds at every scrape, nothing is over-counted
            during = wait_for(lambda: (lambda s: s if s.value("sinker_loads_total") > 0
                                       and s.value("sinker_rows_loaded_total") < n else None)(scrape(port)),
                              60, 0.05, "a scrape while loading")
            in_doris = count_rows(doris, db, table)
            consumed = during.value("sinker_messages_consumed_total")
            loaded = during.value("sinker_rows_loaded_total")
            dead = during.value("sinker_dead_letters_total")
            pending = during.value("sinker_messages_pending")
            rewound = during.value("sinker_messages_rewound_total")
            assert consumed == loaded + dead + rewound + pending, during.text
            assert pending >= 0 and loaded <= in_doris
            assert during.value("sinker_partitions_assigned") == partitions
            doris.faults.clear()

            wait_for(lambda: count_rows(doris, db, table) >= n, 120, 0.3, "all good rows")
            wait_committed(kafka_bootstrap, group, topic, partitions, total, 60, "offsets committed")
            # -- after: every counter equals what Doris holds and what the dead-letter file holds
            ends = {str(p): float(c) for p, c in sizes.items()}
            after = wait_for(lambda: (lambda s: s if s.value("sinker_consumer_lag") == 0
                                      and s.value("sinker_messages_pending") == 0
                                      and s.by("sinker_partition_end_offset", "partition") == ends
                                      and len(s.all("sinker_consumer_lag")) == partitions else None)(scrape(port)),
                             60, 0.5, "lag and pending back to 0 at the known end offsets")
            dead_file = read_dead_letters(tmp_path / "dead.jsonl")
            rows = count_rows(doris, db, table)
            assert rows == n
            assert len(dead_file) == len(POISON)
            assert after.value("sinker_messages_consumed_total") == total
            assert after.value("sinker_rows_loaded_total") == rows
            assert after.value("sinker_dead_letters_total") == len(dead_file)
            assert after.value("sinker_messages_rewound_total") == 0
            assert after.value("sinker_messages_consumed_total") == \
                after.value("sinker_rows_loaded_total") + after.value("sinker_dead_letters_total")
            assert after.value("sinker_consumed_bytes_total") == sum(map(len, values))
            assert after.by("sinker_messages_consumed_total", "partition") == \
                {str(p): float(c) for p, c in sizes.items()}

            want_cats = collections.Counter(category(d["reason"]) for d in dead_file)
            assert after.by("sinker_dead_letter_reasons_total", "category") == \
                {k: float(v) for k, v in want_cats.items()}
            assert 0 < after.value("sinker_mapping_errors_total") <= len(dead_file)

            sealed = after.value("sinker_batches_sealed_total")
            assert sealed >= 2   # max_rows 500, checked per partition slice of a poll
            assert after.value("sinker_batch_rows_count") == sealed
            doris_rejected = sum(1 for d in dead_file if d["reason"].startswith("doris"))
            assert after.value("sinker_batch_rows_sum") == n + doris_rejected
            assert set(after.by("sinker_batches_sealed_total", "reason")) <= {"rows", "bytes", "interval"}

            outcomes = after.by("sinker_loads_total", "outcome")
            assert outcomes.get("success", 0) >= sealed - len(POISON), outcomes
            assert after.value("sinker_load_seconds_count") == sum(outcomes.values())
            assert after.value("sinker_doris_loaded_rows_total") >= rows
            assert after.value("sinker_doris_load_bytes_total") > 0
            phases = after.by("sinker_doris_load_phase_seconds_count", "phase")
            for phase in ("begin_txn", "put", "read", "write", "commit_publish", "total"):
                assert phases.get(phase, 0) >= outcomes["success"], (phase, phases)
            assert after.value("sinker_loads_in_flight") == 0

            group_offsets = committed_offsets(kafka_bootstrap, group, topic, partitions)
            assert after.by("sinker_committed_offset", "partition") == \
                {str(p): float(o) for p, o in group_offsets.items()}
            assert after.by("sinker_partition_end_offset", "partition") == \
                {str(p): float(c) for p, c in sizes.items()}
            assert after.value("sinker_commit_seconds_count") > 0
            assert after.value("sinker_last_commit_timestamp_seconds") >= started
            assert after.value("sinker_last_load_success_timestamp_seconds") >= started
            assert after.value("sinker_poll_seconds_count") > 0
            assert after.value("sinker_rebalances_total") >= 1
            assert {lb["queue"] for lb, _ in after.all("sinker_queue_depth")} == {"polled", "sealed"}
            assert after.value("sinker_partitions_paused") == 0
            assert after.all("sinker_build_info")[0][0]["version"]
            assert after.value("process_resident_memory_bytes") > 0
            assert after.value("process_cpu_seconds_total") > 0
            assert all(is_known_series(name) for name, _, _ in after.samples), after.families
            result = run.stop()
    finally:
        doris.faults.clear()
    assert result.exit_code == 0, result.error
    # after the clean shutdown the pipeline's registry still balances, with nothing pending
    snap = run.pipeline.metrics.snapshot()
    assert snap["consumed"] == snap["loaded"] + snap["dead_lettered"] == total and snap["pending"] == 0


# -- /ready and /health ---------------------------------------------------------------------------
class PartitionHolder:
    """A plain group member that owns the topic's only partition until closed: the range assignor
    gives it to the member whose id sorts first, and "a-holder" sorts before "sinker"."""

    def __init__(self, bootstrap, topic, group):
        from kafka import KafkaConsumer
        self.c = KafkaConsumer(topic, bootstrap_servers=[bootstrap], group_id=group,
                               client_id="a-holder", enable_auto_commit=False,
                               session_timeout_ms=10000, heartbeat_interval_ms=1000)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="partition-holder", daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            self.c.poll(timeout_ms=100)
            self.c.pause(*self.c.assignment())   # hold it, read nothing

    def owns(self) -> bool:
        return bool(self.c.assignment())

    def start(self):
        self.thread.start()
        wait_for(self.owns, 60, 0.1, "the holder to own the partition")

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.c.close(autocommit=False)


def test_ready_and_health_through_startup_doris_down_recovery_and_failure(tmp_path, kafka_bootstrap,
                                                                          doris_pw):
    doris = doris_pw
    topic = unique("obs_ready")
    create_topic(kafka_bootstrap, topic, 1)
    db, table = make_table(doris)
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       server={"listen": "127.0.0.1:0", "ready_stall_s": 2, "debug": True},
                       batch={"max_rows": 100, "max_interval_s": 0.2},
                       writer={"max_retries": 1000, "backoff_initial_s": 0.1, "backoff_max_s": 0.5})
    group = cfg["kafka"]["group_id"]
    holder = PartitionHolder(kafka_bootstrap, topic, group)
    holder.start()
    try:
        with InProcess(cfg) as run:
            port = server_port(run)
            # -- startup: alive, but not ready while another member owns the only partition
            wait_for(lambda: get_json(port, "/ready")[1]["phase"] == "running", 60, 0.1, "phase running")
            wait_for(lambda: holder.owns() and run.pipeline.consumer.reader is not None
                     and run.pipeline.consumer.reader.rebalance_events > 0, 60, 0.1,
                     "sinker joined the group with no partition")
            status, ready = get_json(port, "/ready")
            assert status == 503 and ready["assigned"] == 0, ready
            assert "no partitions assigned" in ready["reasons"]
            assert get(port, "/health")[0] == 200

            # -- the partition comes to sinker: ready
            holder.close()
            wait_for(lambda: get(port, "/ready")[0] == 200, 60, 0.2, "ready once the partition is ours")
            produce(kafka_bootstrap, topic, [good(i) for i in range(300)])
            wait_for(lambda: count_rows(doris, db, table) == 300, 60, 0.2, "first rows")
            assert get(port, "/ready")[0] == 200 and get(port, "/health")[0] == 200

            # -- debug pages
            status, threads = get(port, "/debug/threads")
            text = threads.decode()
            assert status == 200
            for name in ("consumer", "batcher", "writer-0", "writer-1", "status-server"):
                assert f"--- thread {name} " in text, name
            status, body = get(port, "/debug/config")
            assert status == 200 and PASSWORD.encode() not in body
            shown = json.loads(body)
            assert shown["doris"]["password"] == "***"
            assert shown["server"]["ready_stall_s"] == 2

            # -- Doris down with lag: not ready after ready_stall_s, still alive
            t0 = time.monotonic()
            doris.take_down()
            try:
                produce(kafka_bootstrap, topic, [good(i) for i in range(300, 600)])
                wait_for(lambda: get(port, "/ready")[0] == 503, 30, 0.1, "not ready while Doris is down")
                assert time.monotonic() - t0 >= 1.9   # not before the stall time (2 s) has passed
                status, ready = get_json(port, "/ready")
                assert status == 503 and ready["doris"]["error"], ready
                assert any("Doris failing" in r or "stuck" in r for r in ready["reasons"]), ready
                status, health = get_json(port, "/health")
                assert status == 200 and health["status"] == "ok", health
                m = scrape(port)
                assert m.by("sinker_load_retries_total", "reason").get("connection", 0) > 0
                assert m.value("sinker_messages_pending") > 0
            finally:
                doris.bring_up()

            # -- recovery: ready again, everything loaded
            wait_for(lambda: count_rows(doris, db, table) == 600, 60, 0.2, "catch-up")
            wait_for(lambda: get(port, "/ready")[0] == 200, 30, 0.2, "ready after recovery")
            assert get_json(port, "/ready")[1]["doris"]["error"] is None

            # -- pipeline failure: the table disappears, Doris refuses for good
            doris.query(f"DROP TABLE `{db}`.`{table}`")
            produce(kafka_bootstrap, topic, [good(600)])
            seen = set()
            while run.thread.is_alive():
                try:
                    seen.add(get(port, "/health")[0])
                except OSError:
                    break                     # the server closed as the pipeline exits
                time.sleep(0.02)
            run.thread.join(60)
            result = run.result
            assert result is not None and result.exit_code == 3, result
            srv = run.pipeline.status_server
            status, _, body = srv.page("/health", None)
            health = json.loads(body)
            assert status == 503 and any("pipeline failed" in r for r in health["reasons"]), health
            status, _, body = srv.page("/ready", None)
            assert status == 503 and json.loads(body)["phase"] == "stopped"
            print(f"\n/health codes seen over HTTP while failing: {sorted(seen)}")
    finally:
        if not holder.stop.is_set():
            holder.close()


# -- the log file of a real process ---------------------------------------------------------------
def test_json_log_file_names_threads_and_never_holds_the_password(tmp_path, kafka_bootstrap, doris_pw):
    doris = doris_pw
    topic = unique("obs_logs")
    create_topic(kafka_bootstrap, topic, 1)
    db, table = make_table(doris)
    log_file = tmp_path / "logs" / "sinker.log"
    # the poison message carries the password, and dead letters are logged with their value
    leak = json.dumps({"id": 5, "qty": "not a number", "name": PASSWORD}).encode()
    produce(kafka_bootstrap, topic, [good(i) for i in range(50)] + [leak])
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table,
                       logging={"format": "json", "output": "file", "file": str(log_file),
                                "level": "debug"})
    cfg["doris"].pop("password")            # only from the environment, as in production
    path = write_config(tmp_path, cfg)

    # 1: the right password; a dead letter whose value holds it is logged
    proc = start_process(path, log_path=tmp_path / "out1.log", env={"SINKER_DORIS_PASSWORD": PASSWORD})
    try:
        wait_for(lambda: count_rows(doris, db, table) == 50, 60, 0.2, "rows loaded")
        wait_for(lambda: len(read_dead_letters(tmp_path / "dead.jsonl")) == 1, 30, 0.2, "the dead letter")
    finally:
        code = stop_process(proc)
    assert code == 0, (tmp_path / "out1.log").read_text()[-3000:]

    # 2: a wrong password (Doris answers 401); the process stops with exit code 3
    wrong = "Wr0ng-" + PASSWORD[::-1]
    cfg2 = dict(cfg, mapping={"schema": SCHEMA}, kafka=dict(cfg["kafka"], group_id=unique("g")))
    path2 = write_config(tmp_path, cfg2, "wrong.yaml")
    proc = start_process(path2, log_path=tmp_path / "out2.log", env={"SINKER_DORIS_PASSWORD": wrong})
    code = proc.wait(120)
    assert code == 3, (tmp_path / "out2.log").read_text()[-3000:]

    text = log_file.read_text(encoding="utf-8")
    lines = [x for x in text.splitlines() if x.strip()]
    records = [json.loads(x) for x in lines]          # every line is one JSON object
    assert len(records) > 10
    for r in records:
        assert r["thread"] and r["level"] and r["logger"] and r["ts"] and "msg" in r, r
    threads = {r["thread"] for r in records}
    assert {"MainThread", "consumer"} <= threads, threads
    assert any(t.startswith("writer-") for t in threads), threads
    msgs = "\n".join(r["msg"] + r.get("exc", "") for r in records)
    assert "dead letter" in msgs and "***" in msgs     # the dead letter was logged, its secret masked
    assert "401" in msgs or "auth" in msgs.lower() or "Access denied" in msgs
    assert PASSWORD not in text and wrong not in text
    for out in ("out1.log", "out2.log"):               # nor on stdout/stderr
        captured = (tmp_path / out).read_text(errors="replace")
        assert PASSWORD not in captured and wrong not in captured
