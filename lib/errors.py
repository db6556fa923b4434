"""Typed errors. The library raises these; only sinker.py turns them into messages and exit codes.

Exit codes (documented in the README):
  0  done (clean shutdown, or a bounded command finished)
  1  unexpected internal error (a bug: please report with the log)
  2  usage or configuration error (nothing was consumed)
  3  Doris or Kafka refused us for good (Doris: auth, missing table, incompatible schema; Kafka:
     SASL authentication, TLS certificate not trusted or rejected, a configured topic missing):
     fix the server or the config
  4  retries exhausted or a dependency down for too long: nothing past the failure was committed;
     a restart re-reads from the last commit
  5  some messages failed (dry-run / replay / dead-letters resend summary), check found a misfit
     (lib/commands/check.py: check also exits 3 refused, 4 unreachable), or the run was
     interrupted twice
  6  another run of the same replay is still going (its lock is held)
"""
from __future__ import annotations


class SinkerError(Exception):
    """Base class: a message that says what to do next, and an exit code."""
    exit_code = 1


class ConfigError(SinkerError):
    exit_code = 2


class DorisFatalError(SinkerError):
    """Doris refused in a way a retry cannot fix (auth, unknown table, schema mismatch)."""
    exit_code = 3


class SchemaError(DorisFatalError):
    pass


class RetriesExhausted(SinkerError):
    """A batch could not be loaded; nothing past it was committed."""
    exit_code = 4


class TransportError(SinkerError):
    """Connection error or timeout talking to Doris: the outcome of the request is unknown."""
    exit_code = 4


class KafkaRefused(SinkerError):
    """A Kafka broker answered but refused our credentials or TLS certificate, or presented one
    we do not trust: retrying with the same settings cannot help."""
    exit_code = 3


class TopicNotFound(SinkerError):
    """A configured topic does not exist: sinker never creates topics (a mistyped name would
    otherwise be created empty and read forever)."""
    exit_code = 3


class KafkaUnavailable(SinkerError):
    exit_code = 4


class StatusUnavailable(SinkerError):
    """`sinker status`/`top`: the instance's status page cannot be read (not running there?)."""
    exit_code = 4


class Interrupted(SinkerError):
    exit_code = 5


class AlreadyRunning(SinkerError):
    """Another run of the same replay holds its lock (cron overlap)."""
    exit_code = 6
