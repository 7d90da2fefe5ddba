"""The Argo Rollouts bench's bookkeeping: what a watch shows becomes transitions, lateness and health."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.measure import (
    CLOCK_TICKS,
    is_write,
    others_rate,
    parse_counter,
    parse_cpu_seconds,
    parse_histogram_counts,
)
from bench.peers import argo_objects
from bench.peers.rollout_watch import RolloutBook, parse_time

START = "2026-11-30T22:00:00Z"


def rollout(name: str, generation: int, observed: int, phase: str, index: int | None,
            pause_start: str | None = None, stable: str = "a", current: str = "a") -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": str(observed), "phase": phase, "stableRS": stable,
                              "currentPodHash": current}
    if index is not None:
        status["currentStepIndex"] = index
    if pause_start:
        status["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": pause_start}]
    return {"metadata": {"name": name, "generation": generation}, "status": status}


def book() -> RolloutBook:
    return RolloutBook(argo_objects.pause_steps(argo_objects.canary_steps(30)), 30.0)


def test_a_canary_seen_by_the_watch_gives_four_transitions_and_the_lateness_of_both_pauses() -> None:
    # Given a settled Rollout being recorded
    t0 = parse_time(START)
    watched = book()
    watched.observe(rollout("r1", 1, 1, "Healthy", 4), t0 - 100)
    watched.start_recording()
    # When the new template resets the steps, the canary pauses twice and finishes
    watched.observe(rollout("r1", 2, 2, "Progressing", 0, stable="a", current="b"), t0 - 1)
    watched.observe(rollout("r1", 2, 2, "Paused", 1, START, stable="a", current="b"), t0 + 0.4)
    watched.observe(rollout("r1", 2, 2, "Progressing", 2, stable="a", current="b"), t0 + 30.7)
    watched.observe(rollout("r1", 2, 2, "Paused", 3, "2026-11-30T22:00:40Z", stable="a", current="b"), t0 + 41)
    watched.observe(rollout("r1", 2, 2, "Healthy", 4, stable="b", current="b"), t0 + 71.5)
    # Then every step advance is counted once, and each pause is late by arrival - (startTime + 30 s)
    assert watched.transitions == 4
    assert sorted(round(x, 3) for x in watched.lateness()) == [0.7, 1.5]
    assert watched.healthy_count() == 1


def test_a_watch_that_skips_a_step_still_counts_it_and_the_pause_it_passed() -> None:
    t0 = parse_time(START)
    watched = book()
    watched.start_recording()
    watched.observe(rollout("r1", 2, 2, "Paused", 1, START, current="b"), t0)
    watched.observe(rollout("r1", 2, 2, "Paused", 3, "2026-11-30T22:00:31Z", current="b"), t0 + 32)
    assert watched.transitions == 2
    assert watched.lateness() == [2.0]


def test_health_needs_the_current_generation_observed_and_the_new_template_stable() -> None:
    watched = book()
    watched.observe(rollout("stale", 2, 1, "Healthy", 4), 0)
    watched.observe(rollout("canary", 2, 2, "Healthy", 4, stable="a", current="b"), 0)
    watched.observe(rollout("done", 2, 2, "Healthy", 4, stable="b", current="b"), 0)
    watched.observe(rollout("gone", 1, 1, "Healthy", 4), 0)
    watched.observe(rollout("gone", 1, 1, "Healthy", 4), 0, deleted=True)
    assert watched.healthy_count() == 1


def test_nothing_is_recorded_before_recording_starts() -> None:
    watched = book()
    watched.observe(rollout("r1", 1, 1, "Progressing", 0), 0)
    watched.observe(rollout("r1", 1, 1, "Paused", 1, START), 1)
    watched.observe(rollout("r1", 1, 1, "Healthy", 4), 2)
    assert (watched.transitions, watched.lateness()) == (0, [])


def test_cpu_seconds_are_utime_plus_stime_even_when_the_command_name_has_spaces_and_parentheses() -> None:
    fields = ["S"] + ["0"] * 10 + [str(3 * CLOCK_TICKS), str(2 * CLOCK_TICKS)] + ["0"] * 30
    line = "4242 (rollouts (x) y) " + " ".join(fields)
    assert parse_cpu_seconds(line) == 5.0


def test_a_client_counter_is_summed_by_verb_and_writes_are_told_from_reads() -> None:
    text = """# HELP controller_clientset_k8s_request_total Number of kubernetes requests.
# TYPE controller_clientset_k8s_request_total counter
controller_clientset_k8s_request_total{kind="Rollout",name="r1",namespace="n",status_code="200",verb="Get"} 2
controller_clientset_k8s_request_total{kind="Rollout",name="r2",namespace="n",status_code="200",verb="Get"} 3
controller_clientset_k8s_request_total{kind="Rollout",name="r2",namespace="n",status_code="200",verb="Update"} 4
"""
    counts = parse_counter(text, "controller_clientset_k8s_request_total", ("verb",))
    assert counts == {"Get": 5, "Update": 4}
    assert [verb for verb in counts if is_write(verb)] == ["Update"]
    assert is_write("PATCH") and is_write("POST") and not is_write("LIST")


def test_a_histogram_count_per_name_tells_which_objects_were_reconciled() -> None:
    text = """# HELP rollout_reconcile Rollout reconciliation performance.
