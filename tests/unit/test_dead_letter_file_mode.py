"""The dead-letter file holds raw payloads: sinker creates it (and its directory) for its own user
only, and warns about an existing file that group or others may read, without changing it."""
from __future__ import annotations

import logging
import os
import stat

import pytest

from sinker_lib.dead_letter import DeadLetter
from sinker_lib.dead_letter_sinks import FileSink

DL = DeadLetter("events", 0, 1, None, b'{"card":"4111"}', "invalid_json: x")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    """A umask that would give others read access: the file must be private anyway."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_file_and_directory_are_private(tmp_path, open_umask, caplog):
    path = tmp_path / "made" / "dead.jsonl"
    sink = FileSink(str(path))
    sink.write([DL], "db.t")
    sink.close()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert not [r for r in caplog.records if "readable by group or others" in r.getMessage()]


def test_an_existing_readable_file_is_left_alone_with_a_warning(tmp_path, caplog):
    path = tmp_path / "dead.jsonl"
    path.write_bytes(b"")
    path.chmod(0o644)
    caplog.set_level(logging.WARNING, logger="sinker.dead_letter")
    sink = FileSink(str(path))
    sink.write([DL], "db.t")
    sink.close()
    assert mode(path) == 0o644
    (w,) = [r.getMessage() for r in caplog.records if "readable by group or others" in r.getMessage()]
    assert str(path) in w and "0644" in w and "chmod 600" in w


def test_an_existing_private_file_gets_no_warning(tmp_path, caplog):
    path = tmp_path / "dead.jsonl"
    path.write_bytes(b"")
    path.chmod(0o600)
    FileSink(str(path)).close()
    assert not [r for r in caplog.records if "readable by group or others" in r.getMessage()]
