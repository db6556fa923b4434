"""The emulator over real HTTP (urllib3 / http.client / raw sockets), rows checked over the MySQL port."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import time
import uuid

import pytest
import urllib3

from tests.doris_emulator import DorisEmulator

AUTH = "Basic " + base64.b64encode(b"root:").decode()
HTTP = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=60))

DDL = """CREATE TABLE `d`.`{name}` (
  id BIGINT NOT NULL, name VARCHAR(8) NULL, amount DECIMAL(10, 2) NULL, ts DATETIME(3) NULL,
  payload JSON NULL, status VARCHAR(8) NOT NULL DEFAULT 'new'
) DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1 PROPERTIES ("replication_num" = "1")"""


@pytest.fixture
def tbl(emu):
    name = f"t_{uuid.uuid4().hex[:8]}"
    emu.query(DDL.format(name=name))
    return name


def label() -> str:
    return f"l_{uuid.uuid4().hex}"


def put(port, path, body=b"", auth=AUTH, expect=True, **headers):
    h = {k.replace("__", "-"): str(v) for k, v in headers.items()}
    if auth:
        h["Authorization"] = auth
    if expect:
        h["Expect"] = "100-continue"
    r = HTTP.request("PUT", f"http://127.0.0.1:{port}{path}", body=body, headers=h, redirect=False)
    try:
        data = json.loads(r.data) if r.data else None
    except ValueError:
        data = r.data
    return r.status, r.headers, data


def load(emu, table, body, db="d", **headers):
    if isinstance(body, str):
        body = body.encode()
    status, _, data = put(emu.be_http_port, f"/api/{db}/{table}/_stream_load", body, **headers)
    assert status == 200, data
    return data


def rows(emu, table):
    return emu.query(f"SELECT id, name, amount, ts, payload, status FROM d.`{table}` ORDER BY id")


def count(emu, table) -> int:
    return int(emu.query(f"SELECT COUNT(*) FROM d.`{table}`")[0][0])


def raw_exchange(port, head: str, body: bytes | None = None, wait_100: bool = True):
    """Send headers, optionally wait for 100 Continue, send body; return (interim, final) texts."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(head.encode())
        interim = b""
        if wait_100:
            interim = s.recv(65536)
            if not interim.startswith(b"HTTP/1.1 100"):
                return b"", interim + _drain(s)
        if body is not None:
            s.sendall(body)
        return interim, _drain(s)
    finally:
        s.close()


