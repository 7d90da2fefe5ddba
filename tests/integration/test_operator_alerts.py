"""The chart's alerts and dashboard queries, evaluated by a real Prometheus scraping a real operator registry.

The PrometheusRule and ServiceMonitor are rendered by helm; the rules are loaded into Prometheus as they are
(with `for` set to 0s so an alert fires at its first evaluation), and the scrape job honours labels as the
rendered ServiceMonitor says. Target labels play the Prometheus Operator's (namespace, job, pod), so the object
labels an alert names are checked against what a cluster's Prometheus would see.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, render
from modelship.adapters.telemetry import Telemetry
from prometheus_client import start_wsgi_server

from e2e.stack.prometheus import Prometheus, scrape_config
from e2e.stack.triton import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

OPERATOR_NAMESPACE = "modelship-system"
JOB = "modelship-metrics"
ALERTS = ("rollbackHappened", "rolloutStuck", "analysisErroring", "reconcileErrors", "reconcileBacklog", "noLeader")
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Monitored:
    telemetry: Telemetry
    prometheus: Prometheus


def _chart_objects(helm: Path) -> dict[str, dict[str, Any]]:
    overrides = [f"metrics.prometheusRule.alerts.{alert}.for=0s" for alert in ALERTS if alert != "rollbackHappened"]
    text = render(helm, None, OPERATOR_NAMESPACE, "--set", "metrics.prometheusRule.enabled=true",
                  "--set", "metrics.serviceMonitor.enabled=true", *[arg for o in overrides for arg in ("--set", o)])
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    return {doc["kind"]: doc for doc in documents if doc["kind"] in ("PrometheusRule", "ServiceMonitor")}


@pytest.fixture(scope="module")
def monitored(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitored]:
    root = tmp_path_factory.mktemp("operator-alerts")
    objects = _chart_objects(helm)
    groups = objects["PrometheusRule"]["spec"]["groups"]
    for group in groups:
        group["interval"] = "1s"
    rules = root / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": groups}))
    endpoint = objects["ServiceMonitor"]["spec"]["endpoints"][0]

    telemetry = Telemetry()
    port = free_port()
    server, thread = start_wsgi_server(port, addr="127.0.0.1", registry=telemetry.registry)
    config = scrape_config(None, None, None, interval="1s", static_targets=[
        (f"127.0.0.1:{port}", {"namespace": OPERATOR_NAMESPACE, "pod": "modelship-0"})])  # fmt: skip
    job = config["scrape_configs"][0]
    job["job_name"] = JOB
    job["honor_labels"] = bool(endpoint.get("honorLabels", False))
    job["metrics_path"] = endpoint["path"]
    config["rule_files"] = [str(rules)]
    prometheus = Prometheus(root / "prometheus")
    prometheus.configure(config)
    try:
        prometheus.start()
        yield Monitored(telemetry, prometheus)
    finally:
        prometheus.stop()
        server.shutdown()
        thread.join(timeout=10)


def _alerts(prometheus: Prometheus) -> list[dict[str, Any]]:
    with _NO_PROXY.open(f"{prometheus.url}/api/v1/alerts", timeout=10) as response:
        return list(json.load(response)["data"]["alerts"])


def _firing(prometheus: Prometheus, name: str) -> list[dict[str, str]]:
    return [alert["labels"] for alert in _alerts(prometheus)
            if alert["labels"]["alertname"] == name and alert["state"] == "firing"]  # fmt: skip


def _wait(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"never: {what}")


def test_rules_load_and_every_dashboard_query_evaluates(monitored: Monitored) -> None:
    """Given the rendered rules and the dashboard, when Prometheus loads and evaluates them, then every rule is
    healthy and every panel query parses and runs; the new control-loop panels return data."""
    telemetry, prometheus = monitored.telemetry, monitored.prometheus
    telemetry.observe_leader(True)
    telemetry.observe_queue(depth=3, oldest_age_seconds=1.5, in_flight=2)
    telemetry.count_api_request("get", written=False)
    telemetry.observe_phase("ml", "fraud", "Healthy", 0)
    _wait(lambda: prometheus.query("modelship_leader == 1"), "the operator scraped")

    with _NO_PROXY.open(f"{prometheus.url}/api/v1/rules", timeout=10) as response:
        loaded = [rule for group in json.load(response)["data"]["groups"] for rule in group["rules"]]
    assert {rule["name"] for rule in loaded} >= {"ModelshipReconcileBacklog", "ModelshipNoLeader"}
    _wait(lambda: all(rule.get("health") == "ok" for rule in _rules(prometheus)), "every rule evaluated ok")

    dashboard = json.loads((CHART / "dashboards" / "modelship.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = (target["expr"].replace("$namespace", ".*").replace("$name", ".*")
                    .replace("$__rate_interval", "1m"))  # fmt: skip
            result = prometheus.query(expr)
            if panel["title"] in ("Work queue", "Backlog age", "Leader"):
                assert result, f"panel {panel['title']!r}: {expr} returned nothing"


def _rules(prometheus: Prometheus) -> list[dict[str, Any]]:
    with _NO_PROXY.open(f"{prometheus.url}/api/v1/rules", timeout=10) as response:
        return [rule for group in json.load(response)["data"]["groups"] for rule in group["rules"]]


def test_backlog_and_no_leader_fire_and_resolve(monitored: Monitored) -> None:
    """Given a replica that leads with a short queue, no control-loop alert fires; when the oldest due object
    has waited 120 s and the replica loses its lease, ModelshipReconcileBacklog and ModelshipNoLeader fire, naming
    the operator's namespace and job; when it leads again with a drained queue, both resolve."""
    telemetry, prometheus = monitored.telemetry, monitored.prometheus
    telemetry.observe_leader(True)
    telemetry.observe_queue(depth=1, oldest_age_seconds=0.5, in_flight=1)
    _wait(lambda: prometheus.query("modelship_queue_oldest_age_seconds == 0.5"), "a short queue scraped")
    assert not _firing(prometheus, "ModelshipReconcileBacklog")
    assert not _firing(prometheus, "ModelshipNoLeader")

    telemetry.observe_queue(depth=400, oldest_age_seconds=120.0, in_flight=16)
    telemetry.observe_leader(False)
    backlog = _wait(lambda: _firing(prometheus, "ModelshipReconcileBacklog"), "ModelshipReconcileBacklog fires")
    no_leader = _wait(lambda: _firing(prometheus, "ModelshipNoLeader"), "ModelshipNoLeader fires")
    for labels in (backlog[0], no_leader[0]):
        assert (labels["namespace"], labels["job"]) == (OPERATOR_NAMESPACE, JOB)
    assert backlog[0]["severity"] == "warning"

    telemetry.observe_leader(True)
    telemetry.observe_queue(depth=0, oldest_age_seconds=0.0, in_flight=0)
    _wait(lambda: not _firing(prometheus, "ModelshipReconcileBacklog")
          and not _firing(prometheus, "ModelshipNoLeader"), "both alerts resolve")  # fmt: skip


def test_per_object_alerts_name_the_object_not_the_operator(monitored: Monitored) -> None:
    """Given a rollout in flight in namespace `ml`, when ModelshipRolloutStuck fires, then it names `ml/fraud`:
    the scrape keeps the object's own `namespace` label instead of renaming it `exported_namespace`."""
    telemetry, prometheus = monitored.telemetry, monitored.prometheus
    telemetry.observe_leader(True)
    telemetry.observe_phase("ml", "fraud", "Progressing", 10)
    stuck = _wait(lambda: _firing(prometheus, "ModelshipRolloutStuck"), "ModelshipRolloutStuck fires")
    assert {(labels["namespace"], labels["name"]) for labels in stuck} == {("ml", "fraud")}
