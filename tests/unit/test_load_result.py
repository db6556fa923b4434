"""Every Stream Load answer shape from doris-protocol.md maps to the right action."""
import pytest

from sinker_lib import load_result as lr
from sinker_lib.errors import TransportError


def ok_body(**extra):
    body = {"TxnId": 1001, "Label": "sinker_demo_events_events_p0-0-99_abc", "Comment": "",
            "TwoPhaseCommit": "false", "Status": "Success", "Message": "OK",
            "NumberTotalRows": 100, "NumberLoadedRows": 100, "NumberFilteredRows": 0,
            "NumberUnselectedRows": 0, "LoadBytes": 4096, "LoadTimeMs": 120,
            "BeginTxnTimeMs": 1, "StreamLoadPutTimeMs": 2, "ReadDataTimeMs": 3,
            "WriteDataTimeMs": 50, "CommitAndPublishTimeMs": 40}
    body.update(extra)
    return body


def fail(message, **extra):
    body = {"TxnId": 1002, "Label": "l", "TwoPhaseCommit": "false", "Status": "Fail",
            "Message": message, "NumberTotalRows": 0, "NumberLoadedRows": 0,
            "NumberFilteredRows": 0, "LoadBytes": 0, "LoadTimeMs": 3}
    body.update(extra)
    return body


class Timeout(TransportError):
    timeout = True


CASES = [
    # (id, http_status, body, exc, kind, reason)
    ("exc-timeout-attr", None, None, Timeout("read from be-1:8040"), lr.RETRY, "timeout"),
    ("exc-timed-out-text", None, None, TransportError("HTTPConnectionPool: Read timed out."),
     lr.RETRY, "timeout"),
    ("exc-connection", None, None, TransportError("Connection refused"), lr.RETRY, "connection"),
    ("http-401", 401, None, None, lr.FATAL, "auth"),
    ("http-403", 403, {"msg": "Forbidden"}, None, lr.FATAL, "auth"),
    ("fe-200-unauthorized", 200, {"msg": "Unauthorized", "code": 401, "data": None, "count": 0},
     None, lr.FATAL, "auth"),
    ("be-basic-auth", 200, fail("[ANALYSIS_ERROR]no valid Basic authorization"), None,
     lr.FATAL, "auth"),
    ("be-access-denied", 200,
     fail("errCode = 2, detailMessage = Access denied for user 'root'@'127.0.0.1' (using password: YES)"),
     None, lr.FATAL, "auth"),
    ("http-404", 404, None, None, lr.FATAL, "table_not_found"),
    ("unknown-database", 200, fail("[ANALYSIS_ERROR]unknown database, database=nope"), None,
     lr.FATAL, "table_not_found"),
    ("table-not-found", 200, fail("[ANALYSIS_ERROR]table not found, tableName=nope"), None,
     lr.FATAL, "table_not_found"),
    ("table-not-found-4xx", 400, {"Status": "Fail", "Message": "table not found, tableName=t"}, None,
     lr.FATAL, "table_not_found"),
    ("http-500", 500, None, None, lr.RETRY, "http_5xx"),
    ("http-503", 503, {"msg": "busy"}, None, lr.RETRY, "http_5xx"),
    ("http-408", 408, None, None, lr.RETRY, "http_408"),
    ("http-429", 429, None, None, lr.RETRY, "http_429"),
    ("http-400", 400, {"msg": "bad request"}, None, lr.FATAL, "http_4xx"),
    ("http-413", 413, None, None, lr.FATAL, "http_4xx"),
    ("200-no-body", 200, None, None, lr.RETRY, "bad_response"),
    ("200-empty-json", 200, {}, None, lr.RETRY, "bad_response"),
    ("success", 200, ok_body(), None, lr.SUCCESS, "success"),
    ("success-lower-case", 200, ok_body(Status="success"), None, lr.SUCCESS, "success"),
    ("publish-timeout", 200, ok_body(Status="Publish Timeout",
                                     Message="transaction commit successfully, BUT data will be visible later"),
     None, lr.SUCCESS, "publish_timeout"),
    ("label-exists-finished", 200, fail("Label [l] has already been used, relate to txn [99]",
                                        Status="Label Already Exists", ExistingJobStatus="FINISHED"),
     None, lr.SUCCESS, "label_exists"),
    ("label-exists-visible", 200, fail("", Status="Label Already Exists", ExistingJobStatus="VISIBLE"),
     None, lr.SUCCESS, "label_exists"),
    ("label-exists-committed", 200, fail("", Status="Label Already Exists", ExistingJobStatus="COMMITTED"),
     None, lr.SUCCESS, "label_exists"),
    ("label-exists-running", 200, fail("Label [l] has already been used", Status="Label Already Exists",
                                       ExistingJobStatus="RUNNING"), None, lr.RETRY, "label_running"),
    ("label-exists-missing-status", 200, fail("Label [l] has already been used",
                                              Status="Label Already Exists"),
     None, lr.RETRY, "label_running"),
    ("label-exists-precommitted", 200, fail("", Status="Label Already Exists",
                                            ExistingJobStatus="PRECOMMITTED"),
     None, lr.PRECOMMITTED, "label_precommitted"),
    ("two-phase-success", 200, ok_body(TwoPhaseCommit="true"), None, lr.PRECOMMITTED, "precommitted"),
    ("too-many-versions-235", 200, fail("[E-235]failed to init rowset builder. version count: 2001, "
                                        "exceed limit: 2000, tablet: 10086"), None,
     lr.BACKOFF, "too_many_versions"),
    ("too-many-versions-text", 200, fail("[TOO_MANY_VERSION]too many versions, versions=2001"), None,
     lr.BACKOFF, "too_many_versions"),
    ("txn-limit", 200, fail("[ANALYSIS_ERROR]current running txns on db 10002 is 100, larger than "
                            "limit 100"), None, lr.BACKOFF, "txn_limit"),
    ("publishing-limit", 200, fail("[ANALYSIS_ERROR]current committed txns on table 10086 is 500, "
                                   "larger than limit 500"), None, lr.BACKOFF, "publishing_limit"),
    ("txn-timeout", 200, fail("[INTERNAL_ERROR]timeout by txn manager"), None, lr.BACKOFF, "txn_timeout"),
    ("schema-change", 200, fail("[INTERNAL_ERROR]table 10086 is blocked on schema change"), None,
     lr.BACKOFF, "schema_change"),
    ("too-many-filtered", 200, fail("[DATA_QUALITY_ERROR]too many filtered rows",
                                    NumberTotalRows=10, NumberFilteredRows=3,
                                    ErrorURL="http://127.0.0.1:8040/api/_load_error_log?file=x"),
     None, lr.DATA_QUALITY, "data_quality"),
    ("data-quality-no-url", 200, fail("[DATA_QUALITY_ERROR]Encountered unqualified data"), None,
     lr.DATA_QUALITY, "data_quality"),
    ("column-count-mismatch", 200, fail("column count mismatch, expect=5 real=4"), None,
     lr.DATA_QUALITY, "data_quality"),
    ("error-url-only", 200, fail("[INTERNAL_ERROR]something", ErrorURL="http://be:8040/api/_load_error_log?file=y"),
     None, lr.DATA_QUALITY, "data_quality"),
    ("unknown-column", 200, fail("errCode = 2, detailMessage = Unknown column 'color' in 'events'"), None,
     lr.FATAL, "column_not_found"),
    ("column-not-found", 200, fail("[INVALID_ARGUMENT]column color not found in table events"), None,
     lr.FATAL, "column_not_found"),
    ("other-fail", 200, fail("[INTERNAL_ERROR]cancelled: closed"), None, lr.RETRY, "fail"),
    ("fe-no-100-continue", 200, {"status": "FAILED", "msg": "There is no 100-continue header"}, None,
     lr.RETRY, "fail"),
]


