"""deploy/: the Grafana dashboard and the Prometheus rules use exactly the metrics sinker exports.

A renamed metric breaks a dashboard silently (an empty panel, an alert that never fires), so every
metric name in every PromQL expression of both files must be one lib/metrics.py exports.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from sinker_lib.observability.metrics import METRIC_NAMES, is_known_series

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
RULES = ROOT / "deploy" / "prometheus-rules.yaml"

# series Prometheus itself adds to every scrape target (not exported by sinker)
PROMETHEUS_SERIES = {"up"}

_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
             "bool", "offset", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_LABEL_VALUES = re.compile(r"\blabel_values\s*\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*(?:,[^()]*)?\)")
_IDENT = re.compile(r"(?<![\w.$])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana label_values() query) reads."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)                 # {label="value", ...}
    text = _LABEL_VALUES.sub(r"\1", text)          # label_values(metric, label): only the metric
    text = _RANGE.sub("", text)                    # [5m], [$__rate_interval], [10m:1m]
    text = _GROUPING.sub("", text)                 # by (a, b), on (job) ...
    names = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue                               # a function, or an operator word
        names.add(name)
    return names


def dashboard_exprs(dash: dict) -> list[str]:
    out = []

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "expr" and isinstance(v, str):
                    out.append(v)
                elif k in ("query", "definition") and isinstance(v, str) and "(" in v:
                    out.append(v)
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(dash)
    return out


def rule_exprs(rules: dict) -> list[str]:
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def rules() -> dict:
    return yaml.safe_load(RULES.read_text())


# -- the extractor itself -------------------------------------------------------------------------
def test_extractor_finds_metrics_not_labels_functions_or_variables():
    expr = ('histogram_quantile(0.95, sum by (le, phase) (rate(sinker_doris_load_phase_seconds_bucket'
            '{job=~"$job", phase!="total"}[$__rate_interval]))) > on (job) group_left (instance) '
            'time() - max without (table) (sinker_last_load_success_timestamp_seconds offset 5m) '
            'and sum(deriv(sinker_consumer_lag[10m:1m])) > bool 2e3 unless up{job="sinker"} == 0')
    assert metric_names(expr) == {"sinker_doris_load_phase_seconds_bucket",
                                  "sinker_last_load_success_timestamp_seconds", "sinker_consumer_lag",
                                  "up"}
    assert metric_names('label_values(sinker_build_info{job=~"$job"}, instance)') == {"sinker_build_info"}
    assert metric_names("rate(sinker_no_such_total[5m])") == {"sinker_no_such_total"}
    assert not is_known_series("sinker_no_such_total")     # so a typo would fail the checks below


# -- the files ------------------------------------------------------------------------------------
def test_dashboard_uses_only_exported_metrics(dashboard):
    exprs = dashboard_exprs(dashboard)
    used = set().union(*(metric_names(e) for e in exprs))
    unknown = sorted(n for n in used if not is_known_series(n) and n not in PROMETHEUS_SERIES)
    assert not unknown, f"grafana-dashboard.json uses metrics sinker does not export: {unknown}"
    bases = {n for n in METRIC_NAMES if any(u == n or u.startswith(n + "_") for u in used)}
    # what the issue asks the dashboard to show
    for name in ("sinker_messages_consumed_total", "sinker_rows_loaded_total", "sinker_consumer_lag",
                 "sinker_doris_load_phase_seconds", "sinker_load_retries_total",
                 "sinker_dead_letter_reasons_total", "sinker_queue_depth", "process_resident_memory_bytes",
                 "process_cpu_seconds_total"):
        assert name in bases, f"the dashboard does not show {name}"


def test_dashboard_is_a_grafana_dashboard(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert {"type", "title", "gridPos"} <= set(p), p.get("title")
        assert {"h", "w", "x", "y"} <= set(p["gridPos"])
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] != "row":
            assert p["targets"], p["title"]
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "job", "instance"} <= names


def test_rules_use_only_exported_metrics(rules):
    exprs = rule_exprs(rules)
    used = set().union(*(metric_names(e) for e in exprs))
    unknown = sorted(n for n in used if not is_known_series(n) and n not in PROMETHEUS_SERIES)
    assert not unknown, f"prometheus-rules.yaml uses metrics sinker does not export: {unknown}"


def test_rules_cover_the_issue_and_are_well_formed(rules):
    by_name = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for name, needs in (("SinkerDown", "up"), ("SinkerLagGrowing", "sinker_consumer_lag"),
                        ("SinkerNoSuccessfulLoad", "sinker_last_load_success_timestamp_seconds"),
                        ("SinkerDeadLetters", "sinker_dead_letter_reasons_total"),
                        ("SinkerRetriesHigh", "sinker_load_retries_total")):
        assert name in by_name, f"missing alert {name}"
        assert needs in metric_names(by_name[name]["expr"]), name
    assert by_name["SinkerLagGrowing"]["for"] == "10m"
    for name, r in by_name.items():
        assert r["labels"]["severity"] in ("critical", "warning", "info"), name
        assert r["annotations"]["summary"], name
        assert r["expr"].count("(") == r["expr"].count(")"), name
        if "for" in r:
            assert re.fullmatch(r"\d+[smh]", r["for"]), name
