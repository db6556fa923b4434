"""Session fixtures for the real test stack: one Kafka broker and one Doris emulator per run.

Both are started lazily (only when a test asks for them), so unit tests need neither a JVM nor
the emulator. A broker that cannot start FAILS the tests that need it: a skipped integration
suite looks green and hides exactly the bugs it exists to catch.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KAFKA_TEST_LOG = ROOT / ".stack" / "kafka-test.log"

_broker = None   # the session's KafkaBroker, for the failure-report hook


@pytest.fixture(scope="session")
def kafka_broker():
    """The session's KafkaBroker, or None when SINKER_TEST_KAFKA names an external broker."""
    global _broker
    if os.environ.get("SINKER_TEST_KAFKA"):
        yield None
        return
    from tests.stack.kafka import KafkaBroker
    KAFKA_TEST_LOG.parent.mkdir(exist_ok=True)
    broker = KafkaBroker(log_path=str(KAFKA_TEST_LOG))
    try:
        broker.start(timeout=90)
    except Exception as exc:  # noqa: BLE001 - any failure here must fail, not skip, the tests
        broker.stop()
        pytest.fail(f"could not start the test Kafka broker: {exc}\n(log: {KAFKA_TEST_LOG}; "
                    f"`make setup` fetches the jars; SINKER_TEST_KAFKA=host:port uses your own broker)",
                    pytrace=False)
    _broker = broker
    try:
        yield broker
    finally:
        _broker = None
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_broker) -> str:
    """host:port of the broker under test (SINKER_TEST_KAFKA, else the session's own broker)."""
    external = os.environ.get("SINKER_TEST_KAFKA")
    return external if external else kafka_broker.bootstrap


@pytest.fixture(scope="session")
def doris():
    """The Doris emulator (FE HTTP, BE HTTP, MySQL protocol) for the whole session."""
    from tests.doris_emulator import DorisEmulator
    emu = DorisEmulator()
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture(autouse=True)
def _clear_doris_faults(request):
    """Faults injected by one test must not leak into the next one."""
    emu = request.getfixturevalue("doris") if "doris" in request.fixturenames else None
    yield
    if emu is not None:
        emu.faults.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the broker log tail to a failed integration test: most Kafka-side puzzles
    (rebalances, coordinator moves, a broker that died) are explained there."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _broker is not None and "integration" in item.path.parts:
        report.sections.append(("kafka broker log (tail)", _broker.log_tail(60)))
