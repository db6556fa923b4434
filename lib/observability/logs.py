"""Logging for a process that runs for months: JSON lines for machines, rich text for people.

Three things matter more than looks:
- secrets never reach a handler: every registered secret, and ``user:password@`` in URLs, is
  replaced by ``***`` when the record is created (message, arguments, exception text), so even
  handlers other libraries or test tools add see only the redacted text;
- a repeated error cannot flood the disk: identical (logger, level, template) records beyond
  ``sample_per_minute`` a minute are dropped, and the next one that passes says how many were;
- every line names its thread, because sinker is a handful of threads handing work on.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone

from ..errors import ConfigError
from ..worker_process import worker_index

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
# libraries whose warnings we want in our format (and whose debug chatter we never want)
QUIET_LOGGERS = ("kafka",)

MASK = "***"
_USERINFO = re.compile(r"(?<=://)[^\s/@:]+:[^\s/@]*@")

_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern | None = None
_installed: list[tuple[logging.Logger, logging.Handler]] = []
_prev_factory = None
_exc_formatter = logging.Formatter()
# fields a log call may pass with extra=: JSON lines carry them as their own keys
STRUCTURED_FIELDS = ("table", "topic", "partition", "label", "rows", "rows_per_s", "loads", "lag",
                     "dead_letters")


# -- redaction ---------------------------------------------------------------------------------
def register_secret(secret: str) -> None:
    """Never log this value: it is replaced by *** in every record from now on."""
    global _secret_re
    if not secret:
        return
    with _lock:
        _secrets.add(str(secret))
        # longest first, so a secret containing another is masked whole
        alts = sorted(_secrets, key=len, reverse=True)
        _secret_re = re.compile("|".join(re.escape(s) for s in alts))
    _install_factory()


def forget_secrets() -> None:
    """For tests: drop every registered secret."""
    global _secret_re
    with _lock:
        _secrets.clear()
        _secret_re = None


def redact(text: str) -> str:
    """``text`` with registered secrets and URL passwords replaced by ***."""
    pat = _secret_re
    if pat is not None:
        text = pat.sub(MASK, text)
    if "://" in text:
        text = _USERINFO.sub(MASK + "@", text)
    return text


def _redact_arg(arg):
    if arg is None or type(arg) in (int, float, bool):
        return arg
    try:
        text = arg if isinstance(arg, str) else str(arg)
    except Exception:  # noqa: BLE001 - an unprintable arg fails later in logging's own way
        return arg
    clean = redact(text)
    return arg if clean == text else clean


def _scrub(record: logging.LogRecord) -> None:
    """Redact a record in place; arguments stay separate so the template keeps its identity."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    elif record.msg is not None:
        clean = redact(str(record.msg))
        if clean != str(record.msg):
            record.msg = clean
    args = record.args
    if isinstance(args, tuple) and args:
        record.args = tuple(_redact_arg(a) for a in args)
    elif isinstance(args, dict) and args:
        record.args = {k: _redact_arg(v) for k, v in args.items()}
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact(_exc_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _install_factory() -> None:
    """Redact at record creation: the only point every handler, ours or not, comes after."""
    global _prev_factory
    with _lock:
        if _prev_factory is not None:
            return
        prev = _prev_factory = logging.getLogRecordFactory()

    def make_record(*args, **kwargs):
        record = prev(*args, **kwargs)
        _scrub(record)
        return record

    logging.setLogRecordFactory(make_record)


# -- sampling ----------------------------------------------------------------------------------
class Sampler(logging.Filter):
    """Lets ``per_minute`` identical records through per minute; counts the rest.

    One instance is shared by all our handlers; the decision is stored on the record so a record
    written to both stdout and a file is counted once.
    """

    WINDOW_S = 60.0
    MAX_KEYS = 10_000

    def __init__(self, per_minute: int, clock=time.monotonic):
        super().__init__()
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple, list] = {}   # key -> [window start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        decided = record.__dict__.get("_sinker_pass")
        if decided is None:
            decided = record._sinker_pass = self._decide(record)
        return decided

    def _decide(self, record) -> bool:
        if self.per_minute <= 0:
            return True
        before = self.allow((record.name, record.levelno, str(record.msg)))
        if before:
            record.sinker_suppressed = before
        return before is not None

    def allow(self, key) -> int | None:
        """None when ``key`` is over its limit this minute (counted); else how many records of
        ``key`` the previous window suppressed (0 mostly), so the caller can say so."""
        now = self.clock()
        with self._lock:
            w = self._windows.get(key)
            if w is None or now - w[0] >= self.WINDOW_S:
                if w is None and len(self._windows) >= self.MAX_KEYS:
                    self._prune(now)
                self._windows[key] = [now, 1, 0]
                return w[2] if w is not None else 0
            if w[1] < self.per_minute:
                w[1] += 1
                return 0
            w[2] += 1
            return None

    def take_suppressed(self, key) -> int:
        """What ``key`` suppressed in its current window, reset (for a last report at close)."""
        with self._lock:
            w = self._windows.get(key)
            if w is None:
                return 0
            n, w[2] = w[2], 0
            return n

    def _prune(self, now: float) -> None:
        old = [k for k, w in self._windows.items() if now - w[0] >= self.WINDOW_S and not w[2]]
        for k in old:
            del self._windows[k]


