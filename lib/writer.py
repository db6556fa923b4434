"""Writer threads: load sealed batches into Doris, each under the label fixed at seal time.

Every retry reuses that label, so a retry after an unknown outcome (timeout, reset, 5xx) can never
load the rows twice: Doris answers ``Label Already Exists`` with the earlier job FINISHED, which
the classifier counts as success. In exactly-once mode a batch is loaded only once its cut points
are recorded in Kafka (lib/offsets.py), so a crash or a rebalance re-forms it under the same label.
A load Doris refuses as overloaded (-235, the transaction limits) goes back to the governor
(lib/governor.py) under its label: its table backs off while this writer loads other tables.

Rows Doris rejects go to the dead-letter output with Doris's reason, every one of them: sinker
always loads with ``max_filter_ratio`` 0 (a load with a rejected row loads nothing), names the
rejected rows from the ErrorURL (at most 50 per answer), dead-letters them and loads the rest under
a derived label, round after round; where Doris names none it halves the rows until each refused
one stands alone; where Doris rejects every row it dead-letters the batch after one round. Body
lines and their Kafka records travel together as pairs through every split. Dead letters are made
durable before the batch is confirmed, so no commit ever passes a row that is neither in Doris
nor in the dead-letter output.

With ``doris.group_commit`` (at-least-once only) the loader sends no label: the batch's label
then only names the load in logs, a retry after an unknown outcome may load the rows twice, and
the label-window accounting is skipped.
"""
from __future__ import annotations

import logging
import queue
import random
import threading
import time

from collections import Counter

from . import dead_letter, labels, load_result
from .batcher import STOP, Batch
from .config import WriterConfig
from .dead_letter import DeadLetter
from .errors import DorisFatalError, RetriesExhausted, TransportError
from .governor import Governor
from .offsets import REVOKED
from .records import identity

log = logging.getLogger("sinker.writer")

