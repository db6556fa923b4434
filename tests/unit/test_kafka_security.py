"""The Kafka SSL context, the preflight login against small fake brokers, and how kafka-python's
constructor errors are typed. The real broker's side is in tests/integration/test_kafka_security.py."""
from __future__ import annotations

import shutil
import socket
import ssl
import struct
import threading

import pytest
from kafka import errors as kafka_errors

from sinker_lib.config import KafkaConfig
from sinker_lib.errors import ConfigError, KafkaRefused, KafkaUnavailable
from sinker_lib.kafka_security import client_error, preflight, ssl_context


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available to make test certificates")
    from tests.stack.tls import make_test_pki
    return make_test_pki(tmp_path_factory.mktemp("pki"), client_key_password="unit-key-pw")


def tls_cfg(pki, **kw) -> KafkaConfig:
    base = dict(topics=("t",), security_protocol="SSL", ssl_cafile=str(pki.ca_cert),
                ssl_certfile=str(pki.client_cert), ssl_keyfile=str(pki.client_key),
                ssl_key_password=pki.client_key_password)
    base.update(kw)
    return KafkaConfig(**base)


def test_context_loads_an_encrypted_client_key(pki):
    ctx = ssl_context(tls_cfg(pki))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ssl_context(KafkaConfig(topics=("t",))) is None


@pytest.mark.parametrize("key_password", ["wrong-key-pw", None])
def test_wrong_or_missing_key_password_is_a_config_error(pki, key_password):
    with pytest.raises(ConfigError) as e:
        ssl_context(tls_cfg(pki, ssl_key_password=key_password))
    msg = str(e.value)
    assert str(pki.client_key) in msg and "SINKER_KAFKA_SSL_KEY_PASSWORD" in msg
    assert "wrong-key-pw" not in msg


class FakeBroker:
    """Accepts one connection and answers each request frame with the next canned body
    (correlation id prepended), optionally over TLS."""

    def __init__(self, bodies=(), tls: ssl.SSLContext | None = None):
        self.bodies = list(bodies)
        self.tls = tls
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            for body in self.bodies:
                size = struct.unpack(">i", self._recv(conn, 4))[0]
                req = self._recv(conn, size)
                self.requests.append(req)
                correlation = req[4:8]
                conn.sendall(struct.pack(">i", 4 + len(body)) + correlation + body)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()
            self.sock.close()

    @staticmethod
    def _recv(conn, n):
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf


def string(s: str) -> bytes:
    return struct.pack(">h", len(s)) + s.encode()


def handshake(error: int, *mechanisms: str) -> bytes:
    return struct.pack(">hi", error, len(mechanisms)) + b"".join(string(m) for m in mechanisms)


def sasl_cfg(broker, mechanism="PLAIN") -> KafkaConfig:
    return KafkaConfig(topics=("t",), brokers=(broker.address,), security_protocol="SASL_PLAINTEXT",
                       sasl_mechanism=mechanism, sasl_username="alice", sasl_password="s3cret-pw")


def test_refused_login_names_mechanism_and_user_not_the_password():
    broker = FakeBroker([handshake(0, "PLAIN"),
                         struct.pack(">h", 58) + string("Invalid username or password") + b"\0\0\0\0"])
    with pytest.raises(KafkaRefused) as e:
        preflight(sasl_cfg(broker), None)
    msg = str(e.value)
    assert "SASL PLAIN" in msg and "user 'alice'" in msg and "Invalid username or password" in msg
    assert "s3cret-pw" not in msg
    assert e.value.exit_code == 3


def test_accepted_login_passes():
    broker = FakeBroker([handshake(0, "PLAIN"), struct.pack(">h", 0) + b"\xff\xff" + b"\0\0\0\0"])
    preflight(sasl_cfg(broker), None)
    assert broker.requests[1].endswith(b"alice\0alice\0s3cret-pw")


def test_mechanism_the_listener_does_not_offer():
    broker = FakeBroker([handshake(33, "PLAIN", "SCRAM-SHA-256")])
    with pytest.raises(KafkaRefused, match="does not accept SASL mechanism SCRAM-SHA-512 on this "
                                           r"listener \(it offers PLAIN, SCRAM-SHA-256\)"):
        preflight(sasl_cfg(broker, "SCRAM-SHA-512"), None)


def test_no_broker_listening_is_left_to_kafka_python():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = KafkaConfig(topics=("t",), brokers=(f"127.0.0.1:{port}",), security_protocol="SASL_PLAINTEXT",
                      sasl_mechanism="PLAIN", sasl_username="u", sasl_password="p")
    preflight(cfg, None)      # returns: kafka-python retries and reports "could not reach"


def test_untrusted_certificate_names_the_ca(pki):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.broker_cert, pki.broker_key)
    broker = FakeBroker([b""], tls=server)
    cfg = tls_cfg(pki, brokers=(broker.address,), ssl_cafile=str(pki.other_ca_cert))
    with pytest.raises(KafkaRefused) as e:
        preflight(cfg, ssl_context(cfg))
    assert "is not trusted" in str(e.value)
    assert f"CA used: kafka.ssl_cafile {pki.other_ca_cert}" in str(e.value)


def test_trusted_certificate_passes(pki):
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.broker_cert, pki.broker_key)
    broker = FakeBroker([b"\0\0"], tls=server)          # an ApiVersions answer: no error
    cfg = tls_cfg(pki, brokers=(broker.address,))
    preflight(cfg, ssl_context(cfg))
    assert len(broker.requests) == 1


def test_constructor_errors_are_typed():
    cfg = KafkaConfig(topics=("t",), brokers=("k1:9093",), security_protocol="SASL_SSL",
                      sasl_mechanism="SCRAM-SHA-512", sasl_username="bob", sasl_password="pw")
    down = client_error(cfg, kafka_errors.KafkaTimeoutError("Unable to bootstrap from ['k1:9093']"),
                        "the Kafka consumer")
    assert isinstance(down, KafkaUnavailable) and down.exit_code == 4 and "k1:9093" in str(down)
    refused = client_error(cfg, kafka_errors.SaslAuthenticationFailedError("bad"), "the consumer")
    assert isinstance(refused, KafkaRefused) and "user 'bob'" in str(refused)
    assert isinstance(client_error(cfg, ValueError("x"), "c"), ConfigError)
    assert client_error(cfg, RuntimeError("x"), "c") is None
