"""Labels, two-phase commit, get_load_state, SHOW TRANSACTION and running-txn slots, as Doris 2.1/3.x answer them."""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest

from tests.doris_emulator import DorisEmulator
from tests.doris_emulator.sql_parser import like_regex
from tests.doris_emulator.test_http import AUTH, DDL, HTTP, ROW, _drain, head_for, label, load, put

ROW2 = "2\tb\t1\t2024-01-01\t{}\tok\n"


@pytest.fixture
def tbl(emu):
    name = f"t_{uuid.uuid4().hex[:8]}"
    emu.query(DDL.format(name=name))
    return name


def count(emu, table) -> int:
    return int(emu.query(f"SELECT COUNT(*) FROM d.`{table}`")[0][0])


def two_pc(emu, db="d", **headers):
    status, _, data = put(emu.fe_http_port, f"/api/{db}/_stream_load_2pc", b"", expect=False, **headers)
    assert status == 200
    return data


def load_state(emu, lab, db="d", auth=AUTH):
    r = HTTP.request("GET", f"http://127.0.0.1:{emu.fe_http_port}/api/{db}/get_load_state?label={lab}",
                     headers={"Authorization": auth} if auth else {})
    return r.status, json.loads(r.data)


def state(emu, lab) -> str:
    status, data = load_state(emu, lab)
    assert status == 200 and data["code"] == 0, data
    return data["data"]


# ------------------------------------------------------------------------------------------ 2PC

def test_precommitted_rows_are_invisible_until_commit(emu, tbl):
    lab = label()
    data = load(emu, tbl, ROW + ROW2, label=lab, two_phase_commit="true")
    assert data["Status"] == "Success" and data["TwoPhaseCommit"] == "true" and data["NumberLoadedRows"] == 2
    assert count(emu, tbl) == 0
    row = emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL = '{lab}'")[0]
    assert row[3] == "PRECOMMITTED" and row[6] is not None and row[7] is None     # PreCommitTime, no CommitTime
    assert state(emu, lab) == "PRECOMMITTED"
    ok = two_pc(emu, label=lab, txn_operation="commit")               # by label, not txn_id
    assert ok == {"status": "Success", "msg": f"transaction [{data['TxnId']}] commit successfully."}
    assert count(emu, tbl) == 2 and state(emu, lab) == "VISIBLE"
    row = emu.query(f"SHOW TRANSACTION FROM d WHERE ID = {data['TxnId']}")[0]
    assert row[3] == "VISIBLE" and row[7] is not None and row[9] is not None


def test_2pc_repeats_fail_with_a_message_saying_so(emu, tbl):
    tid = load(emu, tbl, ROW, label=label(), two_phase_commit="true")["TxnId"]
    assert two_pc(emu, txn_id=tid, txn_operation="commit")["status"] == "Success"
    again = two_pc(emu, txn_id=tid, txn_operation="commit")
    assert again["status"] == "Fail" and "already visible" in again["msg"]
    late_abort = two_pc(emu, txn_id=tid, txn_operation="abort")
    assert late_abort["status"] == "Fail" and "already VISIBLE" in late_abort["msg"]

    lab = label()
    tid = load(emu, tbl, ROW, label=lab, two_phase_commit="true")["TxnId"]
    assert two_pc(emu, txn_id=tid, txn_operation="abort") == {
        "status": "Success", "msg": f"transaction [{tid}] abort successfully."}
    for op in ("abort", "commit"):
        data = two_pc(emu, label=lab, txn_operation=op)
        assert data["status"] == "Fail" and "already aborted" in data["msg"]
    assert count(emu, tbl) == 1 and state(emu, lab) == "ABORTED"


def test_2pc_unknown_txn_label_or_operation(emu, tbl):
    data = two_pc(emu, txn_id=987654321, txn_operation="commit")
    assert data["status"] == "Fail" and "not found" in data["msg"]
    data = two_pc(emu, label="never_used_label", txn_operation="abort")
    assert data["status"] == "Fail" and "not found" in data["msg"]
    assert two_pc(emu, txn_id=1, txn_operation="rollback")["status"] == "Fail"
    assert two_pc(emu, txn_operation="commit")["status"] == "Fail"


def test_precommit_timeout_aborts_frees_the_label_and_the_slot():
    e = DorisEmulator(precommit_timeout_s=0.3, max_running_txn_num_per_db=1).start()
    try:
        e.query("CREATE DATABASE d")
        e.query(DDL.format(name="t"))
        lab = label()
        assert load(e, "t", ROW, label=lab, two_phase_commit="true")["Status"] == "Success"
        deadline = time.monotonic() + 30
        while state(e, lab) != "ABORTED":
            assert time.monotonic() < deadline, "the pre-committed txn was never aborted"
            time.sleep(0.05)
        assert e.query(f"SHOW TRANSACTION FROM d WHERE LABEL = '{lab}'")[0][10] == "timeout by txn manager"
        assert load(e, "t", ROW, label=lab)["Status"] == "Success"      # label and slot are free again
        assert count(e, "t") == 1
    finally:
        e.stop()


# ------------------------------------------------------------------------------------------ labels

