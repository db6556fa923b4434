"""TLS and SASL for sinker's Kafka clients: the one SSL context they share, a preflight login that
turns a refused password or an untrusted certificate into an immediate, precise error, and the
translation of what kafka-python's constructors raise.

Why a preflight: kafka-python 3.0 retries every failed bootstrap connection for
``bootstrap_timeout_ms`` (30 s) and then raises ``KafkaTimeoutError("Unable to bootstrap ...")``
without the cause. A failed TLS verification is only logged, and a refused SASL login is not even
seen: the broker sends its error response and closes, and kafka-python 3.0.12 drops bytes that
arrive together with the close (``net/transport.py``), so it reports "socket disconnected". One
connection of our own, with the same SSL context, reads the broker's answer (a few ms when all is
well) and names the mechanism and user, or the CA file, in the error.
"""
from __future__ import annotations

import re
import socket
import ssl
import struct

from kafka import errors as kafka_errors

from .config import KafkaConfig
from .errors import ConfigError, KafkaRefused, KafkaUnavailable, SinkerError

TLS_PROTOCOLS = ("SSL", "SASL_SSL")
PREFLIGHT_TIMEOUT_S = 10.0
MAX_RESPONSE = 1 << 20          # a preflight answer is tiny; more means it is not Kafka talking

_API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 18, 17, 36
_UNSUPPORTED_SASL_MECHANISM = 33
_HOSTPORT = re.compile(r"^\[?(.*?)\]?:(\d+)$")


class _Unexpected(Exception):
    """The broker said something the preflight does not understand: leave it to kafka-python."""


# -- the SSL context -----------------------------------------------------------------------------
def ssl_context(cfg: KafkaConfig) -> ssl.SSLContext | None:
    """The context of every TLS connection sinker makes to Kafka, with kafka-python's own defaults
    (TLS >= 1.2, certificate always verified, the system CAs unless ssl_cafile is given). The
    client key is decrypted once, here, so a wrong key password fails before any connection."""
    if cfg.security_protocol not in TLS_PROTOCOLS:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = cfg.ssl_check_hostname
    try:
        if cfg.ssl_cafile:
            ctx.load_verify_locations(cfg.ssl_cafile)
        else:
            ctx.load_default_certs()
    except (ssl.SSLError, OSError) as e:
        raise ConfigError(f"kafka.ssl_cafile {cfg.ssl_cafile}: cannot load CA certificates from it "
                          f"({e}): give a PEM file of the CA certificates") from None
    if cfg.ssl_certfile:
        try:
            # a callable, not None: OpenSSL would otherwise prompt on the terminal for a password
            ctx.load_cert_chain(cfg.ssl_certfile, cfg.ssl_keyfile,
                                password=cfg.ssl_key_password or (lambda: b""))
        except (ssl.SSLError, OSError) as e:
            given = ("with the key password given" if cfg.ssl_key_password
                     else "without a key password")
            raise ConfigError(
                f"cannot load the Kafka client certificate kafka.ssl_certfile {cfg.ssl_certfile} "
                f"with kafka.ssl_keyfile {cfg.ssl_keyfile} {given} ({e}): check that both are PEM, "
                "that the key belongs to the certificate and, for an encrypted key, "
                "kafka.ssl_key_password (env SINKER_KAFKA_SSL_KEY_PASSWORD)") from None
    return ctx


# -- the preflight login -------------------------------------------------------------------------
def preflight(cfg: KafkaConfig, context: ssl.SSLContext | None) -> None:
    """Connect and log in once to the first broker that accepts a TCP connection, as the real
    client will. Raises KafkaRefused when the broker refuses us or we refuse its certificate.
    Returns quietly when no broker accepts a connection or an answer is not understood: that is
    for kafka-python to retry and report."""
    if cfg.security_protocol == "PLAINTEXT":
        return
    timeout = min(PREFLIGHT_TIMEOUT_S, cfg.request_timeout_ms / 1000)
    for broker in cfg.brokers:
        m = _HOSTPORT.match(broker)
        if not m:
            continue
        host = m.group(1)
        try:
            sock = socket.create_connection((host, int(m.group(2))), timeout=timeout)
        except OSError:
            continue
        try:
            _login(cfg, context, sock, host, broker)
        except (_Unexpected, OSError):   # not ssl.SSLError: _login turns those into KafkaRefused
            pass
        return


