"""Human control scenarios (issue 4, scenarios 10 and 11): approval gates driven with `kubectl modelship`, and a
new version applied in the middle of a canary.

10. An approval step pauses the rollout (phase Paused, awaitingApproval; Argo CD shows Suspended);
    `kubectl modelship promote` continues it and history records who approved (the stack's admin identity).
    A second rollout is aborted at its gate (rolled back, by whom), then `retry` starts it again and, the
    model being healthy, it promotes after a second approval.
11. v3 applied while v2 is at its first canary step: the v2 canary is abandoned cleanly (history Superseded,
    its Deployment removed after scaleDownDelay, the route never points at v2 again) and v3 rolls out to
    promotion.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from itertools import pairwise
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.rollout_watch import RolloutWatcher, assert_monotone_path, triton_ready
from e2e.stack import REPO, StackContext
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"


# --- helpers -----------------------------------------------------------------------------------------------


def healthy(kubectl: Kubectl, ns: str, version: str, timeout: float = 90) -> dict[str, Any]:
    return status_when(kubectl, ns, f"Healthy on version {version}", lambda s: s.get("phase") == "Healthy"
                       and (s.get("stableRevision") or {}).get("version") == version, timeout=timeout)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def plugin(stack: StackContext, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl modelship ...` as an SRE runs it (the installed console script)."""
    cmd = [str(REPO / ".venv" / "bin" / "kubectl-modelship"), "--kubeconfig", str(stack.kubeconfig), "-n", ns, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def whoami(kubectl: Kubectl) -> str:
    """The identity the API server gives the stack's kubeconfig (what the plugin records as `by`)."""
    return kubectl.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()


def argocd_health(obj: dict[str, Any]) -> str:
    """Status of the shipped Argo CD health check on a real object (Lua, as Argo CD runs it)."""
    from lupa import lua51  # noqa: PLC0415

    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return str(dict(result.items()).get("status"))


def deployments(kubectl: Kubectl, ns: str) -> dict[str, int]:
    """spec.replicas of every Deployment the operator owns, by revision hash."""
    out = json.loads(kubectl.run("get", "deployments", "-n", ns, "-l", f"modelship.dev/deployment={NAME}",
                                 "-o", "json").stdout)
    return {d["metadata"]["labels"]["modelship.dev/revision"]: int(d["spec"].get("replicas", 1))
            for d in out["items"]}


# --- 10. approval gates ------------------------------------------------------------------------------------

STEPS: list[dict[str, Any]] = [{"weight": 25, "duration": "6s"}, {"approval": {}}, {"weight": 60, "duration": "6s"}]


def test_approval_gate_promote_then_abort_and_retry(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext,
) -> None:
    """Given v1 Healthy and steps 25% -> approval -> 60%,
    when v2 reaches the approval step,
    then it pauses at 25% (phase Paused, awaitingApproval, Progressing reason AwaitingApproval, Argo CD
    Suspended) and does not advance on its own; `kubectl modelship promote` continues it to promotion and
    history records the approver (the stack's admin identity).
    When v3 then reaches the gate and is aborted with `kubectl modelship abort`, traffic returns to v2 at once
    and history records who aborted; `kubectl modelship retry` rolls v3 out again and, approved, it promotes."""
    ns = namespace
    operator(ns)
    me = whoami(kubectl)
    with printed_figures("10 approval gate: promote, abort, retry") as fig:
        fig["identity"] = me
        kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS))
        healthy(kubectl, ns, "1")
        triton_ready(kubectl, ns, NAME)
        gen = traffic(ns, NAME)

        def at_gate(version: str) -> dict[str, Any]:
            return status_when(kubectl, ns, f"{version} waiting for approval", lambda s: bool(
                s.get("awaitingApproval")) and (s.get("canaryRevision") or {}).get("version") == version,
                timeout=60)

        with RolloutWatcher(kubectl, ns, NAME, traffic=gen) as watch:
            # When: v2 reaches the gate.
            kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS))
            t_apply = watch.now()
            gate = at_gate("2")
            fig["v2_at_gate_s"] = round(watch.now() - t_apply, 1)
            # Then: paused, explained, and Argo CD shows Suspended.
            assert gate["phase"] == "Paused" and gate["step"] == 1 and gate["canaryWeight"] == 25, gate
            assert condition(gate, "Progressing").get("reason") == "AwaitingApproval", gate["conditions"]
            assert "kubectl modelship promote" in gate["message"], gate["message"]
            fig["argocd_at_gate"] = argocd_health(kubectl.mdep(NAME, ns))
            assert fig["argocd_at_gate"] == "Suspended"
            time.sleep(8)  # longer than a step and two analysis intervals: a gate never opens by itself
            still = kubectl.status(NAME, ns)
            assert still["awaitingApproval"] and still["step"] == 1 and still["phase"] == "Paused", still
            # When: an SRE approves.
            t = watch.now()
            out = plugin(stack, ns, "promote", NAME)
            fig["promote_cli_s"] = round(watch.now() - t, 1)
            assert out.returncode == 0, out.stdout + out.stderr
            fig["promote_output"] = out.stdout.strip().splitlines()[-1:]
            after = status_when(kubectl, ns, "past the gate", lambda s: s.get("step") == 2 or s.get(
                "phase") == "Healthy")
            assert not after.get("awaitingApproval")
            done = healthy(kubectl, ns, "2", timeout=60)
            fig["v2_promoted_after_approval_s"] = round(watch.now() - t, 1)
        approved = [h for h in done["history"] if h["event"] == "Approved" and h["version"] == "2"]
        assert len(approved) == 1 and approved[0]["by"] == me, approved
        assert_monotone_path(watch.positions(), steps=len(STEPS))

        fig["failures_first_rollout"] = watch.failures()
        # Second rollout: aborted at the gate.
        with RolloutWatcher(kubectl, ns, NAME, traffic=gen) as watch:
            kubectl.apply(model_deployment(NAME, ns, "3", steps=STEPS))
            v3 = at_gate("3")["canaryRevision"]["hash"]
            t = watch.now()
            out = plugin(stack, ns, "abort", NAME)
            assert out.returncode == 0, out.stdout + out.stderr
            rolled = status_when(kubectl, ns, "RolledBack after abort", lambda s: s.get("phase") == "RolledBack")
            fig["abort_to_rolled_back_s"] = round(watch.now() - t, 1)
            back = wait_for("route back to 100% stable", lambda: watch.first(
                lambda s: s.t >= t and (s.route_canary_weight or 0) == 0), timeout=10)
            fig["abort_to_route_100pct_stable_s"] = round(back.t - t, 1)
            assert rolled["stableRevision"]["version"] == "2" and rolled["canaryWeight"] == 0
            assert condition(rolled, "Degraded").get("reason") == "Aborted", rolled["conditions"]
            last = rolled["history"][-1]
            assert last["event"] == "RolledBack" and last["by"] == me and last["version"] == "3", last
            wait_for("v3 Deployment removed after scaleDownDelay", lambda: v3 not in deployments(kubectl, ns),
                     timeout=30)
            # The rolled-back revision is not retried on its own (GitOps re-applies change nothing).
            kubectl.apply(model_deployment(NAME, ns, "3", steps=STEPS))
            time.sleep(4)
            assert kubectl.status(NAME, ns)["phase"] == "RolledBack"
            # When: retry.
            t = watch.now()
            out = plugin(stack, ns, "retry", NAME)
            assert out.returncode == 0, out.stdout + out.stderr
            retried = at_gate("3")
            fig["retry_to_gate_s"] = round(watch.now() - t, 1)
            assert retried["canaryRevision"]["hash"] == v3
            out = plugin(stack, ns, "promote", NAME)
            assert out.returncode == 0, out.stdout + out.stderr
            final = healthy(kubectl, ns, "3", timeout=60)
            fig["retry_to_promoted_s"] = round(watch.now() - t, 1)
        fig["failures_second_rollout"] = watch.failures()
        events = [(h["event"], h["version"], h["by"]) for h in final["history"]]
        fig["history"] = events
        assert ("Retried", "3", me) in events and ("Promoted", "3", "modelship") in events
        assert [e for e in events if e[0] == "Approved"] == [("Approved", "2", me), ("Approved", "3", me)]
        assert final["phase"] == "Healthy" and condition(final, "Degraded").get("status") == "False"
        summary = gen.summary()["backends"]
        fig["traffic"] = {k: {f: v.get(f, 0) for f in ("sent", "ok", "error", "failed")} for k, v in summary.items()}
        assert all(v.get("failed", 0) == 0 for v in summary.values()), (
            summary, fig["failures_first_rollout"], fig["failures_second_rollout"])


