"""lib/envelope.py and the Mapper's change-data path: Debezium events with and without the
{schema, payload} wrapper, each op, tombstones, bad events as dead letters with their reason;
delete_when; csv and json bodies of upserts and deletes with a sequence column; the table-model
rules; the config keys; group commit on the wire."""
from __future__ import annotations

import json
from collections import namedtuple

import pytest

from sinker_lib import envelope
from sinker_lib.batcher import Batch
from sinker_lib.config import DorisConfig, config_from_dict
from sinker_lib.doris_types import Column, parse_type
from sinker_lib.envelope import EnvelopeError, TableModel
from sinker_lib.errors import ConfigError
from sinker_lib.mapping import Mapper
from sinker_lib.schema import model_from_ddl
from sinker_lib.stream_load import load_headers

Rec = namedtuple("Rec", "topic partition offset timestamp key value")
BASE = {"kafka": {"brokers": ["k1:9092"], "topics": ["cdc"]}, "doris": {"database": "d", "table": "t"}}
UNIQUE_SEQ = TableModel("UNIQUE", "ver")
COLUMNS = [Column("id", parse_type("bigint"), nullable=False, is_key=True),
           Column("name", parse_type("varchar(16)"), nullable=False),
           Column("qty", parse_type("int")),
           Column("ver", parse_type("bigint"))]


def mapping(**m):
    return config_from_dict({**BASE, "mapping": m}).mapping


def mapper(fmt="csv", model=UNIQUE_SEQ, table=COLUMNS, **m):
    return Mapper(table, mapping(format=fmt, **m), model=model)


def event(op, before=None, after=None, lsn=10, wrapped=False):
    e = {"op": op, "before": before, "after": after, "source": {"lsn": lsn, "db": "shop"},
         "ts_ms": 1_700_000_000_000}
    return {"schema": {"type": "struct"}, "payload": e} if wrapped else e


def rec(value, offset=0, partition=0):
    if value is not None and not isinstance(value, bytes):
        value = json.dumps(value).encode()
    return Rec("cdc", partition, offset, 1_700_000_000_000, None, value)


def run(m, records):
    out, dead = [], []
    n = m.map_records(records, out, dead)
    assert n == sum(map(len, out))
    if m.format == "csv":     # the generated fast path and the reference path agree
        reference = (lambda r: m._cdc_line(r, exact=True)) if m.cdc else m._general
        for r, line in zip([r for r in records if m.line_for(r) is not None], out):
            assert reference(r) == line
    return out, dead


# -- Debezium events ------------------------------------------------------------------------------
@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("op", ["c", "r", "u"])
def test_creates_reads_and_updates_load_after(op, wrapped):
    after = {"id": 7, "name": "ann", "qty": 3, "ver": 1}
    is_delete, row, ev = envelope.debezium(event(op, {"id": 7}, after, wrapped=wrapped))
    assert not is_delete and row == after and ev["source"]["lsn"] == 10


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_delete_takes_before(wrapped):
    is_delete, row, _ = envelope.debezium(event("d", {"id": 7, "name": "ann"}, None, wrapped=wrapped))
    assert is_delete and row == {"id": 7, "name": "ann"}


@pytest.mark.parametrize("obj,category,needle", [
    (event("x", None, {"id": 1}), "cdc_op", "op 'x' is not one of c, r, u, d"),
    (event("t", None, None), "cdc_op", "truncates"),
    ({"id": 1, "name": "plain row"}, "cdc_envelope", "no 'op' field"),
    (event("u", {"id": 1}, None), "cdc_envelope", "op 'u' without an 'after' object"),
    (event("d", None, None), "cdc_envelope", "op 'd' without a 'before' object"),
    ({"schema": {}, "payload": "text"}, "cdc_envelope", "holds no event object"),
])
def test_bad_events_say_why(obj, category, needle):
    with pytest.raises(EnvelopeError) as e:
        envelope.debezium(obj)
    assert e.value.category == category and needle in e.value.detail


