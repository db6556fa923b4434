"""Config: YAML + env + overrides into frozen dataclasses; every problem reported at once."""
import dataclasses
from pathlib import Path

import pytest

from sinker_lib.config import (ColumnSource, Config, SchemaColumn, config_from_dict, load_config,
                        redacted)
from sinker_lib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"kafka": {"brokers": ["k1:9092"], "topics": ["events"]}, "doris": {"database": "demo", "table": "events"}}


def build(extra=None, env=None, overrides=None):
    d = {k: dict(v) for k, v in MINIMAL.items()}
    for section, values in (extra or {}).items():
        if isinstance(values, dict) and isinstance(d.get(section), dict):
            d[section].update(values)
        else:
            d[section] = values
    return config_from_dict(d, env=env or {}, overrides=overrides)


def problems(extra=None, **kw):
    with pytest.raises(ConfigError) as e:
        build(extra, **kw)
    return str(e.value).splitlines()


def test_shipped_configs_load():
    prod = load_config(ROOT / "configs" / "config.yaml", env={})
    assert len(prod.doris.fe_hosts) == 3 and prod.doris.database and prod.kafka.topics
    dev = load_config(ROOT / "configs" / "config.dev.yaml", env={})
    assert dev.kafka.brokers == ("127.0.0.1:9092",) and dev.kafka.topics == ("events",)
    assert dev.doris.fe_hosts == ("127.0.0.1",) and dev.doris.http_port == 8030
    assert dev.doris.query_port == 9030
    assert (dev.doris.database, dev.doris.table, dev.mapping.format) == ("demo", "events", "csv")
    assert dev.dead_letter.path == "dead-letters.jsonl" and dev.server.listen == "127.0.0.1:9108"
    assert dev.logging.format == "console"


def test_every_key_of_the_annotated_config_has_a_comment():
    for line in (ROOT / "configs" / "config.yaml").read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and not stripped.startswith("- ") \
                and not stripped.endswith(":"):
            assert "  # " in line, f"no comment: {line!r}"


def test_defaults_and_types():
    cfg = build()
    assert isinstance(cfg, Config)
    assert cfg.kafka.topics == ("events",) and cfg.batch.max_rows == 100_000
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kafka.group_id = "x"


def test_lists_become_tuples_and_ints_fill_floats():
    cfg = build({"kafka": {"brokers": ["a:9092", "b:9092"]}, "batch": {"max_interval_s": 2},
                 "doris": {"fe_hosts": ["fe1", "fe2:8030"]}})
    assert cfg.kafka.brokers == ("a:9092", "b:9092") and cfg.doris.fe_hosts == ("fe1", "fe2:8030")
    assert cfg.batch.max_interval_s == 2.0 and isinstance(cfg.batch.max_interval_s, float)


def test_min_load_interval_is_zero_by_default_and_never_negative():
    assert build().batch.min_load_interval_s == 0.0
    assert build({"batch": {"min_load_interval_s": 2}}).batch.min_load_interval_s == 2.0
    [msg] = problems({"batch": {"min_load_interval_s": -1}})
    assert msg.startswith("batch.min_load_interval_s: must be >= 0") and "got -1" in msg


def test_unknown_key_suggests_the_right_one():
    assert problems({"batch": {"max_row": 10}}) == ["batch.max_row: unknown key (did you mean max_rows?)"]
    assert problems({"kafak": {}}) == ["kafak: unknown key (did you mean kafka?)"]
    [msg] = problems({"writer": {"zzz": 1}})
    assert msg.startswith("writer.zzz: unknown key (valid keys: workers, max_retries")


def test_wrong_types():
    assert problems({"batch": {"max_rows": "ten"}}) == ["batch.max_rows: expected an integer, got 'ten'"]
    assert problems({"mapping": {"strict_mode": "yes"}}) == [
        "mapping.strict_mode: expected true or false, got 'yes'"]
    assert problems({"writer": {"workers": True}}) == ["writer.workers: expected an integer, got True"]
    assert problems({"batch": {"max_interval_s": "5s"}}) == [
        "batch.max_interval_s: expected a number, got '5s'"]
    assert problems({"doris": {"password": 1234}}) == [
        "doris.password: expected a string, got 1234 (quote it in YAML)"]
    assert problems({"kafka": {"brokers": {"a": 1}}}) == ["kafka.brokers: expected a list, got a mapping"]
    assert problems({"batch": 5}) == ["batch: expected a mapping of keys, got 5"]