def _login(cfg: KafkaConfig, context, sock, host: str, broker: str) -> None:
    try:
        if context is not None:
            try:
                sock = context.wrap_socket(sock, server_hostname=host)
            except ssl.SSLCertVerificationError as e:
                raise KafkaRefused(_untrusted(cfg, broker, e)) from None
            except ssl.SSLError as e:
                raise KafkaRefused(_tls_failed(cfg, broker, e)) from None
        try:
            if cfg.security_protocol.startswith("SASL_"):
                _sasl(cfg, sock, broker)
            else:
                _request(sock, _API_VERSIONS, 0, 1, cfg.client_id, b"", broker)
        except ssl.SSLError as e:    # TLS 1.3: a rejected client certificate shows on first read
            raise KafkaRefused(_tls_failed(cfg, broker, e)) from None
    finally:
        sock.close()


def _sasl(cfg: KafkaConfig, sock, broker: str) -> None:
    from kafka.net.sasl import get_sasl_mechanism   # kafka-python's PLAIN/SCRAM message builders
    mechanism = cfg.sasl_mechanism
    r = _Reader(_request(sock, _SASL_HANDSHAKE, 1, 1, cfg.client_id, _string(mechanism), broker))
    error, offered = r.int16(), [r.string() for _ in range(r.int32())]
    if error == _UNSUPPORTED_SASL_MECHANISM:
        raise KafkaRefused(
            f"Kafka broker {broker} does not accept SASL mechanism {mechanism} on this listener "
            f"(it offers {', '.join(offered) or 'none'}): set kafka.sasl_mechanism to one of them")
    if error:
        raise _Unexpected(f"SaslHandshake error {error}")
    client = get_sasl_mechanism(mechanism)(sasl_mechanism=mechanism,
                                           sasl_plain_username=cfg.sasl_username,
                                           sasl_plain_password=cfg.sasl_password)
    correlation = 2
    while not client.is_done():
        token = client.auth_bytes()
        r = _Reader(_request(sock, _SASL_AUTHENTICATE, 0, correlation, cfg.client_id,
                             struct.pack(">i", len(token)) + token, broker))
        correlation += 1
        error, message, server_bytes = r.int16(), r.string(), r.bytes()
        if error:
            raise KafkaRefused(_login_refused(cfg, broker, message or f"error code {error}"))
        try:
            client.receive(server_bytes)
        except (ValueError, KeyError) as e:    # SCRAM: the server did not prove it knows us
            raise KafkaRefused(_login_refused(cfg, broker, f"the server's SCRAM answer is not "
                                                           f"valid ({e})")) from None
    if not client.is_authenticated():
        raise KafkaRefused(_login_refused(cfg, broker, "the broker did not confirm the login"))


def _request(sock, api_key: int, version: int, correlation: int, client_id: str, body: bytes,
             broker: str) -> bytes:
    """Send one request (header v1) and return the response body after its correlation id."""
    cid = client_id.encode("utf-8")
    msg = struct.pack(">hhih", api_key, version, correlation, len(cid)) + cid + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    head = _recv(sock, 4)
    if head[0] in (0x15, 0x16):     # a TLS alert or handshake record: this port speaks TLS
        raise KafkaRefused(f"Kafka broker {broker} answered with TLS: this listener needs "
                           "kafka.security_protocol SSL or SASL_SSL")
    size = struct.unpack(">i", head)[0]
    if not 4 <= size <= MAX_RESPONSE:
        raise _Unexpected(f"response size {size}")
    resp = _recv(sock, size)
    if struct.unpack(">i", resp[:4])[0] != correlation:
        raise _Unexpected("correlation id")
    return resp[4:]