def test_label_rules(emu, tbl):
    lab = label()
    assert load(emu, tbl, ROW, label=lab, two_phase_commit="true")["Status"] == "Success"
    held = load(emu, tbl, ROW, label=lab)
    assert held["Status"] == "Label Already Exists" and held["ExistingJobStatus"] == "PRECOMMITTED"
    two_pc(emu, label=lab, txn_operation="commit")
    done = load(emu, tbl, ROW, label=lab)                            # a committed 2PC label is FINISHED
    assert done["Status"] == "Label Already Exists" and done["ExistingJobStatus"] == "FINISHED"
    assert f"Label [{lab}] has already been used" in done["Message"]

    aborted = label()
    load(emu, tbl, ROW2, label=aborted, two_phase_commit="true")
    two_pc(emu, label=aborted, txn_operation="abort")
    assert load(emu, tbl, ROW2, label=aborted)["Status"] == "Success"   # an aborted label loads again

    failed = label()
    assert load(emu, tbl, ROW + "x\n", label=failed)["Status"] == "Fail"   # too many filtered rows
    assert state(emu, failed) == "ABORTED"
    assert load(emu, tbl, ROW, label=failed)["Status"] == "Success"       # a failed label loads again
    assert count(emu, tbl) == 3
    txns = emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL LIKE '{failed}'")
    assert sorted(r[3] for r in txns) == ["ABORTED", "VISIBLE"]


def test_get_load_state_follows_the_txn(emu, tbl):
    lab = label()
    assert state(emu, lab) == "UNKNOWN"
    body = ROW.encode()
    s = socket.create_connection(("127.0.0.1", emu.be_http_port), timeout=10)
    try:
        s.sendall(head_for(f"/api/d/{tbl}/_stream_load", emu.be_http_port, lab, len(body)).encode())
        assert s.recv(1024).startswith(b"HTTP/1.1 100")              # begun, body not sent yet
        assert state(emu, lab) == "PREPARE"
        s.sendall(body)
        assert b'"Status": "Success"' in _drain(s)
    finally:
        s.close()
    assert state(emu, lab) == "VISIBLE"


def test_get_load_state_errors_and_the_flat_shape(emu):
    assert load_state(emu, "x", auth=None)[0] == 401
    status, data = load_state(emu, "x", db="nope")
    assert status == 200 and data["code"] != 0 and "nope" in data["msg"]
    flat = DorisEmulator(load_state_style="flat").start()
    try:
        flat.query("CREATE DATABASE d")
        flat.query(DDL.format(name="t"))
        lab = label()
        load(flat, "t", ROW, label=lab, two_phase_commit="true")
        assert load_state(flat, lab) == (200, {"Label": lab, "Status": "Success", "State": "PRECOMMITTED"})
        assert load_state(flat, "other")[1]["State"] == "UNKNOWN"
    finally:
        flat.stop()
    with pytest.raises(ValueError, match="load_state_style"):
        DorisEmulator(load_state_style="xml")


# ------------------------------------------------------------------------------------------ SHOW TRANSACTION

def test_show_transaction_like_wildcards_and_escapes(emu, tbl):
    tag = uuid.uuid4().hex[:8]
    labels = [f"lk{tag}_a_1", f"lk{tag}Xa_2", f"lk{tag}_b_3"]
    for i, lab in enumerate(labels):
        assert load(emu, tbl, f"{i}\ta\t1\t2024-01-01\t{{}}\tok\n", label=lab)["Status"] == "Success"

    def like(pattern: str) -> list[str]:
        return sorted(r[1] for r in emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL LIKE '{pattern}'"))

    assert like(f"lk{tag}%") == sorted(labels)
    assert like(f"lk{tag}_a%") == sorted(labels[:2])                 # `_` matches any one character
    assert like(f"lk{tag}\\_a%") == [labels[0]]                       # `\_` matches only `_`
    assert like(f"lk{tag}\\\\_a%") == [labels[0]]                     # so does `\\_` (a backslash, then `_`)
    assert like(f"lk{tag}\\\\_%\\\\_3") == [labels[2]]
    assert like(f"LK{tag}%") == []                                    # labels are case sensitive
    cols = [d for d in emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL = '{labels[0]}'")[0]]
    assert len(cols) == 15 and cols[1] == labels[0] and cols[3] == "VISIBLE" and cols[4] == "BACKEND_STREAMING"


def test_like_regex_reads_patterns_as_mysql():
    assert like_regex("a\\_b", ignore_case=False).match("a_b")
    assert not like_regex("a\\_b", ignore_case=False).match("axb")
    assert like_regex("a\\%", ignore_case=False).match("a%") and not like_regex("a\\%").match("ab")
    assert like_regex("a\\\\%").match("a\\zz")                       # `\\` is one literal backslash
    assert like_regex("a_c%").match("abcdef") and not like_regex("a_c").match("abbc")


# ------------------------------------------------------------------------------------------ running-txn slots

def test_running_txn_slots_per_database():
    e = DorisEmulator(max_running_txn_num_per_db=2).start()
    try:
        for db in ("d", "e"):
            e.query(f"CREATE DATABASE {db}")
            e.query(DDL.format(name="t").replace("`d`", f"`{db}`"))
        held = [load(e, "t", ROW, label=label(), two_phase_commit="true")["TxnId"] for _ in range(2)]
        full = load(e, "t", ROW, label=label())
        assert full["Status"] == "Fail"
        assert "current running txns on db 10001 is 2, larger than limit 2" in full["Message"]
        assert load(e, "t", ROW, db="e", label=label())["Status"] == "Success"     # slots are per database
        again = load(e, "t", ROW, label=label())
        assert again["Status"] == "Fail"                                 # still full: precommitted txns hold slots
        assert two_pc(e, txn_id=held[0], txn_operation="abort")["status"] == "Success"
        assert load(e, "t", ROW, label=label())["Status"] == "Success"
        assert two_pc(e, txn_id=held[1], txn_operation="commit")["status"] == "Success"
        assert load(e, "t", ROW, label=label())["Status"] == "Success"
        assert int(e.query("SELECT COUNT(*) FROM d.t")[0][0]) == 3
    finally:
        e.stop()
