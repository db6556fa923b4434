"""dead-letters resend and init, the pure parts: which bytes a corrected line sends, stable
chunks and labels, and a rendered config that loads."""
from __future__ import annotations

import base64
import json

import yaml

from sinker_lib.commands import resend as r
from sinker_lib.commands.init import render_config
from sinker_lib.config import config_from_dict
from sinker_lib.doris_types import Column, parse_type


def write(tmp_path, recs, name="dead.jsonl"):
    p = tmp_path / name
    p.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in recs))
    return str(p)


def rec(offset, **kw):
    return {"topic": "t", "partition": 0, "offset": offset, "timestamp": 1, "table": "d.x", **kw}


def test_value_wins_over_value_b64_and_b64_alone_is_read(tmp_path):
    path = write(tmp_path, [
        rec(1, value='{"a": 1}', value_b64=base64.b64encode(b"{broken").decode()),
        rec(2, value_b64=base64.b64encode(b'{"a": 2}').decode()),
        rec(3, value={"a": 3}),
        rec(4), "not json", "", rec(5, value="x", table="other.t")])
    s = r.ResendSummary()
    got = r.read_file(path, "d.x", s)
    assert [(x.offset, x.value) for x in got] == [(1, b'{"a": 1}'), (2, b'{"a": 2}'), (3, b'{"a":3}')]
    assert s.lines == 7 and s.skipped["no value"] == 1 and s.skipped["blank line"] == 1
    assert s.skipped["recorded for table other.t"] == 1 and sum(s.skipped.values()) == 4


def test_chunks_align_on_line_numbers_and_labels_are_stable(tmp_path, monkeypatch):
    monkeypatch.setattr(r, "CHUNK", 2)
    path = write(tmp_path, [rec(i, value="{}") for i in range(5)])
    records = r.read_file(path, None, r.ResendSummary())
    got = [(a, b, [x.line for x in g]) for a, b, g in r.chunks(records)]
    assert got == [(1, 2, [1, 2]), (3, 4, [3, 4]), (5, 6, [5])]
    label = r.chunk_label(path, "d.x", 1, 2, records[:2])
    assert label == r.chunk_label(path, "d.x", 1, 2, records[:2]) and label.startswith("resend_d_x_dead")
    # the same name and lines holding other messages (a rotated file) get another label
    assert label != r.chunk_label(path, "d.x", 1, 2, records[2:4])
    assert r.failed_path_for(path).endswith("dead.failed.jsonl")


def test_rendered_config_loads_and_lists_every_column():
    cols = [Column("id", parse_type("bigint"), nullable=False, is_key=True),
            Column("note", parse_type("varchar(8)")),
            Column("yes", parse_type("int"), default="0")]
    text = render_config(cols, database="db", table="t-1", brokers=["k:9092"], topic="on",
                         fe_hosts=["fe"], http_port=8030, query_port=9030, user="u",
                         brokers_given=True)
    cfg = config_from_dict(yaml.safe_load(text), env={})
    assert (cfg.doris.table, cfg.kafka.topics, cfg.kafka.group_id) == ("t-1", ("on",), "sinker.db.t-1")
    for name in ("id", "note", "yes"):
        assert f"#   {name}:" in text


def test_rows_of_many_partitions_keep_their_own_identity_when_doris_refuses_one(tmp_path):
    """A resend chunk mixes partitions and its offsets need not rise: when Doris refuses a row
    without naming it, the halves load under labels of their own records, and the refused row
    fails as the message it is (not as some other partition's row at the same offset)."""
    import types

    from sinker_lib.config import WriterConfig
    from sinker_lib.stream_load import LoadResponse
    from tests.unit.test_writer import FakeDoris, LineMapper

    class LabelledDoris(FakeDoris):
        """A label Doris has loaded answers Label Already Exists and loads nothing again."""

        def __init__(self, bad):
            super().__init__(bad=bad)
            self.finished = set()

        def load(self, db, table, label, lines, nbytes, headers, group_commit=None):
            if label in self.finished:
                return LoadResponse(200, {"Status": "Label Already Exists",
                                          "ExistingJobStatus": "FINISHED"}, b"")
            resp = super().load(db, table, label, lines, nbytes, headers, group_commit)
            if resp.body.get("Status") == "Success":
                self.finished.add(label)
            return resp

        def close(self):
            pass

    path = write(tmp_path, [{**rec(offset, value=v), "partition": p, "topic": "orders"}
                            for p, offset, v in [(0, 5, "a"), (1, 5, "BAD"), (2, 5, "c"), (0, 3, "d")]])
    cfg = types.SimpleNamespace(doris=types.SimpleNamespace(database="d", table="x", load_timeout_s=60),
                                writer=WriterConfig())
    doris = LabelledDoris(bad={b"BAD"})
    s = r.resend(cfg, path, LineMapper(), only_table=None, loader=doris)
    assert sorted(doris.loaded) == [b"a", b"c", b"d"] and s.loaded == 3
    assert [(d.topic, d.partition, d.offset, d.value) for d in s.failed] == [("orders", 1, 5, b"BAD")]
