"""infrastructure/monitoring: the Prometheus rules and the Grafana dashboard only reference
metrics that ``GET /metrics`` really exposes (taken from a live scrape), and their
expressions are PromQL-shaped (balanced brackets, known functions, valid durations)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from mysoulmate.runtime.backends import event_store, local_queue
from mysoulmate.runtime.worker import drain_once
from prometheus_client.parser import text_string_to_metric_families

from tests.support.helpers import auth_header

MONITORING = Path(__file__).resolve().parents[2] / "infrastructure" / "monitoring"

FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "days_in_month",
        "delta",
        "deriv",
        "exp",
        "floor",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sort",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "time",
        "timestamp",
        "vector",
        "year",
    ]
)
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ]
)
KEYWORDS = frozenset(["and", "or", "unless", "bool", "offset", "inf", "nan"])
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


class PromQLError(ValueError):
    pass


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects; PromQLError when it is not PromQL-shaped."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals out of the way
    if "'" in text or "`" in text:
        raise PromQLError("use double-quoted strings")
    stack: list[str] = []
    pairs = {")": "(", "]": "[", "}": "{"}
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            raise PromQLError(f"unbalanced {char!r} in {expr!r}")
    if stack:
        raise PromQLError(f"unclosed {stack[-1]!r} in {expr!r}")
    for matchers in re.findall(r"\{([^{}]*)\}", text):
        for matcher in filter(None, (m.strip() for m in matchers.split(","))):
            if not re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*\s*(=~|!~|!=|=)\s*""', matcher):
                raise PromQLError(f"bad label matcher {matcher!r}")
    text = re.sub(r"\{[^{}]*\}", " ", text)
    for duration in re.findall(r"\[([^\[\]]*)\]", text):
        parts = duration.split(":")
        if not all(DURATION.match(p.strip()) for p in parts if p.strip()):
            raise PromQLError(f"bad range {duration!r}")
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    text = re.sub(r"(?<![A-Za-z0-9_:.])\d+(\.\d+)?([eE][+-]?\d+)?", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        called = text[match.end() :].lstrip().startswith("(")
        if called:
            if word not in FUNCTIONS | AGGREGATIONS:
                raise PromQLError(f"unknown function {word!r}")
        elif word.lower() in KEYWORDS:
            continue
        else:
            names.add(word)
    if re.search(r"[^\s\w:(){}\[\],.<>=!~+\-*/%^\"]", text):
        raise PromQLError(f"unexpected character in {expr!r}")
    return names


@pytest.fixture
def exposed(make_client: Callable[..., TestClient]) -> set[str]:
    """Every metric name a live ``/metrics`` offers, after requests and stored events."""
    with make_client() as client:
        now = datetime.now(UTC).isoformat()
        response = client.post(
            "/api/v1/analytics/track",
            json={"event": "purchase", "timestamp": now, "properties": {"revenue": 1}},
            headers=auth_header("alice"),
        )
        assert response.status_code == 202
        while drain_once(local_queue(), event_store(), 100):
            pass
        text = client.get("/metrics").text
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + s for s in suffixes.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_exprs() -> Iterator[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Grafana's own variables stand for durations.
            yield re.sub(r"\$__\w+", "5m", target["expr"])


# -- the checker itself ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(http_requests_total[5m])",  # unbalanced
        "sum(rate(http_requests_total[5m])))",
        "sum(ratee(http_requests_total[5m]))",  # unknown function
        "rate(http_requests_total[5 minutes])",  # bad duration
        "http_requests_total{status=5}",  # unquoted matcher value
        "http_requests_total{status='500'}",
    ],
)
def test_checker_rejects_malformed_expressions(expr: str) -> None:
    with pytest.raises(PromQLError):
        metric_names(expr)


def test_checker_finds_metric_names_but_not_labels_or_keywords() -> None:
    expr = (
        'sum by (route, le) (rate(a_bucket{route!~"x|y", le="+Inf"}[5m])) / '
        "clamp_min(sum(rate(b_total[1h:5m])), 1e-9) > 0.5 and on (pod) max(c) == 0"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


# -- the rules -------------------------------------------------------------------------------


def test_rules_file_is_a_valid_rule_group_document() -> None:
    document = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names))
    alerts = [rule["alert"] for rule in rules()]
    assert len(alerts) == len(set(alerts))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", rule["alert"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert DURATION.match(rule["for"]), rule["for"]


def test_rules_cover_the_required_conditions() -> None:
    alerts = {rule["alert"] for rule in rules()}
    assert {
        "MySoulmateHighErrorRate",
        "MySoulmateSlowResponses",
        "MySoulmateHighMemory",
        "MySoulmateHighCpu",
        "MySoulmateStoragePoolExhausted",
        "MySoulmateQueueBacklog",
    } <= alerts


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_rule_expressions_reference_only_exposed_metrics(
    rule: dict[str, Any], exposed: set[str]
) -> None:
    names = metric_names(rule["expr"])
    assert names, "an alert must select some metric"
    assert names <= exposed, f"not exposed by /metrics: {sorted(names - exposed)}"


# -- the dashboard and Alertmanager example ------------------------------------------------


def test_dashboard_references_only_exposed_families(exposed: set[str]) -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["uid"]
    assert dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    referenced: set[str] = set()
    for expr in dashboard_exprs():
        referenced |= metric_names(expr)
    assert referenced <= exposed, f"not exposed by /metrics: {sorted(referenced - exposed)}"
    assert {"http_request_duration_seconds_bucket", "mysoulmate_events_stored_total"} <= referenced


def test_alertmanager_example_routes_to_slack() -> None:
    config = yaml.safe_load((MONITORING / "alertmanager.example.yaml").read_text())
    receivers = {receiver["name"]: receiver for receiver in config["receivers"]}
    routed = [config["route"]["receiver"]] + [r["receiver"] for r in config["route"]["routes"]]
    for name in routed:
        [slack] = receivers[name]["slack_configs"]
        assert slack["api_url_file"]  # the webhook comes from a secret, never the file
        assert slack["channel"].startswith("#")
    alerts = {rule["alert"] for rule in rules()}
    for inhibit in config.get("inhibit_rules", []):
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            name = matcher.split("=", 1)[1].strip('"')
            assert name in alerts