def test_a_cdc_mapper_compiles_no_plain_text_function():
    """The plain-slice shortcut is for _map_csv; the CDC path maps each change alone."""
    m = mapper(envelope="debezium", sequence_from="source.lsn")
    assert m._fast is not None and m._fast_plain is None
    assert mapper()._fast_plain is not None        # the same table without CDC has one


def test_bad_events_become_dead_letters_with_their_reason():
    m = mapper(envelope="debezium", sequence_from="source.lsn")
    records = [rec(event("x", None, {"id": 1, "name": "a"}), 0), rec(b"not json", 1),
               rec(event("d", {"name": "no key"}, None), 2), rec([1, 2], 3)]
    out, dead = run(m, records)
    assert out == []
    assert [d.reason.split(":")[0] for d in dead] == ["cdc_op", "invalid_json", "cdc_delete",
                                                      "not_object"]
    assert "key column id" in dead[2].reason and dead[2].column == "id"


def test_tombstones_are_skipped_and_counted_by_the_batch():
    m = mapper(envelope="debezium", sequence_from="source.lsn")
    batch = Batch("d", "t", m, 0.0)
    batch.add("cdc", 0, [rec(event("c", None, {"id": 1, "name": "a"}), 0), rec(None, 1),
                         rec(b"{", 2), rec(None, 3)])
    assert (batch.rows, len(batch.dead), batch.skipped) == (1, 1, 2)
    assert batch.ranges == {("cdc", 0): (0, 3)}       # consumed: the offsets still advance
    assert m.line_for(rec(None, 1)) is None


# -- bodies ---------------------------------------------------------------------------------------
def test_csv_upserts_and_deletes_share_one_body_with_the_sequence_value():
    m = mapper(envelope="debezium", sequence_from="source.lsn")
    h = m.headers()
    assert h["columns"] == "`id`,`name`,`qty`,`ver`,`__DORIS_DELETE_SIGN__`"
    assert h["function_column.sequence_col"] == "ver"
    out, dead = run(m, [rec(event("c", None, {"id": 1, "name": "ann", "qty": 2, "ver": 99}, lsn=5)),
                        rec(event("u", {"id": 1}, {"id": 1, "name": "bob", "qty": None}, lsn=6,
                                  wrapped=True)),
                        rec(event("d", {"id": 1, "name": "bob", "qty": 9}, None, lsn=7))])
    assert dead == []
    # ver comes from source.lsn, not from the row; a delete fills NOT NULL name with its zero
    assert out == [b"1\tann\t2\t5\t0\n", b"1\tbob\t\\N\t6\t0\n", b"1\t\t\\N\t7\t1\n"]


def test_json_upserts_and_deletes_carry_the_sign_key():
    m = mapper("json", envelope="debezium", sequence_from="source.lsn")
    h = m.headers()
    assert h["hidden_columns"] == "__DORIS_DELETE_SIGN__" and "columns" not in h
    assert h["function_column.sequence_col"] == "ver"
    out, dead = run(m, [rec(event("r", None, {"id": 1, "name": "ann", "qty": 2}, lsn=5)),
                        rec(event("d", {"id": 1}, None, lsn=6))])
    assert dead == []
    assert [json.loads(x) for x in out] == [
        {"id": 1, "name": "ann", "qty": 2, "ver": 5, "__DORIS_DELETE_SIGN__": 0},
        {"id": 1, "ver": 6, "name": "", "__DORIS_DELETE_SIGN__": 1}]
    assert all(x.endswith(b"\n") and x.count(b"\n") == 1 for x in out)