def test_all_problems_reported_together():
    lines = problems({"kafka": {"topics": [], "start_from": "oldest", "brokers": ["nohostport"]},
                      "doris": {"database": "", "table": "bad.name", "fe_hosts": []},
                      "mapping": {"format": "xml", "missing": "skip", "max_filter_ratio": 1.5},
                      "batch": {"max_rows": 0, "max_bytes": -1, "max_interval_s": 0},
                      "writer": {"workers": 65, "max_retries": -1},
                      "dead_letter": {"type": "kafka"},
                      "logging": {"level": "loud", "format": "xml", "output": "both"},
                      "server": {"listen": "9108"},
                      "shutdown_timeout_s": 0})
    joined = "\n".join(lines)
    for key in ["kafka.topics", "kafka.start_from", "kafka.brokers", "doris.database", "doris.table",
                "doris.fe_hosts", "mapping.format", "mapping.missing", "mapping.max_filter_ratio",
                "batch.max_rows", "batch.max_bytes", "batch.max_interval_s", "writer.workers",
                "writer.max_retries", "dead_letter.topic", "logging.level", "logging.format",
                "logging.file", "server.listen", "shutdown_timeout_s"]:
        assert any(line.startswith(key + ":") for line in lines), (key, joined)


@pytest.mark.parametrize("extra,ok", [
    ({"kafka": {"start_from": "LATEST"}}, True),
    ({"server": {"listen": ""}}, True),
    ({"server": {"listen": "0.0.0.0:9108"}}, True),
    ({"server": {"listen": "127.0.0.1:0"}}, True),
    ({"server": {"listen": "localhost"}}, False),
    ({"mapping": {"max_filter_ratio": 1}}, True),
    ({"mapping": {"max_filter_ratio": -0.1}}, False),
    ({"writer": {"workers": 64, "max_retries": 0}}, True),
    ({"writer": {"workers": 0}}, False),
    ({"doris": {"fe_hosts": ["fe-1.prod:8030", "10.0.0.2"]}}, True),
    ({"doris": {"fe_hosts": ["http://fe"]}}, False),
    ({"doris": {"be_hosts": ["be1"]}}, False),
    ({"doris": {"table": "events-2024"}}, True),
    ({"doris": {"table": "1events"}}, False),
    ({"kafka": {"brokers": ["kafka:99999"]}}, False),
    ({"kafka": {"security_protocol": "sasl_ssl", "sasl_mechanism": "scram-sha-512",
                "sasl_username": "u", "sasl_password": "p"}}, True),
    ({"kafka": {"security_protocol": "SASL_SSL"}}, False),
    ({"kafka": {"security_protocol": "TLS"}}, False),
    ({"kafka": {"sasl_mechanism": "PLAIN"}}, False),
    ({"kafka": {"sasl_mechanism": "GSSAPI", "security_protocol": "SASL_PLAINTEXT",
                "sasl_username": "u", "sasl_password": "p"}}, False),
    ({"dead_letter": {"type": "kafka", "topic": "dead"}}, True),
    ({"dead_letter": {"type": "s3"}}, False),
    ({"logging": {"output": "file", "file": "/tmp/s.log", "level": "DEBUG"}}, True),
    ({"logging": {"format": "json", "output": "stdout"}}, True),
])
def test_value_checks(extra, ok):
    if ok:
        build(extra)
    else:
        with pytest.raises(ConfigError):
            build(extra)


def test_enums_are_normalized():
    cfg = build({"kafka": {"start_from": "Latest", "security_protocol": "sasl_plaintext",
                           "sasl_mechanism": "plain", "sasl_username": "u", "sasl_password": "p"},
                 "logging": {"level": "WARN"}})
    assert cfg.kafka.start_from == "latest"
    assert (cfg.kafka.security_protocol, cfg.kafka.sasl_mechanism) == ("SASL_PLAINTEXT", "PLAIN")
    assert cfg.logging.level == "warning"