def _recv(sock, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _Unexpected("the broker closed the connection")
        buf += chunk
    return buf


def _string(text: str) -> bytes:
    raw = text.encode("utf-8")
    return struct.pack(">h", len(raw)) + raw


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def _take(self, fmt: str):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise _Unexpected("short response")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def _raw(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Unexpected("short response")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self._raw(n).decode("utf-8", "replace")

    def bytes(self) -> bytes:
        return self._raw(self.int32())


# -- messages ------------------------------------------------------------------------------------
def _trusted(cfg: KafkaConfig) -> str:
    return (f"kafka.ssl_cafile {cfg.ssl_cafile}" if cfg.ssl_cafile
            else "the system's CA certificates (kafka.ssl_cafile is not set)")


def _untrusted(cfg: KafkaConfig, broker: str, e: ssl.SSLCertVerificationError) -> str:
    why = e.verify_message or str(e)
    if "hostname" in why.lower() or "ip address mismatch" in why.lower():
        return (f"the TLS certificate of Kafka broker {broker} does not name that host ({why}; "
                f"CA used: {_trusted(cfg)}): list the brokers by a name their certificate holds")
    return (f"the TLS certificate of Kafka broker {broker} is not trusted ({why}); CA used: "
            f"{_trusted(cfg)}: point kafka.ssl_cafile at the CA that signed the broker's certificate")


def _tls_failed(cfg: KafkaConfig, broker: str, e: ssl.SSLError) -> str:
    reason = getattr(e, "reason", None) or str(e)
    if "CERTIFICATE" in reason.upper() or "UNKNOWN_CA" in reason.upper():
        if cfg.ssl_certfile:
            return (f"Kafka broker {broker} rejected sinker's TLS client certificate "
                    f"kafka.ssl_certfile {cfg.ssl_certfile} ({reason}): the broker's truststore "
                    "must hold the CA that signed it")
        return (f"Kafka broker {broker} requires a TLS client certificate ({reason}): set "
                "kafka.ssl_certfile and kafka.ssl_keyfile")
    return (f"the TLS handshake with Kafka broker {broker} failed ({reason}; CA used: "
            f"{_trusted(cfg)}): check that this listener speaks {cfg.security_protocol}")


def _login_refused(cfg: KafkaConfig, broker: str, why: str) -> str:
    return (f"Kafka broker {broker} refused SASL {cfg.sasl_mechanism} login for user "
            f"{cfg.sasl_username!r} over {cfg.security_protocol}: {why}. Check kafka.sasl_username, "
            "kafka.sasl_password (env SINKER_KAFKA_SASL_PASSWORD) and kafka.sasl_mechanism")


# -- kafka-python's own errors -------------------------------------------------------------------
def client_error(cfg: KafkaConfig, exc: BaseException, what: str) -> SinkerError | None:
    """The typed error for what a kafka-python client constructor raised, or None if unknown.
    `what` names the client in the message ("the Kafka consumer")."""
    if isinstance(exc, kafka_errors.SaslAuthenticationFailedError):
        return KafkaRefused(_login_refused(cfg, ", ".join(cfg.brokers), str(exc)))
    if isinstance(exc, kafka_errors.KafkaTimeoutError):
        return KafkaUnavailable(
            f"{what} could not reach any Kafka broker at {', '.join(cfg.brokers)} "
            f"(security_protocol {cfg.security_protocol}; {exc}): check kafka.brokers, that the "
            "brokers are up, and that the listener speaks that protocol; kafka-python's warnings "
            "above say why each connection failed")
    if isinstance(exc, (ValueError, TypeError, AssertionError, kafka_errors.KafkaConfigurationError)):
        return ConfigError(f"kafka settings rejected by kafka-python: {exc}")
    return None
