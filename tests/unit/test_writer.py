"""The writer's decisions with a fake Doris: same label on every retry, rejected rows dead-lettered
(named by the ErrorURL or found by halving), dead letters durable before the batch is confirmed."""
from __future__ import annotations


import queue

import pytest

from sinker_lib.batcher import Batch
from sinker_lib.config import WriterConfig
from sinker_lib.dead_letter import DeadLetter
from sinker_lib.budget import Budget
from sinker_lib.errors import DorisFatalError, RetriesExhausted, TransportError
from sinker_lib.governor import Governor
from sinker_lib.lifecycle import Shutdown
from sinker_lib.stream_load import LoadResponse
from sinker_lib.labels import subset_label
from sinker_lib.writer import STOP, WriterThread, backoff_s, parse_error_row
from tests.fakes import Clock, Rec, observers

OK = {"Status": "Success", "Message": "OK", "NumberLoadedRows": 1}


class LineMapper:
    def headers(self):
        return {"format": "csv"}

    def map_records(self, records, out, dead):
        n = 0
        for r in records:
            out.append(r.value + b"\n")
            n += len(r.value) + 1
        return n

    def map_slice(self, records, out, dead):
        return self.map_records(records, out, dead), False

    def line_for(self, r):
        return r.value + b"\n"


class FakeDoris:
    """Refuses any load that contains a line in `bad`; `script` gives canned answers first."""

    deadline_s = 660.0                # StreamLoader: load_timeout_s + its deadline margin

    def __init__(self, bad=(), error_url=False, script=()):
        self.bad, self.error_url, self.script = set(bad), error_url, list(script)
        self.calls, self.loaded = [], []

    def load(self, db, table, label, lines, nbytes, headers, group_commit=None):
        assert nbytes == sum(len(x) for x in lines)
        self.calls.append((label, [x.rstrip(b"\n") for x in lines]))
        if self.script:
            step = self.script.pop(0)
            if isinstance(step, Exception):
                raise step
            if isinstance(step, LoadResponse):
                return step
            return LoadResponse(200, step, b"")
        bad = [x for x in lines if x.rstrip(b"\n") in self.bad]
        if bad:
            body = {"Status": "Fail", "Message": "[DATA_QUALITY_ERROR]too many filtered rows"}
            if self.error_url:
                body["ErrorURL"] = "http://be/api/_load_error_log?file=x"
            return LoadResponse(200, body, b"")
        self.loaded.extend(x.rstrip(b"\n") for x in lines)
        return LoadResponse(200, dict(OK, NumberLoadedRows=len(lines)), b"")

    def fetch_error_rows(self, url):
        return [f"Reason: column qty is bad. src line [{b.decode()}]; " for b in sorted(self.bad)]


class Events:
    def __init__(self):
        self.log = []


class FakeSink:
    def __init__(self, events):
        self.events, self.dead = events, []

    def write(self, dead, table):
        self.dead.extend(dead)
        self.events.log.append(("write", len(dead)))

    def flush(self):
        self.events.log.append(("flush",))


class FakeTracker:
    def __init__(self, events):
        self.events = events

    def confirm(self, seq):
        self.events.log.append(("confirm", seq))


def make_batch(values, label="sinker_db_t_p0-0-9_abc"):
    b = Batch("db", "t", LineMapper(), opened_at=0.0)
    b.add("events", 0, [Rec("events", 0, i, 1_700_000_000_000 + i, None, v)
                        for i, v in enumerate(values)])
    b.seq, b.label = 0, label
    return b


def writer(doris, events, **cfg):
    w = WriterThread(0, WriterConfig(**{"max_retries": 3, **cfg}), None, doris, FakeSink(events),
                     FakeTracker(events), observers(), Shutdown(), sleep=lambda s: None)
    return w