def test_sequence_from_kafka_offset_and_column_paths_inside_after():
    cfg = {"envelope": "debezium", "sequence_from": "@kafka.offset",
           "columns": {"name": "profile.name"}}
    m = mapper(**cfg)
    out, _ = run(m, [rec(event("u", None, {"id": 3, "profile": {"name": "cy"}, "qty": 1}), 41),
                     rec(event("d", {"id": 3}, None), 42)])
    assert out == [b"3\tcy\t1\t41\t0\n", b"3\t\t\\N\t42\t1\n"]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_delete_when_marks_deletes_by_a_field(fmt):
    m = mapper(fmt, delete_when={"field": "meta.op", "equals": "D"}, sequence_from="seq_no")
    out, dead = run(m, [rec({"id": 1, "name": "a", "seq_no": 4, "meta": {"op": "U"}}),
                        rec({"id": 1, "seq_no": 5, "meta": {"op": "D"}}),
                        rec({"id": 2, "name": "b", "seq_no": 1, "meta": {"op": "d"}})])  # case matters
    assert dead == []
    if fmt == "csv":
        assert out == [b"1\ta\t\\N\t4\t0\n", b"1\t\t\\N\t5\t1\n", b"2\tb\t\\N\t1\t0\n"]
    else:
        signs = [json.loads(x)["__DORIS_DELETE_SIGN__"] for x in out]
        assert signs == [0, 1, 0] and json.loads(out[1])["ver"] == 5


def test_delete_when_compares_the_json_type_too():
    split = envelope.delete_when(("deleted",), True)
    assert split({"deleted": True})[0] and not split({"deleted": 1})[0]
    assert not split({"deleted": "true"})[0] and not split({})[0]


def test_a_plain_mapping_keeps_its_paths_and_headers():
    plain = Mapper(COLUMNS, mapping())
    assert plain._map == plain._map_csv and "__DORIS" not in plain.headers()["columns"]
    assert "function_column.sequence_col" not in plain.headers()
    plain = Mapper(COLUMNS, mapping(format="json"))
    assert plain._map == plain._map_json and "hidden_columns" not in plain.headers()


def test_sequence_from_without_deletes_only_fills_the_sequence_column():
    m = mapper(sequence_from="@kafka.offset")
    assert m._map == m._map_csv
    out, _ = run(m, [rec({"id": 1, "name": "a", "ver": 1}, 77)])
    assert out == [b"1\ta\t\\N\t77\n"]


# -- what the table must be -----------------------------------------------------------------------
def test_a_mapping_that_deletes_needs_a_unique_key_table():
    errors, _ = envelope.fit(mapping(envelope="debezium"), TableModel("DUPLICATE", None))
    assert errors and "only into UNIQUE KEY tables" in errors[0]
    errors, _ = envelope.fit(mapping(delete_when={"field": "op", "equals": "D"}),
                             TableModel("AGGREGATE", None))
    assert "mapping.delete_when" in errors[0]


def test_ordering_rules_without_a_sequence_column():
    """The last load wins: two writers (a retried batch after a newer one) or group commit
    (grouped per BE) can land a partition's loads out of order, so they are errors there."""
    no_seq = TableModel("UNIQUE", None)
    errors, _ = envelope.fit(mapping(envelope="debezium"), no_seq, writers=2)
    assert "writer.workers is 2" in errors[0] and "offset order" in errors[0]
    errors, _ = envelope.fit(mapping(envelope="debezium"), no_seq, group_commit="async_mode")
    assert "doris.group_commit is async_mode" in errors[0]
    errors, warnings = envelope.fit(mapping(envelope="debezium"), no_seq, writers=1)
    assert errors == [] and "two partitions" in warnings[0]
    # with a sequence column the order of loads does not matter: the row's own value orders it
    assert envelope.fit(mapping(envelope="debezium"), UNIQUE_SEQ, writers=4) == ([], [])
    assert envelope.fit(mapping(envelope="debezium", sequence_from="source.lsn"), UNIQUE_SEQ) == ([], [])
    errors, _ = envelope.fit(mapping(sequence_from="v"), TableModel("UNIQUE", None))
    assert "no sequence column" in errors[0]


