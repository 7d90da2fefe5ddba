"""Output comparison on the real stack (issue 9): the shadow comparator judges the model's answers.

Every scenario runs the real operator, real Triton pods (the fault-injecting fraud scorer), the comparator as a
real `modelship compare` process at its pod IP (started by the pod runner with its own ServiceAccount token),
the real Prometheus scraping it, and live traffic whose mirror the HTTPRoute points at the comparator. Versions:
1 (stable), 2 (a mild retrain), 93 (silently wrong: shifted scores, no error, normal latency).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from e2e.conftest import printed_figures
from e2e.harness import Kubectl, wait_for
from e2e.manifests import model_deployment
from e2e.scenarios.test_rollouts import (
    NAME,
    Observer,
    Prometheus,
    bring_up_stable,
    revision_hash,
    rolled_back,
    wait_traffic_ok,
    warning_events,
)
from e2e.stack import StackContext
from e2e.stack.routes import route_mirrors

pytestmark = pytest.mark.e2e

COMPARATOR = f"{NAME}-comparator"
SHADOW = {"mirrorPercent": 100, "duration": "30s", "compare": {"enabled": True}}


def comparator_objects(kubectl: Kubectl, ns: str) -> dict[str, bool]:
    """Which of the comparator's objects exist (Deployment, Service, ServiceAccount, RoleBinding)."""
    found = {}
    for kind in ("deployment", "service", "serviceaccount", "rolebinding"):
        proc = kubectl.run("get", kind, COMPARATOR, "-n", ns, "-o", "name", check=False)
        found[kind] = proc.returncode == 0
    return found


def metric(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in result["metrics"] if m["name"] == name)


def serving_v1(kubectl: Kubectl, ns: str, traffic: Any, stack: StackContext) -> tuple[Any, Observer]:
    """Given: v1 Healthy with live traffic on it, and the object and its route watched from now on."""
    bring_up_stable(kubectl, ns)
    gen = traffic(ns, NAME, rps=25)
    wait_traffic_ok(gen, f"{NAME}-stable")
    return gen, Observer(stack, kubectl, ns).start()


def comparator_series(prom: Prometheus, ns: str, name: str, matchers: str = "") -> float:
    """The highest value the comparator reported in the last 5 minutes (it may be gone already)."""
    selector = f'namespace="{ns}",modelship_dev_role="comparator"{matchers}'
    return prom.scalar(f"sum(max_over_time({name}{{{selector}}}[5m]))") or 0.0