def test_retries_reuse_the_label_and_confirm_once():
    events = Events()
    doris = FakeDoris(script=[TransportError("reset"), {"Status": "Fail", "Message": "[E-235]too many versions"},
                              {"Status": "Label Already Exists", "ExistingJobStatus": "FINISHED"}])
    w = writer(doris, events)
    w.deliver(make_batch([b"a", b"b"]))
    assert [label for label, _ in doris.calls] == ["sinker_db_t_p0-0-9_abc"] * 3
    assert events.log == [("flush",), ("confirm", 0)]
    assert w.accounting.snapshot()["loaded"] == 2


def test_rows_named_by_the_error_url_become_dead_letters_and_the_rest_load():
    events = Events()
    doris = FakeDoris(bad={b"x"}, error_url=True)
    w = writer(doris, events)
    w.deliver(make_batch([b"a", b"x", b"b"]))
    assert doris.loaded == [b"a", b"b"]
    assert [label for label, _ in doris.calls] == [
        "sinker_db_t_p0-0-9_abc", subset_label("sinker_db_t_p0-0-9_abc", [("events", 0, 0), ("events", 0, 2)])]
    dead = w.sink.dead
    assert [(d.offset, d.reason) for d in dead] == [(1, "doris_rejected: column qty is bad")]
    assert events.log == [("write", 1), ("flush",), ("confirm", 0)]   # durable, then confirmed


def test_without_an_error_url_halving_finds_each_rejected_row():
    events = Events()
    values = [b"v%d" % i for i in range(16)]
    doris = FakeDoris(bad={b"v3", b"v12"})
    w = writer(doris, events)
    w.deliver(make_batch(values))
    assert sorted(doris.loaded) == sorted(v for v in values if v not in (b"v3", b"v12"))
    assert sorted(d.offset for d in w.sink.dead) == [3, 12]
    assert all(d.reason.startswith("doris_rejected: ") for d in w.sink.dead)
    labels = [label for label, _ in doris.calls]
    assert all(len(x) <= 128 for x in labels)
    loaded_labels = [label for label, lines in doris.calls if not set(lines) & doris.bad]
    assert len(loaded_labels) == len(set(loaded_labels)), "a label was used for two loads"
    assert events.log[-2:] == [("flush",), ("confirm", 0)]
    acc = w.accounting.snapshot()
    assert (acc["loaded"], acc["dead_lettered"]) == (14, 2)
    # the same batch halves the same way: a retry after a crash reuses the same labels
    doris2 = FakeDoris(bad={b"v3", b"v12"})
    writer(doris2, Events()).deliver(make_batch(values))
    assert [c[0] for c in doris2.calls] == labels


def test_the_same_rows_get_the_same_label_whether_named_or_found_by_halving():
    """Run 1 halves (no ErrorURL), run 2 is told which row is bad: the good rows must not load
    under a new label in run 2 (they may be in Doris already under run 1's)."""
    values = [b"v%d" % i for i in range(4)]
    halving = FakeDoris(bad={b"v1"})
    writer(halving, Events()).deliver(make_batch(values))
    named = FakeDoris(bad={b"v1"}, error_url=True)
    writer(named, Events()).deliver(make_batch(values))
    good = {x for x in values if x != b"v1"}
    halving_good = {label for label, lines in halving.calls if set(lines) == good}
    named_good = {label for label, lines in named.calls if set(lines) == good}
    # halving never loads exactly the good rows at once here; every set it did load that the
    # named path loads too carries the same label
    for label, lines in named.calls:
        for label2, lines2 in halving.calls:
            if set(lines) == set(lines2):
                assert label == label2
    assert named_good and (not halving_good or halving_good == named_good)


def test_an_unreadable_error_url_is_asked_again_under_the_same_label():
    class Flaky(FakeDoris):
        fetches = 0

        def fetch_error_rows(self, url):
            Flaky.fetches += 1
            if Flaky.fetches == 1:
                raise TransportError("reset while reading the ErrorURL")
            return super().fetch_error_rows(url)
    doris = Flaky(bad={b"x"}, error_url=True)
    w = writer(doris, Events())
    w.deliver(make_batch([b"a", b"x"]))
    labels = [label for label, _ in doris.calls]
    assert labels[0] == labels[1] == "sinker_db_t_p0-0-9_abc"       # same label, no halving
    assert [d.offset for d in w.sink.dead] == [1] and doris.loaded == [b"a"]


