"""The single binary: build it with PyInstaller from build.spec and use it against the test stack."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration.support import ROOT, stack_config, unique, write_config
from tests.stack.kafka import create_topic, produce


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    work = tmp_path_factory.mktemp("pyinstaller")
    dist = work / "dist"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "pyinstaller"), "--noconfirm", "--clean",
                           "--distpath", str(dist), "--workpath", str(work / "build"),
                           str(ROOT / "build.spec")], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    exe = dist / "sinker"
    assert exe.is_file()
    return exe


def run(exe, *args):
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def test_binary_help_version_describe_and_dry_run(binary, tmp_path, kafka_bootstrap, doris):
    r = run(binary, "--help")
    assert r.returncode == 0 and "Usage: sinker" in r.stdout
    r = run(binary, "version")
    assert r.returncode == 0 and r.stdout.startswith("sinker 0.1.0")
    topic, db, table = unique("bin"), unique("db"), unique("t")
    create_topic(kafka_bootstrap, topic, 1)
    doris.query(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    doris.query(f"CREATE TABLE `{db}`.`{table}` (id BIGINT NOT NULL, name VARCHAR(8) NULL) "
                "DUPLICATE KEY(id) DISTRIBUTED BY HASH(id) BUCKETS 1")
    produce(kafka_bootstrap, topic, [json.dumps({"id": 7, "name": "seven"}).encode()])
    path = write_config(tmp_path, stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table))
    r = run(binary, "schema", "describe", "-c", str(path), "--format", "json")
    assert r.returncode == 0, r.stderr
    assert [c["name"] for c in json.loads(r.stdout)["columns"]] == ["id", "name"]
    r = run(binary, "dry-run", "-c", str(path), "--from", "earliest", "--limit", "5", "--wait", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "7\tseven\n"
    # the bundled librdkafka: the same dry run on kafka.client confluent-kafka
    cfg = stack_config(tmp_path, kafka_bootstrap, doris, topic, db, table)
    cfg["kafka"]["client"] = "confluent-kafka"
    path = write_config(tmp_path, cfg, "confluent.yaml")
    r = run(binary, "dry-run", "-c", str(path), "--from", "earliest", "--limit", "5", "--wait", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "7\tseven\n"
