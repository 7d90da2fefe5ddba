"""After promotion on the real stack (issue 11): the watch window, the warm previous revision, undo, revisions.

Who serves is read from the answers themselves: every live response carries the model version that computed
it (Triton's `model_version`), so "100% of traffic on the previous revision" is the first answer by it after
the last answer by anyone else, as the traffic generator (which follows the HTTPRoute and the Services'
EndpointSlices, re-read every second) saw it. Time to recover is measured from the first Prometheus scrape
that shows the breach, as for canary rollbacks (test_rollouts.py scenario 2).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from e2e.conftest import printed_figures
from e2e.harness import Kubectl, wait_for
from e2e.manifests import model_deployment
from e2e.scenarios.test_control import plugin, whoami
from e2e.scenarios.test_rollouts import (
    NAME,
    SCRAPE_INTERVAL_S,
    Observer,
    Prometheus,
    bring_up_stable,
    deployments,
    history,
    wait_traffic_ok,
)
from e2e.stack import StackContext

pytestmark = pytest.mark.e2e

INTERVAL_S = 3
STEPS = [{"weight": 50, "duration": "6s"}]
ANALYSIS = {"interval": f"{INTERVAL_S}s", "failureLimit": 1, "minRequests": 5}
SLO = {"errorRate": {"max": 0.05}}


def v1_serving(kubectl: Kubectl, ns: str, operator: Any, traffic: Any, stack: StackContext) -> tuple[Any, Observer]:
    """Given: an operator for `ns`, v1 Healthy and answering live traffic, and an Observer running."""
    operator(ns)
    bring_up_stable(kubectl, ns)
    gen = traffic(ns, NAME, rps=25)
    wait_traffic_ok(gen, f"{NAME}-stable")
    return gen, Observer(stack, kubectl, ns).start()


def promote_v2(kubectl: Kubectl, ns: str, obs: Observer, window: str, keep: int) -> dict[str, Any]:
    """v2 rolled out over a serving v1 and promoted into its watch window."""
    kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS, analysis=ANALYSIS, slo=SLO,
                                   post_promotion={"window": window, "keepPrevious": {"replicas": keep}}))
    obs.wait("v2 promoted into its watch window", lambda s: s.stable == "2" and s.stage == "PostPromotion",
             timeout=60)
    return kubectl.status(NAME, ns)


def revision_of(status: dict[str, Any], version: str) -> str:
    for entry in reversed(status.get("revisions") or []):
        if entry["version"] == version:
            return str(entry["hash"])
    raise AssertionError(f"version {version} not in status.revisions: {status.get('revisions')}")


def first_breaching_scrape(prom: Prometheus, ns: str, revision: str, after: float) -> float:
    """Time of the first scrape after `after` in which the revision's failure counter rose."""
    time.sleep(SCRAPE_INTERVAL_S)
    selector = f'nv_inference_request_failure{{namespace="{ns}",modelship_dev_revision="{revision}"}}'
    samples = prom.raw(selector, int(time.time() - after) + 10)
    before = max((v for t, v in samples if t < after), default=0.0)
    breach = next((t for t, v in samples if t >= after and v > before), None)
    assert breach is not None, f"Prometheus never saw failures of {revision}: {samples[-10:]}"
    return breach


