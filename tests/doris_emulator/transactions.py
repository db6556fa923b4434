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


# Not final yet: such a txn holds one of the database's running-transaction slots.
RUNNING = ("PREPARE", "PRECOMMITTED", "COMMITTED")
STATES = ("UNKNOWN", "PREPARE", "PRECOMMITTED", "COMMITTED", "VISIBLE", "ABORTED")


class LabelExists(Exception):
    def __init__(self, job_status: str, txn):
        super().__init__(job_status)
        self.job_status, self.txn = job_status, txn


class TooManyRunningTxns(Exception):
    """begin() refused: the database already has max_running_txn_num_per_db unfinished txns."""


class TxnBook:
    """Label rules and transaction state on top of the catalog's txn registry (storage only)."""

    def __init__(self, catalog, precommit_timeout_s: float, max_running_txn_num_per_db: int = 1000):
        self.catalog = catalog
        self.precommit_timeout_s = precommit_timeout_s
        self.max_running = max_running_txn_num_per_db
        self.lock = threading.Lock()
        self.precommitted: dict[int, Txn] = {}
        self.running: dict[str, set[int]] = {}     # db -> ids of txns in RUNNING states

    def begin(self, db: str, label: str, timeout_s: int) -> Txn:
        """Register a PREPARE txn. Raises LabelExists when the label is loading, pre-committed or loaded
        (an aborted label may be used again), then TooManyRunningTxns when the database has no slot."""
        with self.lock:
            old = self.catalog.find_txn(db, label=label)
            if old is not None:
                if old.status == "PREPARE":
                    raise LabelExists("RUNNING", old)
                if old.status in ("VISIBLE", "COMMITTED"):
                    raise LabelExists("FINISHED", old)
                if old.status == "PRECOMMITTED":
                    raise LabelExists("PRECOMMITTED", old)
            running = self.running.setdefault(db, set())
            if len(running) >= self.max_running:
                raise TooManyRunningTxns(self.limit_message(db, len(running)))
            txn = Txn(txn_id=self.catalog.next_txn_id(), db=db, label=label, status="PREPARE",
                      prepare_time=time.time(), timeout_ms=timeout_s * 1000)
            self.catalog.add_txn(txn)
            running.add(txn.txn_id)
            return txn

    def limit_message(self, db: str, running: int) -> str:
        """The FE's refusal, as the BE relays it in a Stream Load answer."""
        return (f"[ANALYSIS_ERROR]TStatus: errCode = 2, detailMessage = current running txns on db "
                f"{self.catalog.db_id(db)} is {running}, larger than limit {self.max_running}")

    def _final(self, txn: Txn, status: str, reason: str = "") -> None:
        """Move to VISIBLE or ABORTED (lock held): the txn gives its running slot back."""
        now = time.time()
        txn.status, txn.pending = status, None
        txn.finish_time = now
        if status == "ABORTED":
            txn.reason = txn.err_msg = reason
        else:
            txn.commit_time = txn.commit_time or now
            txn.publish_time = now
        self.precommitted.pop(txn.txn_id, None)
        self.running.get(txn.db, set()).discard(txn.txn_id)

    def abort(self, txn: Txn, reason: str) -> None:
        with self.lock:
            if txn.status in ("PREPARE", "PRECOMMITTED"):
                self._final(txn, "ABORTED", reason)

    def visible(self, txn: Txn, committed_only: bool = False) -> None:
        """Commit; committed_only leaves it COMMITTED (publish pending, still holding its slot)."""
        with self.lock:
            txn.commit_time = time.time()
            if committed_only:
                txn.status = "COMMITTED"
            else:
                self._final(txn, "VISIBLE")

    def precommit(self, txn: Txn, table: str, rows, delete_sign: bool = False) -> None:
        """2PC: the rows wait in the txn, invisible, until commit (or abort / the precommit timeout)."""
        with self.lock:
            txn.status = "PRECOMMITTED"
            txn.precommit_time = time.time()
            txn.pending = (table, rows, delete_sign)
            self.precommitted[txn.txn_id] = txn

    def expire(self) -> None:
        """Abort pre-committed txns nobody committed in time (Doris does the same)."""
        if not self.precommitted:
            return
        cutoff = time.time() - self.precommit_timeout_s
        with self.lock:
            for txn in list(self.precommitted.values()):
                if txn.status == "PRECOMMITTED" and txn.precommit_time <= cutoff:
                    self._final(txn, "ABORTED", "timeout by txn manager")

    def label_state(self, db: str, label: str) -> str:
        """What get_load_state answers: the state of the label's latest txn, UNKNOWN if it has none."""
        self.expire()
        txn = self.catalog.find_txn(db, label=label)
        return "UNKNOWN" if txn is None else txn.status

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
            if st == "ABORTED":
                return False, (f"errCode = 2, detailMessage = transaction [{tid}] is already aborted. "
                               f"abort reason: {txn.reason}")
            if op == "commit":
                if st in ("VISIBLE", "COMMITTED"):
                    return False, f"errCode = 2, detailMessage = transaction [{tid}] is already visible, not pre-committed."
                if st != "PRECOMMITTED":
                    return False, f"errCode = 2, detailMessage = transaction [{tid}] is not pre-committed, status: {st}"
                table, rows, delete_sign = txn.pending or (None, None, False)
                if rows:
                    self.catalog.insert_rows(db, table, rows, delete_sign=delete_sign)
                self._final(txn, "VISIBLE")
                return True, f"transaction [{tid}] commit successfully."
            if st in ("VISIBLE", "COMMITTED"):
                return False, f"errCode = 2, detailMessage = transaction [{tid}] is already {st}, could not abort."
            self._final(txn, "ABORTED", "user abort")
            return True, f"transaction [{tid}] abort successfully."