# Doris's answer that the table is gone: a route may dead-letter its rows (a column it lacks is
# a schema change, and the batch mapped again after a refresh loads; a bare 404 without Doris's
# answer may come from a proxy: neither is dead-lettered)
TABLE_ERRORS = frozenset(("table_not_found",))


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
    def __init__(self, index: int, cfg: WriterConfig, inq: Governor | queue.Queue | None, loader,
                 sink, tracker, obs, shutdown, *, load_timeout_s: float = 600.0, on_schema_error=None,
                 sleep=None, on_loaded=None, polled_at=time.monotonic, finished=None,
                 label_window=None):
        super().__init__(name=f"writer-{index}", daemon=True)
        self.cfg = cfg
        self.inq = inq
        # fed by the pipeline's governor: a BACKOFF answer hands the batch back to it; resend feeds
        # deliver() itself (and tests pass no queue), so those wait out a backoff here
        self.governor = inq if isinstance(inq, Governor) else None
        self.loader = loader
        self.sink = sink
        self.tracker = tracker
        self.metrics, self.health, self.accounting = obs.metrics, obs.health, obs.accounting
        self.shutdown = shutdown      # lifecycle.Shutdown: aborted = give up now
        self.load_timeout_s = load_timeout_s   # how long a RUNNING label may keep us waiting
        self.polled_at = polled_at    # when the consumer last completed a poll (monotonic)
        self.on_schema_error = on_schema_error
        self.on_loaded = on_loaded
        # replay only (EarlierLoads.finished): labels an earlier run of the same replay finished.
        # Replay writes a batch's dead letters before its rows, so a finished label means both
        # are out and the batch is skipped whole; ``run`` loads first (a batch dropped at a
        # rebalance then wrote nothing its partition's next reader writes again).
        self.finished = finished
        self.label_window = label_window or labels.LabelWindow()   # the pipeline shares one
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
                # free the delivered batch (its records and body) now: the name would keep it
                # alive while the next get() waits, outside the memory budget
                item = None
        except BaseException as e:  # noqa: BLE001 - the pipeline decides the exit
            self.error = e
            log.error("%s stopped: %s", self.name, e)

    # -- one batch ------------------------------------------------------------------------------
    def deliver(self, batch: Batch) -> None:
        handed_back = False
        try:
            self._deliver(batch)
        except _HandedBack:
            handed_back = True     # the governor holds it again, and its memory with it
        finally:
            if batch.budget is not None and not handed_back:
                batch.budget.release(batch)

    def _deliver(self, batch: Batch) -> None:
        if batch.needs_record and not self._recorded(batch):
            self.accounting.rewound(batch.records)   # its partition moved: its reader loads it
            log.debug("batch %s dropped: its partition was revoked before it was recorded", batch.label)
            return
        if self.finished is not None:
            if batch.rows and batch.label in self.finished:
                log.info("batch %s: an earlier run of this replay loaded its %d rows and wrote its "
                         "%d dead letters", batch.label, batch.rows, len(batch.dead),
                         extra=_fields(batch, batch.label, batch.rows))
                self.accounting.loaded(batch.rows)
            else:
                self._write_dead(batch)
                self.sink.flush()
                if batch.rows:
                    self._load(batch)
        else:
            if batch.rows:
                try:
                    self._load(batch)
                except _Revoked as e:
                    self.accounting.rewound(batch.records)
                    log.info("batch %s dropped between retries: its partition moved away", e)
                    return
            self._write_dead(batch)
        self.sink.flush()      # durable before the offsets covering them may be committed
        self.tracker.confirm(batch.seq)
        self.accounting.dead_lettered(len(batch.dead))
        if batch.skipped:
            self.accounting.skipped(batch.skipped)
        self.health.progress()
        if self.on_loaded is not None:
            self.on_loaded(batch, time.time())

    def _write_dead(self, batch: Batch) -> None:
        if batch.dead:
            self.sink.write(batch.dead, batch.full_name)
            self.metrics.observe_dead_letters(batch.full_name, batch.dead)

    def _still_ours(self, batch: Batch, since: float) -> bool:
        """Before retrying after a pause: the consumer must have polled since (a process frozen
        past its session timeout learns it lost the partition in that poll) and the partition
        must still be ours. Doris forgets labels after 2,000 newer loads: a zombie must not
        retry a label its partition's new reader may have loaded long ago."""
        while True:
            if not self.tracker.live(batch.seq):
                return False
            if self.polled_at() > since:
                return True
            if self.shutdown.aborted:
                raise RetriesExhausted(f"gave up loading batch {batch.label}: sinker is stopping")
            time.sleep(0.05)

    def _recorded(self, batch: Batch) -> bool:
        """Wait until the batch's cuts are in Kafka; False when its partition was revoked."""
        while True:
            state = self.tracker.wait_recorded(batch.seq, 0.5)
            if state is not None:
                return state != REVOKED
            if self.shutdown.aborted:
                raise RetriesExhausted(f"gave up loading batch {batch.label}: sinker is stopping")

    def _load(self, batch: Batch) -> None:
        self.metrics.loads_in_flight(+1)
        try:
            self._load_part(batch, batch.label, batch.lines, None)
        finally:
            self.metrics.loads_in_flight(-1)
        if self.governor is not None:
            self.governor.loaded(batch.full_name)

    def _load_part(self, batch: Batch, label: str, lines, pairs) -> None:
        """Load these lines of the batch under ``label`` until Doris has them or they are dead
        letters. ``pairs`` are (line, record) for these lines, made on the first rejection.
        Retries reuse the label; rows loaded after a rejection get a label of their own offsets."""
        attempt = 0
        back = self.governor.handed_back(batch) if self._governed(batch, label) else None
        if back is not None:     # it waited out its table's backoff in the governor
            attempt, since = back
            if batch.needs_record and not self._still_ours(batch, since):
                raise _Revoked(label)
        waited_since = None
        schema_refreshed = False
        while True:
            if self.shutdown.aborted:
                raise RetriesExhausted(f"gave up loading batch {label}: sinker is stopping")
            nbytes = sum(map(len, lines))
            t0 = time.monotonic()
            self.health.load_started(self.name, label, self.loader.deadline_s)
            try:
                resp = self.loader.load(batch.db, batch.table, label, lines, nbytes, batch.headers,
                                        _group_commit(batch))
                outcome = load_result.classify(resp.http_status, resp.body, None)
                body = resp.body
            except TransportError as e:
                outcome = load_result.classify(None, None, e)
                body = None
            finally:
                self.health.load_finished(self.name)
            self.metrics.observe_load(batch.full_name, outcome.reason, body, time.monotonic() - t0)
            if body is not None and _group_commit(batch) in (None, "off"):
                self._label_used(batch.db)    # group commit: Doris labels it, nothing to dedupe
            kind = outcome.kind
            if kind == load_result.SUCCESS:
                self.health.doris_ok()
                self._check_counts(batch, label, body, len(lines), outcome)
                self.accounting.loaded(len(lines))
                return
            if kind == load_result.PRECOMMITTED:
                # a two-phase load under our label holds exactly these rows: commit it
                self.health.doris_ok()
                self._commit_precommitted(batch, label, body)
                self.accounting.loaded(len(lines))
                return
            if kind == load_result.DATA_QUALITY:
                self.health.doris_ok()
                rejected = self._rejected(body)
                if rejected is not None:
                    if pairs is None:
                        pairs = self._pair_lines(batch)
                    keep = self._drop_rejected(batch, pairs, body, outcome, rejected)
                    if keep is None:
                        self._bisect(batch, pairs, body, outcome)
                        return
                    if not keep:
                        return
                    pairs, lines = keep, [line for line, _ in keep]
                    label = _subset_label(batch, keep)
                    attempt = 0
                    continue
                # the ErrorURL could not be read: ask again under the same label, so the path
                # taken (and so the labels of the rows' next loads) does not depend on a fetch
                outcome = outcome._replace(reason="error_url_unreadable")
            if kind == load_result.FATAL:
                self.health.doris_ok()
                if outcome.reason == "column_not_found" and not schema_refreshed \
                        and self.on_schema_error is not None:
                    schema_refreshed = True
                    self.on_schema_error()
                    continue
                if outcome.reason in TABLE_ERRORS and body is not None and batch.target is not None \
                        and batch.target.on_table_error == "dead_letter":
                    self._table_refused(batch, label, pairs, outcome)
                    return
                raise DorisFatalError(
                    f"Doris refused batch {label} for {batch.full_name}: {outcome.message} "
                    f"({outcome.reason}). {_fatal_hint(outcome.reason)}")
            # RETRY, BACKOFF (and an unreadable ErrorURL): same label, bounded
            if outcome.reason in ("connection", "timeout") or kind == load_result.RETRY:
                self.health.doris_error(outcome.message)
            self.metrics.observe_retry(batch.full_name, outcome.reason)
            if outcome.reason == "label_running":
                # an earlier attempt under this label still runs: it ends within Doris's load
                # timeout, one way or the other; wait for it rather than give up
                waited_since = waited_since or time.monotonic()
                if time.monotonic() - waited_since > self.load_timeout_s + 60:
                    raise RetriesExhausted(
                        f"the load under label {label} stayed RUNNING in Doris for more than "
                        f"{self.load_timeout_s + 60:.0f}s; nothing past it was committed")
                delay = backoff_s(1, self.cfg)
            else:
                attempt += 1
                if attempt > self.cfg.max_retries:
                    raise RetriesExhausted(
                        f"could not load batch {label} into {batch.full_name} after "
                        f"{self.cfg.max_retries} retries; last error: {outcome.message}. Nothing "
                        "past it was committed: a restart re-reads it (same label, so no duplicates).")
                if kind == load_result.BACKOFF and self._governed(batch, label):
                    pause = self.governor.hand_back(batch, attempt, outcome.reason,
                                               lambda n: backoff_s(n, self.cfg, busy=True))
                    log.warning("load %s: %s (%s); %s backs off for %.1fs, then retry %d/%d",
                                label, outcome.reason, outcome.message, batch.full_name, pause,
                                attempt, self.cfg.max_retries, extra=_fields(batch, label, batch.rows))
                    raise _HandedBack(label)
                delay = backoff_s(attempt, self.cfg, busy=(kind == load_result.BACKOFF))
            log.warning("load %s: %s (%s); retry %d/%d in %.1fs", label, outcome.reason,
                        outcome.message, attempt, self.cfg.max_retries, delay,
                        extra=_fields(batch, label, batch.rows))
            waited_from = time.monotonic()
            self._sleep(delay)
            if batch.needs_record and not self._still_ours(batch, waited_from):
                raise _Revoked(label)

    def _governed(self, batch: Batch, label: str) -> bool:
        """Whether a BACKOFF answer goes back to the governor (its table backs off, this writer
        takes another batch) rather than waiting here: only for the batch's own label, before
        any row of it is a dead letter (a Fail answer: Doris opened no transaction to keep), and
        not in replay, which writes a batch's dead letters before loading it."""
        return self.governor is not None and self.finished is None and label == batch.label

    def _label_used(self, db: str) -> None:
        """Every answered load is a finished transaction Doris counts towards its label limit."""
        window, warn = self.label_window.observe(db, time.monotonic())
        self.metrics.set_label_window(db, window)
        if warn:
            log.warning("loads into database %s run at a rate where Doris remembers only the last "
                        "%.0f s of labels (label_num_threshold 2000): a batch read again after a "
                        "restart slower than that could load twice. Load bigger batches (batch."
                        "max_rows / max_interval_s) or raise label_num_threshold in Doris.", db, window)

    # -- what Doris answered ----------------------------------------------------------------------
    def _check_counts(self, batch: Batch, label: str, body, sent: int, outcome) -> None:
        """A Success answer must account for every row sent: loaded + filtered + unselected ==
        rows sent (an answer to a retry, ``Label Already Exists``, carries no counts)."""
        counts = [_int(body, k) for k in ("NumberLoadedRows", "NumberFilteredRows",
                                          "NumberUnselectedRows")]
        if outcome.reason == "label_exists" or None in counts:
            return
        loaded, filtered, unselected = counts
        total = _int(body, "NumberTotalRows")
        if filtered or loaded + filtered + unselected != sent or (total is not None and total != sent):
            raise DorisFatalError(
                f"Doris answered Success for batch {label} ({batch.full_name}) but counted "
                f"{loaded} loaded + {filtered} filtered + {unselected} unselected rows of {sent} "
                f"sent (NumberTotalRows {total}): the body and the table disagree (separators? a "
                "`where` or `columns` setting?). Nothing past this batch was committed.")

    def _rejected(self, body) -> list[tuple[str, str | None]] | None:
        """(reason, source line) of each row the ErrorURL names; [] when Doris gave no ErrorURL;
        None when it gave one that could not be read (the caller retries)."""
        url = (body or {}).get("ErrorURL")
        if not url:
            return []
        try:
            return [parse_error_row(x) for x in self.loader.fetch_error_rows(url) if x.strip()]
        except Exception as e:  # noqa: BLE001 - handled by the caller: same label again
            log.warning("could not fetch Doris's rejected rows from the ErrorURL: %s", e)
            return None

    def _pair_lines(self, batch: Batch) -> list:
        """(line, record) for each line of the batch, in order: its lines are the lines of its
        records that mapped, in record order (rare path; every split keeps its pairs)."""
        good = [rec for kept in batch.sources for rec in kept.records()
                if batch.mapper.line_for(rec) is not None]
        if len(good) != len(batch.lines):
            raise RetriesExhausted(
                f"batch {batch.label}: {len(good)} records map to a line now but the body had "
                f"{len(batch.lines)}; cannot tell which rows Doris rejected. Nothing past it was "
                "committed.")
        return list(zip(batch.lines, good))

    def _drop_rejected(self, batch: Batch, pairs, body, outcome, rejected):
        """Dead-letter the rows Doris named and return the pairs to load again; None when Doris
        named none of them (the caller halves). When Doris rejected every row sent, all of them
        are dead letters after this one round."""
        filtered, total = _int(body, "NumberFilteredRows"), _int(body, "NumberTotalRows")
        first_reason = next((r for r, _ in rejected), None) or outcome.message
        if filtered is not None and filtered >= len(pairs) and (total is None or total == len(pairs)):
            self._dead_letter(batch, [self._letter(rec, first_reason) for _, rec in pairs])
            log.warning("batch %s: Doris rejected all %d rows (%s); they went to the dead-letter "
                        "output", batch.label, len(pairs), first_reason,
                        extra=_fields(batch, batch.label, len(pairs)))
            return []
        wanted = Counter(src for _, src in rejected if src is not None)
        why = {src: reason for reason, src in rejected if src is not None}
        keep, dead = [], []
        for line, rec in pairs:
            text = line.decode("utf-8", "replace").rstrip("\n")
            if wanted.get(text):
                wanted[text] -= 1
                dead.append(self._letter(rec, why[text]))
            else:
                keep.append((line, rec))
        if not dead:
            return None
        self._dead_letter(batch, dead)
        log.warning("batch %s: Doris rejected %d rows (of %s it counted); they went to the "
                    "dead-letter output, loading the other %d", batch.label, len(dead),
                    filtered if filtered is not None else "?", len(keep),
                    extra=_fields(batch, batch.label, len(dead)))
        return keep

    def _bisect(self, batch: Batch, pairs, body, outcome) -> None:
        """Doris refused these rows without naming them: load each half under its own derived
        label; a single refused row is a dead letter with Doris's reason. Costs about
        2·log2(n) extra loads per bad row, and only on this rare path."""
        if len(pairs) == 1:
            rec = pairs[0][1]
            why = next((r for r, _ in self._rejected(body) or ()), None) or outcome.message
            self._dead_letter(batch, [self._letter(rec, why)])
            topic, partition, offset, _ts, _value = identity(rec)
            log.warning("batch %s: Doris rejected the row at %s[%d]@%d: %s", batch.label,
                        topic, partition, offset, why,
                        extra=_fields(batch, batch.label, 1))
            return
        mid = len(pairs) // 2
        for part in (pairs[:mid], pairs[mid:]):
            self._load_part(batch, _subset_label(batch, part), [x for x, _ in part], part)

    def _table_refused(self, batch: Batch, label: str, pairs, outcome) -> None:
        """``on_table_error: dead_letter``: the table refuses every load (dropped, a column
        gone), so these rows go to the dead-letter output and the other tables keep flowing."""
        pairs = pairs if pairs is not None else self._pair_lines(batch)
        reason = f"table_error: {outcome.reason}: {outcome.message}"[:500]
        self._dead_letter(batch, [dead_letter.of(rec, reason, None) for _, rec in pairs])
        log.error("batch %s: %s refused the load (%s: %s); its %d rows went to the dead-letter "
                  "output (on_table_error: dead_letter). %s", label, batch.full_name,
                  outcome.reason, outcome.message, len(pairs), _fatal_hint(outcome.reason),
                  extra=_fields(batch, label, len(pairs)))

    @staticmethod
    def _letter(rec, reason: str) -> DeadLetter:
        return dead_letter.of(rec, f"doris_rejected: {reason}")

    def _dead_letter(self, batch: Batch, dead: list) -> None:
        self.sink.write(dead, batch.full_name)
        self.metrics.observe_dead_letters(batch.full_name, dead)
        self.accounting.dead_lettered(len(dead))

    def _commit_precommitted(self, batch: Batch, label: str, body) -> None:
        txn = (body or {}).get("TxnId")
        answer = self.loader.commit_2pc(batch.db, txn if txn else label, "commit")
        if load_result.classify_2pc(answer) != load_result.SUCCESS:
            raise RetriesExhausted(f"could not commit pre-committed load {label}: {answer}")


