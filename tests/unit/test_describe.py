"""``schema describe``: sources, converters and warnings per column."""
from __future__ import annotations

from lib.commands.describe import describe
from lib.config import ColumnSource, MappingConfig
from lib.doris_types import Column, parse_type


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