class KafkaConnectionNoise(logging.Filter):
    """Drops the Kafka clients' records about lost or refused broker connections (kafka-python's,
    and librdkafka's through lib/kafka_client_confluent.py). While a broker is away they log
    several a second, at ERROR; sinker's consumer says it once when no broker has answered for a
    while and once when one is back (lib/consumer.py _watch_broker)."""

    MARKERS = ("KafkaConnectionError", "NodeNotReadyError", "No node available",
               "socket disconnected", "Connection lost", "Connection failed",
               "Marking the coordinator dead", "ECONNREFUSED", "Connection refused",
               # librdkafka
               "Disconnected", "brokers are down", "Failed to resolve", "Receive failed")
    LIBRDKAFKA = "sinker.kafka.librdkafka"

    def filter(self, record: logging.LogRecord) -> bool:
        if (record.name != "kafka" and not record.name.startswith("kafka.")
                and record.name != self.LIBRDKAFKA):
            return True
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a record that cannot render is not ours to drop
            return True
        return not any(m in text for m in self.MARKERS)


def _message(record: logging.LogRecord) -> str:
    msg = record.getMessage()
    n = record.__dict__.get("sinker_suppressed")
    if n:
        msg = f"{msg} (suppressed {n} similar)"
    return msg


# -- formats -----------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (ISO UTC), level, logger, thread, worker (under ``run
    --workers N``), msg, and exc when present."""

    def __init__(self):
        super().__init__()
        self.worker = worker_index()

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
                          .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "thread": record.threadName,
            "msg": redact(_message(record)),
        }
        if self.worker is not None:
            out["worker"] = self.worker
        fields = record.__dict__
        for key in STRUCTURED_FIELDS:
            if key in fields:
                out[key] = fields[key]
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = redact(record.exc_text or self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        if record.stack_info:
            out["stack"] = redact(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Plain lines for files when the console format is asked for (no colours, no wrapping)."""

    def __init__(self, with_time: bool = True):
        super().__init__()
        self.with_time = with_time
        worker = worker_index()
        self.prefix = "" if worker is None else f"worker-{worker}/"

    def format(self, record: logging.LogRecord) -> str:
        head = f"[{self.prefix}{record.threadName}] {record.name}: {_message(record)}"
        if self.with_time:
            ts = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            head = f"{ts.replace('+00:00', 'Z')} {record.levelname:<7} {head}"
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            head = f"{head}\n{record.exc_text}"
        if record.stack_info:
            head = f"{head}\n{record.stack_info}"
        return redact(head)


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _console_handler(stream) -> logging.Handler:
    from rich.console import Console
    from rich.logging import RichHandler
    h = RichHandler(console=Console(file=stream), show_path=False, markup=False, rich_tracebacks=False)
    h.setFormatter(TextFormatter(with_time=False))   # rich adds time and level columns
    return h


def _stream_handler(fmt: str, stream) -> logging.Handler:
    if fmt == "auto":
        fmt = "console" if _is_tty(stream) else "json"
    if fmt == "console":
        return _console_handler(stream)
    h = logging.StreamHandler(stream)
    h.setFormatter(JsonFormatter())
    return h


def _file_handler(cfg) -> logging.Handler:
    try:
        parent = os.path.dirname(os.path.abspath(cfg.file))
        os.makedirs(parent, exist_ok=True)
        # dead-letter log lines carry the start of payloads: the file is the owner's only
        os.close(os.open(cfg.file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        h = logging.handlers.RotatingFileHandler(cfg.file, maxBytes=cfg.max_bytes,
                                                 backupCount=cfg.backups, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot open log file {cfg.file}: {e}; check logging.file and its "
                          "directory's permissions") from e
    # files are read by machines unless the user asked for the console format explicitly
    h.setFormatter(TextFormatter() if cfg.format == "console" else JsonFormatter())
    return h


# -- setup -------------------------------------------------------------------------------------
def setup_logging(cfg, stream=None, *, clock=time.monotonic) -> None:
    """Configure the "sinker" logger (and kafka-python's at WARNING). Safe to call again."""
    level = LEVELS[cfg.level]          # config.py validated level, format and output

    handlers = []
    if cfg.output in ("file", "both"):
        handlers.append(_file_handler(cfg))
    if cfg.output in ("stdout", "both"):
        handlers.append(_stream_handler(cfg.format, stream if stream is not None else sys.stdout))
    sampler = Sampler(cfg.sample_per_minute, clock=clock)
    noise = KafkaConnectionNoise()
    for h in handlers:
        h.addFilter(noise)
        h.addFilter(sampler)

    _install_factory()
    with _lock:
        old = list(_installed)
        _installed.clear()
    for logger, h in old:
        logger.removeHandler(h)
        try:
            h.close()
        except Exception:  # noqa: BLE001 - a handler that cannot close must not stop a restart
            pass
    loggers = [(logging.getLogger("sinker"), level)]
    loggers += [(logging.getLogger(name), logging.WARNING) for name in QUIET_LOGGERS]
    with _lock:
        for logger, lvl in loggers:
            logger.setLevel(lvl)
            for h in handlers:
                logger.addHandler(h)
                _installed.append((logger, h))


def reset_logging() -> None:
    """For tests: remove the handlers setup_logging added."""
    with _lock:
        old = list(_installed)
        _installed.clear()
    for logger, h in old:
        logger.removeHandler(h)
        h.close()