# --- 11. a new version mid-canary ----------------------------------------------------------------------------


def test_new_version_mid_canary_supersedes_cleanly(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
) -> None:
    """Given v1 Healthy and v2 at its first canary step (20%) under live traffic,
    when v3 is applied,
    then traffic leaves v2 at once, history records v2 Superseded, v2's Deployment is removed after
    scaleDownDelay, the route never points at v2 again, and v3 rolls out from validation to promotion."""
    ns = namespace
    operator(ns)
    steps = [{"weight": 20, "duration": "10s"}, {"weight": 50, "duration": "6s"}]
    with printed_figures("11 new version mid-canary") as fig:
        kubectl.apply(model_deployment(NAME, ns, "1", steps=steps))
        v1 = healthy(kubectl, ns, "1")["stableRevision"]["hash"]
        triton_ready(kubectl, ns, NAME)
        gen = traffic(ns, NAME)
        with RolloutWatcher(kubectl, ns, NAME, period=0.25) as watch:
            kubectl.apply(model_deployment(NAME, ns, "2", steps=steps))
            at_step = wait_for("v2 at 20% on the route", lambda: watch.first(
                lambda s: s.stage == "Canary" and s.step == 0 and s.route_canary_weight == 20), timeout=40)
            v2 = at_step.canary
            assert v2 is not None and at_step.canary_service_revision == v2
            time.sleep(2)  # live traffic on the v2 canary
            # When: v3 is applied mid-step.
            t = watch.now()
            kubectl.apply(model_deployment(NAME, ns, "3", steps=steps))
            sup = status_when(kubectl, ns, "v3 is the canary", lambda s: (s.get("canaryRevision") or {}).get(
                "version") == "3")
            v3 = sup["canaryRevision"]["hash"]
            fig["apply_to_v3_canary_s"] = round(watch.now() - t, 1)
            off = wait_for("route off v2", lambda: watch.first(
                lambda s: s.t >= t and (s.route_canary_weight or 0) == 0), timeout=10)
            fig["apply_to_route_off_v2_s"] = round(off.t - t, 1)
            gone = wait_for("v2 Deployment removed", lambda: v2 not in deployments(kubectl, ns) and watch.now(),
                            timeout=30)
            fig["apply_to_v2_removed_s"] = round(gone - t, 1)
            done = healthy(kubectl, ns, "3", timeout=90)
            fig["apply_to_v3_promoted_s"] = round(watch.now() - t, 1)
            time.sleep(1)
        # Then: v2 Superseded once, with the reason; v3 started once and promoted.
        history = done["history"]
        superseded = [h for h in history if h["event"] == "Superseded"]
        assert len(superseded) == 1 and superseded[0]["revision"] == v2 and superseded[0]["outcome"] == "Superseded"
        fig["superseded_reason"] = superseded[0]["reason"]
        assert [h["event"] for h in history if h["revision"] == v3].count("Started") == 1
        assert any(h["event"] == "Promoted" and h["revision"] == v3 for h in history)
        assert not any(h["event"] == "Promoted" and h["revision"] == v2 for h in history)
        # The route never carried weight to v2 after the supersede was observed in status.
        t_sup = next(s.t for s in watch.samples if s.canary == v3)
        on_v2 = [s for s in watch.samples if s.t >= t_sup and (s.route_canary_weight or 0) > 0
                 and s.canary_service_revision == v2]
        assert not on_v2, on_v2[:3]
        assert all(s.canary != v2 for s in watch.samples if s.t >= t_sup)
        wait_for("only v3's Deployment left (v1 retired after scaleDownDelay)",
                 lambda: deployments(kubectl, ns) == {v3: 1}, timeout=30)
        assert v1 != v3
        positions = [p for p in watch.positions() if p[0] == v3]
        assert_monotone_path(positions, steps=len(steps))
        fig["v3_path"] = [p[1:] for p in positions]
        # Each transition is announced once (kubectl describe shows the story without repeats): the same
        # Event twice within 2 s is one transition decided twice (v2's and v3's step 1 read alike, but
        # seconds apart).
        out = kubectl.run("get", "events", "-n", ns, "--field-selector", "involvedObject.kind=ModelDeployment",
                          "-o", "json").stdout
        told = sorted((e["reason"], e["message"], datetime.fromisoformat(e["firstTimestamp"].replace("Z", "+00:00")))
                      for e in json.loads(out)["items"])
        fig["events"] = len(told)
        repeated = [a[:2] for a, b in pairwise(told)
                    if a[:2] == b[:2] and (b[2] - a[2]).total_seconds() < 2]
        assert not repeated, repeated
        summary = gen.summary()["backends"]
        fig["traffic"] = {k: {f: v.get(f, 0) for f in ("sent", "ok", "error", "failed")} for k, v in summary.items()}
        assert all(v.get("failed", 0) == 0 and v.get("error", 0) == 0 for v in summary.values()), summary
