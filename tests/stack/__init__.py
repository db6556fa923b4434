"""The local test stack: a real Kafka broker (tests.stack.kafka) and the demo (tests.stack.demo)."""
