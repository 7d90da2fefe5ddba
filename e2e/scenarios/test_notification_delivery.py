"""The people around a rollout, on the real stack (issue 12 items 2 and 3).

Notifications: a real HTTP receiver on loopback gets the operator's signed webhooks for an approval gate, the
promotion after it and a rollback with its evidence. The receiver is down (it drops the connection without
answering) for the first delivery: the operator must retry, with the same delivery id, and the rollout must
not wait for it. The URL and the HMAC key come from a Secret in the object's namespace, as in production.

Grafana: the operator is scraped by the stack's Prometheus as the chart's ServiceMonitor would (job
`modelship-operator`, labels namespace and pod); after those rollouts every query of every panel of the chart's
dashboard returns data.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, scraped_operator, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.scenarios.test_control import healthy, plugin
from e2e.stack import REPO, StackContext
from e2e.stack.traffic import TrafficGenerator
from e2e.webhook import Delivery, Receiver
from e2e.webhook import signed as signed_with

pytestmark = pytest.mark.e2e

NAME = "fraud"
KEY = "e2e-shared-hmac-key"
STEPS: list[dict[str, Any]] = [{"weight": 25, "duration": "4s"}, {"approval": {}}]
SUBSCRIPTION = {"name": "ml-team", "events": ["ApprovalRequired", "Promoted", "RolledBack"],
                "webhook": {"url": {"key": "url"}, "signingKey": {"key": "hmac"}}}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(down_for=1).start()
    yield found
    found.stop()


def signed(delivery: Delivery) -> bool:
    return signed_with(delivery, KEY)


def events(kubectl: Kubectl, ns: str, reason: str) -> list[dict[str, Any]]:
    found = json.loads(kubectl.run("get", "events", "-n", ns, "--field-selector", f"reason={reason}",
                                   "-o", "json").stdout)["items"]
    return list(found)


def test_a_gate_a_promotion_and_a_rollback_reach_a_signed_webhook(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext, receiver: Receiver,
) -> None:
    """Given a Secret with the receiver's URL and key, v1 Healthy with a webhook subscription on ApprovalRequired,
    Promoted and RolledBack, and a receiver that drops its first request,
    when v2 reaches an approval gate, then the receiver gets ApprovalRequired on the retry (same delivery id),
    signed with the key, while the rollout already waits at the gate;
    when an SRE promotes it, then Promoted arrives;
    when version 90 (half its answers fail) rolls out, then RolledBack arrives with the failed errorRate check
    against its bound, and the ModelDeployment has NotificationSent Events;
    and every query of every panel of the chart's Grafana dashboard returns data from the stack's Prometheus."""
    ns = namespace
    kubectl.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "modelship-notifications",
                   "namespace": ns}, "stringData": {"url": receiver.url, "hmac": KEY}})
    with printed_figures("notifications and dashboard panels: gate, promotion, rollback") as fig, \
            scraped_operator(stack, ns, "modelship-0") as metrics_port:
        operator(ns, MODELSHIP_METRICS_PORT=str(metrics_port))
        kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS, notifications=[SUBSCRIPTION]))
        healthy(kubectl, ns, "1")
        gen = traffic(ns, NAME)

        # When: v2 reaches the approval gate (the receiver is down for the first delivery).
        kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS, notifications=[SUBSCRIPTION]))
        status_when(kubectl, ns, "v2 waiting for approval", lambda s: bool(s.get("awaitingApproval")), timeout=60)
        t_gate = time.time()
        (gate,) = wait_for("ApprovalRequired delivered", lambda: receiver.delivered("ApprovalRequired"), timeout=30)
        dropped = receiver.seen[0]
        fig["gate_to_delivered_s"] = round(gate.at - t_gate, 2)
        fig["first_attempt_dropped_then_retried_after_s"] = round(gate.at - dropped.at, 2)
        # Then: retried with the same id, signed, with what the rollout waits for.
        assert not dropped.answered and dropped.headers["X-Modelship-Delivery"] == gate.headers["X-Modelship-Delivery"]
        assert signed(gate) and gate.event["event"] == "ApprovalRequired"
        assert gate.event["canary"]["version"] == "2" and gate.event["weights"]["canary"] == 25
        assert "kubectl modelship promote" in gate.event["message"]

        # When: an SRE approves.
        out = plugin(stack, ns, "promote", NAME)
        assert out.returncode == 0, out.stdout + out.stderr
        healthy(kubectl, ns, "2", timeout=60)
        (promoted,) = wait_for("Promoted delivered", lambda: receiver.delivered("Promoted"), timeout=20)
        assert signed(promoted) and promoted.event["stable"]["version"] == "2"

        # When: a version that fails half its answers rolls out.
        kubectl.apply(model_deployment(NAME, ns, "90", steps=[{"weight": 25, "duration": "60s"}], samples=False,
                                       notifications=[SUBSCRIPTION],
                                       slo={"errorRate": {"max": 0.05}}))
        rolled = status_when(kubectl, ns, "v90 rolled back", lambda s: s.get("phase") == "RolledBack", timeout=90)
        t_rolled = time.time()
        (rollback,) = wait_for("RolledBack delivered", lambda: receiver.delivered("RolledBack"), timeout=20)
        fig["rolled_back_status_to_delivered_s"] = round(rollback.at - t_rolled, 2)
        # Then: the evidence is in the payload, and the object says it was sent.
        assert signed(rollback) and rollback.event["severity"] == "warning"
        failed = [m for m in rollback.event["evidence"]["metrics"] if m["verdict"] == "Fail"]
        assert failed and failed[0]["name"] == "errorRate" and failed[0]["value"] > failed[0]["max"] == 0.05
        assert rollback.event["history"]["version"] == "90" == rolled["history"][-1]["version"]
        sent = wait_for("NotificationSent Events", lambda: len(events(kubectl, ns, "NotificationSent")) >= 3 and
                        events(kubectl, ns, "NotificationSent"), timeout=10)
        fig["events"] = sorted(e["message"] for e in sent)
        ids = [d.headers["X-Modelship-Delivery"] for d in receiver.seen if d.answered]
        assert len(ids) == len(set(ids)) == 3, [(d.headers["X-Modelship-Event"], d.answered) for d in receiver.seen]
        fig["deliveries"] = [(d.headers["X-Modelship-Event"], d.answered) for d in receiver.seen]
        fig["traffic_failed"] = sum(v.get("failed", 0) for v in gen.summary()["backends"].values())

        # Then: every Grafana panel has data from these rollouts.
        ours = f'modelship_rollbacks_total{{namespace="{ns}"}}'
        wait_for("the rollback scraped twice", lambda: query(stack, f"count_over_time({ours}[1m]) >= 2"), timeout=30)
        time.sleep(2 * SCRAPE_S)  # the notification counters, written after the rollback, scraped twice too
        shown = {f"{title}: {expr[:50]}": len(query(stack, expr)) for title, expr in panel_queries(ns)}
        fig["series_per_panel_query"] = shown
        assert all(shown.values()), f"panels without data: {[k for k, n in shown.items() if not n]}"


DASHBOARD = REPO / "charts" / "modelship" / "dashboards" / "modelship.json"
SCRAPE_S = 2
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def query(stack: StackContext, expr: str) -> list[dict[str, Any]]:
    """An instant query to the stack's Prometheus."""
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
