"""A real single-node Apache Kafka broker (KRaft, no ZooKeeper, no Docker) for tests, the demo
and benchmarks, plus the few client helpers they share.

The broker jars come from Maven Central through Maven (`python -m tests.stack fetch`, pom.xml
beside this file) into <repo>/.cache/kafka-libs; KafkaBroker fetches them itself when missing so
a test run never depends on a manual step.
"""
from __future__ import annotations

import atexit
import base64
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    from tests.stack.tls import Pki

ROOT = Path(__file__).resolve().parents[2]
POM = Path(__file__).with_name("pom.xml")
LIBS = ROOT / ".cache" / "kafka-libs"
STATE = ROOT / ".stack"

# -- fetching the jars -------------------------------------------------------------------------


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def _marker() -> Path:
    return LIBS / f".fetched-{_pom_digest()}"


def libs_ready() -> bool:
    return _marker().exists()


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if name == "java" and os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if candidate.exists():
            path = str(candidate)
    if not path:
        raise RuntimeError(f"`{name}` not found on PATH: {hint}")
    return path


def java_bin() -> str:
    return _require_tool("java", "install a JDK 17+ (Debian: apt-get install openjdk-17-jdk-headless) "
                                 "or set JAVA_HOME")


def fetch(verbose: bool = True) -> Path:
    """Download the broker jars with Maven unless the jars for this exact pom are already there.

    Fetches into a sibling temp dir and renames it, so an interrupted download never looks done;
    a file lock keeps two concurrent callers (say, two pytest runs) from racing.
    """
    say = print if verbose else (lambda *a, **k: None)
    if libs_ready():
        say(f"kafka jars: up to date in {LIBS.relative_to(ROOT)} (pom {_pom_digest()})")
        return LIBS
    mvn = _require_tool("mvn", "install Maven 3.8+ (Debian: apt-get install maven); it downloads the "
                               "Kafka broker jars from Maven Central")
    java_bin()
    LIBS.parent.mkdir(parents=True, exist_ok=True)
    with open(LIBS.parent / "kafka-libs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs_ready():
            return LIBS
        staging = LIBS.parent / "kafka-libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        say(f"kafka jars: fetching with Maven ({POM.relative_to(ROOT)}) into {LIBS.relative_to(ROOT)} ...",
            flush=True)
        started = time.monotonic()
        cmd = [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
               f"-DoutputDirectory={staging}"]
        proc = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
        if proc.returncode != 0 or not list(staging.glob("kafka_2.13-*.jar")):
            tail = "\n".join(proc.stdout.splitlines()[-30:])
            raise RuntimeError(f"Maven could not fetch the Kafka jars (exit {proc.returncode}); check that "
                               f"Maven Central is reachable and ~/.m2/settings.xml is sane.\n"
                               f"command: {' '.join(cmd)}\n{tail}")
        (staging / _marker().name).write_text(f"pom sha256 prefix {_pom_digest()}\n")
        shutil.rmtree(LIBS, ignore_errors=True)
        staging.rename(LIBS)
        n = len(list(LIBS.glob("*.jar")))
        say(f"kafka jars: {n} jars ready in {LIBS.relative_to(ROOT)} ({time.monotonic() - started:.1f}s)")
    return LIBS


# -- the broker --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding. One in 64 starts
    # with '-', which the storage tool's argument parser takes for an option: draw again.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.common.utils.AppInfoParser=WARN
# The config dumps (hundreds of lines each) would push everything useful out of log_tail().
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.common.config=WARN
log4j.logger.org.apache.kafka.clients.producer.ProducerConfig=WARN
log4j.logger.org.apache.kafka.clients.consumer.ConsumerConfig=WARN
log4j.logger.org.apache.kafka.clients.admin.AdminClientConfig=WARN
"""

# Kills the broker's process group when the Python process that started it goes away without
# running atexit (pytest-timeout's os._exit, SIGKILL): its stdin pipe closes, read() returns.
_WATCHDOG = """
import os, shutil, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
sys.stdin.buffer.read()
pgid, workdir = int(sys.argv[1]), sys.argv[2]
for sig in (signal.SIGTERM, signal.SIGKILL):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        break
    for _ in range(50):
        time.sleep(0.1)
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
if workdir:
    shutil.rmtree(workdir, ignore_errors=True)