def test_the_model_comes_from_show_create_table():
    ddl = ('CREATE TABLE `t` (\n  `k` int NOT NULL\n) ENGINE=OLAP\nUNIQUE KEY(`k`)\n'
           'DISTRIBUTED BY HASH(`k`) BUCKETS 1\nPROPERTIES (\n"replication_allocation" = "x",\n'
           '"function_column.sequence_col" = "ver"\n);')
    assert model_from_ddl(ddl) == TableModel("UNIQUE", "ver", False)
    assert model_from_ddl(ddl.replace("UNIQUE", "DUPLICATE")).keys_type == "DUPLICATE"
    hidden = ddl.replace('"function_column.sequence_col" = "ver"',
                         '"function_column.sequence_type" = "bigint"')
    assert model_from_ddl(hidden) == TableModel("UNIQUE", None, True)
    assert model_from_ddl("CREATE TABLE `t` (`k` int) ENGINE=OLAP").keys_type == "DUPLICATE"


def test_mapper_rules_for_the_sequence_and_key_columns():
    with pytest.raises(ConfigError, match="mapping.sequence_column"):
        mapper(model=None, sequence_from="source.lsn", envelope="debezium")
    with pytest.raises(ConfigError, match="not a column"):
        mapper(model=None, sequence_from="v", sequence_column="nope")
    # the table orders by its declared column: naming another one would order by neither
    with pytest.raises(ConfigError, match="not the table's sequence column 'ver'"):
        mapper(sequence_from="v", sequence_column="qty")
    with pytest.raises(ConfigError, match="also listed in mapping.columns"):
        mapper(sequence_from="v", columns={"ver": "other"})
    keyless = [Column(c.name, c.type, c.nullable) for c in COLUMNS]
    with pytest.raises(ConfigError, match="key columns"):
        mapper(table=keyless, envelope="debezium")
    assert mapper(model=None, sequence_from="v", sequence_column="qty").sequence_column == "qty"


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("m,needle", [
    ({"envelope": "avro"}, "mapping.envelope: expected one of none, debezium"),
    ({"delete_when": {"field": "op"}}, "mapping.delete_when: expected {field: op, equals: D}"),
    ({"delete_when": {"field": "op", "equals": [1]}}, "mapping.delete_when.equals"),
    ({"delete_when": {"field": "", "equals": "D"}}, "empty key"),
    ({"envelope": "debezium", "delete_when": {"field": "op", "equals": "D"}}, "remove one"),
    ({"sequence_from": "@kafka.partition"}, "use @kafka.offset"),
    ({"sequence_column": "ver"}, "set without mapping.sequence_from"),
])
def test_bad_cdc_config(m, needle):
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "mapping": m})
    assert needle in str(e.value)


def test_cdc_config_values():
    m = mapping(envelope="Debezium", sequence_from="@kafka.offset")
    assert m.envelope == "debezium" and m.sequence_from.kafka == "offset"
    m = mapping(delete_when={"field": "meta.op", "equals": "D"}, sequence_from="source.lsn")
    assert m.delete_when.path == ("meta", "op") and m.sequence_from.path == ("source", "lsn")


def test_group_commit_needs_at_least_once():
    with pytest.raises(ConfigError) as e:
        config_from_dict({**BASE, "doris": {**BASE["doris"], "group_commit": "sync_mode"}})
    assert "needs delivery: at_least_once" in str(e.value) and "no label" in str(e.value)
    with pytest.raises(ConfigError, match="expected one of off, sync_mode, async_mode"):
        config_from_dict({**BASE, "doris": {**BASE["doris"], "group_commit": "on"}})
    cfg = config_from_dict({**BASE, "doris": {**BASE["doris"], "group_commit": "ASYNC_MODE"},
                            "delivery": "at_least_once"})
    assert cfg.doris.group_commit == "async_mode"


