"""UNIQUE KEY tables: the hidden delete sign, merge_type DELETE/MERGE, sequence columns; group commit."""
from __future__ import annotations

import uuid

import pytest

from tests.doris_emulator.test_http import label, load, put

UNIQUE = "CREATE TABLE d.{name} (k INT NOT NULL, v VARCHAR(8) NULL) UNIQUE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1"
SEQ = ("CREATE TABLE d.{name} (k INT NOT NULL, ver BIGINT NULL, v VARCHAR(8) NULL) UNIQUE KEY(k) "
       'DISTRIBUTED BY HASH(k) BUCKETS 1 PROPERTIES ("function_column.sequence_col" = "ver")')


def make(emu, ddl=UNIQUE) -> str:
    name = f"u_{uuid.uuid4().hex[:8]}"
    emu.query(ddl.format(name=name))
    return name


def rows(emu, table) -> list[tuple]:
    return [tuple(r) for r in emu.query(f"SELECT * FROM d.{table} ORDER BY k")]


def ok(emu, table, body, **headers) -> dict:
    data = load(emu, table, body, label=label(), **headers)
    assert data["Status"] == "Success", data
    return data


def test_delete_sign_in_the_columns_header_deletes_in_row_order(emu):
    t = make(emu)
    ok(emu, t, "1\ta\n2\tb\n3\tc\n")
    ok(emu, t, "2\tx\t1\n4\ty\t0\n3\tz\t1\n3\tw\t0\n", columns="k,v,__DORIS_DELETE_SIGN__")
    assert rows(emu, t) == [(1, "a"), (3, "w"), (4, "y")]          # 3 deleted, then written again
    assert [r[0] for r in emu.query(f"DESCRIBE d.{t}")] == ["k", "v"]   # the sign stays hidden


def test_hidden_columns_header_appends_the_sign_last(emu):
    t = make(emu)
    ok(emu, t, "1\ta\n2\tb\n")
    ok(emu, t, '{"k": 1, "v": "a", "__DORIS_DELETE_SIGN__": 1}\n{"k": 5, "v": "e", "__DORIS_DELETE_SIGN__": 0}\n',
       format="json", read_json_by_line="true", hidden_columns="__DORIS_DELETE_SIGN__")
    ok(emu, t, "2\tb\t1\n", hidden_columns="__DORIS_DELETE_SIGN__")
    assert rows(emu, t) == [(5, "e")]


def test_merge_type_delete_and_merge(emu):
    t = make(emu)
    ok(emu, t, "1\ta\n2\tb\n3\tc\n")
    ok(emu, t, "1\tanything\n", merge_type="DELETE")
    ok(emu, t, "2\tdel\n3\tkeep\n4\tnew\n", merge_type="MERGE", delete="v = 'del'")
    assert rows(emu, t) == [(3, "keep"), (4, "new")]
    ok(emu, t, "3\tx\n4\ty\n", merge_type="MERGE", delete="k >= 4")
    assert rows(emu, t) == [(3, "x")]


@pytest.mark.parametrize("headers,needle", [
    ({"merge_type": "MERGE"}, "Excepted DELETE ON clause"),
    ({"delete": "k = 1"}, "not support DELETE ON clause"),
    ({"merge_type": "UPSERT"}, "APPEND, DELETE or MERGE"),
    ({"merge_type": "MERGE", "delete": "nope = 1"}, "unknown column 'nope'"),
    ({"merge_type": "MERGE", "delete": "k in (1, 2)"}, "column <op> literal"),
])
def test_bad_merge_headers_fail_the_load(emu, headers, needle):
    data = load(emu, make(emu), "1\ta\n", label=label(), **headers)
    assert data["Status"] == "Fail" and needle in data["Message"]


