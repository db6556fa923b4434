"""``sinker schema describe``: each Doris column beside how sinker fills it, with warnings."""
from __future__ import annotations

from dataclasses import asdict, dataclass

NOT_LOADABLE = {"HLL", "BITMAP", "QUANTILE_STATE"}

CONVERTERS = {
    "TINYINT": "integer (8-bit range)", "SMALLINT": "integer (16-bit range)",
    "INT": "integer (32-bit range)", "BIGINT": "integer (64-bit range)",
    "LARGEINT": "integer (128-bit range)", "BOOLEAN": "true/false/1/0 → 1/0",
    "FLOAT": "number", "DOUBLE": "number", "DECIMAL": "exact decimal, rounded half-up",
    "CHAR": "text, length in bytes", "VARCHAR": "text, length in bytes", "STRING": "text",
    "DATE": "date (ISO text or epoch)", "DATETIME": "datetime (ISO text or epoch)",
    "JSON": "JSON text", "VARIANT": "JSON text", "ARRAY": "JSON text", "MAP": "JSON text",
    "STRUCT": "JSON text", "IPV4": "text", "IPV6": "text",
}


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


def describe(columns, mapping) -> tuple[list[ColumnRow], list[str]]:
    """Pure: (Doris columns, mapping config) → rows for the table and warnings."""
    sources = {s.column: s for s in mapping.columns}
    names = {c.name for c in columns}
    rows, warnings = [], []
    for c in columns:
        s = sources.get(c.name)
        if s is None:
            source = f"field {c.name}"
        elif s.kafka:
            source = f"kafka {s.kafka}"
        else:
            source = "path " + ".".join(s.path)
        base = c.type.base
        if mapping.format == "json":
            converter = "Doris (json passthrough)"
        else:
            converter = CONVERTERS.get(base, "unsupported")
        if c.default is not None:
            missing = f"default {c.default}"
        elif c.nullable:
            missing = "NULL"
        elif mapping.missing == "zero":
            missing = "zero value"
        else:
            missing = "dead letter"
        if base in NOT_LOADABLE:
            warnings.append(f"column {c.name}: type {c.type.raw} cannot be loaded from JSON/CSV; "
                            "exclude it or give it a default")
        if missing == "dead letter" and (s is None or not s.kafka):
            warnings.append(f"column {c.name} is NOT NULL with no default: messages without "
                            f"{source.split(' ', 1)[1]} go to the dead-letter output "
                            "(or set mapping.missing: zero)")
        rows.append(ColumnRow(c.name, c.type.raw, c.nullable, c.is_key, c.default, source,
                              converter, missing))
    for name in sources:
        if name not in names:
            warnings.append(f"mapping.columns: {name!r} is configured but the table has no such "
                            f"column (columns: {', '.join(sorted(names))})")
    return rows, warnings


def as_json(rows, warnings, table: str) -> dict:
    return {"table": table, "columns": [asdict(r) for r in rows], "warnings": warnings}
