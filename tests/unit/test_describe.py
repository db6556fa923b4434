"""``schema describe``: sources, converters and warnings per column."""
from __future__ import annotations

from sinker_lib.commands.describe import describe
from sinker_lib.config import ColumnSource, MappingConfig
from sinker_lib.doris_types import Column, parse_type


def test_describe_reports_sources_and_warnings():
    cols = [Column("id", parse_type("bigint"), False, None, True),
            Column("name", parse_type("varchar(8)"), True, None),
            Column("part", parse_type("int"), False, None),
            Column("h", parse_type("hll"), True, None)]
    mapping = MappingConfig(columns=(ColumnSource("name", path=("user", "name")),
                                     ColumnSource("part", kafka="partition"),
                                     ColumnSource("ghost", path=("g",))))
    rows, warnings = describe(cols, mapping)
    assert [r.source for r in rows] == ["field id", "path user.name", "kafka partition", "field h"]
    assert rows[0].when_missing == "dead letter" and rows[1].when_missing == "NULL"
    assert any("column id is NOT NULL" in w for w in warnings)
    assert not any("column part is NOT NULL" in w for w in warnings)
    assert any("hll" in w.lower() for w in warnings)
    assert any("'ghost'" in w for w in warnings)


def _rows(cols, **mapping):
    rows, warnings = describe(cols, MappingConfig(**mapping))
    return {r.name: r for r in rows}, warnings


def test_describe_says_what_the_mapper_does_under_missing_zero():
    cols = [Column("n", parse_type("int"), False, None),
            Column("h", parse_type("hll"), False, None),          # no zero value for HLL
            Column("d", parse_type("datetime(3)"), False, "CURRENT_TIMESTAMP")]
    rows, warnings = _rows(cols, missing="zero")
    assert rows["n"].when_missing == "zero value"
    assert rows["h"].when_missing == "dead letter"
    assert rows["d"].when_missing == "Kafka timestamp (default CURRENT_TIMESTAMP)"
    assert any("column h is NOT NULL" in w for w in warnings)
    assert not any("column n is NOT NULL" in w for w in warnings)


def test_describe_json_format_leaves_missing_fields_to_doris():
    cols = [Column("n", parse_type("int"), False, None),
            Column("s", parse_type("varchar(3)"), False, "x"),
            Column("d", parse_type("datetime"), False, "CURRENT_TIMESTAMP")]
    rows, warnings = _rows(cols, format="json", missing="zero")    # zero is a csv-only rule
    assert rows["n"].when_missing == "dead letter"
    assert rows["s"].when_missing == "default x"
    assert rows["d"].when_missing == "default CURRENT_TIMESTAMP"  # Doris's clock, not Kafka's
    assert {r.converter for r in rows.values()} == {"Doris (json passthrough)"}
    assert any("column n is NOT NULL" in w and "Doris rejects" in w for w in warnings)


def test_describe_kafka_metadata_is_never_missing():
    cols = [Column("p", parse_type("int"), False, None),
            Column("at", parse_type("datetime(3)"), True, None)]
    rows, warnings = _rows(cols, columns=(ColumnSource("p", kafka="partition"),
                                          ColumnSource("at", kafka="timestamp")))
    assert rows["p"].when_missing == "never (Kafka metadata)"
    assert rows["at"].converter == "Kafka timestamp in the load's time zone"
    assert rows["p"].converter == "integer (32-bit range)"
    assert warnings == []