def test_group_commit_loads_carry_no_label():
    gc = DorisConfig(group_commit="sync_mode")
    hdrs = load_headers(gc, {"format": "json", "group_commit": "off_mode", "label": "x"}, None)
    assert "label" not in hdrs and hdrs["group_commit"] == "sync_mode"
    assert hdrs["max_filter_ratio"] == "0" and hdrs["format"] == "json"
    plain = load_headers(DorisConfig(), {}, "sinker_1")
    assert plain["label"] == "sinker_1" and "group_commit" not in plain


# -- schema describe ------------------------------------------------------------------------------
def test_describe_shows_where_cdc_columns_come_from_and_warns():
    from sinker_lib.commands.describe import describe
    rows, warnings = describe(COLUMNS, mapping(envelope="debezium", sequence_from="source.lsn"),
                              UNIQUE_SEQ)
    by = {r.name: r.source for r in rows}
    assert by == {"id": "field after.id", "name": "field after.name", "qty": "field after.qty",
                  "ver": "event source.lsn (sequence)"}
    rows, warnings = describe(COLUMNS, mapping(envelope="debezium"), TableModel("UNIQUE", None))
    assert any("without a sequence column" in w for w in warnings)
    rows, warnings = describe(COLUMNS, mapping(envelope="debezium"), TableModel("DUPLICATE", None))
    assert rows == [] and warnings[0].startswith("error: ") and "UNIQUE KEY" in warnings[0]


@pytest.mark.parametrize("fmt", ["csv", "json"])
@pytest.mark.parametrize("envelope_cfg", [{"envelope": "debezium", "sequence_from": "source.lsn"},
                                          {"sequence_from": "seq_no"}])
def test_a_change_without_its_sequence_value_is_a_dead_letter(fmt, envelope_cfg):
    m = mapper(fmt, **envelope_cfg)
    if "envelope" in envelope_cfg:
        values = [event("u", None, {"id": 1, "name": "a"}, lsn=None),
                  {"op": "d", "before": {"id": 1}, "source": {}}]
    else:
        values = [{"id": 1, "name": "a", "seq_no": None}, {"id": 1, "name": "a"}]
    out, dead = run(m, [rec(v, i) for i, v in enumerate(values)])
    assert out == [] and len(dead) == 2
    assert all(d.reason.startswith("missing: no sequence value at") and d.column == "ver"
               for d in dead)


def test_replay_and_resend_keep_their_labels_under_group_commit():
    from sinker_lib.config import with_labels
    cfg = config_from_dict({**BASE, "doris": {**BASE["doris"], "group_commit": "sync_mode"},
                            "delivery": "at_least_once"})
    assert with_labels(cfg).doris.group_commit == "off" and cfg.doris.group_commit == "sync_mode"
    assert with_labels(with_labels(cfg)) == with_labels(cfg)


@pytest.mark.parametrize("cfg", [{"envelope": "debezium", "sequence_from": "source.lsn"},
                                 {"delete_when": {"field": "op", "equals": "D"}, "sequence_from": "v"}])
def test_upserts_take_the_generated_fast_path(cfg):
    m = mapper(**cfg)
    row = {"id": 1, "name": "a", "qty": 2, "v": 9}
    ev = event("u", None, row, lsn=9) if "envelope" in cfg else row
    assert m._fast(row, rec(ev), ev) == b"1\ta\t2\t9\t0\n"


