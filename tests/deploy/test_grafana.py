"""The Grafana dashboard (``deploy/grafana/shuangjian.json``) speaks the platform's metrics.

A dashboard fails quietly: a misspelt metric or label draws an empty panel, not an error.
So every PromQL expression in it (panel targets and variable queries) is taken apart here:
each metric it names must be one the platform exports (``services/common/metrics.py``),
each label one that metric carries, each function one PromQL has. And the dashboard must
import anywhere: its data source is a variable, never a UID of somebody's Grafana, and it
links nowhere outside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.common.metrics import NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "shuangjian.json"

LABELS: dict[str, frozenset[str]] = {
    "shuangjian_http_requests_total": frozenset({"process", "operation", "code"}),
    "shuangjian_http_request_duration_seconds": frozenset({"process", "operation"}),
    "shuangjian_commands_total": frozenset({"service", "command", "outcome"}),
    "shuangjian_outbox_depth": frozenset({"service"}),
    "shuangjian_outbox_oldest_age_seconds": frozenset({"service"}),
    "shuangjian_projection_lag_events": frozenset({"projection"}),
    "shuangjian_projector_lag": frozenset({"topic", "partition"}),
    "shuangjian_dead_letters_total": frozenset({"projection"}),
}
"""The platform's metrics and their labels (the contract with services/common/metrics.py)."""

HISTOGRAMS = frozenset({"shuangjian_http_request_duration_seconds"})
# Labels Prometheus itself adds to every scraped series.
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod"})

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max",
        "clamp_min", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta",
        "deriv", "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction",
        "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
        "holt_winters", "double_exponential_smoothing", "hour", "idelta", "increase", "irate",
        "label_join", "label_replace", "ln", "log2", "log10", "minute", "month",
        "predict_linear", "rate", "resets", "round", "scalar", "sgn", "sort", "sort_desc",
        "sort_by_label", "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year",
        "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
        "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan",
        "atanh", "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi",
        "label_values", "label_names", "metrics", "query_result",
    }
)  # fmt: skip
"""PromQL's functions, and the Prometheus variable-query functions of Grafana."""
KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
     "unless", "offset", "atan2", "inf", "nan"}
)  # fmt: skip


def allowed_series() -> dict[str, str]:
    """Every series name a query may use, with the metric it belongs to."""
    series = {}
    for metric in LABELS:
        if metric in HISTOGRAMS:
            for suffix in ("_bucket", "_sum", "_count"):
                series[metric + suffix] = metric
        else:
            series[metric] = metric
    return series


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows too."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every target and every query variable."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']}", text


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{([^}]*)\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBER = re.compile(r"(?<![\w:.])\d[\w.]*")
_WORD = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Grafana's variable query label_values(<series>, <label>): its last argument is a label.
_LABEL_VALUES = re.compile(r"\blabel_values\s*\((.*),\s*([A-Za-z_]\w*)\s*\)\s*$")


def parse(expr: str) -> tuple[set[str], set[str], set[str]]:
    """The metric names, label names and functions a PromQL expression uses.

    Not a PromQL parser: the expression is peeled (strings, label matchers, ranges and
    grouping clauses out, their label names kept), and what remains is words: a word
    before ``(`` is a function or aggregation, a keyword is skipped, anything else is a
    metric name.
    """
    labels: set[str] = set()
    text = _STRING.sub('""', expr)
    label_values = _LABEL_VALUES.search(text)
    if label_values:
        labels.add(label_values.group(2))
        text = f"label_values({label_values.group(1)})"
    for body in _MATCHERS.findall(text):
        labels |= {m.split("=")[0].split("!")[0].strip() for m in body.split(",") if m.strip()}
        labels.discard("")
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    for _, names in _GROUPING.findall(text):
        labels |= {n.strip() for n in names.split(",") if n.strip()}
    text = _GROUPING.sub(" ", text)
    text = _VARIABLE.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    metrics: set[str] = set()
    functions: set[str] = set()
    for match in _WORD.finditer(text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("("):
            functions.add(word)
        elif word not in KEYWORDS:
            metrics.add(word)
    return metrics, labels, functions


def test_the_metric_list_is_the_platforms() -> None:
    assert set(LABELS) == set(NAMES)


def test_the_parser_finds_metrics_labels_and_functions() -> None:
    metrics, labels, functions = parse(
        "histogram_quantile(0.95, sum by (le, process) (rate(shuangjian_http_request_duration_"
        'seconds_bucket{process=~"$process",code!="5.."}[$__rate_interval]))) / on() '
        "group_left up offset 5m > bool 1e3"
    )
    assert metrics == {"shuangjian_http_request_duration_seconds_bucket", "up"}
    assert labels == {"le", "process", "code"}
    assert functions == {"histogram_quantile", "sum", "rate"}


def test_the_parser_reads_variable_queries() -> None:
    assert parse('label_values(shuangjian_commands_total{outcome="ok"}, service)') == (
        {"shuangjian_commands_total"},
        {"outcome", "service"},
        {"label_values"},
    )


def test_dashboard_is_valid_json_of_a_current_schema(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["panels"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)


def test_every_query_uses_only_the_platforms_metrics_and_their_labels(
    dashboard: dict[str, Any],
) -> None:
    series = allowed_series()
    problems = []
    seen: set[str] = set()
    for where, expr in expressions(dashboard):
        metrics, labels, functions = parse(expr)
        if not metrics:
            problems.append(f"{where}: names no metric: {expr}")
        unknown = metrics - set(series)
        if unknown:
            problems.append(f"{where}: unknown metrics {sorted(unknown)}")
        bad_functions = functions - FUNCTIONS - AGGREGATIONS
        if bad_functions:
            problems.append(f"{where}: unknown functions {sorted(bad_functions)}")
        known = {series[m] for m in metrics - unknown}
        seen |= known
        allowed = set(TARGET_LABELS)
        for metric in known:
            allowed |= LABELS[metric]
        if any(m.endswith("_bucket") for m in metrics):
            allowed.add("le")
        if labels - allowed:
            problems.append(f"{where}: labels {sorted(labels - allowed)} not on {sorted(known)}")
    assert problems == []
    assert seen == set(LABELS), "every platform metric has a panel"


def test_every_panel_has_a_query(dashboard: dict[str, Any]) -> None:
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] != "row":
            assert panel.get("targets"), panel["title"]


def _datasources(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasources(value)


def test_the_data_source_is_the_variable_only(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    refs = list(_datasources(dashboard))
    assert refs
    for ref in refs:
        assert ref in ({"type": "prometheus", "uid": f"${{{variable['name']}}}"},), ref
    assert "__inputs" not in dashboard


def test_no_external_links(dashboard: dict[str, Any]) -> None:
    assert dashboard.get("links", []) == []
    for panel in all_panels(dashboard["panels"]):
        assert not panel.get("links"), panel["title"]
    assert not re.search(r"https?://", DASHBOARD.read_text(encoding="utf-8"))
