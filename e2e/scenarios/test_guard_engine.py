"""Issue 8 on the real stack, the rollout engine's items.

2. A spec the API server accepts but the operator refuses (here: FP32 sample data given as text), applied while a
   canary runs at 50%: status says Invalid naming the field and the fix, nothing of the new spec is applied, and
   when the canary then fails its checks it is still rolled back (before the fix: frozen at 50%, 90% errors).
11. gpuSurge ScaleDownStable on a full GPU pool: stable never runs with fewer pods than the traffic share it
   carries at that moment (before the fix: 1 of 3 pods while carrying half the traffic during promotion), and
   the rollout still promotes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from itertools import pairwise
from math import ceil
from typing import Any

import pytest

from e2e.conftest import GpuPool, OperatorFactory, printed_figures
from e2e.harness import Kubectl, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.rollout_watch import RolloutWatcher, Sample, triton_ready
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"


def healthy(kubectl: Kubectl, ns: str, version: str, timeout: float = 90) -> dict[str, Any]:
    return status_when(kubectl, ns, f"Healthy on version {version}", lambda s: s.get("phase") == "Healthy"
                       and (s.get("stableRevision") or {}).get("version") == version, timeout=timeout, name=NAME)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def refused_by_the_operator(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with FP32 sample data given as text: the schema allows text (BYTES samples need it), the
    operator's semantic validation refuses it for FP32."""
    broken = copy.deepcopy(manifest)
    sample_input = broken["spec"]["validation"]["samples"][0]["inputs"][0]
    assert sample_input["datatype"] == "FP32", sample_input
    sample_input["data"] = ["not-a-number", *sample_input["data"][1:]]
    return broken