def breach_in_window(kubectl: Kubectl, ns: str, operator: Any, traffic: Any, faults: Any, stack: StackContext,
                     keep: int, fig: dict[str, Any]) -> float:
    """Given v1 serving and v2 promoted with keepPrevious `keep`, when v2 starts failing inside the window,
    then all traffic is back on v1 and spec is untouched; returns breach -> 100% on v1 in seconds."""
    prom = Prometheus(stack)
    gen, obs = v1_serving(kubectl, ns, operator, traffic, stack)
    status = promote_v2(kubectl, ns, obs, "120s", keep)
    v1, v2 = revision_of(status, "1"), revision_of(status, "2")
    assert status["previousRevision"]["version"] == "1" and status["phase"] == "Progressing"
    wait_for(f"v1 kept at {keep} pods", lambda: deployments(kubectl, ns).get(v1) == keep, timeout=20)
    wait_for(f"PreviousWarm {bool(keep)}", lambda: any(
        c["type"] == "PreviousWarm" and c["status"] == ("True" if keep else "False")
        for c in kubectl.status(NAME, ns)["conditions"]), timeout=20)
    wait_for("v2 answers live traffic", lambda: gen.all_served_by("2", after=time.time() - 3), timeout=20)

    # When: v2 turns bad after promotion (no spec change, no canary: a load effect the canary never saw).
    faults([{"match": {"namespace": ns, "revision": v2}, "error_rate": 0.5}])
    t_flip = time.time()

    # Then: all traffic back on v1, RolledBack at stage PostPromotion with evidence, spec still v2.
    t_all_v1 = wait_for("every live answer from v1", lambda: gen.all_served_by("1", after=t_flip), timeout=90)
    final = wait_for("phase RolledBack", lambda: (s := kubectl.status(NAME, ns)).get("phase") == "RolledBack"
                     and s, timeout=30)
    breach = first_breaching_scrape(prom, ns, v2, t_flip)
    obs.stop()
    assert final["stableRevision"]["version"] == "1" and final["failedRevision"]["version"] == "2"
    assert kubectl.get_json("modeldeployment", NAME, ns)["spec"]["model"]["version"] == "2"
    entry = next(h for h in reversed(history(kubectl, ns)) if h["event"] == "RolledBack")
    assert entry["stage"] == "PostPromotion" and "errorRate" in entry["reason"], entry
    outcomes = [(r["version"], r.get("outcome")) for r in final["revisions"]]
    assert outcomes[-2:] == [("2", "RolledBack"), ("1", None)], outcomes
    fig["keep_previous_replicas"] = keep
    fig["fault_flip_to_first_breaching_scrape_s"] = round(breach - t_flip, 2)
    fig["first_breaching_scrape_to_all_traffic_on_previous_s"] = round(t_all_v1 - breach, 2)
    fig["rollback_evidence"] = entry["reason"][:300]
    fig["stages_seen"] = obs.stages()
    return t_all_v1 - breach