def test_sequence_from_needs_a_sequence_column_on_any_table():
    errors, _ = envelope.fit(mapping(sequence_from="@kafka.offset"), TableModel("DUPLICATE", None))
    assert len(errors) == 1 and "no sequence column" in errors[0]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_without_sequence_from_a_change_carries_the_rows_own_sequence_value(fmt):
    """A sequence table, no sequence_from: an upsert carries after.ver, a delete before.ver
    (a delete without one would lose to the row it deletes, silently): missing is a dead letter."""
    m = mapper(fmt, envelope="debezium")
    out, dead = run(m, [rec(event("u", None, {"id": 1, "name": "a", "qty": 1, "ver": 7})),
                        rec(event("d", {"id": 1, "name": "a", "ver": 9}, None)),
                        rec(event("d", {"id": 2}, None)),
                        rec(event("c", None, {"id": 3, "name": "c"}))])
    assert [d.reason.split(":")[0] for d in dead] == ["missing", "missing"]
    assert "sequence" in dead[0].reason
    if fmt == "csv":
        assert out == [b"1\ta\t1\t7\t0\n", b"1\t\t\\N\t9\t1\n"]
    else:
        assert [json.loads(x)["ver"] for x in out] == [7, 9]


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_sequence_from_a_row_field_in_after_is_read_from_before_for_a_delete(fmt):
    m = mapper(fmt, envelope="debezium", sequence_from="after.ver")
    out, dead = run(m, [rec(event("u", None, {"id": 1, "name": "a", "ver": 7})),
                        rec(event("d", {"id": 1, "ver": 8}, None))])
    assert dead == []
    if fmt == "csv":
        assert [x.split(b"\t")[3] for x in out] == [b"7", b"8"]
    else:
        assert [json.loads(x)["ver"] for x in out] == [7, 8]


def test_json_sequence_named_like_its_column_is_still_required():
    m = mapper("json", delete_when={"field": "op", "equals": "D"}, sequence_from="ver")
    out, dead = run(m, [rec({"op": "U", "id": 1, "name": "a"}), rec({"op": "U", "id": 2, "name": "b", "ver": 3})])
    assert [d.offset for d in dead] == [0] and len(out) == 1


def test_json_rows_written_again_keep_every_number_as_sent():
    """CDC json rows are written again with the sign: numbers keep their text (a 38-digit
    decimal, 1.10, 1e3), NaN is a dead letter rather than a line Doris cannot read."""
    table = COLUMNS + [Column("amount", parse_type("decimal(38,10)")), Column("doc", parse_type("json"))]
    m = mapper("json", table=table, envelope="debezium", sequence_from="source.lsn")
    raw = (b'{"op":"c","before":null,"source":{"lsn":5},"after":{"id":12345678901234567890,'
           b'"name":"n","amount":1234567890123456789012345678.1234567890,"qty":1e3,'
           b'"doc":{"x":1.10,"y":[1e3,0.30000000000000004]}}}')
    nan = raw.replace(b"1e3,0.3", b"NaN,0.3")
    out, dead = run(m, [Rec("cdc", 0, 0, 0, None, raw), Rec("cdc", 0, 1, 0, None, nan)])
    assert out == [b'{"id":12345678901234567890,"name":"n","amount":1234567890123456789012345678.1234567890,'
                   b'"qty":1e3,"doc":{"x":1.10,"y":[1e3,0.30000000000000004]},"ver":5,'
                   b'"__DORIS_DELETE_SIGN__":0}\n']
    assert [d.offset for d in dead] == [1] and "NaN" in dead[0].reason


def test_plain_json_written_again_for_a_configured_column_keeps_every_number_as_sent():
    """format json passes a message through unless a configured source replaces a key it has:
    then the object is written again, with every number as it was sent."""
    m = Mapper(COLUMNS, mapping(format="json", columns={"qty": "@kafka.offset"}))
    out, dead = run(m, [Rec("t", 0, 7, 0, None, b'{"id":1,"name":"a","qty":99,"ver":1.10e0,"x":[1e3]}')])
    assert dead == [] and out == [b'{"id":1,"name":"a","qty":7,"ver":1.10e0,"x":[1e3]}\n']


def test_the_model_is_read_from_the_keys_clause_not_from_a_comment():
    ddl = ('CREATE TABLE `t` (\n  `id` bigint NOT NULL COMMENT "UNIQUE KEY (id) upstream",\n'
           "  `n` int COMMENT 'it''s a UNIQUE KEY(x) too'\n) ENGINE=OLAP\nDUPLICATE KEY(`id`)\n"
           'PROPERTIES ("replication_num" = "1");')
    assert model_from_ddl(ddl).keys_type == "DUPLICATE"