"""


SECURE_LISTENERS = ("SASL_PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-512")


@dataclass(frozen=True)
class BrokerSecurity:
    """Extra listeners beside PLAINTEXT (which stays for setup and admin): SASL_PLAINTEXT and
    SASL_SSL accept PLAIN and SCRAM-SHA-512, SSL requires a client certificate (mTLS).

    Every user is both a PLAIN user (JAAS config) and a SCRAM-SHA-512 user (credentials written
    into the metadata log when the storage is formatted, as `kafka-storage format --add-scram`
    does). Passwords must not contain ',', ']' or '"' (the tools' own syntax)."""
    pki: "Pki"
    users: dict[str, str] = field(default_factory=dict)


class KafkaBroker:
    """One KRaft node (broker + controller) on 127.0.0.1, run as a child JVM.

    Ports are picked once (free ports unless given) and kept across restart(), so clients keep
    the same bootstrap. detach=True leaves the JVM running after this Python process exits
    (used by `python -m tests.stack up`); otherwise stop() runs at exit and a watchdog process
    kills the broker even if Python dies abruptly. With `security`, the broker also listens on
    SASL_PLAINTEXT, SSL and SASL_SSL ports (see address()).
    """

    def __init__(self, port: int | None = None, controller_port: int | None = None,
                 data_dir: str | None = None, log_path: str | None = None, *,
                 heap: str = "512m", detach: bool = False, security: BrokerSecurity | None = None):
        self.port = port
        self.security = security
        self.secure_ports: dict[str, int] = {}
        self.controller_port = controller_port
        self._own_dir = data_dir is None
        self.work_dir = Path(data_dir) if data_dir else None
        self.log_path = Path(log_path) if log_path else None
        self.heap = heap
        self.detach = detach
        self.proc: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._atexit = False
        self._log_offset = 0
        self.start_seconds: float | None = None

    @property
    def bootstrap(self) -> str:
        if self.port is None:
            raise RuntimeError("broker not started yet: call start() first")
        return f"127.0.0.1:{self.port}"

    def address(self, listener: str) -> str:
        """host:port of one of the secure listeners (SASL_PLAINTEXT, SSL, SASL_SSL)."""
        if listener not in self.secure_ports:
            raise RuntimeError(f"no {listener} listener: start a broker with security= first")
        return f"127.0.0.1:{self.secure_ports[listener]}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- lifecycle --

    def start(self, timeout: float = 60) -> "KafkaBroker":
        """Format storage (first start only), launch the JVM and wait until metadata answers."""
        if self.running():
            return self
        started = time.monotonic()
        libs = fetch(verbose=False) if libs_ready() else fetch()
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()
        if self.security is not None and not self.secure_ports:
            self.secure_ports = {name: free_port() for name in SECURE_LISTENERS}
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="sinker-kafka-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.log_path is None:
            self.log_path = self.work_dir / "broker.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data_path / "meta.properties").exists()
        self._write_config()
        if fresh:
            self.log_path.write_text("")
            self._format(libs)
        self._launch(libs)
        if not self._atexit and not self.detach:
            atexit.register(self.stop)
            self._atexit = True
        try:
            self._wait_ready(timeout)
        except BaseException:
            self._kill_process()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def kill(self) -> None:
        """Stop the JVM, keep the data: start() brings the broker back on the same ports (an
        outage of any length, where restart() is a quick one)."""
        self._kill_process()

    def restart(self, timeout: float = 60) -> "KafkaBroker":
        """Stop the JVM, keep the data, start again on the same ports (a 'broker restart')."""
        self._kill_process()
        return self.start(timeout)

    def stop(self) -> None:
        """Kill the broker's process group and remove the temp dir; safe to call twice."""
        self._kill_process()
        if self._own_dir and self.work_dir is not None:
            # Keep a log written inside the temp dir only as long as the dir lives.
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None
            if self.log_path is not None and not self.log_path.exists():
                self.log_path = None

    def log_errors(self, n: int = 5) -> str:
        """The first ERROR/FATAL lines of the log: why a broker died is rarely in its tail,
        which is shutdown noise."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        found, take_cause = [], False
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)       # this launch only, not a previous run's shutdown
            for raw in f:
                line = raw.decode("utf-8", "replace")
                if take_cause and not line.startswith(("[", "\t")):
                    found.append("    " + line.rstrip()[:500])   # the exception's own message
                take_cause = False
                if "] ERROR " in line or "] FATAL " in line:
                    if len([x for x in found if x.startswith("[")]) >= n:
                        break
                    found.append(line.rstrip()[:500])
                    take_cause = True
        return "\n".join(found)

    def _explain(self) -> str:
        errors = self.log_errors()
        head = f"first errors:\n{errors}\n" if errors else ""
        return f"{head}log {self.log_path} (tail):\n{self.log_tail()}"

    def log_tail(self, n: int = 80) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no broker log)"
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            lines = deque(f.read().decode("utf-8", "replace").splitlines(), maxlen=n)
        return "\n".join(lines)

    # -- internals --

    @property
    def data_path(self) -> Path:
        return self.work_dir / "data"

    @property
    def config_path(self) -> Path:
        return self.work_dir / "server.properties"

    def _write_config(self) -> None:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_path),
            "num.partitions": "1",
            "auto.create.topics.enable": "true",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",     # one coordinator partition: quick first join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.ms": "-1",                 # tests produce old timestamps; never expire
            "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),  # default 128 MB of a 512 MB heap
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
        }
        if self.security is not None:
            props.update(self._security_props())
        self.config_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.work_dir / "log4j.properties").write_text(LOG4J)

    def _security_props(self) -> dict[str, str]:
        sec = self.security
        keystore = self.work_dir / "broker-keystore.pem"     # PEM keystore: key, then its chain
        keystore.write_text(sec.pki.broker_key.read_text() + sec.pki.broker_cert.read_text())
        extra = {name: f"127.0.0.1:{port}" for name, port in self.secure_ports.items()}
        props = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port},"
                         + ",".join(f"{n}://{a}" for n, a in extra.items()),
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
                                    + ",".join(f"{n}://{a}" for n, a in extra.items()),
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                                              + ",".join(f"{n}:{n}" for n in extra),
            "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(sec.pki.ca_cert),
            "listener.name.ssl.ssl.client.auth": "required",
        }
        plain_users = " ".join(f'user_{u}="{pw}"' for u, pw in sec.users.items())
        for listener in ("sasl_plaintext", "sasl_ssl"):
            props[f"listener.name.{listener}.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};")
            props[f"listener.name.{listener}.scram-sha-512.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;")
        return props

    def _java(self, libs: Path, main: str, *args: str) -> list[str]:
        return [java_bin(), f"-Xmx{self.heap}", "-Xms64m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j.configuration=file:{self.work_dir / 'log4j.properties'}",
                "-cp", f"{libs}/*", main, *args]

    def _format(self, libs: Path) -> None:
        scram = []
        for user, password in (self.security.users.items() if self.security else ()):
            scram += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={password}]"]
        cmd = self._java(libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(),
                         "-c", str(self.config_path), "--ignore-formatted", *scram)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with open(self.log_path, "a") as log:
            log.write(f"=== storage format: {' '.join(cmd)}\n{proc.stdout}")
        if proc.returncode != 0:
            raise RuntimeError(f"formatting Kafka storage in {self.data_path} failed "
                               f"(exit {proc.returncode}):\n{proc.stdout[-3000:]}")

    def _launch(self, libs: Path) -> None:
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"=== starting broker 127.0.0.1:{self.port} (controller {self.controller_port})\n"
                      .encode())
            log.flush()
            self.proc = subprocess.Popen(self._java(libs, "kafka.Kafka", str(self.config_path)),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=str(self.work_dir), start_new_session=True)
        if not self.detach:
            workdir = str(self.work_dir) if self._own_dir else ""
            self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(self.proc.pid), workdir],
                                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True)

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient
        deadline = time.monotonic() + timeout
        last_error: object = "port not open"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Kafka broker exited with code {self.proc.returncode} while starting; "
                                   f"{self._explain()}")
            if _port_open(self.port):
                try:
                    admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], request_timeout_ms=3000,
                                             bootstrap_timeout_ms=3000)
                    try:
                        brokers = admin.describe_cluster().get("brokers") or []
                        admin.list_topics()
                    finally:
                        admin.close()
                    if brokers:
                        return
                    last_error = "metadata lists no live broker yet"
                except Exception as exc:  # noqa: BLE001 - any client error means "not yet"
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise RuntimeError(f"Kafka broker did not become ready on {self.bootstrap} within {timeout:.0f}s "
                           f"(last: {last_error});\n{self._explain()}")

    def _kill_process(self, grace: float = 10.0) -> None:
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            if self._watchdog.stdin:
                self._watchdog.stdin.close()
            self._watchdog = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        kill_group(proc.pid, grace if proc.poll() is None else 0, child=proc)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def kill_group(pgid: int, grace: float = 10.0, child: subprocess.Popen | None = None) -> bool:
    """SIGTERM a process group (Kafka shuts down cleanly), SIGKILL it after `grace` seconds.
    `child` is the group leader when it is our own child: polling it reaps the zombie, which
    would otherwise keep the group alive. Returns False when there was no such group."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if child is not None:
            child.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


# -- client helpers ----------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 30,
                 configs: dict[str, str] | None = None) -> None:
    """Create a topic (no-op if it exists) and wait until every partition has a leader;
    ``configs`` are topic configs such as ``{"max.message.bytes": "20000"}``."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError
    admin = KafkaAdminClient(bootstrap_servers=[bootstrap])
    try:
        try:
            admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=dict(configs or {}))])
        except TopicAlreadyExistsError:
            pass
        admin.wait_for_topics([topic], timeout_ms=int(timeout * 1000))
        found = len(admin.describe_topics([topic])[0]["partitions"])
        if found < partitions:
            raise RuntimeError(f"topic {topic!r} exists with {found} partitions, not {partitions}: "
                               f"use a new topic name")
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, values: Iterable[bytes],
            partition: int | Callable[[int], int] | None = None,
            key: bytes | Callable[[int], bytes | None] | None = None,
            timestamp_ms: int | None = None) -> int:
    """Send every value (bytes) and flush; returns the count, raises if any send failed.

    Sends are pipelined (no per-message .get()): errors are collected by callbacks and raised
    after flush, so a million small messages take seconds, not minutes. `partition` and `key` may
    be callables of the message index.
    """
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=[bootstrap], acks="all", linger_ms=5,
                             batch_size=256 * 1024, compression_type=None,
                             max_request_size=4 * 1024 * 1024)
    errors: list[BaseException] = []
    count = 0
    part_fn = partition if callable(partition) else None
    key_fn = key if callable(key) else None
    try:
        for i, value in enumerate(values):
            fut = producer.send(topic, value=value,
                                key=key_fn(i) if key_fn else key,
                                partition=part_fn(i) if part_fn else partition,
                                timestamp_ms=timestamp_ms)
            fut.add_errback(errors.append)
            count += 1
        producer.flush()
    finally:
        producer.close()
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} messages to {topic!r} failed; first: "
                           f"{type(errors[0]).__name__}: {errors[0]}")
    return count
