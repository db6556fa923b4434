"""Durable dead-letter outputs: ``FileSink`` (JSON lines, fsync'ed) and ``KafkaSink`` (a topic,
acks=all, with a spill file for records the topic cannot take); ``open_sink`` picks one from the
config."""
from __future__ import annotations

import logging
import os
import stat
import threading
import time

from .config import DeadLetterConfig, KafkaConfig
from .dead_letter import DeadLetter, to_json, truncated_json
from .errors import ConfigError, KafkaUnavailable, SinkerError
from .observability.logs import Sampler

# -- durable sinks ------------------------------------------------------------------------------
# The writer calls ``write`` then ``flush`` before it confirms a batch; ``flush`` returning means
# the dead letters survive a crash (fsync / acks=all). Any failure raises, so no offset past a
# dead letter that was not made durable can ever be committed.

log = logging.getLogger("sinker.dead_letter")

LOG_VALUE_CHARS = 200          # at most this much of a message value goes into a log line
# When the broker's limit for the topic cannot be read (no DescribeConfigs permission, the topic
# is auto-created later), assume a little under Kafka's default max.message.bytes (1048588).
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
# Room kept for what Kafka adds around one record's value: the record batch header (61 bytes),
# the record's own varints and attributes; the key is counted separately.
RECORD_OVERHEAD_BYTES = 256


class _DeadLetterLog:
    """One WARNING line per dead letter, at most ``per_minute`` a minute (0: none); the lines left
    out are counted in the next one that passes, and at close."""

    KEY = ("dead letters",)

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute = max(0, int(per_minute))
        self.sampler = Sampler(self.per_minute, clock=clock)

    def dead_letter(self, dl: DeadLetter, table: str, where: str) -> None:
        if self.per_minute == 0:
            return
        before = self.sampler.allow(self.KEY)
        if before is None:
            return
        self._report(before)
        value = "" if dl.value is None else bytes(dl.value[:LOG_VALUE_CHARS]).decode("utf-8",
                                                                                     "replace")
        log.warning("dead letter for %s -> %s: %s[%d]@%d: %s; value: %.200s", table, where,
                    dl.topic, dl.partition, dl.offset, dl.reason, value)

    def _report(self, suppressed: int) -> None:
        if suppressed:
            log.warning("%d more dead letters were not logged in the last minute (limit "
                        "dead_letter.log_per_minute=%d); all of them are in the dead-letter output",
                        suppressed, self.per_minute)

    def finish(self) -> None:
        self._report(self.sampler.take_suppressed(self.KEY))


