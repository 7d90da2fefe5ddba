"""Issue 8, item 1 on the real stack: a ModelDeployment without an `slo` block is judged on the default bound
(errorRate max 0.01), and the operator measures exactly that bound, so a healthy new version is promoted.

Before the fix the adapter queried only declared SLOs: every check was NoData and the healthy v2 was rolled
back at progressDeadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from e2e.conftest import OperatorFactory
from e2e.harness import Kubectl, status_when
from e2e.manifests import model_deployment
from e2e.rollout_watch import triton_ready
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"


def without_slo(namespace: str, version: str) -> dict[str, Any]:
    """The scenarios' manifest with the `slo` block left out, as a new user writes it."""
    manifest = model_deployment(NAME, namespace, version)
    del manifest["spec"]["slo"]
    return manifest


def test_spec_without_slo_block_promotes_a_healthy_version(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
) -> None:
    """Given v1 Healthy from a manifest with no `slo` block, and live traffic,
    when a healthy v2 is applied,
    then its checks measure errorRate against the default max 0.01, pass, and v2 is promoted."""
    ns = namespace
    operator(ns)
    kubectl.apply(without_slo(ns, "1"))
    status_when(kubectl, ns, "v1 Healthy", lambda s: s.get("phase") == "Healthy"
                and (s.get("stableRevision") or {}).get("version") == "1", timeout=90, name=NAME)
    triton_ready(kubectl, ns, NAME)
    traffic(ns, NAME)
    assert not kubectl.mdep(NAME, ns)["spec"].get("slo"), "the API server defaults slo to {} at most"

    kubectl.apply(without_slo(ns, "2"))
    checks: list[dict[str, Any]] = []

    def promoted(status: dict[str, Any]) -> bool:
        last = status.get("lastAnalysis")
        if isinstance(last, dict) and last not in checks:
            checks.append(last)
        assert status.get("phase") != "RolledBack", status.get("message")
        return status.get("phase") == "Healthy" and (status.get("stableRevision") or {}).get("version") == "2"

    done = status_when(kubectl, ns, "v2 promoted", promoted, timeout=120, interval=0.3, name=NAME)

    assert any(h["event"] == "Promoted" and h["version"] == "2" for h in done["history"]), done["history"]
    passed = [c for c in checks if c.get("verdict") == "Pass"]
    assert passed, [c.get("message") for c in checks]
    for check in passed:
        [metric] = check["metrics"]
        assert metric["name"] == "errorRate" and metric["max"] == 0.01, metric
        assert metric["value"] is not None and metric["value"] <= 0.01, metric