def test_auth_failure_is_fatal_and_confirms_nothing():
    events = Events()
    doris = FakeDoris(script=[{"code": 401, "msg": "Unauthorized"}])
    with pytest.raises(DorisFatalError, match="SINKER_DORIS_PASSWORD"):
        writer(doris, events).deliver(make_batch([b"a"]))
    assert ("confirm", 0) not in events.log and len(doris.calls) == 1


def test_retries_exhausted_confirms_nothing():
    events = Events()
    doris = FakeDoris(script=[TransportError("down")] * 10)
    with pytest.raises(RetriesExhausted, match="after 3 retries"):
        writer(doris, events).deliver(make_batch([b"a"]))
    assert len(doris.calls) == 4 and len({c[0] for c in doris.calls}) == 1
    assert ("confirm", 0) not in events.log


@pytest.mark.parametrize("line,reason,src", [
    ("Reason: column_name[name], the length of input is too long than schema. src line [1\x01abc]; ",
     "column_name[name], the length of input is too long than schema", "1\x01abc"),
    ("Reason: no partition for this tuple. src line [{\"id\": 1}]; ",
     "no partition for this tuple", '{"id": 1}'),
    ("Reason: actual column number is less than schema column number.",
     "actual column number is less than schema column number", None),
])
def test_parse_error_row(line, reason, src):
    assert parse_error_row(line) == (reason, src)


def test_backoff_grows_is_capped_and_busy_starts_higher():
    cfg = WriterConfig(backoff_initial_s=1, backoff_max_s=8, busy_backoff_s=5)
    top = [backoff_s(a, cfg, rng=lambda: 1.0) for a in range(1, 7)]
    assert top == [1, 2, 4, 8, 8, 8]
    assert backoff_s(1, cfg, rng=lambda: 0.0) == 0.5
    assert backoff_s(1, cfg, busy=True, rng=lambda: 1.0) == 5


def test_health_sees_each_load_while_it_runs():
    events = Events()
    doris = FakeDoris(script=[TransportError("reset")])
    w = writer(doris, events)
    seen = []
    real_load = doris.load

    def load(*args):
        seen.append(w.health.liveness()[1]["loads_in_progress"])
        return real_load(*args)
    doris.load = load
    w.deliver(make_batch([b"a"]))
    assert seen == [1, 1]                                   # the failed attempt and the retry
    assert w.health.liveness()[1]["loads_in_progress"] == 0  # finished, also after the failure


def test_replay_skips_a_batch_an_earlier_run_finished_and_writes_dead_letters_first():
    """Replay: a label an earlier run finished means its rows are in Doris and its dead letters
    were written (replay writes them before the rows), so the re-run does neither again."""
    events = Events()
    doris = FakeDoris()
    w = WriterThread(0, WriterConfig(max_retries=3), None, doris, FakeSink(events),
                     FakeTracker(events), observers(), Shutdown(), sleep=lambda s: None,
                     finished=frozenset({"replay_done"}))
    done = make_batch([b"a", b"b"], label="replay_done")
    done.dead.append(DeadLetter("events", 0, 5, 0, b"{", "invalid_json", None))
    w.deliver(done)
    assert doris.calls == [] and w.sink.dead == []
    assert events.log == [("flush",), ("confirm", 0)]
    fresh = make_batch([b"c"], label="replay_new")
    fresh.dead.append(DeadLetter("events", 0, 6, 0, b"{", "invalid_json", None))
    fresh.seq = 1
    w.deliver(fresh)
    assert [label for label, _ in doris.calls] == ["replay_new"]
    assert events.log[2:] == [("write", 1), ("flush",), ("flush",), ("confirm", 1)]
    assert w.accounting.snapshot()["loaded"] == 3


