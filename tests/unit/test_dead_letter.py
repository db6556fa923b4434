"""Dead-letter sinks: record format, durability (fsync inside flush), errors that must propagate."""
from __future__ import annotations

import base64
import json
import logging
import os

import pytest

import sinker_lib
from sinker_lib import dead_letter_sinks
from sinker_lib.config import DeadLetterConfig, KafkaConfig
from sinker_lib.dead_letter import DeadLetter, category, original_value, to_json, truncated_json
from sinker_lib.dead_letter_sinks import FileSink, open_sink
from sinker_lib.errors import ConfigError

GOOD = DeadLetter("events", 3, 1234, 1_700_000_000_000, '{"id":"é\n"}'.encode(),
                  "conversion: id is not an int", "id")
BAD_UTF8 = DeadLetter("events", 0, 7, None, b"\xff\xfe{not json", "invalid_json: bad byte")
NO_VALUE = DeadLetter("events", 1, 8, 5, None, "tombstone")


def read_records(path):
    with open(path, "rb") as f:
        return [json.loads(line) for line in f.read().splitlines()]


def test_to_json_is_one_line_with_all_fields():
    line = to_json(GOOD, "db.t")
    assert b"\n" not in line
    rec = json.loads(line)
    assert rec["topic"] == "events" and rec["partition"] == 3 and rec["offset"] == 1234
    assert rec["timestamp"] == 1_700_000_000_000 and rec["table"] == "db.t"
    assert rec["reason"] == "conversion: id is not an int" and rec["category"] == "conversion"
    assert rec["column"] == "id"
    assert rec["value"] == '{"id":"é\n"}' and "value_b64" not in rec    # the value once, as text
    assert original_value(rec) == GOOD.value
    assert rec["sinker_version"] == sinker_lib.__version__
    assert rec["at"].endswith("Z") and "T" in rec["at"]


def test_file_round_trip_keeps_exact_bytes(tmp_path):
    path = tmp_path / "sub" / "dir" / "dead.jsonl"          # parent dirs are created
    sink = FileSink(str(path))
    sink.write([GOOD, BAD_UTF8], "db.t")
    sink.write([NO_VALUE], "db.u")
    sink.flush()
    recs = read_records(path)
    assert [r["offset"] for r in recs] == [1234, 7, 8]
    assert recs[0]["value"].encode() == GOOD.value and "value_b64" not in recs[0]
    assert base64.b64decode(recs[1]["value_b64"]) == b"\xff\xfe{not json"
    assert "value" not in recs[1]                                 # not utf-8: only the b64 form
    assert [original_value(r) for r in recs] == [GOOD.value, BAD_UTF8.value, None]
    assert recs[1]["category"] == "invalid_json" and recs[1]["column"] is None
    assert "value_b64" not in recs[2] and "value" not in recs[2]
    assert recs[2]["category"] == category("tombstone") == "other" and recs[2]["table"] == "db.u"
    sink.close()


def test_file_appends_across_sinks(tmp_path):
    path = str(tmp_path / "dead.jsonl")
    for _ in range(2):
        s = FileSink(path)
        s.write([GOOD], "db.t")
        s.close()
    assert len(read_records(path)) == 2


def test_flush_writes_then_fsyncs(tmp_path, monkeypatch):
    path = str(tmp_path / "dead.jsonl")
    sink = FileSink(path)
    calls = []
    real_fsync = os.fsync

    def fsync(fd):
        # at fsync time the lines must already be handed to the OS (buffer flushed)
        calls.append(len(read_records(path)))
        real_fsync(fd)
    monkeypatch.setattr(dead_letter_sinks.os, "fsync", fsync)
    sink.write([GOOD, BAD_UTF8], "db.t")
    assert calls == []                  # write alone does not claim durability
    sink.flush()
    assert calls == [2]
    sink.flush()                        # nothing new: no needless fsync per batch
    assert calls == [2]
    sink.write([NO_VALUE], "db.t")
    sink.flush()
    assert calls == [2, 3]
    sink.close()


def test_fsync_error_propagates_and_sticks(tmp_path, monkeypatch):
    sink = FileSink(str(tmp_path / "dead.jsonl"))

    def broken(fd):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(dead_letter_sinks.os, "fsync", broken)
    sink.write([GOOD], "db.t")
    with pytest.raises(OSError, match="Input/output"):
        sink.flush()
    monkeypatch.undo()
    # the file may be missing lines now: every later call refuses, so no batch is confirmed
    with pytest.raises(OSError, match="failed earlier"):
        sink.write([GOOD], "db.t")
    with pytest.raises(OSError, match="failed earlier"):
        sink.flush()
    sink.close()


