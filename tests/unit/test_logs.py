"""Logging: JSON fields, formats, rotation, sampling (fake clock), redaction, idempotence."""
from __future__ import annotations

import io
import json
import logging
import threading
from dataclasses import replace
from datetime import datetime

import pytest

from sinker_lib.observability import logs
from sinker_lib.config import LoggingConfig
from sinker_lib.config import config_from_dict
from sinker_lib.errors import ConfigError

MINIMAL = {"kafka": {"brokers": ["k1:9092"], "topics": ["events"]}, "doris": {"database": "demo", "table": "events"}}

JSON = LoggingConfig(format="json", sample_per_minute=0)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def clean():
    yield
    logs.reset_logging()
    logs.forget_secrets()


def lines(stream):
    return [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]


def in_thread(name, fn):
    t = threading.Thread(target=fn, name=name)
    t.start()
    t.join()


def test_json_lines_have_the_fields():
    out = io.StringIO()
    logs.setup_logging(JSON, out)
    in_thread("writer-3", lambda: logging.getLogger("sinker.writer").warning("loaded %d rows", 5))
    [doc] = lines(out)
    assert set(doc) == {"ts", "level", "logger", "thread", "msg"}
    assert doc["level"] == "warning" and doc["logger"] == "sinker.writer"
    assert doc["thread"] == "writer-3" and doc["msg"] == "loaded 5 rows"
    assert doc["ts"].endswith("Z")
    assert datetime.fromisoformat(doc["ts"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_json_exception_field():
    out = io.StringIO()
    logs.setup_logging(JSON, out)
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("sinker.x").exception("failed")
    [doc] = lines(out)
    assert doc["msg"] == "failed"
    assert "Traceback" in doc["exc"] and "ValueError: boom" in doc["exc"]


def test_level_from_config():
    out = io.StringIO()
    logs.setup_logging(replace(JSON, level="warning"), out)
    log = logging.getLogger("sinker.x")
    log.info("hidden")
    log.error("shown")
    assert [d["msg"] for d in lines(out)] == ["shown"]


def test_auto_is_json_off_a_terminal_and_rich_on_one():
    plain = io.StringIO()
    logs.setup_logging(LoggingConfig(format="auto"), plain)
    logging.getLogger("sinker.x").info("hello")
    assert lines(plain)[0]["msg"] == "hello"

    tty = TTY()
    logs.setup_logging(LoggingConfig(format="auto"), tty)
    in_thread("batcher", lambda: logging.getLogger("sinker.x").info("hello there"))
    text = tty.getvalue()
    assert "hello there" in text and "batcher" in text
    assert not text.lstrip().startswith("{")


def test_console_forced_shows_thread_name():
    out = io.StringIO()
    logs.setup_logging(LoggingConfig(format="console"), out)
    in_thread("consumer", lambda: logging.getLogger("sinker.c").info("polled"))
    assert "[consumer]" in out.getvalue() and "polled" in out.getvalue()


def test_calling_twice_does_not_duplicate_lines():
    first, second = io.StringIO(), io.StringIO()
    logs.setup_logging(JSON, first)
    logs.setup_logging(JSON, second)
    logs.setup_logging(JSON, second)
    logging.getLogger("sinker.x").info("once")
    assert first.getvalue() == ""
    assert [d["msg"] for d in lines(second)] == ["once"]


def test_kafka_logger_at_warning():
    out = io.StringIO()
    logs.setup_logging(replace(JSON, level="debug"), out)
    logging.getLogger("kafka.conn").info("chatter")
    logging.getLogger("kafka.conn").warning("broker down")
    assert [(d["logger"], d["msg"]) for d in lines(out)] == [("kafka.conn", "broker down")]


def test_file_rotation(tmp_path):
    path = tmp_path / "logs" / "sinker.log"
    cfg = replace(JSON, output="file", file=str(path), max_bytes=400, backups=2)
    logs.setup_logging(cfg)
    log = logging.getLogger("sinker.x")
    for i in range(60):
        log.info("line %03d with some padding to fill the file", i)
    logs.reset_logging()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["sinker.log", "sinker.log.1", "sinker.log.2"]
    for p in path.parent.iterdir():
        for text in p.read_text().splitlines():
            assert json.loads(text)["logger"] == "sinker.x"
        assert p.stat().st_size <= 400
    assert json.loads(path.read_text().splitlines()[-1])["msg"].startswith("line 059")


def test_both_outputs_console_format_file_is_plain_text(tmp_path):
    path = tmp_path / "sinker.log"
    out = io.StringIO()
    logs.setup_logging(LoggingConfig(format="console", output="both", file=str(path)), out)
    in_thread("writer-0", lambda: logging.getLogger("sinker.w").info("to both"))
    logs.reset_logging()
    text = path.read_text()
    assert "[writer-0] sinker.w: to both" in text and "INFO" in text
    assert "to both" in out.getvalue()


def test_file_output_needs_a_file():
    """config.py is the one validator: setup_logging is only ever given a checked config."""
    with pytest.raises(ConfigError, match="logging.file"):
        config_from_dict({**MINIMAL, "logging": {"output": "file"}})


@pytest.mark.parametrize("field,value", [("level", "loud"), ("format", "xml"), ("output", "syslog")])
def test_bad_values_are_config_errors(field, value):
    with pytest.raises(ConfigError, match=f"logging.{field}"):
        config_from_dict({**MINIMAL, "logging": {field: value}})


def test_warn_is_read_as_warning():
    assert config_from_dict({**MINIMAL, "logging": {"level": "WARN"}}).logging.level == "warning"


# -- sampling ----------------------------------------------------------------------------------
def test_sampling_suppresses_and_reports(tmp_path):
    clock, out = Clock(), io.StringIO()
    path = tmp_path / "s.log"
    cfg = replace(JSON, sample_per_minute=3, output="both", file=str(path))
    logs.setup_logging(cfg, out, clock=clock)
    log = logging.getLogger("sinker.w")
    for i in range(10):
        log.warning("load failed for offset %d", i)
        log.info("load failed for offset %d", i)      # another level: its own budget
    log.warning("a different template")
    clock.t = 59.0
    log.warning("load failed for offset %d", 98)      # same window: still suppressed
    clock.t = 61.0
    log.warning("load failed for offset %d", 99)
    msgs = [(d["level"], d["msg"]) for d in lines(out)]
    assert msgs == [
        ("warning", "load failed for offset 0"), ("info", "load failed for offset 0"),
        ("warning", "load failed for offset 1"), ("info", "load failed for offset 1"),
        ("warning", "load failed for offset 2"), ("info", "load failed for offset 2"),
        ("warning", "a different template"),
        ("warning", "load failed for offset 99 (suppressed 8 similar)"),
    ]
    logs.reset_logging()
    # the file got the same lines: one decision per record, not one per handler
    assert [json.loads(x)["msg"] for x in path.read_text().splitlines()] == [m for _, m in msgs]


def test_sampler_unit_and_disabled():
    clock = Clock()
    s = logs.Sampler(2, clock=clock)

    def rec(msg="m %s"):
        return logging.LogRecord("sinker.a", logging.ERROR, __file__, 1, msg, ("x",), None)

    assert [s.filter(rec()) for _ in range(4)] == [True, True, False, False]
    clock.t = 60.0
    r = rec()
    assert s.filter(r) and r.sinker_suppressed == 2
    assert all(logs.Sampler(0).filter(rec()) for _ in range(100))


# -- redaction ---------------------------------------------------------------------------------
class Catch(logging.Handler):
    """Stands for any handler someone else adds (pytest's caplog, a library's)."""

    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_secrets_are_masked_in_msg_args_and_exceptions():
    out, catch = io.StringIO(), Catch()
    logs.setup_logging(JSON, out)
    logs.register_secret("hunter2-pw")
    root = logging.getLogger()
    root.addHandler(catch)
    try:
        log = logging.getLogger("sinker.stream_load")
        log.warning("auth with hunter2-pw failed")
        log.warning("auth with %s failed for %s", "hunter2-pw", "root")
        log.warning("config: %(pw)s", {"pw": "xhunter2-pwx"})
        log.warning("redirect to %s", "http://root:hunter2-pw@be1:8040/api/db/t/_stream_load")
        log.warning("got %s", RuntimeError("server said hunter2-pw"))
        try:
            raise ConnectionError("login hunter2-pw rejected")
        except ConnectionError:
            log.exception("load failed")
    finally:
        root.removeHandler(catch)
    text = out.getvalue()
    assert "hunter2" not in text
    msgs = [d["msg"] for d in lines(out)]
    assert msgs[:5] == ["auth with *** failed", "auth with *** failed for root", "config: x***x",
                        "redirect to http://***@be1:8040/api/db/t/_stream_load", "got server said ***"]
    assert "ConnectionError: login *** rejected" in lines(out)[5]["exc"]
    # a handler we did not install never saw the secret either
    fmt = logging.Formatter()
    assert len(catch.records) == 6
    for r in catch.records:
        assert "hunter2" not in fmt.format(r)


def test_url_userinfo_is_masked_without_a_registered_secret():
    out = io.StringIO()
    logs.setup_logging(JSON, out)
    logging.getLogger("sinker.x").info("brokers sasl://alice:s3cret@k1:9093 and http://fe:8030/x@y")
    assert lines(out)[0]["msg"] == "brokers sasl://***@k1:9093 and http://fe:8030/x@y"


def test_redact_function():
    logs.register_secret("abc")
    logs.register_secret("abcdef")       # longer first: masked whole
    logs.register_secret("")             # ignored
    assert logs.redact("x abcdef y abc") == "x *** y ***"