class FileSink:
    """Append-only JSON-lines file; ``flush()`` returns once the lines are fsync'ed.

    Dead letters hold raw message payloads, so sinker creates the file (and a directory it has to
    make for it) readable by its own user only; the mode of a file that exists is the operator's
    choice and is left alone, with a warning when group or others may read it."""

    def __init__(self, path: str, log_per_minute: int = 10):
        self.path = path
        self._log = _DeadLetterLog(log_per_minute)
        self._lock = threading.Lock()
        self._dirty = False
        self._failed: BaseException | None = None
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, mode=0o700, exist_ok=True)
            created = not os.path.exists(path)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._f = os.fdopen(fd, "ab", buffering=1024 * 1024)
            if created:
                _fsync_dir(parent)     # the new file's name must survive a crash too
            mode = os.fstat(fd).st_mode
        except OSError as e:
            raise ConfigError(f"cannot open the dead-letter file {path}: {e}; fix "
                              "dead_letter.path or its directory's permissions") from e
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            log.warning("the dead-letter file %s is readable by group or others (mode %04o) and "
                        "holds raw message payloads: run chmod 600 %s unless that is intended",
                        path, stat.S_IMODE(mode), path)

    def write(self, dead: list[DeadLetter], table: str) -> None:
        if not dead:
            return
        data = b"".join(to_json(dl, table) + b"\n" for dl in dead)
        with self._lock:
            self._check()
            try:
                self._f.write(data)
            except BaseException as e:
                self._failed = e
                raise
            self._dirty = True
        for dl in dead:
            self._log.dead_letter(dl, table, self.path)

    def flush(self) -> None:
        # The lock is held through fsync so that a caller who finds nothing dirty knows an
        # earlier flush covering its lines has completed.
        with self._lock:
            self._check()
            if not self._dirty:
                return
            try:
                self._f.flush()
                os.fsync(self._f.fileno())
            except BaseException as e:
                self._failed = e
                raise
            self._dirty = False

    def close(self) -> None:
        try:
            if self._failed is None:
                self.flush()
        finally:
            self._log.finish()
            with self._lock:
                if not self._f.closed:
                    try:
                        self._f.close()
                    except OSError:
                        pass   # flush above already raised what matters

    def _check(self) -> None:
        """After a failed write or fsync the file may be missing lines: refuse to go on."""
        if self._failed is not None:
            raise OSError(f"the dead-letter file {self.path} failed earlier ({self._failed}); "
                          "lines may be missing, so no more batches are confirmed. Fix the disk "
                          "and restart: uncommitted messages are read again.")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return   # some platforms cannot open directories; the file data is still fsync'ed
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class KafkaSink:
    """Dead letters as messages of a Kafka topic; ``flush()`` waits for acks=all on every send.

    A record larger than the topic accepts (``max.message.bytes``, read at start) would fail the
    send and, with it, every restart. Such a record is written in full to ``spill_path`` (a
    ``FileSink``) and the topic gets it with the value cut to fit, ``value_truncated: true`` and
    ``spilled_to`` naming that file."""

    def __init__(self, topic: str, kafka_cfg: KafkaConfig, log_per_minute: int = 10,
                 spill_path: str = "dead-letters.jsonl"):
        if not topic:
            raise ConfigError("dead_letter.type is kafka but dead_letter.topic is empty: name the "
                              "topic that receives dead letters")
        from .kafka_client import open_producer, topic_max_message_bytes
        self.topic = topic
        self.spill_path = spill_path
        self._spill: FileSink | None = None        # opened at the first record too large
        self._log = _DeadLetterLog(log_per_minute)
        self._lock = threading.Lock()
        self._pending: list = []
        self._failed: BaseException | None = None
        self._flush_timeout_s = max(30.0, 4 * kafka_cfg.request_timeout_ms / 1000.0)
        limit = topic_max_message_bytes(kafka_cfg, topic)
        if limit is None:
            log.warning("could not read max.message.bytes of the dead-letter topic %s; assuming "
                        "%d bytes (records larger than that are spilled to %s)", topic,
                        DEFAULT_MAX_MESSAGE_BYTES, spill_path)
            limit = DEFAULT_MAX_MESSAGE_BYTES
        self.max_message_bytes = limit
        try:
            self._producer = open_producer(kafka_cfg, acks="all", retries=10, linger_ms=5,
                                           enable_idempotence=True,
                                           max_in_flight_requests_per_connection=5,
                                           max_request_size=limit,
                                           batch_size=min(16384, limit))
        except SinkerError:
            raise                       # already says what to check (refused login, no broker)
        except Exception as e:  # noqa: BLE001 - kafka-python raises several types here
            raise KafkaUnavailable(f"cannot start the dead-letter producer for topic {topic}: "
                                   f"{e}; check kafka.brokers and the topic") from e

    def write(self, dead: list[DeadLetter], table: str) -> None:
        if not dead:
            return
        with self._lock:
            self._check()
            for dl in dead:
                key = f"{dl.topic}:{dl.partition}:{dl.offset}".encode("utf-8")
                value = self._fitted(dl, table, self.max_message_bytes - RECORD_OVERHEAD_BYTES
                                     - len(key))
                try:
                    fut = self._producer.send(self.topic, key=key, value=value)
                except Exception as e:  # noqa: BLE001
                    self._failed = e
                    raise KafkaUnavailable(f"could not send a dead letter to topic {self.topic}: "
                                           f"{e}") from e
                self._pending.append(fut)
        for dl in dead:
            self._log.dead_letter(dl, table, f"topic {self.topic}")

    def _fitted(self, dl: DeadLetter, table: str, room: int) -> bytes:
        """The record for the topic: in full when it fits, else spilled and cut."""
        line = to_json(dl, table)
        if len(line) <= room:
            return line
        if self._spill is None:
            self._spill = FileSink(self.spill_path, log_per_minute=0)
        self._spill.write([dl], table)
        log.warning("dead letter %s[%d]@%d is %d bytes, more than topic %s accepts (%d): written "
                    "in full to %s, sent with its value cut", dl.topic, dl.partition, dl.offset,
                    len(line), self.topic, self.max_message_bytes, self.spill_path)
        return truncated_json(dl, table, room, self.spill_path)

    def flush(self) -> None:
        # Held through the wait so a caller with nothing pending knows earlier sends are checked.
        with self._lock:
            self._check()
            if self._spill is not None:
                self._spill.flush()      # raises when the disk failed: nothing is confirmed
            if not self._pending:
                return
            pending, self._pending = self._pending, []
            try:
                self._producer.flush(timeout=self._flush_timeout_s)
                for fut in pending:
                    fut.get(timeout=0)
            except Exception as e:  # noqa: BLE001 - any failure means "not durable"
                self._failed = e
                raise KafkaUnavailable(
                    f"dead letters could not be written to topic {self.topic}: {e}. No offset "
                    "past them was committed; fix Kafka and restart.") from e

    def close(self) -> None:
        try:
            if self._failed is None:
                self.flush()
        finally:
            self._log.finish()
            try:
                self._producer.close(timeout=self._flush_timeout_s)
            except Exception as e:  # noqa: BLE001
                log.warning("closing the dead-letter producer: %s", e)
            if self._spill is not None:
                self._spill.close()

    def _check(self) -> None:
        if self._failed is not None:
            raise KafkaUnavailable(f"the dead-letter producer for topic {self.topic} failed "
                                   f"earlier ({self._failed}); restart once Kafka is healthy")


def open_sink(dl_cfg: DeadLetterConfig, kafka_cfg: KafkaConfig) -> FileSink | KafkaSink:
    if dl_cfg.type == "file":
        return FileSink(dl_cfg.path, dl_cfg.log_per_minute)
    if dl_cfg.type == "kafka":
        return KafkaSink(dl_cfg.topic or "", kafka_cfg, dl_cfg.log_per_minute,
                         spill_path=dl_cfg.path)
    raise ConfigError(f"dead_letter.type must be 'file' or 'kafka', not {dl_cfg.type!r}")
