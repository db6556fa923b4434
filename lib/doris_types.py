"""Doris column types as plain values: ``parse_type`` folds every spelling Doris prints into one shape.

Doris prints types differently by version and by where you look (``DATETIMEV2(3)`` on 2.x,
``datetime(3)`` on 3.x, ``decimalv3(10, 2)`` and ``bigint unsigned`` in information_schema), so
the mappers and the config's validation rely on the canonical ``DorisType.base`` only. Pure: no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DorisType:
    raw: str                     # as Doris printed it, e.g. "varchar(20)", "DECIMAL(10, 2)", "datetimev2(3)"
    base: str                    # canonical upper case: INT BIGINT LARGEINT TINYINT SMALLINT BOOLEAN FLOAT DOUBLE DECIMAL
                                 # CHAR VARCHAR STRING DATE DATETIME JSON VARIANT ARRAY MAP STRUCT IPV4 IPV6 HLL BITMAP ...
    length: int | None = None    # CHAR/VARCHAR n (bytes)
    precision: int | None = None  # DECIMAL p
    scale: int | None = None     # DECIMAL s; DATETIME fractional digits (0-6)


@dataclass(frozen=True)
class Column:
    name: str
    type: DorisType
    nullable: bool = True
    default: str | None = None   # None: no default
    is_key: bool = False
    aggregation: str | None = None
    auto_increment: bool = False  # DESCRIBE's Extra says AUTO_INCREMENT: Doris numbers rows the message leaves out


# Doris's documented default for a bare DECIMAL (2.0-3.0 docs); DESCRIBE always prints p and s.
DECIMAL_DEFAULT = (9, 0)
VARCHAR_MAX = 65533              # a VARCHAR without a length (or "varchar(*)") is the maximum
CHAR_DEFAULT = 1

_ALIASES = {
    "tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INT", "integer": "INT",
    "bigint": "BIGINT", "largeint": "LARGEINT",
    "boolean": "BOOLEAN", "bool": "BOOLEAN",
    "float": "FLOAT", "real": "FLOAT", "double": "DOUBLE",
    "decimal": "DECIMAL", "numeric": "DECIMAL", "dec": "DECIMAL",
    "decimal32": "DECIMAL", "decimal64": "DECIMAL", "decimal128": "DECIMAL",
    "decimal128i": "DECIMAL", "decimal256": "DECIMAL",
    "char": "CHAR", "character": "CHAR", "varchar": "VARCHAR",
    "string": "STRING", "text": "STRING",
    "date": "DATE", "datetime": "DATETIME", "timestamp": "DATETIME",
    "json": "JSON", "jsonb": "JSON",
    "variant": "VARIANT", "ipv4": "IPV4", "ipv6": "IPV6",
    "hll": "HLL", "bitmap": "BITMAP", "quantile_state": "QUANTILE_STATE",
}
KNOWN_BASES = frozenset(_ALIASES.values()) | {"ARRAY", "MAP", "STRUCT", "AGG_STATE", "TIME"}
_COMPLEX = re.compile(r"^\s*(array|map|struct|variant|agg_state)\s*<(.*)>\s*$", re.I | re.S)
_SIMPLE = re.compile(r"^\s*([a-z_][a-z0-9_]*)\s*(?:\(\s*([^()]*?)\s*\))?"   # name, (args)
                     r"\s*((?:\s*(?:unsigned|signed|zerofill))*)\s*$", re.I)      # MySQL-style flags
def parse_type(text: str) -> DorisType:
    """Canonical DorisType for any Doris spelling of a type; unknown names keep their upper-cased name."""
    raw = str(text).strip()
    m = _COMPLEX.match(raw)
    if m:
        return DorisType(raw, m.group(1).upper())
    m = _SIMPLE.match(raw)
    if not m:
        head = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", raw)
        return DorisType(raw, head.group(1).upper() if head else raw.upper())
    name, args, flags = m.group(1).lower(), m.group(2), (m.group(3) or "").lower()
    if "unsigned" in flags and name == "bigint":
        return DorisType(raw, "LARGEINT")          # information_schema's spelling of LARGEINT
    base_name = re.sub(r"v[23]$", "", name) if name not in _ALIASES else name
    base = _ALIASES.get(base_name, base_name.upper())
    nums = _ints(args)
    if base == "DECIMAL":
        p = nums[0] if nums else DECIMAL_DEFAULT[0]
        s = nums[1] if len(nums) > 1 else (0 if nums else DECIMAL_DEFAULT[1])
        return DorisType(raw, base, precision=p, scale=s)
    if base == "DATETIME":
        return DorisType(raw, base, scale=nums[0] if nums else 0)
    if base == "VARCHAR":
        return DorisType(raw, base, length=nums[0] if nums else VARCHAR_MAX)
    if base == "CHAR":
        return DorisType(raw, base, length=nums[0] if nums else CHAR_DEFAULT)
    return DorisType(raw, base)                    # int(11): display width, not a length


def _ints(args: str | None) -> list[int]:
    if not args:
        return []
    out = []
    for part in args.split(","):
        part = part.strip()
        if not part.isdigit():
            return out
        out.append(int(part))
    return out
