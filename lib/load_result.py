"""What a Stream Load outcome means for the writer: done, retry, back off, fix rows, commit, or stop.

Pure: the writer hands us (HTTP status, parsed JSON body, exception) and acts on the answer.
Doris answers HTTP 200 even when a load failed, so the decision rests on ``Status`` and on the
words in ``Message``; the patterns below tolerate the variants of Doris 2.x and 3.x
(see docs/doris-protocol.md, "The answer").
"""
from __future__ import annotations

import re
from typing import NamedTuple

SUCCESS = "success"            # rows are in Doris (or were already): confirm the batch
RETRY = "retry"                # outcome unknown or transient: same label, bounded retries
BACKOFF = "backoff"            # Doris is overloaded: same label, longer pause
DATA_QUALITY = "data_quality"  # rows were rejected: fetch ErrorURL, dead-letter them, reload the rest
PRECOMMITTED = "precommitted"  # a two-phase load holds these rows: commit it
FATAL = "fatal"                # a retry cannot help (auth, missing table/column): stop


class Outcome(NamedTuple):
    kind: str
    reason: str                # short, stable: used as a metrics label and in logs
    message: str               # for people: what Doris said


_AUTH = re.compile(r"basic authorization|access denied|password|unauthori[sz]ed|"
                   r"authenticat\w* fail|privilege|command denied", re.I)
_TABLE = re.compile(r"unknown (database|table)|(database|table)\b[^,;]{0,80}?\b(not found|does not exist"
                    r"|doesn't exist|not exist)|no such (database|table)", re.I)
_VERSIONS = re.compile(r"-235\b|too many versions?|too_many_version", re.I)
_TXN_LIMIT = re.compile(r"running txns?\b.*larger than limit|too many running (txns|transactions)", re.I)
_TXN_TIMEOUT = re.compile(r"timeout by txn manager", re.I)
# max_publishing_txn_num_per_table: committed transactions the table has not published yet
# (Doris's regression test test_txn_limit expects "current committed txns on table")
_PUBLISHING = re.compile(r"committed txns? on table\b", re.I)
_SCHEMA_CHANGE = re.compile(r"schema[ _]change", re.I)
_QUALITY = re.compile(r"too many filtered rows|data_quality_error|column count mismatch|"
                      r"columns? (count|number)s? (mismatch|does not match|doesn't match)|"
                      r"actual column number", re.I)
_COLUMN = re.compile(r"unknown column|no such column|(can ?not|can't|failed to) find column|"
                     r"column\b[^,;]{0,80}?\b(not found|does not exist|doesn't exist)", re.I)
_TIMED_OUT = re.compile(r"timed? ?out", re.I)


def classify(http_status: int | None, body: dict | None, exc: BaseException | None) -> Outcome:
    """Map one Stream Load attempt to an Outcome. Never raises."""
    if exc is not None:
        text = str(exc) or type(exc).__name__
        if getattr(exc, "timeout", False) or _TIMED_OUT.search(text) or isinstance(exc, TimeoutError):
            return Outcome(RETRY, "timeout", text)
        return Outcome(RETRY, "connection", text)

    body = body if isinstance(body, dict) else None
    status = _field(body, "Status", "status")
    message = _field(body, "Message", "msg", "message")
    code = _field(body, "code")
    text = " ".join(x for x in (status, message) if x) or (f"HTTP {http_status}" if http_status else "")
    if body is not None and body.get("ErrorURL"):
        text = f"{text} (ErrorURL {body['ErrorURL']})"

    # Auth and missing tables first: they may come as a real 4xx, as HTTP 200 with a FE error
    # JSON ({"msg": "Unauthorized", "code": 401}), or as Status Fail from the BE.
    if http_status in (401, 403) or code in ("401", "403") \
            or (message and _AUTH.search(message) and (status or "").lower() != "success"):
        return Outcome(FATAL, "auth", text or "unauthorized")
    if http_status == 404 or (message and _TABLE.search(message) and not _COLUMN.search(message)
                              and (status or "fail").lower() not in ("success", "publish timeout")):
        return Outcome(FATAL, "table_not_found", text or "not found")

    if http_status is not None and http_status != 200:
        if http_status >= 500:
            return Outcome(RETRY, "http_5xx", text)
        if http_status in (408, 429):
            return Outcome(RETRY, f"http_{http_status}", text)
        if 400 <= http_status < 500:
            return Outcome(FATAL, "http_4xx", text)
        if not (200 <= http_status < 300):
            return Outcome(RETRY, "bad_response", f"unexpected HTTP {http_status}: {text}")

    if body is None or not (status or message):
        return Outcome(RETRY, "bad_response", f"HTTP {http_status} without a Stream Load JSON answer")

    s = (status or "").strip().lower()
    if s == "success":
        if str(body.get("TwoPhaseCommit", "")).strip().lower() == "true":
            return Outcome(PRECOMMITTED, "precommitted", text)
        return Outcome(SUCCESS, "success", text)
    if s == "publish timeout":
        return Outcome(SUCCESS, "publish_timeout", text)
    if s == "label already exists":
        existing = (_field(body, "ExistingJobStatus") or "").strip().upper()
        if existing in ("FINISHED", "VISIBLE", "COMMITTED"):
            return Outcome(SUCCESS, "label_exists", text)
        if existing == "PRECOMMITTED":
            return Outcome(PRECOMMITTED, "label_precommitted", text)
        return Outcome(RETRY, "label_running", text)
    return _classify_fail(message or status or "", body, text)


def _classify_fail(message: str, body: dict, text: str) -> Outcome:
    if _VERSIONS.search(message):
        return Outcome(BACKOFF, "too_many_versions", text)
    if _TXN_LIMIT.search(message):
        return Outcome(BACKOFF, "txn_limit", text)
    if _PUBLISHING.search(message):
        return Outcome(BACKOFF, "publishing_limit", text)
    if _TXN_TIMEOUT.search(message):
        return Outcome(BACKOFF, "txn_timeout", text)
    if _SCHEMA_CHANGE.search(message):
        return Outcome(BACKOFF, "schema_change", text)
    if _QUALITY.search(message):
        return Outcome(DATA_QUALITY, "data_quality", text)
    if _COLUMN.search(message):
        return Outcome(FATAL, "column_not_found", text)
    if body.get("ErrorURL"):
        return Outcome(DATA_QUALITY, "data_quality", text)
    return Outcome(RETRY, "fail", text)


def classify_2pc(answer: dict | None) -> str:
    """SUCCESS, FATAL or RETRY for the FE's answer to a 2PC commit (``{"status", "msg"}``)."""
    if not isinstance(answer, dict):
        return RETRY
    status = (_field(answer, "status", "Status") or "").strip().lower()
    msg = (_field(answer, "msg", "Message", "message") or "").lower()
    if status == "success":
        return SUCCESS
    if re.search(r"already (been )?(committed|visible)|is (committed|visible)\b"
                 r"|status is (committed|visible)", msg):
        return SUCCESS
    if re.search(r"not (found|exist)|does not exist|doesn't exist|abort", msg):
        return FATAL
    return RETRY


def _field(body: dict | None, *names: str) -> str | None:
    """The first present field among ``names`` (any case), as text."""
    if not body:
        return None
    for name in names:
        if name in body and body[name] is not None:
            return str(body[name])
    lowered = {str(k).lower(): v for k, v in body.items()}
    for name in names:
        v = lowered.get(name.lower())
        if v is not None:
            return str(v)
    return None