def test_degradation_after_promotion_rolls_back_to_the_warm_previous_revision(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 serving and v2 promoted with a 120 s watch window and v1 kept warm (1 pod),
    when v2 starts failing half its requests after promotion,
    then the operator routes all traffic back to v1 at once: within analysis interval + scrape interval + 3 s of
    the first breaching scrape, RolledBack at stage PostPromotion with the evidence, spec untouched.
    """
    with printed_figures("after promotion: breach with the previous revision warm") as fig:
        recover = breach_in_window(kubectl, namespace, operator, traffic, faults, stack, 1, fig)
        bar = INTERVAL_S + SCRAPE_INTERVAL_S + 3
        fig["bound_s"] = bar
        assert recover <= bar, f"breach to 100% on the warm previous revision took {recover:.1f}s > {bar}s"


def test_degradation_after_promotion_with_a_cold_previous_revision_validates_it_first(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 serving and v2 promoted with keepPrevious 0 (no warm pods: PreviousWarm False),
    when v2 starts failing after promotion,
    then v1 is redeployed and validated (Triton contract and samples) before it takes all traffic back;
    the time is printed beside the warm case.
    """
    with printed_figures("after promotion: breach with the previous revision cold") as fig:
        breach_in_window(kubectl, namespace, operator, traffic, faults, stack, 0, fig)
        status = kubectl.status(NAME, namespace)
        events = [h["event"] for h in status["history"]]
        assert events.index("Validated", events.index("RolledBack")) < events.index("Restored"), events


def test_window_expiry_scales_previous_down_then_undo_redeploys_it_and_undo_again_is_instant(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v2 promoted with an 8 s watch window that passes,
    then v1 (kept warm during the window) is scaled away after it;
    when an SRE runs `kubectl modelship undo --to-version 1`,
    then v1 is redeployed, validated and takes all traffic, recorded with who asked, spec untouched;
    an undo to a version that never served is refused naming the known ones, and `kubectl modelship revisions`
    lists every period.
    """
    ns = namespace
    with printed_figures("after promotion: window expiry and undo") as fig:
        gen, obs = v1_serving(kubectl, ns, operator, traffic, stack)
        kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS, analysis=ANALYSIS, slo=SLO,
                                       scale_down_delay="3s",
                                       post_promotion={"window": "8s", "keepPrevious": {"replicas": 1}}))
        obs.wait("v2 in its window", lambda s: s.stable == "2" and s.stage == "PostPromotion", timeout=60)
        v1 = revision_of(kubectl.status(NAME, ns), "1")
        wait_for("v1 kept warm", lambda: deployments(kubectl, ns).get(v1) == 1, timeout=15)
        ended = obs.wait("window ended", lambda s: s.stable == "2" and s.stage == "Stable", timeout=40)
        wait_for("v1 Deployment gone after the window", lambda: v1 not in deployments(kubectl, ns), timeout=30)
        assert any(h["event"] == "WindowEnded" for h in history(kubectl, ns))

        # When: undo to v1 (cold: its Deployment is gone).
        t_undo = time.time()
        done = plugin(stack, ns, "undo", NAME, "--to-version", "1", "--timeout", "60")
        assert done.returncode == 0, done.stderr + done.stdout
        t_cold = wait_for("every live answer from v1", lambda: gen.all_served_by("1", after=t_undo), timeout=90)
        status = wait_for("v1 stable again", lambda: (s := kubectl.status(NAME, ns))["stableRevision"]["version"]
                          == "1" and s, timeout=30)
        events = [h["event"] for h in status["history"]]
        assert events.index("Validated", events.index("Undone")) < events.index("Restored"), events
        undone = next(h for h in reversed(status["history"]) if h["event"] == "Undone")
        assert undone["by"].startswith(whoami(kubectl)), undone
        assert kubectl.get_json("modeldeployment", NAME, ns)["spec"]["model"]["version"] == "2"

        refused = plugin(stack, ns, "undo", NAME, "--to-version", "9")
        assert refused.returncode == 1 and "never served as stable" in refused.stderr, refused.stderr
        revisions = plugin(stack, ns, "revisions", NAME)
        assert revisions.returncode == 0 and "Undone" in revisions.stdout and "Serving" in revisions.stdout
        obs.stop()
        fig["window_end_after_promotion_s"] = round(ended.t - obs.first(lambda s: s.stable == "2").t, 2)
        fig["undo_cold_request_to_all_traffic_on_v1_s"] = round(t_cold - t_undo, 2)
        fig["revisions"] = revisions.stdout.splitlines()


def test_undo_inside_the_window_is_instant_and_retry_rolls_out_again(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v2 promoted with v1 warm in a 120 s window,
    when an SRE runs `kubectl modelship undo`,
    then all traffic is on v1 within a few seconds (no validation wait), phase RolledBack, recorded as Undone;
    and `kubectl modelship retry` starts a full rollout of v2 again, as after any rollback.
    """
    ns = namespace
    with printed_figures("after promotion: undo inside the window") as fig:
        gen, obs = v1_serving(kubectl, ns, operator, traffic, stack)
        promote_v2(kubectl, ns, obs, "120s", 1)
        v1 = revision_of(kubectl.status(NAME, ns), "1")
        wait_for("v1 kept warm", lambda: deployments(kubectl, ns).get(v1) == 1, timeout=20)
        t_undo = time.time()
        done = plugin(stack, ns, "undo", NAME)
        assert done.returncode == 0, done.stderr + done.stdout
        t_warm = wait_for("every live answer from v1", lambda: gen.all_served_by("1", after=t_undo), timeout=30)
        status = kubectl.status(NAME, ns)
        assert status["phase"] == "RolledBack" and status["stableRevision"]["version"] == "1"
        assert "Validated" not in [h["event"] for h in status["history"][-2:]]
        retry = plugin(stack, ns, "retry", NAME)
        assert retry.returncode == 0, retry.stderr + retry.stdout
        obs.wait("v2 rolled out again", lambda s: s.canary == "2", after=time.time() - 1, timeout=30)
        obs.stop()
        fig["undo_warm_request_to_all_traffic_on_v1_s"] = round(t_warm - t_undo, 2)
        assert t_warm - t_undo <= 10, f"warm undo took {t_warm - t_undo:.1f}s"


def window_check_passed(status: dict[str, Any]) -> bool:
    """A check made in the window (after promotion, not the canary's last one) passed, outputShift judged."""
    last = status.get("lastAnalysis") or {}
    return (status.get("stage") == "PostPromotion" and last.get("verdict") == "Pass"
            and str(last.get("time")) > str(status.get("stageStartedAt"))
            and any(m["name"] == "outputShift" for m in last.get("metrics", [])))


def test_answers_that_drift_after_promotion_are_caught_against_the_warm_previous_revision(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 serving and v2 promoted after a compared shadow stage, with `canarySamplePercent: 100`, v1 warm,
    when v2's answers drift after promotion (scores pushed towards 1; no error, normal latency),
    then the comparator, comparing v2 (behind <name>-stable) with v1 (behind <name>-canary) on live requests,
    sees the shift, and the operator rolls back to v1 with outputShift as the evidence; v1 never took a live
    request while it was the baseline.
    """
    ns = namespace
    with printed_figures("after promotion: answers drift, caught by comparison with the previous revision") as fig:
        gen, obs = v1_serving(kubectl, ns, operator, traffic, stack)
        # PSI over a window needs its ~100 compared pairs (default minRequests): with a handful, the deciles of a
        # few dozen values move with noise alone. 25 rps, every request compared, 10 s windows: ~250 pairs.
        shadow = {"mirrorPercent": 100, "duration": "10s", "compare": {"canarySamplePercent": 100}}
        kubectl.apply(model_deployment(NAME, ns, "2", shadow=shadow, steps=[{"weight": 50, "duration": "10s"}],
                                       analysis={"interval": "5s", "failureLimit": 1, "minRequests": 100},
                                       slo=SLO, progress_deadline="90s",
                                       post_promotion={"window": "120s", "keepPrevious": {"replicas": 1}}))
        promoted = obs.wait("v2 promoted into its watch window",
                            lambda s: s.stable == "2" and s.stage == "PostPromotion", timeout=90)
        status = kubectl.status(NAME, ns)
        v2 = revision_of(status, "2")
        wait_for("a passing check in the window that compared answers", lambda: window_check_passed(
            kubectl.status(NAME, ns)), timeout=40)
        t_window = promoted.t + 3  # the traffic generator re-reads the route and Services every second

        # When: v2's answers drift (a silent failure: no error, no latency change).
        faults([{"match": {"namespace": ns, "revision": v2}, "answer": "shifted"}])
        t_flip = time.time()

        # Then: rolled back to v1 on the comparison, spec untouched.
        t_all_v1 = wait_for("every live answer from v1", lambda: gen.all_served_by("1", after=t_flip), timeout=90)
        final = wait_for("phase RolledBack", lambda: (s := kubectl.status(NAME, ns)).get("phase") == "RolledBack"
                         and s, timeout=30)
        obs.stop()
        entry = next(h for h in reversed(final["history"]) if h["event"] == "RolledBack")
        assert entry["stage"] == "PostPromotion" and "outputShift" in entry["reason"], entry
        served = [v for t, v in list(gen.served) if t_window <= t < t_flip]
        assert served and set(served) == {"2"}, "v1 answered live requests while it was only the baseline"
        fig["flip_to_all_traffic_on_previous_s"] = round(t_all_v1 - t_flip, 2)
        fig["rollback_evidence"] = entry["reason"][:400]
