"""deploy/: the Dockerfile, the Kubernetes manifests and the systemd unit agree with sinker and
with each other.

A wrong port in a probe restarts healthy pods; a grace period shorter than the drain kills sinker
mid-commit; a Secret key the Deployment does not reference leaves a password unset; a stop signal
sent to both the bootloader and sinker makes sinker exit without committing. None of that shows
before production, so it is checked here, offline (no Docker, no cluster, no systemd as PID 1).
"""
from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from sinker_lib.config import ENV_VARS, SECRETS, Config, config_from_dict, load_config
from sinker_lib.errors import ConfigError, DorisFatalError

MINIMAL_FOR_LISTEN = {"kafka": {"brokers": ["k1:9092"], "topics": ["t"]}, "doris": {"database": "d", "table": "t"}}

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "sinker.service"

# The oldest Kubernetes the manifests promise to work on, and the newest schema the installed
# kubernetes-validate ships (so an API removed since then fails here too).
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
# Kinds that kubernetes-validate has no schema for: checked by hand below.
CUSTOM_KINDS = {"ServiceMonitor", "Kustomization"}
# After shutdown_timeout_s, sinker gives the consumer up to this long to commit and leave the
# group (Pipeline._drain: self.consumer.join(30)); a stop timeout must cover both.
CONSUMER_CLOSE_S = 30
BINARY = "/usr/local/bin/sinker"
CONFIG_PATH = "/etc/sinker/config.yaml"


# -- loading --------------------------------------------------------------------------------------
def manifest_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def k8s_docs() -> dict[str, dict]:
    """Every manifest by kind (one of each kind here)."""
    docs = {}
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] not in docs, f"two {doc['kind']} manifests"
            docs[doc["kind"]] = doc
    return docs


@pytest.fixture(scope="module")
def k8s() -> dict[str, dict]:
    return k8s_docs()


