"""Stream Load transactions: the record of one txn, label rules, and the two-phase-commit state machine.

States as SHOW TRANSACTION prints them: PREPARE (loading) -> PRECOMMITTED (2PC, rows held back) ->
VISIBLE (or COMMITTED while publishing), or ABORTED. The records live in the catalog (storage.py) so
the MySQL port can show them; this module decides every transition.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class Txn:
    txn_id: int
    db: str
    label: str
    status: str
    source_type: str = "BACKEND_STREAMING"
    coordinator: str = "BE: 127.0.0.1"
    prepare_time: float | None = None
    precommit_time: float | None = None
    commit_time: float | None = None
    publish_time: float | None = None
    finish_time: float | None = None
    reason: str = ""
    timeout_ms: int = 600000
    err_msg: str = ""
    pending: object = None


class LabelExists(Exception):
    def __init__(self, job_status: str, txn):
        super().__init__(job_status)
        self.job_status, self.txn = job_status, txn


class TxnBook:
    """Label rules and transaction state on top of the catalog's txn registry (storage only)."""

    def __init__(self, catalog, precommit_timeout_s: float):
        self.catalog = catalog
        self.precommit_timeout_s = precommit_timeout_s
        self.lock = threading.Lock()
        self.precommitted: dict[int, object] = {}

    def begin(self, db: str, label: str, timeout_s: int):
        """Register a PREPARE txn, or raise LabelExists when the label is taken or still loading."""
        with self.lock:
            old = self.catalog.find_txn(db, label=label)
            if old is not None:
                if old.status == "PREPARE":
                    raise LabelExists("RUNNING", old)
                if old.status in ("VISIBLE", "COMMITTED"):
                    raise LabelExists("FINISHED", old)
                if old.status == "PRECOMMITTED":
                    raise LabelExists("PRECOMMITTED", old)
            txn = Txn(txn_id=self.catalog.next_txn_id(), db=db, label=label, status="PREPARE",
                      prepare_time=time.time(), timeout_ms=timeout_s * 1000)
            self.catalog.add_txn(txn)
            return txn

    def abort(self, txn, reason: str) -> None:
        with self.lock:
            if txn.status in ("PREPARE", "PRECOMMITTED"):
                txn.status = "ABORTED"
                txn.reason = reason
                txn.err_msg = reason
                txn.finish_time = time.time()
                self.precommitted.pop(txn.txn_id, None)

    def visible(self, txn, committed_only: bool = False) -> None:
        now = time.time()
        with self.lock:
            txn.commit_time = now
            if committed_only:
                txn.status = "COMMITTED"
            else:
                txn.status = "VISIBLE"
                txn.publish_time = txn.finish_time = now

    def precommit(self, txn, table: str, rows) -> None:
        with self.lock:
            txn.status = "PRECOMMITTED"
            txn.precommit_time = time.time()
            txn.pending = (table, rows)
            self.precommitted[txn.txn_id] = txn

    def expire(self) -> None:
        """Abort pre-committed txns nobody committed in time (Doris does the same)."""
        if not self.precommitted:
            return
        cutoff = time.time() - self.precommit_timeout_s
        with self.lock:
            for txn in list(self.precommitted.values()):
                if txn.status == "PRECOMMITTED" and txn.precommit_time <= cutoff:
                    txn.status = "ABORTED"
                    txn.reason = txn.err_msg = "timeout by txn manager"
                    txn.finish_time = time.time()
                    txn.pending = None
                    self.precommitted.pop(txn.txn_id, None)

    def two_phase(self, db: str, txn_id: int | None, label: str | None, op: str) -> tuple[bool, str]:
        """commit | abort a pre-committed txn; (ok, msg) like the FE's 2PC answer."""
        self.expire()
        txn = self.catalog.find_txn(db, label=label, txn_id=txn_id)
        if txn is None or txn.db != db:
            what = f"transaction [{txn_id}]" if txn_id is not None else f"label [{label}]"
            return False, f"errCode = 2, detailMessage = {what} not found in database {db}"
        tid = txn.txn_id
        with self.lock:
            st = txn.status
            if op == "commit":
                if st in ("VISIBLE", "COMMITTED"):
                    return False, f"errCode = 2, detailMessage = transaction [{tid}] is already visible, not pre-committed."
                if st == "ABORTED":
                    return False, (f"errCode = 2, detailMessage = transaction [{tid}] is already aborted. "
                                   f"abort reason: {txn.reason}")
                if st != "PRECOMMITTED":
                    return False, f"errCode = 2, detailMessage = transaction [{tid}] is not pre-committed, status: {st}"
                table, rows = txn.pending or (None, None)
                if rows:
                    self.catalog.insert_rows(db, table, rows)
                now = time.time()
                txn.status, txn.pending = "VISIBLE", None
                txn.commit_time = txn.publish_time = txn.finish_time = now
                self.precommitted.pop(tid, None)
                return True, f"transaction [{tid}] commit successfully."
            if st == "ABORTED":
                return False, (f"errCode = 2, detailMessage = transaction [{tid}] is already aborted. "
                               f"abort reason: {txn.reason}")
            if st in ("VISIBLE", "COMMITTED"):
                return False, f"errCode = 2, detailMessage = transaction [{tid}] is already {st}, could not abort."
            txn.status, txn.pending = "ABORTED", None
            txn.reason = txn.err_msg = "user abort"
            txn.finish_time = time.time()
            self.precommitted.pop(tid, None)
            return True, f"transaction [{tid}] abort successfully."