def test_invalid_spec_mid_canary_keeps_the_failing_canary_guarded(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    faults: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Given v1 stable with live traffic and v2 at its 50% step,
    when a v3 manifest the operator refuses is applied, and then v2 starts failing 90% of its requests,
    then status is Invalid naming the field and the fix, no v3 Deployment ever appears, and v2 is rolled back
    (route 100% to stable) on its failed checks, with the Invalid condition still set."""
    ns = namespace
    operator(ns)
    kw: dict[str, Any] = {"steps": [{"weight": 50, "duration": "10m"}], "progress_deadline": "5m",
                          "analysis": {"interval": "3s", "failureLimit": 2, "minRequests": 5},
                          "slo": {"errorRate": {"max": 0.05}}}
    with printed_figures("issue 8 item 2: invalid spec mid-canary") as fig:
        kubectl.apply(model_deployment(NAME, ns, "1", **kw))
        v1 = healthy(kubectl, ns, "1")["stableRevision"]["hash"]
        triton_ready(kubectl, ns, NAME)
        gen = traffic(ns, NAME)
        with RolloutWatcher(kubectl, ns, NAME, traffic=gen) as watch:
            kubectl.apply(model_deployment(NAME, ns, "2", **kw))
            at_50 = wait_for("v2 at 50% on the route", lambda: watch.first(
                lambda s: s.stage == "Canary" and s.route_canary_weight == 50), timeout=60)
            v2 = at_50.canary
            # When: a spec the API server accepts and the operator refuses, with a new version in it.
            kubectl.apply(refused_by_the_operator(model_deployment(NAME, ns, "3", **kw)))
            invalid = status_when(kubectl, ns, "phase Invalid", lambda s: s.get("phase") == "Invalid",
                                  timeout=20, name=NAME)
            fig["invalid_message"] = invalid["message"]
            assert "spec.validation.samples[0].inputs[0]" in invalid["message"], invalid["message"]
            assert "FP32 data must be numbers" in invalid["message"], invalid["message"]
            assert condition(invalid, "Invalid").get("status") == "True"
            assert invalid["canaryRevision"]["hash"] == v2 and invalid["canaryWeight"] == 50
            # ... and the canary starts failing.
            faults([{"match": {"namespace": ns, "revision": v2}, "error_rate": 0.9}])
            flipped = watch.now()
            back = wait_for("route 100% to stable", lambda: watch.first(
                lambda s: s.canary is None and (s.route_canary_weight or 0) == 0, after=flipped), timeout=60)
            fig["fault_to_100pct_stable_s"] = round(back.t - flipped, 1)
        done = kubectl.status(NAME, ns)
        fig["final_message"] = done["message"]
        assert done["phase"] == "Invalid", "the newest spec is still invalid"
        assert done["failedRevision"]["hash"] == v2 and done["stableRevision"]["hash"] == v1
        assert condition(done, "Degraded").get("reason") == "AnalysisFailed", done["conditions"]
        assert condition(done, "Invalid").get("status") == "True"
        rolled = [h for h in done["history"] if h["event"] == "RolledBack" and h["revision"] == v2]
        assert rolled and "Fail" in rolled[-1]["reason"], done["history"]
        revisions = {rev for s in watch.samples for rev in s.replicas}
        fig["revisions_seen"] = sorted(revisions)
        assert revisions <= {v1, v2}, f"a Deployment of the invalid spec was applied: {revisions - {v1, v2}}"
        assert all("version 3" not in h["reason"] for h in done["history"]), done["history"]


def test_scale_down_stable_never_leaves_stable_short_of_its_current_share(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    gpu_pool: Callable[..., GpuPool],
) -> None:
    """Given stable v1 on 6 of the 8 GPUs of its pool (3 replicas x 2 GPUs), gpuSurge ScaleDownStable and one 50%
    step (the canary needs 2 pods for it, 3 to be promoted),
    when v2 is rolled out,
    then at every sample stable's Deployment asks for at least ceil(3 x stable's share of the route) pods, and
    v2 is promoted."""
    ns = namespace
    pool = gpu_pool(ns, 2, 4)
    operator(ns)
    replicas = 3
    kw: dict[str, Any] = {"replicas": replicas, "gpus": 2, "gpu_surge": "ScaleDownStable",
                          "progress_deadline": "60s", "steps": [{"weight": 50, "duration": "8s"}]}

    def manifest(version: str) -> dict[str, Any]:
        m = model_deployment(NAME, ns, version, **kw)
        m["spec"]["serving"].update(pool.placement)
        return m

    with printed_figures("issue 8 item 11: ScaleDownStable keeps stable at its current share") as fig:
        kubectl.apply(manifest("1"))
        v1 = healthy(kubectl, ns, "1")["stableRevision"]["hash"]
        triton_ready(kubectl, ns, NAME)
        gen = traffic(ns, NAME)
        with RolloutWatcher(kubectl, ns, NAME, traffic=gen, period=0.2) as watch:
            kubectl.apply(manifest("2"))
            done = healthy(kubectl, ns, "2", timeout=120)
        assert done["stableRevision"]["hash"] != v1
        routed = [s for s in watch.samples if v1 in s.replicas and s.stable == v1]

        def short_of_share(sample: Sample) -> bool:
            return sample.replicas[v1] < ceil(replicas * (100 - (sample.route_canary_weight or 0)) / 100)

        # One `kubectl get` reads the route before the Deployments, so a sample can straddle the operator's
        # route-then-shrink; a stable really left short stays short over consecutive samples (seconds).
        short = [(round(b.t, 1), b.stage, b.replicas[v1], b.route_canary_weight) for a, b in pairwise(routed)
                 if short_of_share(a) and short_of_share(b)]
        fig["stable_sizes_seen"] = sorted({s.replicas[v1] for s in routed}, reverse=True)
        fig["canary_weights_seen"] = sorted({s.route_canary_weight or 0 for s in routed})
        fig["samples_stable_short"] = short
        assert not short, short
        assert min(s.replicas[v1] for s in routed) < replicas, "stable never lent a GPU"
        assert any(h["event"] == "Promoted" for h in done["history"])