def test_write_error_propagates(tmp_path):
    sink = FileSink(str(tmp_path / "dead.jsonl"))

    class Broken:
        closed = False

        def write(self, data):
            raise OSError(28, "No space left on device")

        def close(self):
            self.closed = True
    sink._f.close()
    sink._f = Broken()
    with pytest.raises(OSError, match="No space"):
        sink.write([GOOD], "db.t")
    with pytest.raises(OSError):
        sink.flush()
    sink.close()


def test_unwritable_path_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="dead-letter file"):
        FileSink(str(blocker / "dead.jsonl"))


def test_log_rate_limit(tmp_path, caplog):
    now = [1000.0]
    sink = FileSink(str(tmp_path / "dead.jsonl"), log_per_minute=3)
    sink._log.sampler.clock = lambda: now[0]
    big = DeadLetter("events", 0, 1, None, b"A" * 5000, "invalid_json: too big")
    with caplog.at_level(logging.WARNING, logger="sinker.dead_letter"):
        sink.write([big] * 10, "db.t")
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 3
        assert all("events[0]@1" in m and "invalid_json: too big" in m for m in lines)
        assert all(m.count("A") <= 200 for m in lines)      # never the whole value
        caplog.clear()
        now[0] += 61
        sink.write([GOOD], "db.t")
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 2 and "7 more dead letters" in lines[0]
        assert "events[3]@1234" in lines[1]
    sink.close()


def test_open_sink(tmp_path):
    sink = open_sink(DeadLetterConfig(type="file", path=str(tmp_path / "d.jsonl")), KafkaConfig())
    assert isinstance(sink, FileSink)
    sink.close()
    with pytest.raises(ConfigError):
        open_sink(DeadLetterConfig(type="s3"), KafkaConfig())
    with pytest.raises(ConfigError, match="topic"):
        open_sink(DeadLetterConfig(type="kafka", topic=None), KafkaConfig())


def test_a_record_is_about_as_large_as_its_value():
    big = DeadLetter("events", 0, 1, 2, b"x" * 450_000, "conversion: too long", "s")
    assert 450_000 < len(to_json(big, "db.t")) < 451_000          # not twice (text + base64)
    surrogate = DeadLetter("events", 0, 2, 2, '"\ud800"'.encode("utf-8", "surrogatepass"), "x: y")
    rec = json.loads(to_json(surrogate, "db.t"))                  # encoded surrogate: not UTF-8
    assert "value" not in rec and original_value(rec) == surrogate.value


@pytest.mark.parametrize("value", [
    "a" * 5000,
    "é€😀" * 2000,                        # multi-byte characters are never split
    '"\n\\\x01' * 1000,                  # escapes make the JSON longer than the bytes
])
def test_truncated_record_fits_and_keeps_a_prefix(value):
    raw = value.encode()
    dl = DeadLetter("events", 3, 9, 5, raw, "too_long: column s", "s")
    for limit in (700, 2000, 4321):
        line = truncated_json(dl, "db.t", limit, "/var/spill.jsonl")
        assert len(line) <= limit and b"\n" not in line
        rec = json.loads(line)
        assert rec["value_truncated"] is True and rec["value_bytes"] == len(raw)
        assert rec["spilled_to"] == "/var/spill.jsonl" and rec["offset"] == 9
        kept = original_value(rec)
        assert raw.startswith(kept) and len(kept) > limit // 10


def test_truncated_binary_value_keeps_a_base64_prefix():
    raw = bytes(range(256)) * 40
    dl = DeadLetter("events", 0, 1, None, raw, "invalid_json: bad byte")
    rec = json.loads(truncated_json(dl, "db.t", 3000, "spill.jsonl"))
    assert "value" not in rec and raw.startswith(original_value(rec))
    assert len(original_value(rec)) > 1000 and rec["value_bytes"] == len(raw)


def test_a_dead_letter_keeps_the_kafka_key_for_resend():
    """dead-letters resend restores @kafka.key columns from the record: text, or base64."""
    from tests.fakes import Rec
    from sinker_lib.dead_letter import of
    text = of(Rec("events", 2, 9, 5, b"user-7", b"{"), "invalid_json: x")
    binary = of(Rec("events", 2, 10, 5, b"\xff\x00", b"{"), "invalid_json: x")
    none = of(Rec("events", 2, 11, 5, None, b"{"), "invalid_json: x")
    assert (text.topic, text.partition, text.offset, text.value, text.key) == ("events", 2, 9, b"{", b"user-7")
    assert json.loads(to_json(text, "db.t"))["key"] == "user-7"
    assert base64.b64decode(json.loads(to_json(binary, "db.t"))["key_b64"]) == b"\xff\x00"
    assert "key" not in json.loads(to_json(none, "db.t")) and "key_b64" not in json.loads(to_json(none, "db.t"))
