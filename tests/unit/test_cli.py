"""The CLI layer: every command has help and is documented; library errors become exit codes here only."""
from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

import sinker

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        path = prefix + (name,)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, path)
        else:
            yield path, cmd


def test_every_command_and_option_is_in_the_readme():
    missing = []
    for path, cmd in _commands(sinker.cli):
        usage = "sinker " + " ".join(path)
        if usage not in README:
            missing.append(usage)
        for param in cmd.params:
            if isinstance(param, click.Option):
                longs = [o for o in param.opts if o.startswith("--")]
                if longs and not any(re.search(re.escape(o) + r"\b", README) for o in longs):
                    missing.append(f"{usage} {longs[0]}")
    assert not missing, f"not documented in README.md: {missing}"


def test_every_command_has_help_text():
    for path, cmd in _commands(sinker.cli):
        assert (cmd.help or "").strip(), path
        result = CliRunner().invoke(sinker.cli, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output


def test_config_errors_exit_2_with_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: {topics: [t], brokerz: [x]}\ndoris: {database: d, table: t}\n")
    result = CliRunner().invoke(sinker.cli, ["schema", "describe", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "kafka.brokerz" in result.output and "brokers" in result.output


def test_missing_config_file_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(sinker.cli, ["check", "-c", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml" in result.output


def test_every_command_with_a_config_registers_its_secrets(tmp_path, monkeypatch):
    """Whatever a command prints after loading its config, the passwords in it are masked: each
    one goes through sinker.load, which registers them before returning. A command is stopped
    right after loading (a DorisFatalError raised where its work would start)."""
    from sinker_lib.errors import DorisFatalError
    from sinker_lib.observability import logs
    cfg = tmp_path / "c.yaml"
    cfg.write_text("kafka: {brokers: ['k:9092'], topics: [t]}\ndoris: {database: d, table: t, password: file-pw-1}\n")
    cfg.chmod(0o600)
    env = {"SINKER_KAFKA_SASL_PASSWORD": "env-pw-2", "SINKER_STATUS_TOKEN": "env-tok-3"}
    real_load = sinker.load
    dead = tmp_path / "dead.jsonl"
    dead.write_text("")
    args = {("replay",): ["--from-offset", "0"], ("dead-letters", "resend"): ["--file", str(dead)]}
    commands = [p for p, cmd in _commands(sinker.cli) if any(o.name == "config_path" for o in cmd.params)]
    assert {("run",), ("replay",), ("dry-run",), ("check",), ("schema", "describe")} <= set(commands)
    for path in commands:
        logs.forget_secrets()
        loaded = []

        def spy(*a, **kw):
            loaded.append(real_load(*a, **kw))
            raise DorisFatalError("stopped after load; secrets: file-pw-1 env-pw-2 env-tok-3")
        monkeypatch.setattr(sinker, "load", spy)
        result = CliRunner().invoke(sinker.cli, [*path, "-c", str(cfg), *args.get(path, [])], env=env)
        assert loaded, path
        assert result.exit_code == 3, (path, result.output)
        assert "stopped after load; secrets: *** *** ***" in result.output, (path, result.output)
    logs.forget_secrets()
    logs.reset_logging()


def test_dry_run_prints_headers_as_a_curl_command_that_sends_them_as_sinker_does():
    import shlex
    from sinker_lib.config import config_from_dict
    from sinker_lib.mapping import Mapper
    from sinker_lib.doris_types import Column, parse_type
    cfg = config_from_dict({"kafka": {"brokers": ["k:9092"], "topics": ["t"]},
                            "doris": {"fe_hosts": ["fe1:8030"], "database": "d", "table": "t"}}, env={})
    mapper = Mapper([Column("a", parse_type("int"))], cfg.mapping, timezone="UTC")
    text = sinker._curl_lines(cfg, mapper.headers(), "body.csv")
    words = shlex.split(text.split("\n", 1)[1].replace("\\\n", " "))
    assert words[:5] == ["curl", "--location-trusted", "-u", "root", "-T"]
    sent = dict(w.split(": ", 1) for w in words[words.index("-H") + 1::2] if ": " in w)
    assert sent["column_separator"] == "\\x09" and sent["line_delimiter"] == "\\x0a"
    assert sent["escape"] == "\\" and sent["enclose"] == '"' and sent["max_filter_ratio"] == "0"
    assert words[-1] == "http://fe1:8030/api/d/t/_stream_load"
