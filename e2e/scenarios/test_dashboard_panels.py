"""The chart's Grafana dashboard against real data (issue 12 item 3): every panel query, run by the stack's real
Prometheus after real rollouts, returns data.

The operator process is scraped by the stack's Prometheus as a ServiceMonitor would (job `modelship-operator`,
labels namespace and pod). The rollouts give every panel something to show: v2 promoted, version 90 (half its
answers fail) rolled back with its failed checks, and notifications of both delivered to a local webhook.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, scraped_operator, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.scenarios.test_control import healthy
from e2e.scenarios.test_notifications import KEY, SUBSCRIPTION, Receiver
from e2e.stack import REPO, StackContext
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
DASHBOARD = REPO / "charts" / "modelship" / "dashboards" / "modelship.json"
STEPS = [{"weight": 50, "duration": "6s"}]
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def query(stack: StackContext, expr: str) -> list[dict[str, Any]]:
    url = f"{stack.env['PROMETHEUS_URL']}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    with NO_PROXY.open(url, timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def panel_queries(namespace: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with the dashboard variables as Grafana would fill them."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"].replace("$namespace", namespace).replace("$name", NAME)
             .replace("$__rate_interval", "1m"))
            for panel in dashboard["panels"] for target in panel["targets"]]  # fmt: skip


def test_every_dashboard_panel_shows_data_after_real_rollouts(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext,
) -> None:
    """Given the operator scraped by the stack's Prometheus and a webhook subscription,
    when v2 is promoted and then version 90 rolls back on its error rate,
    then every query of every panel of the chart's dashboard returns at least one series."""
    ns = namespace
    receiver = Receiver().start()
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "modelship-notifications",
                   "namespace": ns}, "stringData": {"url": receiver.url, "hmac": KEY}})
    subscription = {**SUBSCRIPTION, "on": ["Promoted", "RolledBack"]}
    try:
        with printed_figures("dashboard panels against the stack's Prometheus") as fig, \
                scraped_operator(stack, ns, "modelship-0") as port:
            operator(ns, MODELSHIP_METRICS_PORT=str(port))
            kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS, notifications=[subscription]))
            healthy(kubectl, ns, "1")
            traffic(ns, NAME)
            kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS, notifications=[subscription]))
            healthy(kubectl, ns, "2", timeout=90)
            kubectl.apply(model_deployment(NAME, ns, "90", steps=[{"weight": 50, "duration": "60s"}], samples=False,
                                           slo={"errorRate": {"max": 0.05}}, notifications=[subscription]))
            status_when(kubectl, ns, "v90 rolled back", lambda s: s.get("phase") == "RolledBack", timeout=90)
            wait_for("RolledBack notified", lambda: receiver.delivered("RolledBack"), timeout=30)
            wait_for("the rollback scraped twice", lambda: len(query(stack, "count_over_time(modelship_rollbacks_total"
                     f"{{namespace=\"{ns}\"}}[1m])")) and query(stack, "count_over_time(modelship_rollbacks_total"
                     f"{{namespace=\"{ns}\"}}[1m]) >= 2"), timeout=30)
            time.sleep(4)  # two more scrapes: the notification counters too
            empty = []
            shown = {}
            for title, expr in panel_queries(ns):
                result = query(stack, expr)
                shown[f"{title}: {expr[:60]}"] = len(result)
                if not result:
                    empty.append((title, expr))
            fig["series_per_query"] = shown
            assert not empty, f"panels without data: {empty}"
    finally:
        receiver.stop()
