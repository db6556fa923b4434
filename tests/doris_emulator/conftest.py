"""The emulator tests' shared fixtures: one emulator per test module, with a database `d`; faults
one test injects never leak into the next."""
import pytest

from tests.doris_emulator import DorisEmulator


@pytest.fixture(scope="module")
def emu():
    e = DorisEmulator().start()
    e.query("CREATE DATABASE d")
    yield e
    e.stop()


@pytest.fixture(autouse=True)
def _no_faults_left(request):
    yield
    if "emu" in request.fixturenames:
        request.getfixturevalue("emu").faults.clear()
