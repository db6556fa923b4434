"""The data-path end-to-end files run once per Kafka client (``kafka.client``), against the real
broker: the ``kafka_client`` fixture sets the client stack_config() writes into every config."""
from __future__ import annotations

import pytest

from tests.integration import support

CLIENTS = ("kafka-python", "confluent-kafka")
# run, failures, exactly-once, replay, dry-run, check, workers, topic patterns; the security and TLS files stay
# on the default client (the confluent option mapping has its own tests in test_kafka_security)
ON_BOTH_CLIENTS = {"test_run_e2e", "test_run_failures", "test_exactly_once", "test_commands",
                   "test_check", "test_workers", "test_replay_markers", "test_bad_input_e2e",
                   "test_kafka_outage", "test_cdc", "test_routes", "test_topics_pattern"}
BROKERS = {"kafka_bootstrap", "own_broker"}     # the fixtures of tests that run sinker on Kafka


def pytest_generate_tests(metafunc):
    if (metafunc.module.__name__.rsplit(".", 1)[-1] in ON_BOTH_CLIENTS
            and BROKERS & set(metafunc.fixturenames)):
        metafunc.parametrize("kafka_client", CLIENTS, indirect=True)


@pytest.fixture(autouse=True)
def kafka_client(request):
    client = getattr(request, "param", support.DEFAULT_CLIENT)
    support.kafka_client = client
    yield client
    support.kafka_client = support.DEFAULT_CLIENT