def test_on_table_error_dead_letter_takes_only_doris_saying_the_table_is_gone():
    """A route with on_table_error: dead_letter dead-letters a dropped table's rows; a bare 404
    (a proxy's, no Doris answer) still stops, as any route would."""
    from sinker_lib.config import BatchConfig
    from sinker_lib.errors import DorisFatalError
    from sinker_lib.routing import Target
    target = Target(0, "db", "t", None, BatchConfig(), on_table_error="dead_letter")
    gone = {"Status": "Fail", "Message": "[ANALYSIS_ERROR]unknown table, tableName=t"}
    events = Events()
    w = writer(FakeDoris(script=[gone]), events)
    batch = make_batch([b"a", b"b"])
    batch.target = target
    w.deliver(batch)
    assert [d.reason.split(":")[:2] for d in w.sink.dead] == [["table_error", " table_not_found"]] * 2
    assert events.log[-1] == ("confirm", 0)
    proxy = LoadResponse(404, None, b"<html>not found</html>")
    w = writer(FakeDoris(script=[proxy]), Events())
    batch = make_batch([b"a"])
    batch.target = target
    with pytest.raises(DorisFatalError):
        w.deliver(batch)


# -- hand-back to the governor ----------------------------------------------------------------------
VERSIONS = {"Status": "Fail", "Message": "[E-235]too many versions"}


class RecordedTracker(FakeTracker):
    """Exactly-once: every batch's cuts are recorded; ``moved`` partitions were taken away."""

    def __init__(self, events):
        super().__init__(events)
        self.moved = False

    def wait_recorded(self, seq, timeout):
        return "recorded"

    def live(self, seq):
        return not self.moved


def governed(doris, events, clock, tracker=None, **cfg):
    """A writer whose batches come from a governor on ``clock``; the consumer polls meanwhile."""
    obs = observers()
    return WriterThread(0, WriterConfig(**{"max_retries": 3, "busy_backoff_s": 5, **cfg}),
                        Governor(4, lambda table: 0.0, obs.metrics, clock=clock), doris,
                        FakeSink(events), tracker or FakeTracker(events), obs, Shutdown(),
                        sleep=lambda s: pytest.fail("a BACKOFF of the batch's own label waited "
                                                    "in the writer"),
                        polled_at=lambda: clock() + 1)


def table_batch(table, value, seq, label, budget=None):
    b = Batch("db", table, LineMapper(), opened_at=0.0, budget=budget)
    b.add("events", seq, [Rec("events", seq, 0, 1_700_000_000_000, None, value)])
    b.seq, b.label = seq, label
    return b


def test_an_overloaded_table_goes_back_to_the_governor_and_the_writer_loads_another():
    clock, events = Clock(), Events()
    doris = FakeDoris(script=[VERSIONS])
    w = governed(doris, events, clock)
    budget = Budget(1 << 20)
    hot = table_batch("hot", b"h", 0, "lbl_hot", budget)
    cold = table_batch("cold", b"c", 1, "lbl_cold", budget)
    w.inq.put(hot)
    w.inq.put(cold)
    held = budget.held
    w.deliver(w.inq.get(block=False))                 # hot: -235, handed back, not confirmed
    assert events.log == [] and w.inq.qsize() == 2
    assert budget.held == held                        # the governor holds its memory now
    w.deliver(w.inq.get(block=False))                 # the writer goes on with cold
    assert events.log == [("flush",), ("confirm", 1)]
    with pytest.raises(queue.Empty):
        w.inq.get(block=False)                        # hot backs off
    clock.advance(5)
    w.deliver(w.inq.get(block=False))
    assert [label for label, _ in doris.calls] == ["lbl_hot", "lbl_cold", "lbl_hot"]
    assert events.log[2:] == [("flush",), ("confirm", 0)]
    assert w.accounting.snapshot()["loaded"] == 2 and budget.held == 0


