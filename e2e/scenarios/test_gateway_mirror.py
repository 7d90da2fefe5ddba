"""Issue 13 on the real stack: live traffic through the real gateway (Traefik), and a mirror it cannot make refused.

Traefik 3.6 lacks HTTPRouteRequestMirror and answers 500 to every request of a rule with the filter
(tests/stack/test_gateway.py pins that). A Shadow stage with the default `mirror: RequestMirror` on its Gateway
would take stable's live traffic down; the operator reads the GatewayClass's supportedFeatures and refuses it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from e2e.conftest import OperatorFactory
from e2e.harness import Kubectl, status_when
from e2e.manifests import model_deployment
from e2e.rollout_watch import triton_ready
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"


def test_a_shadow_the_gateway_cannot_mirror_is_refused_and_the_running_version_keeps_serving(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
) -> None:
    """Given v1 Healthy behind the stack's Traefik Gateway with live traffic through it,
    when v2 is applied with a Shadow stage and mirror: RequestMirror,
    then v2 is Invalid naming spec.traffic.gatewayAPI.mirror and the fix, no v2 pod is created, the route keeps
    its shape, and every live request through the gateway is still answered by v1."""
    ns = namespace
    operator(ns)
    kubectl.apply(model_deployment(NAME, ns, "1", shadow={"duration": "8s"}))
    status_when(kubectl, ns, "v1 Healthy", lambda s: s.get("phase") == "Healthy"
                and (s.get("stableRevision") or {}).get("version") == "1", timeout=90, name=NAME)
    triton_ready(kubectl, ns, NAME)
    gen = traffic(ns, NAME)
    assert gen.gateway, "the stack runs its gateway by default"

    refused = model_deployment(NAME, ns, "2", shadow={"duration": "8s"})
    refused["spec"]["traffic"]["gatewayAPI"]["mirror"] = "RequestMirror"
    kubectl.apply(refused)
    invalid = status_when(kubectl, ns, "v2 Invalid", lambda s: s.get("phase") == "Invalid", timeout=30, name=NAME)
    message = invalid.get("message", "")
    assert "spec.traffic.gatewayAPI.mirror" in message and "HTTPRouteRequestMirror" in message, message
    assert "mirror: External" in message, message
    assert (invalid.get("stableRevision") or {}).get("version") == "1"

    before = {k: dict(v) for k, v in gen.summary()["backends"].items()}
    time.sleep(8)
    assert kubectl.status(NAME, ns).get("phase") == "Invalid"
    after = gen.summary()["backends"]
    route = kubectl.get_json("httproute", NAME, ns) or {}
    assert not any(f.get("type") == "RequestMirror" for r in route["spec"]["rules"] for f in r.get("filters") or [])
    stable = after[f"{NAME}-stable"]
    answered = stable["ok"] - before.get(f"{NAME}-stable", {}).get("ok", 0)
    assert answered >= 100, after  # 25 requests/s for 8 s
    assert all(v.get("failed", 0) == 0 and v.get("error", 0) == 0 for v in after.values()), after
    assert set(after) == {f"{NAME}-stable"}, after
    deployments = kubectl.run("get", "deployments", "-n", ns, "-o", "name").stdout.split()
    assert len(deployments) == 1, f"only v1's revision: {deployments}"