def test_deletes_need_a_unique_key_table(emu):
    t = f"dup_{uuid.uuid4().hex[:8]}"
    emu.query(f"CREATE TABLE d.{t} (k INT, v VARCHAR(8)) DUPLICATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    for headers in ({"merge_type": "DELETE"}, {"columns": "k,v,__DORIS_DELETE_SIGN__"}):
        data = load(emu, t, "1\ta\t1\n" if "columns" in headers else "1\ta\n", label=label(), **headers)
        assert data["Status"] == "Fail" and "only supported in unique tables" in data["Message"]


def test_sequence_column_keeps_the_highest_value_per_key(emu):
    t = make(emu, SEQ)
    ok(emu, t, "1\t5\ta\n2\t9\tx\n2\t4\ty\n")                   # within one load too
    ok(emu, t, "1\t3\tolder\n")
    assert rows(emu, t) == [(1, 5, "a"), (2, 9, "x")]
    ok(emu, t, "1\t5\tsame\n1\t7\tnewer\n", sequence_col="ver")  # equal replaces; the header may name it
    assert rows(emu, t) == [(1, 7, "newer"), (2, 9, "x")]
    ok(emu, t, "1\t6\t\\N\t1\n2\t10\t\\N\t1\n", columns="k,ver,v,__DORIS_DELETE_SIGN__")
    assert rows(emu, t) == [(1, 7, "newer")]                      # a lower sequence does not delete
    data = load(emu, t, "1\t8\tz\n", label=label(), **{"function_column.sequence_col": "v"})
    assert data["Status"] == "Fail" and "declares ver" in data["Message"]


def test_sequence_column_ddl_rules(emu):
    with pytest.raises(Exception, match="only support UNIQUE_KEYS"):
        emu.query(SEQ.format(name="bad_dup").replace("UNIQUE KEY", "DUPLICATE KEY"))
    with pytest.raises(Exception, match="not exists"):
        emu.query(SEQ.format(name="bad_col").replace('"ver")', '"nope")'))


def test_a_precommitted_delete_waits_for_commit(emu):
    t = make(emu)
    ok(emu, t, "1\ta\n")
    tid = ok(emu, t, "1\ta\n", merge_type="DELETE", two_phase_commit="true")["TxnId"]
    assert rows(emu, t) == [(1, "a")]
    status, _, data = put(emu.fe_http_port, "/api/d/_stream_load_2pc", b"", expect=False, txn_id=tid,
                          txn_operation="commit")
    assert status == 200 and data["status"] == "Success"
    assert rows(emu, t) == []


def test_group_commit_ignores_label_dedup(emu):
    t = make(emu, "CREATE TABLE d.{name} (k INT, v VARCHAR(8)) DUPLICATE KEY(k) DISTRIBUTED BY HASH(k) BUCKETS 1")
    first = load(emu, t, "1\ta\n", group_commit="sync_mode")
    second = load(emu, t, "1\ta\n", group_commit="async_mode")
    for data in (first, second):
        assert data["Status"] == "Success" and data["GroupCommit"] is True
        assert data["Label"].startswith("group_commit_")
    assert first["Label"] != second["Label"] and len(rows(emu, t)) == 2    # at-least-once: both loaded


def test_a_delete_with_a_higher_sequence_outlives_older_changes_loaded_later(emu):
    t = make(emu, SEQ)
    ok(emu, t, "1\t5\ta\n")
    ok(emu, t, "1\t8\t\\N\t1\n2\t3\t\\N\t1\n", columns="k,ver,v,__DORIS_DELETE_SIGN__")  # 2: never written
    ok(emu, t, "1\t7\tlate\n2\t2\tolder\n")                   # lower sequences than the deletes
    assert rows(emu, t) == []
    ok(emu, t, "1\t8\tsame\n2\t4\tnewer\n")                   # equal or higher: written again
    assert rows(emu, t) == [(1, 8, "same"), (2, 4, "newer")]
    ok(emu, t, "1\t6\t\\N\t1\n", columns="k,ver,v,__DORIS_DELETE_SIGN__")   # an older delete: ignored
    assert rows(emu, t) == [(1, 8, "same"), (2, 4, "newer")]