def _drain(s) -> bytes:
    buf = b""
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
        if b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            n = [int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")]
            if n and len(rest) >= n[0]:
                break
    return buf


def head_for(path, port, label_=None, length=0, expect=True, auth=AUTH, extra=""):
    lines = [f"PUT {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {length}"]
    if auth:
        lines.append(f"Authorization: {auth}")
    if expect:
        lines.append("Expect: 100-continue")
    if label_:
        lines.append(f"label: {label_}")
    return "\r\n".join(lines) + "\r\n" + extra + "\r\n"


# ------------------------------------------------------------------------------------------ FE

def test_fe_redirects_with_credentials_and_query_without_reading_the_body(emu, tbl):
    path = f"/api/d/{tbl}/_stream_load?foo=bar"
    interim, final = raw_exchange(emu.fe_http_port, head_for(path, emu.fe_http_port, length=5), wait_100=True)
    assert interim == b""                                   # no 100 Continue from the FE
    assert final.startswith(b"HTTP/1.1 307")
    assert f"Location: http://root:@127.0.0.1:{emu.be_http_port}/api/d/{tbl}/_stream_load?foo=bar".encode() in final
    assert b"Connection: close" in final


def test_fe_auth_error_styles(emu, tbl):
    bad = "Basic " + base64.b64encode(b"root:wrong").decode()
    status, _, data = put(emu.fe_http_port, f"/api/d/{tbl}/_stream_load", b"1", auth=bad)
    assert status == 401 and data["code"] == 401 and data["msg"] == "Unauthorized"
    status, _, data = put(emu.fe_http_port, f"/api/d/{tbl}/_stream_load", b"1", auth=None)
    assert status == 401
    other = DorisEmulator(auth_error_style="json200").start()
    try:
        status, _, data = put(other.fe_http_port, "/api/d/t/_stream_load", b"1", auth=bad)
        assert status == 200 and data == {"msg": "Unauthorized", "code": 401, "data": data["data"], "count": 0}
    finally:
        other.stop()


def test_fe_refuses_without_100_continue(emu, tbl):
    status, _, data = put(emu.fe_http_port, f"/api/d/{tbl}/_stream_load", b"1", expect=False)
    assert status == 200 and "There is no 100-continue header" in data["msg"]


def test_fe_does_not_check_the_table_and_be_reports_unknown_db_and_table(emu):
    status, headers, _ = put(emu.fe_http_port, "/api/nodb/notable/_stream_load", b"1")
    assert status == 307
    data = load(emu, "notable", "1\n", db="nodb")
    assert data["Status"] == "Fail" and "unknown database, database=nodb" in data["Message"]
    data = load(emu, "notable", "1\n")
    assert data["Status"] == "Fail" and "table not found, tableName=notable" in data["Message"]


def test_fe_info_endpoints(emu):
    r = HTTP.request("GET", f"http://127.0.0.1:{emu.fe_http_port}/api/backends?is_alive=true")
    assert json.loads(r.data) == {"msg": "success", "code": 0, "data": {"backends": [
        {"ip": "127.0.0.1", "http_port": emu.be_http_port, "is_alive": True}]}, "count": 0}
    r = HTTP.request("GET", f"http://127.0.0.1:{emu.fe_http_port}/api/health")
    assert json.loads(r.data)["data"] == {"online_backend_num": 1, "total_backend_num": 1}
    r = HTTP.request("GET", f"http://127.0.0.1:{emu.fe_http_port}/api/bootstrap")
    assert json.loads(r.data)["data"]["queryPort"] == emu.query_port


# ------------------------------------------------------------------------------------------ BE basics

def test_be_honours_100_continue_and_answers_header_errors_before_it(emu, tbl):
    path = f"/api/d/{tbl}/_stream_load"
    body = b"1\tann\t1.5\t2024-01-01 00:00:00\t{}\tok\n"
    interim, final = raw_exchange(emu.be_http_port, head_for(path, emu.be_http_port, label(), len(body)), body)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert b'"Status": "Success"' in final
    interim, final = raw_exchange(emu.be_http_port, head_for(path, emu.be_http_port, "bad label!", len(body)))
    assert interim == b"" and b"Label format error" in final


def test_be_needs_the_authorization_header(emu, tbl):
    data = load(emu, tbl, "1\tx\t1\t2024-01-01\t{}\tok\n", auth=None)
    assert data["Status"] == "Fail" and "Basic authorization" in data["Message"]
    wrong = "Basic " + base64.b64encode(b"root:nope").decode()
    data = load(emu, tbl, "1\tx\t1\t2024-01-01\t{}\tok\n", auth=wrong)
    assert data["Status"] == "Fail" and "Basic authorization" in data["Message"]
    assert count(emu, tbl) == 0


def test_full_redirect_flow_and_response_fields(emu, tbl):
    lab = label()
    status, headers, _ = put(emu.fe_http_port, f"/api/d/{tbl}/_stream_load", b"", label=lab)
    loc = headers["Location"]
    be_url = "http://" + loc.split("@", 1)[1]
    r = HTTP.request("PUT", be_url, body=b"1\tann\t12.345\t2024-01-01 00:00:00.5\t{\"a\": 1}\tok\n2\t\\N\t\\N\t\\N\t\\N\tok\n",
                     headers={"Authorization": AUTH, "Expect": "100-continue", "label": lab})
    data = json.loads(r.data)
    for k in ("TxnId", "Label", "Comment", "TwoPhaseCommit", "Status", "Message", "NumberTotalRows", "NumberLoadedRows",
              "NumberFilteredRows", "NumberUnselectedRows", "LoadBytes", "LoadTimeMs", "BeginTxnTimeMs",
              "StreamLoadPutTimeMs", "ReadDataTimeMs", "WriteDataTimeMs", "CommitAndPublishTimeMs"):
        assert k in data
    assert (data["Status"], data["Message"], data["Label"], data["TwoPhaseCommit"]) == ("Success", "OK", lab, "false")
    assert (data["NumberTotalRows"], data["NumberLoadedRows"], data["NumberFilteredRows"]) == (2, 2, 0)
    assert "ErrorURL" not in data
    got = rows(emu, tbl)
    assert [r[0] for r in got] == [1, 2]
    assert str(got[0][2]) == "12.35" and got[0][1] == "ann" and json.loads(got[0][4]) == {"a": 1}
    assert got[1][1:5] == (None, None, None, None)
    txn = emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL = '{lab}'")
    assert txn[0][3] == "VISIBLE" and int(txn[0][0]) == data["TxnId"]


def test_chunked_body(emu, tbl):
    conn = http.client.HTTPConnection("127.0.0.1", emu.be_http_port, timeout=30)
    conn.request("PUT", f"/api/d/{tbl}/_stream_load", body=iter([b"1\ta\t1\t2024-01-01\t{}\tok\n", b"2\tb\t2\t2024-01-01\t{}\tok\n"]),
                 headers={"Authorization": AUTH, "Expect": "100-continue", "label": label()}, encode_chunked=True)
    data = json.loads(conn.getresponse().read())
    conn.close()
    assert data["Status"] == "Success" and data["NumberLoadedRows"] == 2
    assert count(emu, tbl) == 2


def test_hex_separators_and_columns_header(emu, tbl):
    body = "7\x01seven\x02" + "8\x01\\N\x02"
    data = load(emu, tbl, body, column_separator="\\x01", line_delimiter="\\x02", columns="id,name", label=label())
    assert data["Status"] == "Success", data
    assert [(r[0], r[1], r[5]) for r in rows(emu, tbl)] == [(7, "seven", "new"), (8, None, "new")]


def test_enclose_and_escape_over_http(emu, tbl):
    body = '1,"a,b",1,"2024-01-01 00:00:00","{\\"k\\": 1}",ok\n2,"x\ny",2,2024-01-01,{},ok\n'
    data = load(emu, tbl, body, column_separator=",", enclose='"', escape="\\", trim_double_quotes="true",
                label=label())
    assert data["Status"] == "Success", data
    got = rows(emu, tbl)
    assert got[0][1] == "a,b" and json.loads(got[0][4]) == {"k": 1} and got[1][1] == "x\ny"


def test_json_loads_by_line_outer_array_and_jsonpaths(emu, tbl):
    lines = [{"id": 1, "name": "a", "amount": "1.005", "payload": {"n": [1]}}, {"id": 2, "status": "x"}]
    data = load(emu, tbl, "\n".join(json.dumps(x) for x in lines), format="json", read_json_by_line="true",
                label=label())
    assert data["Status"] == "Success" and data["NumberLoadedRows"] == 2, data
    data = load(emu, tbl, json.dumps([{"id": 3}, {"id": 4, "name": "b"}]), format="json", strip_outer_array="true",
                label=label())
    assert data["Status"] == "Success" and data["NumberLoadedRows"] == 2, data
    data = load(emu, tbl, '{"u": {"id": 5, "n": "deep"}}\n', format="json", read_json_by_line="true",
                columns="id,name", jsonpaths='["$.u.id", "$.u.n"]', label=label())
    assert data["Status"] == "Success", data
    got = rows(emu, tbl)
    assert [(r[0], r[1], r[5]) for r in got] == [(1, "a", "new"), (2, None, "x"), (3, None, "new"), (4, "b", "new"),
                                                (5, "deep", "new")]
    assert str(got[0][2]) == "1.01" and json.loads(got[0][4]) == {"n": [1]}


# ------------------------------------------------------------------------------------------ data quality

BAD_BODY = ("1\tann\t1\t2024-01-01\t{}\tok\n"
            "2\tmuch_too_long\t1\t2024-01-01\t{}\tok\n"       # too long: always filtered
            "3\tbob\tmany\t2024-01-01\t{}\tok\n"              # bad decimal: strict-dependent
            "4\tcid\n")                                      # wrong column count


def test_max_filter_ratio_fail_loads_nothing_and_error_url_explains(emu, tbl):
    data = load(emu, tbl, BAD_BODY, label=label(), strict_mode="true")
    assert data["Status"] == "Fail" and data["Message"] == "[DATA_QUALITY_ERROR]too many filtered rows"
    assert (data["NumberTotalRows"], data["NumberFilteredRows"]) == (4, 3)
    assert count(emu, tbl) == 0
    text = HTTP.request("GET", data["ErrorURL"]).data.decode()
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("Reason: column_name[name], the length of input is too long than schema")
    assert lines[0].endswith("src line [2\tmuch_too_long\t1\t2024-01-01\t{}\tok]; ")
    assert "column(amount)" in lines[1] and "src line [3\tbob\tmany\t2024-01-01\t{}\tok]" in lines[1]
    assert "column number" in lines[2] and "src line [4\tcid]" in lines[2]


def test_max_filter_ratio_pass_and_non_strict_nulls(emu, tbl):
    data = load(emu, tbl, BAD_BODY, label=label(), max_filter_ratio="0.5")     # non-strict: 'many' -> NULL
    assert data["Status"] == "Success", data
    assert (data["NumberLoadedRows"], data["NumberFilteredRows"]) == (2, 2) and "ErrorURL" in data
    got = rows(emu, tbl)
    assert [r[0] for r in got] == [1, 3] and got[1][2] is None


def test_json_filtered_rows_show_the_raw_json_line(emu, tbl):
    body = '{"id": 1}\n{"id": null}\n{"id": 3, "name": "waaaaaaaaaay too long"}\n'
    data = load(emu, tbl, body, format="json", read_json_by_line="true", label=label(), max_filter_ratio="1")
    assert data["NumberFilteredRows"] == 2
    lines = HTTP.request("GET", data["ErrorURL"]).data.decode().splitlines()
    assert "column(id) values is null" in lines[0] and 'src line [{"id": null}]' in lines[0]
    assert "column_name[name]" in lines[1]


@pytest.mark.parametrize("bad", [50, 51, 120])
def test_error_url_lists_at_most_50_rows_and_counts_stay_true(emu, tbl, bad):
    good = "".join(f"{i}\ta\t1\t2024-01-01\t{{}}\tok\n" for i in range(10))
    body = good + "".join(f"{i}\tonly_two\n" for i in range(bad))
    data = load(emu, tbl, body, label=label(), max_filter_ratio="1")
    assert data["Status"] == "Success", data
    assert (data["NumberTotalRows"], data["NumberLoadedRows"], data["NumberFilteredRows"]) == (10 + bad, 10, bad)
    assert data["NumberTotalRows"] == (data["NumberLoadedRows"] + data["NumberFilteredRows"]
                                       + data["NumberUnselectedRows"])
    lines = HTTP.request("GET", data["ErrorURL"]).data.decode().splitlines()
    reasons = [x for x in lines if x.startswith("Reason: ")]
    assert len(reasons) == min(bad, 50) and "src line [0\tonly_two]" in reasons[0]
    assert lines[-1:] == (["TOO MUCH ERROR!"] if bad > 50 else reasons[-1:])
    assert len(lines) == len(reasons) + (bad > 50)


def test_error_url_of_a_failed_load_is_capped_too(emu, tbl):
    data = load(emu, tbl, "x\n" * 80, label=label())
    assert data["Status"] == "Fail" and data["NumberFilteredRows"] == 80 and data["NumberTotalRows"] == 80
    lines = HTTP.request("GET", data["ErrorURL"]).data.decode().splitlines()
    assert len(lines) == 51 and lines[-1] == "TOO MUCH ERROR!"


def test_success_counts_add_up(emu, tbl):
    data = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n" * 7, label=label())
    assert (data["NumberTotalRows"], data["NumberLoadedRows"], data["NumberFilteredRows"],
            data["NumberUnselectedRows"]) == (7, 7, 0, 0) and "ErrorURL" not in data


# ------------------------------------------------------------------------------------------ labels

def test_label_finished_and_failed_label_reused(emu, tbl):
    lab = label()
    assert load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", label=lab)["Status"] == "Success"
    again = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", label=lab)
    assert again["Status"] == "Label Already Exists" and again["ExistingJobStatus"] == "FINISHED"
    failed = label()
    assert load(emu, tbl, "junk\n", label=failed)["Status"] == "Fail"
    assert load(emu, tbl, "2\tb\t1\t2024-01-01\t{}\tok\n", label=failed)["Status"] == "Success"
    assert count(emu, tbl) == 2
    statuses = {r[3] for r in emu.query(f"SHOW TRANSACTION FROM d WHERE LABEL = '{failed}'")}
    assert "VISIBLE" in statuses


def test_label_running_while_the_first_load_is_in_flight(emu, tbl):
    lab = label()
    body = b"1\ta\t1\t2024-01-01\t{}\tok\n"
    path = f"/api/d/{tbl}/_stream_load"
    s = socket.create_connection(("127.0.0.1", emu.be_http_port), timeout=10)
    try:
        s.sendall(head_for(path, emu.be_http_port, lab, len(body)).encode())
        assert s.recv(1024).startswith(b"HTTP/1.1 100")          # the load has begun, body not sent yet
        data = load(emu, tbl, body, label=lab)
        assert data["Status"] == "Label Already Exists" and data["ExistingJobStatus"] == "RUNNING"
        s.sendall(body)
        assert b'"Status": "Success"' in _drain(s)
    finally:
        s.close()
    assert count(emu, tbl) == 1


def test_group_commit(emu, tbl):
    data = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", group_commit="async_mode")
    assert data["Status"] == "Success" and data["GroupCommit"] is True and data["Label"].startswith("group_commit_")
    data = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", group_commit="sync_mode", label=label())
    assert data["Status"] == "Fail" and "label and group_commit" in data["Message"]
    assert count(emu, tbl) == 1


# ------------------------------------------------------------------------------------------ 2PC

def two_pc(emu, port=None, **headers):
    status, _, data = put(port or emu.fe_http_port, "/api/d/_stream_load_2pc", b"", expect=False, **headers)
    assert status == 200
    return data


def test_two_phase_commit_and_abort(emu, tbl):
    lab = label()
    data = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", label=lab, two_phase_commit="true")
    assert data["Status"] == "Success" and data["TwoPhaseCommit"] == "true"
    tid = data["TxnId"]
    assert count(emu, tbl) == 0                                    # pre-committed: not visible
    again = load(emu, tbl, "1\ta\t1\t2024-01-01\t{}\tok\n", label=lab, two_phase_commit="true")
    assert again["Status"] == "Label Already Exists" and again["ExistingJobStatus"] == "PRECOMMITTED"
    assert emu.query(f"SHOW TRANSACTION FROM d WHERE ID = {tid}")[0][3] == "PRECOMMITTED"
    ok = two_pc(emu, txn_id=tid, txn_operation="commit")
    assert ok == {"status": "Success", "msg": f"transaction [{tid}] commit successfully."}
    assert count(emu, tbl) == 1
    twice = two_pc(emu, txn_id=tid, txn_operation="commit")
    assert twice["status"] == "Fail" and "already visible" in twice["msg"]

    lab2 = label()
    tid2 = load(emu, tbl, "2\tb\t1\t2024-01-01\t{}\tok\n", label=lab2, two_phase_commit="true")["TxnId"]
    assert two_pc(emu, label=lab2, txn_operation="abort")["status"] == "Success"
    again = two_pc(emu, txn_id=tid2, txn_operation="abort")
    assert again["status"] == "Fail" and "already aborted" in again["msg"]
    assert two_pc(emu, txn_id=tid2, txn_operation="commit")["status"] == "Fail"
    assert count(emu, tbl) == 1
    # an aborted label may load again
    assert load(emu, tbl, "2\tb\t1\t2024-01-01\t{}\tok\n", label=lab2)["Status"] == "Success"
    bad = "Basic " + base64.b64encode(b"root:x").decode()
    status, _, _ = put(emu.fe_http_port, "/api/d/_stream_load_2pc", b"", auth=bad, expect=False,
                       txn_id=tid2, txn_operation="abort")
    assert status == 401


def test_precommitted_txn_is_aborted_after_the_timeout():
    e = DorisEmulator(precommit_timeout_s=0.3).start()
    try:
        e.query("CREATE DATABASE d")
        e.query(DDL.format(name="t"))
        tid = load(e, "t", "1\ta\t1\t2024-01-01\t{}\tok\n", label=label(), two_phase_commit="true")["TxnId"]
        deadline = time.monotonic() + 30
        while e.query(f"SHOW TRANSACTION FROM d WHERE ID = {tid}")[0][3] != "ABORTED":
            assert time.monotonic() < deadline, "the pre-committed txn was never aborted"
            time.sleep(0.1)
        data = two_pc(e, txn_id=tid, txn_operation="commit")
        assert data["status"] == "Fail" and "aborted" in data["msg"]
        assert count(e, "t") == 0
    finally:
        e.stop()


# ------------------------------------------------------------------------------------------ faults

ROW = "1\ta\t1\t2024-01-01\t{}\tok\n"


def test_fault_http_500_and_fe_500(emu, tbl):
    emu.faults.set("http_500")
    status, _, _ = put(emu.be_http_port, f"/api/d/{tbl}/_stream_load", ROW.encode(), label=label())
    assert status == 500 and count(emu, tbl) == 0
    emu.faults.clear()
    emu.faults.set("fe_500")
    status, _, _ = put(emu.fe_http_port, f"/api/d/{tbl}/_stream_load", ROW.encode(), label=label())
    assert status == 500 and emu.faults.fired == {"fe_500": 1}
    status, _, _ = put(emu.fe_http_port, "/api/d/_stream_load_2pc", b"", expect=False, txn_id=1, txn_operation="abort")
    assert status == 200                                            # faults only hit loads


def test_fault_reset_loads_nothing_and_frees_the_label(emu, tbl):
    emu.faults.set("reset", count=1)
    lab = label()
    body = ROW.encode() * 50_000
    with pytest.raises((urllib3.exceptions.ProtocolError, ConnectionError)):
        put(emu.be_http_port, f"/api/d/{tbl}/_stream_load", body, label=lab)
    assert emu.faults.fired == {"reset": 1} and count(emu, tbl) == 0
    assert load(emu, tbl, body, label=lab)["Status"] == "Success"
    assert count(emu, tbl) == 50_000


def test_fault_slow_still_loads(emu, tbl):
    emu.faults.set("slow", delay_s=0.2)
    assert load(emu, tbl, ROW, label=label())["Status"] == "Success"
    assert emu.faults.fired == {"slow": 1} and count(emu, tbl) == 1


def test_fault_publish_timeout_commits(emu, tbl):
    emu.faults.set("publish_timeout")
    lab = label()
    data = load(emu, tbl, ROW, label=lab)
    assert data["Status"] == "Publish Timeout" and count(emu, tbl) == 1
    emu.faults.clear()
    assert load(emu, tbl, ROW, label=lab)["ExistingJobStatus"] == "FINISHED"


def test_fault_too_many_versions_and_txn_limit_load_nothing(emu, tbl):
    emu.faults.set("too_many_versions", count=1)
    data = load(emu, tbl, ROW, label=label())
    assert data["Status"] == "Fail" and "[E-235]too many versions" in data["Message"] \
        and "version count: 2001, exceed limit: 2000" in data["Message"]
    emu.faults.set("txn_limit", count=1)
    data = load(emu, tbl, ROW, label=label())
    assert data["Status"] == "Fail" and "current running txns on db 10001 is 100, larger than limit 100" in data["Message"]
    assert count(emu, tbl) == 0
    assert load(emu, tbl, ROW, label=label())["Status"] == "Success"     # count=1: fired once each
    assert emu.faults.fired == {"too_many_versions": 1, "txn_limit": 1}


def test_fault_commit_then_drop(emu, tbl):
    emu.faults.set("commit_then_drop", count=1)
    lab = label()
    with pytest.raises(urllib3.exceptions.ProtocolError):
        put(emu.be_http_port, f"/api/d/{tbl}/_stream_load", ROW.encode(), label=lab)
    assert count(emu, tbl) == 1
    assert load(emu, tbl, ROW, label=lab)["ExistingJobStatus"] == "FINISHED"


def test_fault_label_running(emu, tbl):
    emu.faults.set("label_running", count=1)
    lab = label()
    data = load(emu, tbl, ROW, label=lab)
    assert data["Status"] == "Label Already Exists" and data["ExistingJobStatus"] == "RUNNING"
    assert count(emu, tbl) == 0
    assert load(emu, tbl, ROW, label=lab)["Status"] == "Success"


def test_fault_rate_with_seed_is_repeatable(emu, tbl):
    fired = []
    for _ in range(2):
        emu.faults.clear()
        emu.faults.set("too_many_versions", rate=0.5, seed=3)
        fired.append([load(emu, tbl, ROW, label=label())["Status"] for _ in range(12)])
    assert fired[0] == fired[1] and "Fail" in fired[0] and "Success" in fired[0]
    with pytest.raises(ValueError, match="unknown fault kind"):
        emu.faults.set("meteor")


# ------------------------------------------------------------------------------------------ outages, size

def test_take_down_and_bring_up_keep_ports_data_and_labels(emu, tbl):
    lab = label()
    assert load(emu, tbl, ROW, label=lab)["Status"] == "Success"
    fe, be = emu.fe_http_port, emu.be_http_port
    emu.take_down()
    try:
        for port in (fe, be):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert count(emu, tbl) == 1                                  # MySQL port stays up
    finally:
        emu.bring_up()
    assert (emu.fe_http_port, emu.be_http_port) == (fe, be)
    assert load(emu, tbl, ROW, label=lab)["ExistingJobStatus"] == "FINISHED"
    status, _, _ = put(fe, f"/api/d/{tbl}/_stream_load", b"", label=label())
    assert status == 307


def test_50mb_body_through_the_fe_redirect(emu):
    emu.query("CREATE TABLE d.big (id BIGINT NOT NULL, s STRING NULL) DUPLICATE KEY(id) "
              "DISTRIBUTED BY HASH(id) BUCKETS 1")
    filler = "x" * 1000
    body = "".join(f"{i}\t{filler}\n" for i in range(50_000)).encode()
    assert len(body) > 50_000_000
    lab = label()
    # urllib3 does not wait for 100 Continue: the FE must still answer 307 (not reset) to a full body
    status, headers, _ = put(emu.fe_http_port, "/api/d/big/_stream_load", body, label=lab)
    assert status == 307
    be_url = "http://" + headers["Location"].split("@", 1)[1]
    r = HTTP.request("PUT", be_url, body=body, headers={"Authorization": AUTH, "Expect": "100-continue", "label": lab})
    data = json.loads(r.data)
    assert data["Status"] == "Success" and data["NumberLoadedRows"] == 50_000 and data["LoadBytes"] == len(body)
    assert emu.query("SELECT COUNT(*), MAX(id), MIN(LENGTH(s)) FROM d.big")[0] == (50_000, 49_999, 1000)


def test_bench_mode_counts_without_storing():
    e = DorisEmulator(bench=True).start()
    try:
        e.query("CREATE DATABASE d")
        e.query(DDL.format(name="t"))
        lab = label()
        data = load(e, "t", ROW * 1000, label=lab)
        assert data["Status"] == "Success" and data["NumberLoadedRows"] == 1000
        assert count(e, "t") == 0
        assert load(e, "t", ROW, label=lab)["ExistingJobStatus"] == "FINISHED"
        data = load(e, "t", ROW + "1\t2\n", label=label())
        assert data["Status"] == "Fail" and data["NumberFilteredRows"] == 1
    finally:
        e.stop()