@pytest.fixture(scope="module")
def pod(k8s) -> dict:
    return k8s["Deployment"]["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod) -> dict:
    (c,) = pod["containers"]
    return c


@pytest.fixture(scope="module")
def cm_config_text(k8s) -> str:
    return k8s["ConfigMap"]["data"]["config.yaml"]


def pod_env(container: dict, secret: dict) -> dict[str, str]:
    """The environment a pod gets: literal values, and secretKeyRefs resolved from the Secret."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            ref = e["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], e["name"]
            env[e["name"]] = secret["stringData"][ref["key"]]
    return env


@pytest.fixture(scope="module")
def cm_config(k8s, container, cm_config_text) -> Config:
    return config_from_dict(yaml.safe_load(cm_config_text), env=pod_env(container, k8s["Secret"]))


def container_port(container: dict, port) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                       comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str                      # systemd keys are case-sensitive
    parser.read_string(UNIT.read_text())
    return parser


def stages() -> list[list[dict]]:
    """The Dockerfile's instructions, one list per FROM (comments left out)."""
    out: list[list[dict]] = []
    for ins in DockerfileParser(path=str(DOCKERFILE)).structure:
        if ins["instruction"] == "FROM":
            out.append([])
        if ins["instruction"] != "COMMENT":
            out[-1].append(ins)
    return out


def instructions(stage: list[dict], name: str) -> list[str]:
    return [i["value"] for i in stage if i["instruction"] == name]


# -- Kubernetes: schemas --------------------------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_validates_strictly(path, version):
    for doc in yaml.safe_load_all(path.read_text()):
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_a_misspelt_field(k8s):
    """So a typo in a manifest fails the test above instead of being dropped by the API server."""
    doc = json.loads(json.dumps(k8s["Deployment"]))
    doc["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 90
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


def test_every_core_kind_is_there(k8s):
    assert {"ConfigMap", "Secret", "Deployment", "PodDisruptionBudget", "Service",
            "ServiceMonitor", "Kustomization"} <= set(k8s)


def test_service_monitor_selects_the_service_and_its_metrics_port(k8s):
    sm, svc = k8s["ServiceMonitor"], k8s["Service"]
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"} and sm["metadata"]["name"]
    labels = svc["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    assert sm["spec"]["endpoints"], "a ServiceMonitor without endpoints scrapes nothing"
    for ep in sm["spec"]["endpoints"]:
        assert set(ep) <= {"port", "path", "interval", "scrapeTimeout", "scheme", "relabelings"}
        assert ep["port"] in port_names and ep["path"] == "/metrics"
        assert re.fullmatch(r"\d+[smh]", ep["interval"])
    # deploy/prometheus-rules.yaml selects job="sinker"; the operator names the job after the Service
    assert svc["metadata"]["name"] == "sinker"


def test_kustomization_lists_every_manifest_but_the_secret(k8s):
    kust = k8s["Kustomization"]
    assert kust["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    listed = set(kust["resources"])
    others = {p.name for p in manifest_files()} - {"kustomization.yaml"}
    # applying placeholders over the real passwords would lock sinker out of Doris and Kafka
    assert listed == others - {"secret.yaml"}


# -- Kubernetes: agreement between the manifests and sinker ---------------------------------------
def test_probes_and_ports_use_the_configmap_listen_port(k8s, container, cm_config):
    host, port = cm_config.server.address
    assert host in ("0.0.0.0", "::"), "on 127.0.0.1 the kubelet and Prometheus cannot reach it"
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/health"
    assert probes["startupProbe"]["path"] == "/health"
    assert probes["readinessProbe"]["path"] == "/ready"
    for name, get in probes.items():
        assert container_port(container, get["port"]) == port, name
    svc = k8s["Service"]
    (svc_port,) = svc["spec"]["ports"]
    assert container_port(container, svc_port["targetPort"]) == port
    notes = svc["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/path"] == "/metrics"
    assert int(notes["prometheus.io/port"]) == port


def test_secret_keys_are_the_env_the_deployment_reads_and_lib_config_knows(k8s, container,
                                                                          cm_config):
    secret = k8s["Secret"]
    assert secret["type"] == "Opaque" and "data" not in secret, "a template: stringData only"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert {r["name"] for r in refs.values()} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs.values()} == set(secret["stringData"])
    for name, ref in refs.items():
        assert name in ENV_VARS, f"{name} is not an environment variable sinker reads"
        assert ref["key"] == name
        assert ref.get("optional") is not True, f"{name}: a missing Secret must stop the pod"
    env_for = {target: name for name, target in ENV_VARS.items()}
    # a client-key password only goes with a client key (config.py refuses it alone); the status
    # token only matters when the /debug pages are on
    optional = {("kafka", "ssl_key_password"): bool(cm_config.kafka.ssl_keyfile),
                ("server", "debug_token"): cm_config.server.debug}
    needed = [t for t in SECRETS if optional.get(t, True)]
    for target in needed:
        assert env_for[target] in refs, f"{'.'.join(target)} is not set from the Secret"


def test_configmap_config_loads_with_the_pods_environment(k8s, container, cm_config_text, tmp_path):
    env = pod_env(container, k8s["Secret"])
    path = tmp_path / "config.yaml"
    path.write_text(cm_config_text)
    cfg = load_config(path, env=env)
    assert cfg == config_from_dict(yaml.safe_load(cm_config_text), env=env)
    assert cfg.doris.password == "CHANGE-ME" and cfg.kafka.sasl_password == "CHANGE-ME"
    # no password in the ConfigMap itself
    raw = yaml.safe_load(cm_config_text)
    for section, key in SECRETS:
        assert key not in raw.get(section, {}), f"{section}.{key} belongs in the Secret"
    # what a pod needs: logs on stdout, dead letters somewhere that outlives the pod
    assert (cfg.logging.output, cfg.logging.format) == ("stdout", "json")
    assert cfg.dead_letter.type == "kafka"


def test_configmap_is_what_the_container_reads(k8s, pod, container):
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(Path(CONFIG_PATH).parent)]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == k8s["ConfigMap"]["metadata"]["name"]
    assert Path(CONFIG_PATH).name in k8s["ConfigMap"]["data"]
    assert [*container["command"], *container["args"]] == [BINARY, "run", "-c", CONFIG_PATH]


def test_grace_period_covers_the_drain(pod, cm_config):
    assert pod["terminationGracePeriodSeconds"] > cm_config.shutdown_timeout_s + CONSUMER_CLOSE_S


def test_deployment_replicas_security_and_resources(k8s, pod, container):
    dep = k8s["Deployment"]
    assert dep["spec"]["replicas"] == 3
    labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    for kind in ("PodDisruptionBudget", "Service"):
        spec = k8s[kind]["spec"]
        sel = spec["selector"]["matchLabels"] if kind == "PodDisruptionBudget" else spec["selector"]
        assert sel.items() <= labels.items(), kind
    assert k8s["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    assert pod["enableServiceLinks"] is False, "Service env vars would start with SINKER_"
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    (user,) = instructions(stages()[-1], "USER")
    assert str(sc["runAsUser"]) == user.split(":")[0], "the pod runs as the image's user"
    csc = container["securityContext"]
    assert csc["readOnlyRootFilesystem"] is True and csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    # the one-file binary unpacks itself under /tmp at every start: it must be writable
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in vol and not tmp.get("readOnly")
    res = container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]


# -- Dockerfile -----------------------------------------------------------------------------------
def test_dockerfile_builds_the_binary_in_one_stage_and_ships_only_it():
    build, *_, final = stages()
    assert len(stages()) >= 2
    build_from = build[0]["value"].split()
    assert build_from[0].startswith("python:3.11-slim") and build_from[1:] == ["AS", "build"]
    assert any("pyinstaller --noconfirm --clean build.spec" in r for r in instructions(build, "RUN"))
    assert "python" not in final[0]["value"], "the runtime image carries no Python"
    assert not instructions(final, "ADD")
    copies = [shlex.split(v) for v in instructions(final, "COPY")]
    (workdir,) = instructions(build, "WORKDIR")
    assert copies == [["--from=build", f"{workdir}/dist/sinker", BINARY]]


def test_dockerfile_runtime_user_port_healthcheck_and_stop():
    final = stages()[-1]
    (user,) = instructions(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and uid != "0", "numeric and non-root, so runAsNonRoot can check it"
    (expose,) = instructions(final, "EXPOSE")
    port = int(expose.split("/")[0])
    listen = yaml.safe_load(k8s_docs()["ConfigMap"]["data"]["config.yaml"])["server"]["listen"]
    assert port == config_from_dict({**MINIMAL_FOR_LISTEN, "server": {"listen": listen}},
                                    env={}).server.address.port
    (health,) = instructions(final, "HEALTHCHECK")
    cmd = json.loads(health.split("CMD", 1)[1])
    # -f: curl fails on the 503 that /health answers when sinker is unhealthy
    assert cmd[0] == "curl" and any(re.fullmatch(r"-[a-zA-Z]*f[a-zA-Z]*", a) for a in cmd)
    assert cmd[-1] == f"http://127.0.0.1:{port}/health"
    installs = " ".join(r for r in instructions(final, "RUN") if "apt-get install" in r)
    assert re.search(r"\bcurl\b", installs), "the HEALTHCHECK's tool must be installed"
    assert instructions(final, "STOPSIGNAL") == ["SIGTERM"]
    (entry,) = instructions(final, "ENTRYPOINT")
    assert json.loads(entry) == [BINARY, "run", "-c", CONFIG_PATH], "exec form: no shell in between"


def test_dockerignore_lets_in_what_the_build_copies():
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    assert patterns[0] == "*"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for value in instructions(stages()[0], "COPY"):
        *sources, _dest = shlex.split(value)
        for src in sources:
            assert src.rstrip("/") in allowed, f"{src} is copied but kept out of the context"
            assert (ROOT / src).exists(), src


# -- systemd --------------------------------------------------------------------------------------
def test_unit_stops_sinker_with_one_signal_and_waits_for_the_drain():
    svc = unit()["Service"]
    assert svc["KillMode"] == "mixed", "control-group signals the bootloader and sinker both"
    assert svc["KillSignal"] == "SIGTERM"
    timeout = int(svc["TimeoutStopSec"])
    shipped = load_config(ROOT / "configs" / "config.yaml", env={})
    for shutdown in (shipped.shutdown_timeout_s, Config().shutdown_timeout_s):
        assert timeout > shutdown + CONSUMER_CLOSE_S


def test_unit_restarts_on_failure_but_not_on_errors_a_restart_repeats():
    svc = unit()["Service"]
    assert svc["Restart"] == "on-failure"
    assert {int(x) for x in svc["RestartPreventExitStatus"].split()} == {
        ConfigError.exit_code, DorisFatalError.exit_code} == {2, 3}


def test_unit_runs_the_binary_as_its_own_user_with_secrets_from_a_file():
    svc = unit()["Service"]
    assert shlex.split(svc["ExecStart"]) == [BINARY, "run", "-c", CONFIG_PATH]
    assert svc["User"] not in ("", "root", "0")
    assert svc["EnvironmentFile"].startswith("/etc/sinker/")
    assert "Environment" not in svc, "secrets go in the EnvironmentFile, not in the unit"
    # the one-file binary unpacks itself under /tmp and loads libraries from there
    assert svc["PrivateTmp"] == "yes"
    assert "/tmp" not in svc.get("NoExecPaths", "") and "/tmp" not in svc.get("ReadOnlyPaths", "")
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd's own parser: unknown keys and bad values are reported (the binary path must exist,
    so the copy starts /bin/true instead)."""
    copy = tmp_path / "sinker.service"
    copy.write_text(UNIT.read_text().replace(f"ExecStart={BINARY}", "ExecStart=/bin/true"))
    out = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
                         timeout=60)
    mine = [ln for ln in (out.stdout + out.stderr).splitlines() if "sinker.service" in ln]
    assert out.returncode == 0 and not mine, out.stdout + out.stderr
