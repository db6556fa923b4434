"""Metrics: names, labels and the accounting invariant, read back from each instance's registry."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from kafka.consumer.fetcher import ConsumerRecord
from kafka.structs import TopicPartition
from prometheus_client import generate_latest

from sinker_lib.dead_letter import DeadLetter, category
from sinker_lib.observability.metrics import METRIC_NAMES, Accounting, Metrics, is_known_series


def rec(topic, partition, offset, value):
    return ConsumerRecord(topic, partition, -1, offset, 0, 0, None, value, [], None, 0,
                          len(value or b""), 0)


def val(m: Metrics, name: str, **labels):
    return m.registry.get_sample_value(name, labels)


def exercise(m: Metrics) -> None:
    """Touch every method so every labelled family has a sample."""
    m.observe_poll({TopicPartition("t", 0): [rec("t", 0, 0, b"abc")]}, 0.01)
    m.watch_queue("polled", SimpleNamespace(qsize=lambda: 1))
    m.set_paused(0)
    m.observe_rebalance(revoked=0, assigned=1, lost=0)
    m.observe_commit({("t", 0): 1}, 0.002, ok=True)
    m.observe_commit({("t", 0): 1}, 0.002, ok=False)
    m.set_end_offsets({("t", 0): 5})
    m.observe_seal(SimpleNamespace(reason="rows", rows=1, nbytes=4, full_name="db.t"))
    m.loads_in_flight(1)
    m.observe_load("db.t", "success", {"NumberLoadedRows": 1, "NumberFilteredRows": 1,
                                       "NumberUnselectedRows": 1, "LoadBytes": 4, "LoadTimeMs": 3}, 0.1)
    m.observe_retry("db.t", "connection")
    m.observe_governor_held("db.t", 0.5)
    m.observe_table_backoff("db.t", "too_many_versions", 15.0)
    m.observe_dead_letters("db.t", [DeadLetter("t", 0, 0, None, b"x", "conversion: bad int", "id")])
    m.accounting.consumed({("t", 0): 1})


def test_every_exported_family_is_listed_and_every_listed_one_exported():
    m = Metrics()
    exercise(m)
    text = generate_latest(m.registry).decode()
    exported = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert exported == set(METRIC_NAMES)
    assert all(n.startswith(("sinker_", "process_", "python_")) for n in METRIC_NAMES)
    assert "_created" not in text


def test_is_known_series_accepts_histogram_series_only_for_real_names():
    assert is_known_series("sinker_load_seconds_bucket")
    assert is_known_series("sinker_rows_loaded_total")
    assert not is_known_series("sinker_rows_loaded")
    assert not is_known_series("sinker_nope_total")


def test_two_instances_do_not_clash():
    a, b = Metrics(), Metrics()
    a.observe_retry("db.t", "timeout")
    assert val(a, "sinker_load_retries_total", table="db.t", reason="timeout") == 1
    assert val(b, "sinker_load_retries_total", table="db.t", reason="timeout") is None


def test_build_info_present():
    m = Metrics()
    text = generate_latest(m.registry).decode()
    assert 'sinker_build_info{' in text and 'version="' in text


def test_observe_poll_counts_value_bytes_per_partition():
    m = Metrics()
    tp0, tp1 = TopicPartition("ev", 0), TopicPartition("ev", 1)
    result = {tp0: [rec("ev", 0, i, b"12345") for i in range(1000)],
              tp1: [rec("ev", 1, 0, b"xy"), rec("ev", 1, 1, None)]}   # a tombstone
    assert m.observe_poll(result, 0.05) == 5002          # what the memory budget counts too
    m.observe_poll({tp0: [rec("ev", 0, 1000, b"1")]}, 0.01)
    assert val(m, "sinker_consumed_bytes_total", topic="ev", partition="0") == 5001
    assert val(m, "sinker_consumed_bytes_total", topic="ev", partition="1") == 2
    assert val(m, "sinker_poll_seconds_count") == 2


def test_gauges_for_queues_paused_rebalance():
    m = Metrics()
    m.watch_queue("polled", SimpleNamespace(qsize=lambda: 3))
    m.watch_queue("sealed", SimpleNamespace(qsize=lambda: 1))
    m.set_paused(4)
    m.observe_rebalance(revoked=2, assigned=6, lost=1)
    assert val(m, "sinker_queue_depth", queue="polled") == 3
    assert val(m, "sinker_queue_depth", queue="sealed") == 1
    assert val(m, "sinker_partitions_paused") == 4
    assert val(m, "sinker_partitions_assigned") == 6
    assert val(m, "sinker_rebalances_total") == 1
    assert val(m, "sinker_partitions_revoked_total") == 2
    assert val(m, "sinker_partitions_lost_total") == 1


def test_lag_from_end_offsets_and_commits_and_forgotten_partitions():
    m = Metrics()
    m.set_end_offsets({("t", 0): 100, ("t", 1): 50})
    assert val(m, "sinker_consumer_lag", topic="t", partition="0") is None   # nothing committed yet
    m.observe_commit({("t", 0): 40, ("t", 1): 50}, 0.01, ok=True)
    assert val(m, "sinker_committed_offset", topic="t", partition="0") == 40
    assert val(m, "sinker_consumer_lag", topic="t", partition="0") == 60
    assert val(m, "sinker_consumer_lag", topic="t", partition="1") == 0
    assert val(m, "sinker_last_commit_timestamp_seconds") > 0
    m.set_end_offsets({("t", 0): 120})                     # partition 1 moved away
    assert val(m, "sinker_consumer_lag", topic="t", partition="0") == 80
    assert val(m, "sinker_consumer_lag", topic="t", partition="1") is None
    assert val(m, "sinker_partition_end_offset", topic="t", partition="1") is None
    assert m.snapshot()["lag"] == 80


def test_failed_commit_counts_failure_and_keeps_offsets():
    m = Metrics()
    m.observe_commit({("t", 0): 7}, 0.5, ok=False)
    assert val(m, "sinker_commit_failures_total") == 1
    assert val(m, "sinker_commit_seconds_count") == 1
    assert val(m, "sinker_committed_offset", topic="t", partition="0") is None
    assert val(m, "sinker_last_commit_timestamp_seconds") == 0


def test_observe_seal():
    m = Metrics()
    m.observe_seal(SimpleNamespace(reason="bytes", rows=500, nbytes=70_000, full_name="db.t"))
    m.observe_seal(SimpleNamespace(reason="interval", rows=3, nbytes=90, full_name="db.t"))
    assert val(m, "sinker_batches_sealed_total", table="db.t", reason="bytes") == 1
    assert val(m, "sinker_batches_sealed_total", table="db.t", reason="interval") == 1
    assert val(m, "sinker_batch_rows_sum", table="db.t") == 503
    assert val(m, "sinker_batch_bytes_sum", table="db.t") == 70_090


def test_observe_load_reads_doris_body_and_phases():
    m = Metrics()
    body = {"Status": "Success", "NumberLoadedRows": 98, "NumberFilteredRows": 2,
            "NumberUnselectedRows": 0, "LoadBytes": 4096, "BeginTxnTimeMs": 1,
            "StreamLoadPutTimeMs": 2, "ReadDataTimeMs": 3, "WriteDataTimeMs": 40,
            "CommitAndPublishTimeMs": 15, "LoadTimeMs": "61"}
    m.loads_in_flight(+1)
    m.observe_load("db.t", "success", body, 0.07)
    assert val(m, "sinker_loads_in_flight") == 1
    m.loads_in_flight(-1)
    assert val(m, "sinker_loads_in_flight") == 0
    assert val(m, "sinker_loads_total", table="db.t", outcome="success") == 1
    assert val(m, "sinker_doris_loaded_rows_total", table="db.t") == 98
    assert val(m, "sinker_doris_filtered_rows_total", table="db.t") == 2
    assert val(m, "sinker_doris_load_bytes_total", table="db.t") == 4096
    for phase, ms in (("begin_txn", 1), ("put", 2), ("read", 3), ("write", 40),
                      ("commit_publish", 15), ("total", 61)):
        assert val(m, "sinker_doris_load_phase_seconds_count", table="db.t", phase=phase) == 1
        assert abs(val(m, "sinker_doris_load_phase_seconds_sum", table="db.t", phase=phase) - ms / 1000) < 1e-9
    assert val(m, "sinker_last_load_success_timestamp_seconds", table="db.t") > 0


def test_observe_load_failure_and_no_body():
    m = Metrics()
    m.observe_load("db.t", "connection", None, 5.0)
    m.observe_load("db.t", "too_many_versions", {"Status": "Fail", "LoadTimeMs": "bad"}, 0.2)
    assert val(m, "sinker_loads_total", table="db.t", outcome="connection") == 1
    assert val(m, "sinker_load_seconds_count", table="db.t") == 2
    assert val(m, "sinker_last_load_success_timestamp_seconds", table="db.t") is None
    for reason in ("publish_timeout", "label_exists", "precommitted"):
        m.observe_load("db.u", reason, {}, 0.1)
    assert val(m, "sinker_last_load_success_timestamp_seconds", table="db.u") > 0
    assert m.snapshot()["loads"] == {"connection": 1, "too_many_versions": 1, "publish_timeout": 1,
                                     "label_exists": 1, "precommitted": 1}


def test_retries_and_dead_letters_by_category_and_column():
    m = Metrics()
    m.observe_retry("db.t", "timeout")
    m.observe_retry("db.t", "timeout")
    dead = [DeadLetter("t", 0, 1, None, b"{", "invalid_json: Expecting value"),
            DeadLetter("t", 0, 2, None, b"{}", "conversion: 'x' is not an int", "id"),
            DeadLetter("t", 0, 3, None, b"{}", "conversion: too long", "name"),
            DeadLetter("t", 0, 4, None, b"{}", "conversion: too long", "name"),
            DeadLetter("t", 0, 5, None, b"{}", "no colon here")]
    m.observe_dead_letters("db.t", dead)
    assert val(m, "sinker_load_retries_total", table="db.t", reason="timeout") == 2
    assert val(m, "sinker_dead_letter_reasons_total", table="db.t", category="invalid_json") == 1
    assert val(m, "sinker_dead_letter_reasons_total", table="db.t", category="conversion") == 3
    assert val(m, "sinker_dead_letter_reasons_total", table="db.t", category="other") == 1
    assert val(m, "sinker_mapping_errors_total", table="db.t", column="name") == 2
    assert val(m, "sinker_mapping_errors_total", table="db.t", column="id") == 1


def test_dead_letter_category():
    assert [category(r) for r in ("invalid_json: x", "doris_rejected: a: b", "weird")] == \
        ["invalid_json", "doris_rejected", "other"]


def test_accounting_invariant_and_metrics():
    m = Metrics()
    acc = m.accounting
    acc.consumed({("t", 0): 4, ("t", 1): 6})
    acc.loaded(6)
    acc.dead_lettered(1)
    assert acc.snapshot() == {"consumed": 10, "loaded": 6, "dead_lettered": 1, "rewound": 0,
                              "skipped": 0, "pending": 3}
    acc.rewound(1)
    acc.skipped(1)
    assert acc.snapshot()["pending"] == 1 and val(m, "sinker_messages_rewound_total") == 1
    assert val(m, "sinker_messages_skipped_total") == 1
    assert val(m, "sinker_messages_consumed_total", topic="t", partition="0") == 4
    assert val(m, "sinker_messages_consumed_total", topic="t", partition="1") == 6
    assert val(m, "sinker_rows_loaded_total") == 6
    assert val(m, "sinker_dead_letters_total") == 1
    assert val(m, "sinker_messages_pending") == 1
    snap = m.snapshot()
    assert snap["consumed"] == 10 and snap["pending"] == 1


def test_metrics_can_adopt_an_accounting():
    acc = Accounting()
    m = Metrics(accounting=acc)
    acc.consumed({("t", 0): 2})
    assert val(m, "sinker_messages_consumed_total", topic="t", partition="0") == 2
    other = Accounting()
    m.accounting = other            # what a pipeline holding its own Accounting may do
    other.consumed({("t", 0): 5})
    assert val(m, "sinker_messages_consumed_total", topic="t", partition="0") == 5


def test_accounting_is_thread_safe():
    acc = Accounting()

    def work():
        for _ in range(10_000):
            acc.consumed({("t", 0): 3})
            acc.loaded(2)
            acc.dead_lettered(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert acc.snapshot() == {"consumed": 120_000, "loaded": 80_000, "dead_lettered": 40_000,
                              "rewound": 0, "skipped": 0, "pending": 0}
