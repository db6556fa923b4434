"""Message profiles shared by the mapping tests, the demo stack and the benchmark: small (~150 B,
9 fields) and large (~1 KB, 30 fields, mixed types), with their Doris DDL and column lists."""
from __future__ import annotations

import json
import random
import re

SMALL_DDL = """
CREATE TABLE IF NOT EXISTS `{db}`.`{table}` (
  id BIGINT NOT NULL, ts DATETIME NOT NULL, user_id INT NULL, kind VARCHAR(16) NULL,
  country CHAR(2) NULL, price DOUBLE NULL, qty SMALLINT NULL, mobile BOOLEAN NULL,
  session VARCHAR(32) NULL
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 8 PROPERTIES ("replication_num" = "1")
"""

KINDS = ["view", "click", "cart", "buy", "signup", "search"]
COUNTRIES = ["US", "DE", "FR", "BR", "IN", "JP", "CN", "NG"]


def small_message(i: int, rng: random.Random) -> bytes:
    return json.dumps({
        "id": i, "ts": f"2024-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}",
        "user_id": rng.randrange(1, 1_000_000), "kind": KINDS[i % 6], "country": COUNTRIES[i % 8],
        "price": round(rng.random() * 500, 2), "qty": i % 100, "mobile": i % 3 == 0,
        "session": f"{rng.getrandbits(64):016x}",
    }, separators=(",", ":")).encode()


def _large_columns():
    cols = [("id", "BIGINT NOT NULL"), ("ts", "DATETIME(3) NOT NULL")]
    for k in range(6):
        cols.append((f"i{k}", "BIGINT NULL"))
    for k in range(4):
        cols.append((f"f{k}", "DOUBLE NULL"))
    for k in range(3):
        cols.append((f"amount{k}", "DECIMAL(18, 4) NULL"))
    for k in range(8):
        cols.append((f"s{k}", "VARCHAR(128) NULL"))
    cols += [("flag0", "BOOLEAN NULL"), ("flag1", "BOOLEAN NULL"), ("day", "DATE NULL"),
             ("attrs", "JSON NULL"), ("note", "STRING NULL"), ("tiny", "TINYINT NULL"),
             ("big", "LARGEINT NULL")]
    return cols


LARGE_COLUMNS = _large_columns()
LARGE_DDL = ("CREATE TABLE IF NOT EXISTS `{db}`.`{table}` (\n  "
             + ",\n  ".join(f"{n} {t}" for n, t in LARGE_COLUMNS)
             + "\n) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 8 "
               "PROPERTIES (\"replication_num\" = \"1\")")

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def large_message(i: int, rng: random.Random) -> bytes:
    m = {"id": i, "ts": f"2024-05-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:{(i * 7) % 60:02d}."
                        f"{i % 1000:03d}"}
    for k in range(6):
        m[f"i{k}"] = rng.randrange(-2**40, 2**40)
    for k in range(4):
        m[f"f{k}"] = rng.random() * 10_000
    for k in range(3):
        m[f"amount{k}"] = f"{rng.randrange(0, 10**8)}.{rng.randrange(0, 10**4):04d}"
    for k in range(8):
        m[f"s{k}"] = " ".join(rng.choice(WORDS) for _ in range(1 + (i + k) % 10))
    m.update(flag0=i % 2 == 0, flag1=i % 5 == 0, day=f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
             attrs={"a": i % 7, "tags": WORDS[: 1 + i % 4], "nested": {"x": i % 3}},
             note="lorem ipsum dolor sit amet " * 8, tiny=i % 100, big=2**70 + i)
    return json.dumps(m, separators=(",", ":")).encode()


PROFILES = {
    "small": (SMALL_DDL, small_message),
    "large": (LARGE_DDL, large_message),
}


SMALL_COLUMNS = [(n, t) for n, t in re.findall(
    r"(\w+) ((?:BIGINT|DATETIME|INT|VARCHAR\(\d+\)|CHAR\(\d+\)|DOUBLE|SMALLINT|BOOLEAN)"
    r"(?: NOT)? NULL)", SMALL_DDL)]


def columns_for(spec):
    """[(name, "TYPE [NOT] NULL")] -> lib Columns, as DESCRIBE would give them."""
    from sinker_lib.doris_types import Column, parse_type
    return [Column(name, parse_type(text.replace(" NOT NULL", "").replace(" NULL", "")),
                   "NOT NULL" not in text) for name, text in spec]