def test_max_retries_counts_the_attempts_of_a_batch_across_hand_backs():
    clock, events = Clock(), Events()
    doris = FakeDoris(script=[VERSIONS, TransportError("reset"), VERSIONS, VERSIONS])
    w = governed(doris, events, clock, backoff_max_s=40)
    w._sleep = lambda s: None                          # the in-thread wait after the reset
    w.inq.put(make_batch([b"a"]))
    with pytest.raises(RetriesExhausted, match="after 3 retries"):
        for _ in range(4):
            w.deliver(w.inq.get(block=False))
            clock.advance(40)
    assert len(doris.calls) == 4 and {c[0] for c in doris.calls} == {"sinker_db_t_p0-0-9_abc"}
    assert ("confirm", 0) not in events.log


def test_a_batch_whose_partition_moved_while_it_was_held_is_dropped_not_loaded():
    clock, events = Clock(), Events()
    tracker = RecordedTracker(events)
    doris = FakeDoris(script=[VERSIONS])
    w = governed(doris, events, clock, tracker=tracker)
    b = make_batch([b"a", b"b"])
    b.needs_record = True
    w.inq.put(b)
    w.deliver(w.inq.get(block=False))
    tracker.moved = True                               # a rebalance during the backoff
    clock.advance(5)
    w.deliver(w.inq.get(block=False))
    assert len(doris.calls) == 1 and events.log == []
    assert w.accounting.snapshot()["rewound"] == 2


def test_a_backoff_after_rows_were_dead_lettered_waits_in_the_writer():
    """The rest of a batch loads under a label of its own once its rejected rows are dead
    letters: handing it back would load the whole batch again and write them twice."""
    clock, events = Clock(), Events()
    rejected = {"Status": "Fail", "Message": "[DATA_QUALITY_ERROR]too many filtered rows",
                "ErrorURL": "http://be/api/_load_error_log?file=x"}
    doris = FakeDoris(bad={b"x"}, script=[rejected, VERSIONS])
    w = governed(doris, events, clock)
    waits = []
    w._sleep = waits.append
    w.inq.put(make_batch([b"a", b"x"]))
    w.deliver(w.inq.get(block=False))
    assert len(waits) == 1 and w.inq.qsize() == 0
    assert [d.offset for d in w.sink.dead] == [1] and doris.loaded == [b"a"]
    assert events.log[-1] == ("confirm", 0)


def test_a_writer_fed_by_a_plain_queue_waits_out_a_backoff_itself():
    """``dead-letters resend`` hands batches to deliver() with a plain queue: no governor to hand
    them back to, so the writer pauses and retries under the same label, as before."""
    events, waits = Events(), []
    doris = FakeDoris(script=[VERSIONS])
    w = WriterThread(0, WriterConfig(max_retries=3, busy_backoff_s=5), queue.Queue(), doris,
                     FakeSink(events), FakeTracker(events), observers(), Shutdown(), sleep=waits.append)
    w.deliver(make_batch([b"a"]))
    assert [c[0] for c in doris.calls] == ["sinker_db_t_p0-0-9_abc"] * 2 and len(waits) == 1
    assert events.log == [("flush",), ("confirm", 0)]


def test_a_delivered_batch_is_freed_while_the_writer_waits_for_the_next():
    """The writer must not keep the batch it delivered alive (its records and lines, outside
    the memory budget) while its queue is empty."""
    import gc
    import threading
    import time
    import weakref
    events, q, shutdown = Events(), queue.Queue(), Shutdown()
    w = WriterThread(0, WriterConfig(max_retries=3), q, FakeDoris(), FakeSink(events),
                     FakeTracker(events), observers(), shutdown, sleep=lambda s: None)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    batch = make_batch([b"a", b"b"])
    gone = weakref.ref(batch)
    q.put(batch)
    del batch
    deadline = time.monotonic() + 10
    while (gone() is not None or ("confirm", 0) not in events.log) and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert ("confirm", 0) in events.log
    assert gone() is None, "the writer still holds the batch it delivered"
    q.put(STOP)
    thread.join(5)