@pytest.mark.parametrize("http_status,body,exc,kind,reason",
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(http_status, body, exc, kind, reason):
    out = lr.classify(http_status, body, exc)
    assert (out.kind, out.reason) == (kind, reason), out
    assert isinstance(out.message, str) and out.message


def test_outcome_shape():
    out = lr.classify(200, ok_body(), None)
    assert out == lr.Outcome(lr.SUCCESS, "success", out.message)


def test_kinds_are_distinct_strings():
    kinds = [lr.SUCCESS, lr.RETRY, lr.BACKOFF, lr.DATA_QUALITY, lr.PRECOMMITTED, lr.FATAL]
    assert len(set(kinds)) == 6 and all(isinstance(k, str) for k in kinds)


def test_message_carries_doris_words():
    out = lr.classify(200, fail("[DATA_QUALITY_ERROR]too many filtered rows", ErrorURL="http://x/e"), None)
    assert "too many filtered rows" in out.message and "http://x/e" in out.message


@pytest.mark.parametrize("answer,expected", [
    ({"status": "Success", "msg": "transaction [1001] commit successfully."}, lr.SUCCESS),
    ({"status": "Fail", "msg": "transaction [1001] is already visible, not pre-committed."}, lr.SUCCESS),
    ({"status": "Fail", "msg": "transaction [1001] is already committed"}, lr.SUCCESS),
    ({"status": "Fail", "msg": "transaction [1001] not found"}, lr.FATAL),
    ({"status": "Fail", "msg": "transaction [1001] is already aborted. abort reason: timeout"}, lr.FATAL),
    ({"status": "Fail", "msg": "errCode = 2, detailMessage = txn 1001 does not exist"}, lr.FATAL),
    ({"status": "Fail", "msg": "connect BE failed"}, lr.RETRY),
    (None, lr.RETRY),
    ({}, lr.RETRY),
])
def test_classify_2pc(answer, expected):
    assert lr.classify_2pc(answer) == expected
