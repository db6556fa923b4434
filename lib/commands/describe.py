"""``sinker schema describe``: each Doris column beside how sinker fills it, with warnings.

The Mapper owns the rules (conversion, what a missing field becomes); this module only asks it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .. import envelope
from ..mapping import Mapper

NOT_LOADABLE = {"HLL", "BITMAP", "QUANTILE_STATE"}


@dataclass
class ColumnRow:
    name: str
    type: str
    nullable: bool
    key: bool
    default: str | None
    source: str
    converter: str
    when_missing: str


def describe(columns, mapping, model=None, *, writers: int = 1,
             group_commit: str = "off") -> tuple[list[ColumnRow], list[str]]:
    """Pure: (Doris columns, mapping config, the table's envelope.TableModel if read) → rows
    for the table and warnings (a change-data mapping the table cannot take is one too)."""
    errors, warnings = envelope.fit(mapping, model, writers=writers, group_commit=group_commit)
    if errors:      # the Mapper would refuse to build: say why instead
        return [], [f"error: {e}" for e in errors] + warnings
    mapper = Mapper(columns, mapping, model=model)
    sources = {s.column: s for s in mapping.columns}
    names = {c.name for c in columns}
    rows = []
    inside = "after." if mapping.envelope == "debezium" else ""   # Debezium: paths are in after
    for c in columns:
        s = sources.get(c.name)
        if c.name == mapper.sequence_column:
            s = mapping.sequence_from
            where = "event" if mapping.envelope == "debezium" else "field"
            source = ("kafka offset" if s.kafka else f"{where} {'.'.join(s.path)}") + " (sequence)"
        elif s is None:
            source = f"field {inside}{c.name}"
        elif s.kafka:
            source = f"kafka {s.kafka}"
        else:
            source = f"path {inside}{'.'.join(s.path)}"
        missing = mapper.when_missing(c.name)
        if c.type.base in NOT_LOADABLE:
            warnings.append(f"column {c.name}: type {c.type.raw} cannot be loaded from JSON/CSV; "
                            "exclude it or give it a default")
        if missing == "dead letter" and (s is None or not s.kafka):
            hint = "(or set mapping.missing: zero)" if mapping.format == "csv" else \
                "(Doris rejects those rows)"
            warnings.append(f"column {c.name} is NOT NULL with no default: messages without "
                            f"{source.split(' ', 1)[1]} go to the dead-letter output {hint}")
        rows.append(ColumnRow(c.name, c.type.raw, c.nullable, c.is_key, c.default, source,
                              mapper.converter(c.name), missing))
    for name in sources:
        if name not in names:
            warnings.append(f"mapping.columns: {name!r} is configured but the table has no such "
                            f"column (columns: {', '.join(sorted(names))})")
    return rows, warnings


def as_json(rows, warnings, table: str) -> dict:
    return {"table": table, "columns": [asdict(r) for r in rows], "warnings": warnings}
