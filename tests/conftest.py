"""Session fixtures for the real test stack: one Kafka broker and one Doris emulator per run, and
a second, secure broker for the TLS/SASL tests.

Both are started lazily (only when a test asks for them), so unit tests need neither a JVM nor
the emulator. A broker that cannot start FAILS the tests that need it: a skipped integration
suite looks green and hides exactly the bugs it exists to catch.
"""
from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A suite started in the background by a shell without job control (`make test &`, nohup, some
# CI runners) inherits SIGINT ignored, and so would every process it starts: `sinker top` then
# sleeps through the Ctrl-C test_live_view sends it. Deliver SIGINT as a terminal would.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
KAFKA_TEST_LOG = ROOT / ".stack" / "kafka-test.log"
SECURE_KAFKA_TEST_LOG = ROOT / ".stack" / "kafka-secure-test.log"

_brokers: dict = {}   # the session's KafkaBrokers by log name, for the failure-report hook


def _start_broker(broker, log_path, name):
    try:
        broker.start(timeout=90)
    except Exception as exc:  # noqa: BLE001 - any failure here must fail, not skip, the tests
        broker.stop()
        pytest.fail(f"could not start the {name}: {exc}\n(log: {log_path}; `make setup` fetches "
                    f"the jars; SINKER_TEST_KAFKA=host:port uses your own plaintext broker)",
                    pytrace=False)


@pytest.fixture(scope="session")
def kafka_broker():
    """The session's KafkaBroker, or None when SINKER_TEST_KAFKA names an external broker."""
    if os.environ.get("SINKER_TEST_KAFKA"):
        yield None
        return
    from tests.stack.kafka import KafkaBroker
    KAFKA_TEST_LOG.parent.mkdir(exist_ok=True)
    broker = KafkaBroker(log_path=str(KAFKA_TEST_LOG))
    _start_broker(broker, KAFKA_TEST_LOG, "test Kafka broker")
    _brokers["kafka broker"] = broker
    try:
        yield broker
    finally:
        _brokers.pop("kafka broker", None)
        broker.stop()


@pytest.fixture(scope="session")
def secure_kafka(tmp_path_factory):
    """A second broker, started only when a security test asks for it (always our own, even with
    SINKER_TEST_KAFKA): SASL_PLAINTEXT and SASL_SSL with PLAIN and SCRAM-SHA-512 users, SSL that
    requires a client certificate, and PLAINTEXT for test setup (broker.bootstrap). Its CA and
    certificates are made with openssl for this session; the user "sinker" gets a fresh random
    password, so a test can look for it in sinker's output."""
    from tests.stack.kafka import BrokerSecurity, KafkaBroker
    from tests.stack.tls import make_test_pki
    pki = make_test_pki(tmp_path_factory.mktemp("kafka-pki"),
                        client_key_password=f"key-{uuid.uuid4().hex}")
    users = {"sinker": f"pw-{uuid.uuid4().hex}"}
    SECURE_KAFKA_TEST_LOG.parent.mkdir(exist_ok=True)
    broker = KafkaBroker(log_path=str(SECURE_KAFKA_TEST_LOG), security=BrokerSecurity(pki, users))
    _start_broker(broker, SECURE_KAFKA_TEST_LOG, "secure test Kafka broker")
    _brokers["secure kafka broker"] = broker
    try:
        yield broker
    finally:
        _brokers.pop("secure kafka broker", None)
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
    if report.failed and "integration" in item.path.parts:
        for name, broker in list(_brokers.items()):
            report.sections.append((f"{name} log (tail)", broker.log_tail(60)))