# TYPE rollout_reconcile histogram
rollout_reconcile_bucket{name="r1",namespace="n",le="0.01"} 1
rollout_reconcile_bucket{name="r1",namespace="n",le="+Inf"} 2
rollout_reconcile_sum{name="r1",namespace="n"} 0.02
rollout_reconcile_count{name="r1",namespace="n"} 2
rollout_reconcile_count{name="r2",namespace="n"} 0
"""
    assert parse_histogram_counts(text, "rollout_reconcile", ("name",)) == {"r1": 2, "r2": 0}


def test_other_clients_are_subtracted_at_their_baseline_rate() -> None:
    baseline = {"GET pods": 10, "PATCH rollouts/status": 0}
    window = {"GET pods": 25, "PATCH rollouts/status": 7, "LIST leases": 1}
    ours = others_rate(Counter(baseline), 10.0, Counter(window), 20.0)
    assert ours == {"GET pods": 5, "PATCH rollouts/status": 7, "LIST leases": 1}


def test_rollout_pods_land_only_on_the_bench_nodes() -> None:
    node = argo_objects.node_manifests("bench-argo-abcd", 1000)[0]
    pod = argo_objects.rollout_manifest("r1", "ns", "bench-argo-abcd", 30)["spec"]["template"]["spec"]
    labels = node["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in pod["nodeSelector"].items())
    taint = node["spec"]["taints"][0]
    assert any(t["key"] == taint["key"] and t["effect"] == taint["effect"] for t in pod["tolerations"])
    assert int(node["status"]["capacity"]["pods"]) >= 2000 // argo_objects.NODES


def test_the_new_version_patch_keeps_a_valid_container_because_merge_patches_replace_lists() -> None:
    original = argo_objects.rollout_manifest("r1", "ns", "n", 30)["spec"]["template"]["spec"]["containers"]
    patched = argo_objects.new_version_patch("2")["spec"]["template"]["spec"]["containers"]
    assert [c["image"] for c in patched] == [c["image"] for c in original]
    assert [c["resources"] for c in patched] == [c["resources"] for c in original]
    assert patched[0]["env"] != original[0]["env"]


def test_a_rollout_argo_refuses_is_reported_rather_than_waited_for() -> None:
    watched = book()
    refused = rollout("r1", 2, 2, "Degraded", 4)
    refused["status"]["message"] = "InvalidSpec: spec.template.spec.containers[0].image: Required value"
    watched.observe(refused, 0)
    watched.observe(rollout("r2", 1, 1, "Degraded", 4), 0)
    assert list(watched.refused()) == ["r1"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("2m", 120.0), ("90", 90.0), ("500ms", 0.5)])
def test_durations_are_read_like_the_flags_say(text: str, seconds: float) -> None:
    assert argo_objects.parse_duration(text) == seconds


def test_a_bad_duration_names_the_flag_and_the_fix() -> None:
    with pytest.raises(SystemExit, match=r"--pause: 'soon' is not a duration; write e.g. 30s"):
        argo_objects.parse_duration("soon")


def test_the_controller_gets_two_different_ports_even_when_the_kernel_hands_out_one_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path  # noqa: PLC0415

    from bench.peers import argo_rollouts  # noqa: PLC0415

    ports = iter([41000, 41000, 41001])
    monkeypatch.setattr(argo_rollouts, "free_port", lambda: next(ports))
    row = argo_rollouts.ArgoRow(stack=None, binary=Path("rollouts-controller"), node_value="n", n=1,  # type: ignore[arg-type]
                                pause_s=30, idle_s=60, baseline_s=10, leader_election=False, rolling=1,
                                metrics_port=41000)
    assert (row.metrics_port, row.healthz_port) == (41000, 41001)


def test_both_sides_of_the_comparison_return_the_same_keys() -> None:
    from bench import fleet  # noqa: PLC0415
    from bench.measure import COMPARED_KEYS  # noqa: PLC0415
    from bench.peers import argo_rollouts  # noqa: PLC0415

    assert fleet.KEYS == argo_rollouts.KEYS == COMPARED_KEYS


def test_argo_background_analysis_passes_on_the_same_prometheus_stand_in_the_fleet_bench_queries() -> None:
    """Both controllers must do the same SLO work per step: Argo's three queries get the stand-in's passing
    answers (a query shape it does not know would get 1 and fail the error-rate condition)."""
    from bench.standins import answer  # noqa: PLC0415

    template = argo_objects.analysis_template("ns", "http://127.0.0.1:9", 10)
    metrics = template["spec"]["metrics"]
    assert [m["interval"] for m in metrics] == ["10s"] * 3
    for metric in metrics:
        value = answer(metric["provider"]["prometheus"]["query"], requests=1000.0)
        condition = metric["successCondition"].replace("result[0]", repr(value))
        assert eval(condition), (metric["name"], value)  # our own literal conditions
    canary = argo_objects.rollout_manifest("r1", "ns", "n", 30, analysis=True)["spec"]["strategy"]["canary"]
    assert canary["analysis"]["templates"] == [{"templateName": template["metadata"]["name"]}]
    assert {a["name"]: a["value"] for a in canary["analysis"]["args"]} == {"namespace": "ns", "model": "r1"}
    assert "analysis" not in argo_objects.rollout_manifest("r1", "ns", "n", 30)["spec"]["strategy"]["canary"]