class _Revoked(Exception):
    """The batch's partition moved away while it was being retried: its next reader loads it."""


class _HandedBack(Exception):
    """The batch went back to the governor while its table backs off; a writer takes it again."""


def _subset_label(batch: Batch, pairs) -> str:
    return labels.subset_label(batch.label, [identity(r)[:3] for _, r in pairs])


def _group_commit(batch: Batch) -> str | None:
    """The batch's table's doris.group_commit (None: the loader's own, a config of one table)."""
    t = batch.target
    return t.cfg.doris.group_commit if t is not None and t.cfg is not None else None


def _int(body, key: str) -> int | None:
    try:
        v = (body or {}).get(key)
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _fatal_hint(reason: str) -> str:
    return {
        "auth": "Check doris.user and SINKER_DORIS_PASSWORD, and that the user has LOAD privilege.",
        "table_not_found": "Create the table in Doris or fix doris.database / doris.table.",
        "column_not_found": "The table lacks a column the body names: check mapping.columns.",
    }.get(reason, "Fix the cause and restart; nothing past this batch was committed.")


def _fields(batch: Batch, label: str, rows: int) -> dict:
    """Structured fields of a log line about a load (JSON logs carry them as keys)."""
    return {"table": batch.full_name, "topic": next(iter(batch.ranges))[0] if batch.ranges else None,
            "partition": sorted({p for _, p in batch.ranges}), "label": label, "rows": rows}