def test_a_silently_wrong_version_is_rolled_back_in_shadow_before_any_live_request(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic,
    when version 93 (every score pushed towards 1, no errors, normal latency) is applied behind a shadow stage
    with nothing configured but the shadow itself (comparison on by default, outputShift max 0.25),
    then the comparator runs during Shadow, outputShift breaches, the rollout is rolled back in Shadow with the
    evidence in status, history and a Warning Event, the canary never received a live request, and the
    comparator and its identity are removed."""
    ns = namespace
    operator(ns)
    prom = Prometheus(stack)
    with printed_figures("output comparison: silently wrong version rolled back in shadow") as fig:
        gen, obs = serving_v1(kubectl, ns, traffic, stack)

        t_apply = time.time()
        kubectl.apply(with_default_compare(model_deployment(
            NAME, ns, "93", shadow={"mirrorPercent": 100, "duration": "60s"}, slo={"errorRate": {"max": 0.05}},
            progress_deadline="90s", samples=False)))
        shadow = obs.wait("Shadow, the mirror on the comparator", lambda s: s.stage == "Shadow" and s.route_mirror,
                          timeout=60)
        route = kubectl.get_json("httproute", NAME, ns)
        mirror = route_mirrors(route)[0]["backendRef"]["name"]  # the External annotation on the stack's Traefik
        assert mirror == COMPARATOR, route
        wait_for("the comparator's objects", lambda: all(comparator_objects(kubectl, ns).values()), timeout=30)
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=90)
        t_back = time.time()
        obs.stop()

        # Then: never any live weight; rolled back in Shadow on outputShift, with the evidence.
        assert obs.max_route_canary() == 0 and all(s.weight == 0 for s in obs.samples)
        assert all(s.stage != "Canary" for s in obs.samples), obs.stages()
        shift = metric(st["lastAnalysis"], "outputShift")
        assert shift["verdict"] == "Fail" and shift["value"] > shift["max"] == 0.25, shift
        assert "over" in shift["message"] and "compared requests" in shift["message"], shift["message"]
        assert shift.get("detail", "").startswith("score p50"), shift
        assert st["lastAnalysis"]["compared"] >= 5
        rolled = next(h for h in reversed(st["history"]) if h["event"] == "RolledBack")
        assert rolled["stage"] == "Shadow" and "outputShift=" in rolled["reason"], rolled
        warning = wait_for("Warning Event RolledBack", lambda: [
            e for e in warning_events(kubectl, ns) if e["reason"] == "RolledBack"], timeout=10)[0]
        assert "outputShift=" in warning["message"], warning["message"]
        # The canary answered only the comparator: no live request ever reached it.
        backends = gen.summary()["backends"]
        live_on_canary = backends.get(f"{NAME}-canary", {}).get("sent", 0)
        assert live_on_canary == 0, backends
        assert f"mirror:{NAME}-canary" not in backends and backends[f"mirror:{COMPARATOR}"]["sent"] > 0, backends
        v93 = revision_hash(kubectl, ns, "93")
        # both are gone by now (the canary after scaleDownDelay, the comparator after Shadow): what they reported
        canary_seen = prom.scalar(f'sum(max_over_time(nv_inference_request_success{{namespace="{ns}",'
                                  f'modelship_dev_revision="{v93}"}}[5m]))') or 0
        compared = comparator_series(prom, ns, "modelship_comparator_compared_total")
        assert canary_seen > 0 and compared > 0, (canary_seen, compared)
        wait_for("comparator removed", lambda: not any(comparator_objects(kubectl, ns).values()), timeout=30)

        fig["apply_to_shadow_s"] = round(shadow.t - t_apply, 2)
        fig["shadow_to_rolled_back_s"] = round(t_back - shadow.t, 2)
        fig["output_shift"] = shift["value"]
        fig["evidence"] = shift["message"]
        fig["compared_in_last_window"] = st["lastAnalysis"]["compared"]
        fig["compared_total"] = compared
        fig["canary_requests_all_from_the_comparator"] = canary_seen
        fig["checks"] = obs.check_log()
        fig["warning_event"] = warning["message"]
        fig["traffic"] = {name: {k: v for k, v in counts.items() if k in ("sent", "ok", "failed")}
                          for name, counts in backends.items()}


def with_default_compare(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as a platform team writes it: a shadow stage and no `compare` (the default applies)."""
    manifest["spec"]["rollout"]["shadow"].pop("compare")
    return manifest


def test_a_mildly_retrained_version_passes_the_comparison_and_is_promoted(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic,
    when v2 (weights moved by 0.02) is applied with comparison on and outputAgreement within 0.05 of stable,
    then both output SLOs pass in Shadow over compared requests, the rollout goes on through the canary steps
    and v2 is promoted; the comparator is gone once Shadow ends."""
    ns = namespace
    operator(ns)
    with printed_figures("output comparison: mild retrain promoted") as fig:
        _gen, obs = serving_v1(kubectl, ns, traffic, stack)
        shadow = {**SHADOW, "duration": "20s", "compare": {"absolute": 0.05}}
        kubectl.apply(model_deployment(NAME, ns, "2", shadow=shadow, progress_deadline="90s",
                                       slo={"errorRate": {"max": 0.05}, "outputAgreement": {"min": 0.95}}))
        step = obs.wait("canary step 1", lambda s: s.stage == "Canary" and s.canary == "2", timeout=120)
        in_shadow = [s.check for s in obs.samples if s.stage == "Shadow" and s.check]
        promoted = obs.wait("v2 promoted", lambda s: s.phase == "Healthy" and s.stable == "2", timeout=90)
        obs.stop()
        passed = [c for c in in_shadow if c[1] == "Pass"]
        assert passed, obs.check_log()
        history = kubectl.status(NAME, ns)["history"]
        assert any(h["event"] == "Promoted" for h in history)
        wait_for("comparator removed", lambda: not any(comparator_objects(kubectl, ns).values()), timeout=30)
        fig["shadow_checks"] = sorted(set(in_shadow), key=lambda c: c[0])
        fig["shadow_to_step1_s"] = round(step.t - obs.first(lambda s: s.stage == "Shadow").t, 2)  # type: ignore[union-attr]
        fig["promoted_at_s"] = round(promoted.t - obs.samples[0].t, 2)
        fig["checks"] = obs.check_log()


def test_comparator_overload_drops_mirrors_without_touching_live_traffic(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic at 40 requests/s,
    when v2 answers 2 s late for the comparator (a live fault on the canary) during a long Shadow,
    then the comparator's queue fills and it drops the excess mirrors, counted as outcome=dropped, while live
    requests keep succeeding at stable's latency."""
    ns = namespace
    operator(ns)
    prom = Prometheus(stack)
    with printed_figures("output comparison: comparator overload") as fig:
        bring_up_stable(kubectl, ns)
        gen = traffic(ns, NAME, rps=40)
        wait_traffic_ok(gen, f"{NAME}-stable", n=40)
        before = gen.summary()["backends"][f"{NAME}-stable"]
        faults([{"match": {"namespace": ns, "version": "2"}, "latency_ms": 2000}])
        kubectl.apply(model_deployment(NAME, ns, "2", shadow={**SHADOW, "duration": "5m"},
                                       progress_deadline="10m", samples=False))
        wait_for("mirrors dropped", lambda: _dropped(prom, ns) > 50, timeout=120, interval=1.0)
        during = gen.summary()["backends"][f"{NAME}-stable"]
        new_ok = during["ok"] - before["ok"]
        new_sent = during["sent"] - before["sent"]
        assert new_sent > 0 and new_ok == new_sent, (before, during)
        queued = prom.scalar(f'max(modelship_comparator_queue_depth{{namespace="{ns}"}})')
        fig["dropped"] = _dropped(prom, ns)
        fig["compared"] = comparator_series(prom, ns, "modelship_comparator_compared_total")
        fig["queue_depth"] = queued
        fig["live_ok_during"] = f"{new_ok}/{new_sent}"
        fig["live_p99_ms"] = round(1000 * sorted(gen.latencies[f"{NAME}-stable"])[
            int(0.99 * (len(gen.latencies[f"{NAME}-stable"]) - 1))], 1)


def _dropped(prom: Prometheus, ns: str) -> float:
    return comparator_series(prom, ns, "modelship_comparator_requests_total", ',outcome="dropped"')


def test_an_observe_only_output_slo_that_breaches_never_fails_a_check(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic,
    when version 93 (shifted scores) is applied with outputShift {max: 0.25, enforce: false},
    then the breach is measured, shown in status and evented (ObservedSloBreach), no check fails on it, and the
    rollout proceeds past Shadow into the canary steps."""
    ns = namespace
    operator(ns)
    with printed_figures("output comparison: observe-only SLO") as fig:
        _gen, obs = serving_v1(kubectl, ns, traffic, stack)
        kubectl.apply(model_deployment(NAME, ns, "93", shadow={**SHADOW, "duration": "20s"}, progress_deadline="90s",
                                       slo={"errorRate": {"max": 0.05},
                                            "outputShift": {"max": 0.25, "enforce": False}}, samples=False))
        breach = wait_for("ObservedSloBreach Event", lambda: [
            e for e in warning_events(kubectl, ns) if e["reason"] == "ObservedSloBreach"], timeout=90)[0]
        step = obs.wait("past Shadow into the canary", lambda s: s.stage == "Canary" and s.canary == "93",
                        timeout=90)
        obs.stop()
        status = kubectl.status(NAME, ns)
        assert not any(h["event"] in ("AnalysisFailed", "RolledBack") for h in status["history"]), status["history"]
        assert "outputShift" in breach["message"] and "(observe-only)" in breach["message"], breach
        shadow_checks = [s.check for s in obs.samples if s.stage == "Shadow" and s.check]
        assert shadow_checks and all(c[1] != "Fail" for c in shadow_checks), shadow_checks
        assert any("observe-only breached: outputShift" in c[2] for c in shadow_checks), shadow_checks
        fig["event"] = breach["message"]
        fig["shadow_to_canary_s"] = round(step.t - obs.first(lambda s: s.stage == "Shadow").t, 2)  # type: ignore[union-attr]
        fig["checks"] = obs.check_log()
        fig["events"] = json.dumps([e["reason"] for e in warning_events(kubectl, ns)])