def test_env_overrides_the_file():
    env = {"SINKER_DORIS_PASSWORD": "s3cret", "SINKER_DORIS_USER": "loader",
           "SINKER_KAFKA_BROKERS": "k1:9092, k2:9093", "SINKER_KAFKA_SASL_USERNAME": "bob",
           "SINKER_KAFKA_SASL_PASSWORD": "hunter2", "UNRELATED": "x"}
    cfg = build({"doris": {"user": "root", "password": "file"},
                 "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}}, env=env)
    assert (cfg.doris.user, cfg.doris.password) == ("loader", "s3cret")
    assert cfg.kafka.brokers == ("k1:9092", "k2:9093")
    assert (cfg.kafka.sasl_username, cfg.kafka.sasl_password) == ("bob", "hunter2")


def test_empty_password_env_means_empty_password():
    assert build({"doris": {"password": "file"}}, env={"SINKER_DORIS_PASSWORD": ""}).doris.password == ""


def test_overrides_win_over_file_and_are_validated():
    cfg = build(overrides={"kafka.group_id": "replay-1", "doris.database": "d2",
                           "shutdown_timeout_s": 5})
    assert (cfg.kafka.group_id, cfg.doris.database, cfg.shutdown_timeout_s) == ("replay-1", "d2", 5.0)
    assert problems(overrides={"batch.max_row": 1}) == ["batch.max_row: unknown key (did you mean max_rows?)"]


def test_config_from_dict_does_not_modify_its_input():
    d = {"kafka": {"brokers": ["k:9092"], "topics": ["events"]}, "doris": {"database": "a", "table": "b"}}
    config_from_dict(d, env={"SINKER_DORIS_PASSWORD": "x"}, overrides={"kafka.group_id": "g"})
    assert d == {"kafka": {"brokers": ["k:9092"], "topics": ["events"]},
                 "doris": {"database": "a", "table": "b"}}


def test_brokers_are_required_and_the_error_names_the_env_variable():
    d = {"kafka": {"topics": ["events"]}, "doris": {"database": "a", "table": "b"}}
    with pytest.raises(ConfigError) as e:
        config_from_dict(d, env={})
    [line] = str(e.value).splitlines()
    assert line.startswith("kafka.brokers: required") and "SINKER_KAFKA_BROKERS" in line
    assert config_from_dict(d, env={"SINKER_KAFKA_BROKERS": "k1:9092"}).kafka.brokers == ("k1:9092",)


def test_group_id_defaults_to_one_group_per_target_table():
    assert build().kafka.group_id == "sinker.demo.events"
    assert build(overrides={"doris.table": "other"}).kafka.group_id == "sinker.demo.other"
    assert build({"kafka": {"group_id": "orders-loader"}}).kafka.group_id == "orders-loader"
    assert problems({"kafka": {"group_id": " "}})[0].startswith("kafka.group_id: must not be empty")


def test_mapping_columns_as_mapping():
    cfg = build({"mapping": {"columns": {"uid": "user.id", "name": "name",
                                         "part": "@kafka.partition", "ts": "@kafka.timestamp"}}})
    assert cfg.mapping.columns == (ColumnSource("uid", ("user", "id")), ColumnSource("name", ("name",)),
                                   ColumnSource("part", (), "partition"), ColumnSource("ts", (), "timestamp"))


def test_mapping_columns_as_list():
    cfg = build({"mapping": {"columns": [{"column": "uid", "path": "user.id"},
                                         {"column": "odd", "path": ["a.b", "c"]},
                                         {"column": "off", "kafka": "offset"},
                                         {"column": "k", "kafka": "@kafka.key"}]}})
    assert cfg.mapping.columns == (ColumnSource("uid", ("user", "id")), ColumnSource("odd", ("a.b", "c")),
                                   ColumnSource("off", (), "offset"), ColumnSource("k", (), "key"))


def test_mapping_columns_errors():
    lines = problems({"mapping": {"columns": {"a": "@kafka.parition", "b": "x..y", "c": "@meta.z", "d": 5}}})
    assert lines[0] == "mapping.columns.a: unknown Kafka field 'parition' (did you mean partition?)"
    assert any(x.startswith("mapping.columns.b:") and "empty key" in x for x in lines)
    assert any(x.startswith("mapping.columns.c:") for x in lines)
    assert any(x.startswith("mapping.columns.d:") for x in lines)
    lines = problems({"mapping": {"columns": [{"column": "a", "path": "x", "kafka": "offset"},
                                              {"colum": "b", "path": "y"}]}})
    assert any(x.startswith("mapping.columns[0]:") and "exactly one" in x for x in lines)
    assert any(x.startswith("mapping.columns[1].colum: unknown key (did you mean column?)") for x in lines)


def test_mapping_schema():
    cfg = build({"mapping": {"schema": [{"name": "id", "type": "bigint", "nullable": False},
                                        {"name": "amount", "type": "decimal(10,2)", "default": 0}],
                             "columns": {"id": "order.id"}}})
    assert cfg.mapping.schema == (SchemaColumn("id", "bigint", False, None),
                                  SchemaColumn("amount", "decimal(10,2)", True, "0"))
    lines = problems({"mapping": {"schema": [{"name": "id", "type": "bigintt"},
                                             {"name": "id", "type": "int", "nulable": True}],
                                  "columns": {"other": "x"}}})
    assert "mapping.schema[0].type: unknown Doris type 'bigintt' (did you mean bigint?)" in lines
    assert any(x.startswith("mapping.schema[1].nulable: unknown key (did you mean nullable?)") for x in lines)
    assert "mapping.schema[1].name: column 'id' is listed twice" in lines
    lines = problems({"mapping": {"schema": [{"name": "id", "type": "int"}], "columns": {"other": "x"}}})
    assert lines == ["mapping.columns: 'other' is not a column of mapping.schema (columns: id)"]


def test_redacted():
    cfg = build({"doris": {"password": "s3cret"}},
                env={"SINKER_KAFKA_SASL_PASSWORD": "hunter2"})
    r = redacted(cfg)
    assert r["doris"]["password"] == "***" and r["kafka"]["sasl_password"] == "***"
    assert "s3cret" not in repr(r) and "hunter2" not in repr(r)
    assert r["kafka"]["topics"] == ["events"] and isinstance(r["mapping"]["columns"], list)
    assert redacted(build())["doris"]["password"] == ""      # unset stays visible as unset
    fetch = {c: redacted(build({"kafka": {"client": c}}))["kafka"]["max_partition_fetch_bytes"]
             for c in ("kafka-python", "confluent-kafka")}
    assert fetch == {"kafka-python": 4 * 1024 * 1024, "confluent-kafka": 1024 * 1024}


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.yaml not found"):
        load_config(tmp_path / "nope.yaml", env={})


def test_load_config_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("kafka:\n  topics: [events\ndoris:\n  database: x\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert str(p) in str(e.value) and "line " in str(e.value)


def test_load_config_reports_problems_with_the_file_name(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("kafka:\n  brokers: [k1:9092]\n  topics: [events]\ndoris:\n  database: demo\n  table: events\nbatch:\n  max_row: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, env={})
    assert str(e.value) == f"{p}: batch.max_row: unknown key (did you mean max_rows?)"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p, env={})


def test_load_config_uses_env_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("kafka:\n  brokers: [k1:9092]\n  topics: [events]\ndoris:\n  database: demo\n  table: events\n")
    cfg = load_config(p, overrides={"kafka.group_id": "g2"}, env={"SINKER_DORIS_PASSWORD": "pw"})
    assert cfg.kafka.group_id == "g2" and cfg.doris.password == "pw"


@pytest.mark.parametrize("section,entry,expected", [
    ("doris", {"fe_hosts": ["fe1"]}, ("fe_addresses", (("fe1", 8030),))),
    ("doris", {"fe_hosts": ["fe1:18030", "[::1]:9", "[::1]"]},
     ("fe_addresses", (("fe1", 18030), ("::1", 9), ("::1", 8030)))),
    ("doris", {"be_hosts": ["be1:8041", "[fd00::2]:8040"]},
     ("be_addresses", (("be1", 8041), ("fd00::2", 8040)))),
    ("server", {"listen": "[::1]:9108"}, ("address", ("::1", 9108))),
    ("server", {"listen": "0.0.0.0:0"}, ("address", ("0.0.0.0", 0))),
    ("server", {"listen": ""}, ("address", None)),
])
def test_hosts_are_parsed_once_in_config(section, entry, expected):
    """Every module reads parsed addresses from the config; IPv6 keeps its brackets in netloc."""
    cfg = config_from_dict({**MINIMAL, section: {**MINIMAL.get(section, {}), **entry}})
    attr, want = expected
    assert getattr(getattr(cfg, section), attr) == want


def test_host_port_netloc_brackets_ipv6():
    from sinker_lib.config import HostPort
    assert HostPort("::1", 8030).netloc == "[::1]:8030" and str(HostPort("fe", 1)) == "fe:1"


def test_kafka_tls_settings(tmp_path):
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("pem")
    env = {"SINKER_KAFKA_SSL_KEY_PASSWORD": "k3y-pass"}
    cfg = build({"kafka": {"security_protocol": "SSL", "ssl_cafile": str(ca), "ssl_certfile": str(cert),
                           "ssl_keyfile": str(key), "ssl_check_hostname": False}}, env=env)
    k = cfg.kafka
    assert (k.ssl_certfile, k.ssl_keyfile, k.ssl_key_password) == (str(cert), str(key), "k3y-pass")
    assert k.ssl_check_hostname is False and build().kafka.ssl_check_hostname is True
    r = redacted(cfg)
    assert r["kafka"]["ssl_key_password"] == "***" and "k3y-pass" not in repr(r)


def test_kafka_tls_problems(tmp_path):
    cert = tmp_path / "client.pem"
    cert.write_text("pem")
    lines = problems({"kafka": {"ssl_cafile": str(cert)}})
    assert lines == ["kafka.ssl_cafile: set, but security_protocol is PLAINTEXT: use SSL or SASL_SSL"]
    lines = problems({"kafka": {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                "sasl_username": "u", "sasl_password": "p"}},
                     env={"SINKER_KAFKA_SSL_KEY_PASSWORD": "k"})
    assert lines == ["kafka.ssl_key_password: set, but security_protocol is SASL_PLAINTEXT: "
                     "use SSL or SASL_SSL"]
    lines = problems({"kafka": {"security_protocol": "SSL", "ssl_certfile": str(cert),
                                "ssl_cafile": str(tmp_path / "missing.pem")}})
    assert lines == [f"kafka.ssl_cafile: {str(tmp_path / 'missing.pem')!r} is not a readable file",
                     "kafka.ssl_keyfile: required with kafka.ssl_certfile: the client "
                     "certificate's private key (PEM)"]
    lines = problems({"kafka": {"security_protocol": "SSL", "ssl_keyfile": str(cert),
                                "ssl_key_password": "k"}})
    assert lines == ["kafka.ssl_certfile: required with kafka.ssl_keyfile: the client certificate "
                     "(PEM) that goes with the key"]
    lines = problems({"kafka": {"security_protocol": "SSL", "ssl_key_password": "k"}})
    assert lines == ["kafka.ssl_key_password: set, but kafka.ssl_keyfile is not: it decrypts the "
                     "client certificate's key"]


# -- secure by default ----------------------------------------------------------------------------
def test_debug_pages_are_off_by_default_and_the_token_comes_from_env():
    assert build().server.debug is False and build().server.debug_token is None
    cfg = build({"server": {"debug": True}}, env={"SINKER_STATUS_TOKEN": "t0ken-abc"})
    assert cfg.server.debug is True and cfg.server.debug_token == "t0ken-abc"
    r = redacted(cfg)
    assert r["server"]["debug_token"] == "***" and "t0ken-abc" not in repr(r)
    assert problems({"server": {"debug": "yes please"}})[0].startswith("server.debug:")
    assert problems({"server": {"debug_token": " spaced "}}) == [
        "server.debug_token: has spaces around it; a client would never send them "
        "(env SINKER_STATUS_TOKEN)"]


def test_doris_ca_file_must_be_readable_and_needs_https(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    cfg = build({"doris": {"https": True, "ca_file": str(ca)}})
    assert cfg.doris.ca_file == str(ca)
    assert problems({"doris": {"ca_file": str(ca)}}) == [
        "doris.ca_file: set, but doris.https is false: set https: true (the CA is only used for TLS)"]
    missing = str(tmp_path / "nope.pem")
    assert problems({"doris": {"https": True, "ca_file": missing}}) == [
        f"doris.ca_file: {missing!r} is not a readable file"]


def write_minimal(tmp_path, extra: str = "", mode: int = 0o600):
    p = tmp_path / "c.yaml"
    p.write_text("kafka:\n  brokers: ['k:9092']\n  topics: [events]\ndoris:\n  database: demo\n  table: events\n" + extra)
    p.chmod(mode)
    return p


def test_a_readable_file_with_a_password_warns(tmp_path):
    p = write_minimal(tmp_path, "  password: in-file-pw\n", mode=0o644)
    warnings: list[str] = []
    cfg = load_config(p, env={}, warnings=warnings)
    assert cfg.doris.password == "in-file-pw"
    (w,) = warnings
    assert str(p) in w and "doris.password" in w and "mode 0644" in w
    assert f"chmod 600 {p}" in w and "SINKER_DORIS_PASSWORD" in w
    assert "in-file-pw" not in w


@pytest.mark.parametrize("extra,mode,env", [
    ("  password: in-file-pw\n", 0o600, {}),                         # private file
    ("  password: in-file-pw\n", 0o620, {}),                         # group may write, not read
    ("", 0o644, {"SINKER_DORIS_PASSWORD": "from-env"}),              # password from the environment
    ("  password: ''\n", 0o644, {}),                                  # an empty password is no secret
])
def test_no_warning_when_the_file_holds_no_readable_secret(tmp_path, extra, mode, env):
    warnings: list[str] = []
    load_config(write_minimal(tmp_path, extra, mode), env=env, warnings=warnings)
    assert warnings == []


def test_kafka_secrets_in_a_world_readable_file_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("kafka:\n  brokers: ['k:9092']\n  topics: [events]\n  security_protocol: SASL_PLAINTEXT\n"
                 "  sasl_mechanism: PLAIN\n  sasl_username: u\n  sasl_password: k-pw\n"
                 "doris:\n  database: demo\n  table: events\n")
    p.chmod(0o604)
    warnings: list[str] = []
    load_config(p, env={}, warnings=warnings)
    (w,) = warnings
    assert "kafka.sasl_password" in w and "SINKER_KAFKA_SASL_PASSWORD" in w and "mode 0604" in w


def test_debug_on_a_public_address_without_a_token_warns(tmp_path):
    for listen, token, expect in (("0.0.0.0:9108", None, True), ("0.0.0.0:9108", "tok", False),
                                  ("127.0.0.1:9108", None, False), ("[::1]:9108", None, False),
                                  ("localhost:9108", None, False)):
        warnings: list[str] = []
        env = {"SINKER_STATUS_TOKEN": token} if token else {}
        load_config(write_minimal(tmp_path, f"server:\n  debug: true\n  listen: '{listen}'\n"),
                    env=env, warnings=warnings)
        assert bool(warnings) is expect, (listen, token, warnings)
        if expect:
            assert "SINKER_STATUS_TOKEN" in warnings[0]


def test_the_partition_fetch_size_is_each_clients_measured_best_unless_set():
    assert build().kafka.partition_fetch_bytes == 4_194_304
    assert build({"kafka": {"client": "confluent-kafka"}}).kafka.partition_fetch_bytes == 1_048_576
    for client in ("kafka-python", "confluent-kafka"):
        k = build({"kafka": {"client": client, "max_partition_fetch_bytes": 2_000_000}}).kafka
        assert k.partition_fetch_bytes == 2_000_000
    assert any(p.startswith("kafka.max_partition_fetch_bytes: must be > 0")
               for p in problems({"kafka": {"max_partition_fetch_bytes": 0}}))
    assert any(p.startswith("kafka.max_partition_fetch_bytes: must be <= 1000000000")
               for p in problems({"kafka": {"client": "confluent-kafka",
                                            "max_partition_fetch_bytes": 2_000_000_000}}))
