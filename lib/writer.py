"""Writer threads: load sealed batches into Doris, each under the label fixed at seal time.

Every retry reuses that label, so a retry after an unknown outcome (timeout, reset, 5xx) can never
load the rows twice: Doris answers ``Label Already Exists`` with the earlier job FINISHED, which
the classifier counts as success. Rows Doris rejects for data quality go to the dead-letter
output with Doris's reason and the rest are loaded under a derived label. Dead letters are made
durable before the batch is confirmed to the OffsetTracker, so no commit ever passes a row that is
neither in Doris nor in the dead-letter output.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time

from . import labels, load_result
from .batcher import STOP, Batch
from .config import WriterConfig
from .dead_letter import DeadLetter
from .errors import DorisFatalError, RetriesExhausted, TransportError

log = logging.getLogger("sinker.writer")

MAX_QUALITY_ROUNDS = 5   # each round removes at least one rejected row; more means Doris is confused


def backoff_s(attempt: int, cfg: WriterConfig, busy: bool = False, rng=random.random) -> float:
    """Exponential backoff with full jitter; 'busy' (-235, txn limit) starts from busy_backoff_s."""
    base = cfg.busy_backoff_s if busy else cfg.backoff_initial_s
    cap = max(cfg.backoff_max_s, base)
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    return delay / 2 + rng() * delay / 2


def parse_error_row(line: str) -> tuple[str, str | None]:
    """Split one ErrorURL line into (reason, source line). Doris prints
    ``Reason: <why>. src line [<row>]; `` (older builds omit the source line)."""
    text = line.strip()
    src = None
    i = text.find("src line [")
    if i >= 0:
        j = text.rfind("]")
        if j > i:
            src = text[i + len("src line ["):j]
        reason = text[:i].strip()
    else:
        reason = text
    if reason.startswith("Reason:"):
        reason = reason[len("Reason:"):].strip()
    return reason.rstrip(". ") or "rejected by Doris", src


class WriterThread(threading.Thread):
    def __init__(self, index: int, cfg: WriterConfig, inq: queue.Queue, loader, sink, tracker,
                 obs, shutdown, *, on_schema_error=None, sleep=None, on_loaded=None):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.cfg = cfg
        self.inq = inq
        self.loader = loader
        self.sink = sink
        self.tracker = tracker
        self.metrics, self.health, self.accounting = obs.metrics, obs.health, obs.accounting
        self.shutdown = shutdown      # lifecycle.Shutdown: aborted = give up now
        self.on_schema_error = on_schema_error
        self.on_loaded = on_loaded
        self._sleep = sleep or shutdown.wait_abort
        self.error: BaseException | None = None

    def run(self):
        try:
            while not self.shutdown.aborted:
                try:
                    item = self.inq.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is STOP:
                    self.inq.put(STOP)   # let the other writers see it too
                    return
                self.deliver(item)
        except BaseException as e:  # noqa: BLE001 - the pipeline decides the exit
            self.error = e
            log.error("%s stopped: %s", self.name, e)

    # -- one batch ------------------------------------------------------------------------------
    def deliver(self, batch: Batch) -> None:
        if batch.rows:
            self._load(batch)
        if batch.dead:
            self.sink.write(batch.dead, batch.full_name)
            self.metrics.observe_dead_letters(batch.full_name, batch.dead)
        self.sink.flush()      # durable before the offsets covering them may be committed
        self.tracker.confirm(batch.seq)
        self.accounting.dead_lettered(len(batch.dead))
        self.health.progress()
        if self.on_loaded is not None:
            self.on_loaded(batch, time.time())

    def _load(self, batch: Batch) -> None:
        self.metrics.loads_in_flight(+1)
        try:
            self._load_part(batch, batch.label, batch.lines, batch.nbytes, batch.rows)
        finally:
            self.metrics.loads_in_flight(-1)

    def _load_part(self, batch: Batch, label: str, lines, nbytes: int, rows: int) -> None:
        """Load these lines of the batch under ``label`` until Doris has them (or they are dead
        letters). Retries reuse the label; each data-quality round gets a label derived from it."""
        base = label
        attempt = 0
        quality_rounds = 0
        schema_refreshed = False
        while True:
            if self.shutdown.aborted:
                raise RetriesExhausted(f"gave up loading batch {label}: sinker is stopping")
            t0 = time.monotonic()
            try:
                resp = self.loader.load(batch.db, batch.table, label, lines, nbytes, batch.headers)
                outcome = load_result.classify(resp.http_status, resp.body, None)
                body = resp.body
            except TransportError as e:
                outcome = load_result.classify(None, None, e)
                body = None
            self.metrics.observe_load(batch.full_name, outcome.reason, body, time.monotonic() - t0)
            kind = outcome.kind
            if kind == load_result.SUCCESS:
                self.health.doris_ok()
                self._dead_letter_filtered(batch, body)
                self.accounting.loaded(rows - self._filtered_count(body))
                return
            if kind == load_result.PRECOMMITTED:
                # a two-phase load under our label holds exactly these rows: commit it
                self.health.doris_ok()
                self._commit_precommitted(batch, label, body)
                self.accounting.loaded(rows)
                return
            if kind == load_result.DATA_QUALITY:
                self.health.doris_ok()
                quality_rounds += 1
                if quality_rounds > MAX_QUALITY_ROUNDS:
                    raise RetriesExhausted(
                        f"Doris keeps rejecting rows of batch {batch.label} after "
                        f"{MAX_QUALITY_ROUNDS} rounds: {outcome.message}")
                split = self._split_rejected(batch, lines, body, outcome)
                if split is None:
                    # Doris did not say which rows (no ErrorURL, or rows we cannot match):
                    # halve until each rejected row stands alone
                    self._bisect(batch, base, lines, body, outcome)
                    return
                lines, nbytes, rows = split
                label = labels.retry_label(base, quality_rounds)
                if not lines:
                    return
                attempt = 0
                continue
            if kind == load_result.FATAL:
                self.health.doris_ok()
                if outcome.reason == "column_not_found" and not schema_refreshed \
                        and self.on_schema_error is not None:
                    schema_refreshed = True
                    self.on_schema_error()
                    continue
                raise DorisFatalError(
                    f"Doris refused batch {label} for {batch.full_name}: {outcome.message} "
                    f"({outcome.reason}). {_fatal_hint(outcome.reason)}")
            # RETRY, WAIT, BACKOFF: same label, bounded
            if outcome.reason in ("connection", "timeout") or kind == load_result.RETRY:
                self.health.doris_error(outcome.message)
            attempt += 1
            self.metrics.observe_retry(batch.full_name, outcome.reason)
            if attempt > self.cfg.max_retries:
                raise RetriesExhausted(
                    f"could not load batch {label} into {batch.full_name} after "
                    f"{self.cfg.max_retries} retries; last error: {outcome.message}. Nothing past "
                    "it was committed: a restart re-reads it (same label, so no duplicates).")
            delay = backoff_s(attempt, self.cfg, busy=(kind == load_result.BACKOFF))
            log.warning("load %s: %s (%s); retry %d/%d in %.1fs", label, outcome.reason,
                        outcome.message, attempt, self.cfg.max_retries, delay)
            self._sleep(delay)

    # -- data quality ---------------------------------------------------------------------------
    @staticmethod
    def _filtered_count(body) -> int:
        try:
            return int((body or {}).get("NumberFilteredRows") or 0)
        except (TypeError, ValueError):
            return 0

    def _rejected(self, body) -> list[tuple[str, str | None]]:
        url = (body or {}).get("ErrorURL")
        if not url:
            return []
        try:
            return [parse_error_row(x) for x in self.loader.fetch_error_rows(url) if x.strip()]
        except Exception as e:  # noqa: BLE001 - handled by the caller as "cannot identify rows"
            log.warning("could not fetch Doris's rejected rows from the ErrorURL: %s", e)
            return []

    def _pair_lines(self, batch: Batch, lines: list[bytes]):
        """Re-map the batch's records to pair each body line with its Kafka record (rare path)."""
        alive = set(lines) if lines is not batch.lines else None
        pairs = []
        for records in batch.sources:
            for rec in records:
                line = batch.mapper.line_for(rec)
                if line is not None and (alive is None or line in alive):
                    pairs.append((line, rec))
        return pairs

    def _split_rejected(self, batch: Batch, lines, body, outcome):
        """(kept lines, bytes, rows) without the rows Doris's ErrorURL names, which become dead
        letters; None when the ErrorURL is missing or names no line of this body."""
        rejected = self._rejected(body)
        by_src: dict[str, str] = {src: reason for reason, src in rejected if src is not None}
        if not by_src:
            return None
        keep, dead = [], []
        for line, rec in self._pair_lines(batch, lines):
            text = line.decode("utf-8", "replace").rstrip("\n")
            reason = by_src.get(text)
            if reason is None:
                keep.append(line)
            else:
                dead.append(DeadLetter(rec.topic, rec.partition, rec.offset, rec.timestamp,
                                       rec.value, f"doris_rejected: {reason}", None))
        if not dead:
            return None
        self._dead_letter(batch, dead)
        log.warning("batch %s: Doris rejected %d rows; they went to the dead-letter output, "
                    "loading the other %d", batch.label, len(dead), len(keep))
        return keep, sum(len(x) for x in keep), len(keep)

    def _bisect(self, batch: Batch, label: str, lines, body, outcome) -> None:
        """Doris refused these lines without saying which: load each half under its own derived
        label; a single refused line is a dead letter with Doris's reason. Costs about
        2·log2(n) extra loads per bad row, and only on this rare path."""
        pairs = self._pair_lines(batch, lines)
        if len(pairs) != len(lines):
            raise RetriesExhausted(
                f"Doris rejected rows of batch {batch.label} ({outcome.message}) and they could "
                "not be matched to Kafka records; nothing was committed past this batch. Inspect "
                f"{(body or {}).get('ErrorURL') or 'the Doris BE log'} and fix the data or the table.")
        if len(pairs) == 1:
            rec = pairs[0][1]
            why = next((r for r, _ in self._rejected(body)), None) or outcome.message
            self._dead_letter(batch, [DeadLetter(rec.topic, rec.partition, rec.offset, rec.timestamp,
                                                 rec.value, f"doris_rejected: {why}", None)])
            log.warning("batch %s: Doris rejected the row at %s[%d]@%d: %s", batch.label,
                        rec.topic, rec.partition, rec.offset, why)
            return
        mid = len(lines) // 2
        for tag, part in (("h0", lines[:mid]), ("h1", lines[mid:])):
            self._load_part(batch, labels.derived_label(label, tag), part,
                            sum(len(x) for x in part), len(part))

    def _dead_letter(self, batch: Batch, dead: list) -> None:
        self.sink.write(dead, batch.full_name)
        self.metrics.observe_dead_letters(batch.full_name, dead)
        self.accounting.dead_lettered(len(dead))

    def _dead_letter_filtered(self, batch: Batch, body) -> None:
        """With max_filter_ratio > 0 Doris may succeed yet drop rows: record them, never silently."""
        if self._filtered_count(body) <= 0:
            return
        rejected = self._rejected(body)
        by_src = {src: reason for reason, src in rejected if src is not None}
        dead = [DeadLetter(rec.topic, rec.partition, rec.offset, rec.timestamp, rec.value,
                           f"doris_filtered: {by_src[line.decode('utf-8', 'replace').rstrip(chr(10))]}",
                           None)
                for line, rec in self._pair_lines(batch, batch.lines)
                if line.decode("utf-8", "replace").rstrip("\n") in by_src]
        if dead:
            self._dead_letter(batch, dead)

    def _commit_precommitted(self, batch: Batch, label: str, body) -> None:
        txn = (body or {}).get("TxnId")
        answer = self.loader.commit_2pc(batch.db, txn if txn else label, "commit")
        if load_result.classify_2pc(answer) != load_result.SUCCESS:
            raise RetriesExhausted(f"could not commit pre-committed load {label}: {answer}")


def _fatal_hint(reason: str) -> str:
    return {
        "auth": "Check doris.user and SINKER_DORIS_PASSWORD, and that the user has LOAD privilege.",
        "table_not_found": "Create the table in Doris or fix doris.database / doris.table.",
        "column_not_found": "The table lacks a column the body names: check mapping.columns.",
    }.get(reason, "Fix the cause and restart; nothing past this batch was committed.")
