"""The plugin's views are pure functions of the object and `now`: what an SRE reads during a rollout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from modelship.plugin import render
from plugin_fixtures import mdep

NOW = datetime(2024, 5, 1, 10, 14, 10, tzinfo=UTC)


def test_status_shows_position_revisions_weights_and_timing() -> None:
    out = render.render_status(mdep(), NOW)
    assert "ModelDeployment ml/fraud-scorer" in out
    assert "Phase:       Progressing" in out
    assert "Stage:       Canary" in out
    assert "Step:        2/4 (weight 25% for 10m)" in out
    assert "Stable:      v6 (5d8f7c)" in out
    assert "Canary:      v7 (9ab12e)" in out
    assert "stable 75%  canary 25%  mirror 0%" in out
    assert "In step:     4m10s of 10m (5m50s left)" in out
    assert "Failures:    1/2 consecutive" in out
    assert "Message:     step 2/4: 25% for 10m; 3 checks passed" in out


def test_status_lists_every_slo_with_value_bound_and_verdict() -> None:
    out = render.render_status(mdep(), NOW)
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "0.002" in rows["errorRate"] and "<= 0.01" in rows["errorRate"] and "Pass" in rows["errorRate"]
    p99 = rows["latencyP99Ms"]
    assert "310.5" in p99 and "<= 250, <= 1.2x stable" in p99 and "150" in p99 and "Fail" in p99
    assert "310.5 > 250" in p99
    nodata = rows["mean-confidence"]
    assert ">= 0.7" in nodata and "NoData" in nodata and " - " in nodata
    assert "Analysis:    Fail 40s ago, 1532 requests, 3 checks passed" in out


def test_status_shows_conditions_and_why_from_latest_history() -> None:
    out = render.render_status(mdep(), NOW)
    assert "Ready" in out and "StableServing" in out and "v6 serves" in out
    assert "Why:         StageChanged (2024-05-01T10:10:00Z): step 1 passed: errorRate 0.001 <= 0.01" in out


def test_status_at_approval_gate_says_how_to_promote() -> None:
    obj = mdep(step=2, awaitingApproval=True, stepStartedAt="2024-05-01T10:04:10Z")
    out = render.render_status(obj, NOW)
    assert "(awaiting approval)" in out
    assert "Step:        3/4 (approval gate)" in out
    assert "In step:     waiting for approval for 10m" in out
    assert "kubectl modelship promote fraud-scorer -n ml" in out


def test_status_shadow_uses_stage_start_and_shadow_duration() -> None:
    obj = mdep(
        stage="Shadow", step=None, canaryWeight=0, mirrorPercent=100, stageStartedAt="2024-05-01T10:12:10Z"
    )
    out = render.render_status(obj, NOW)
    assert "stable 100%  canary 0%  mirror 100%" in out
    assert "In step:     2m of 10m (8m left)" in out
    assert "Step:        -" in out


def test_status_after_rollback_and_when_paused_give_next_command() -> None:
    rolled = render.render_status(mdep(phase="RolledBack", stage="Stable", canaryWeight=0), NOW)
    assert "kubectl modelship retry fraud-scorer -n ml" in rolled
    paused = render.render_status(mdep(phase="Paused"), NOW)
    assert "kubectl modelship resume fraud-scorer -n ml" in paused


def test_status_flags_stale_generation_and_pending_request() -> None:
    obj = mdep(observedGeneration=2, lastRequestId="old")
    obj["metadata"]["annotations"]["modelship.dev/request"] = (
        '{"id":"new","action":"pause","by":"bob","at":"2024-05-01T10:14:00Z"}'
    )
    out = render.render_status(obj, NOW)
    assert "(operator has observed generation 2)" in out
    assert "Request:     pause by bob at 2024-05-01T10:14:00Z (not handled yet)" in out
    obj["status"]["lastRequestId"] = "new"
    assert "Request:" not in render.render_status(obj, NOW)


def test_status_without_status_or_with_garbage_does_not_crash() -> None:
    obj = mdep()
    del obj["status"]
    assert "no status yet" in render.render_status(obj, NOW)
    junk = mdep(step="x", lastAnalysis="?", conditions=[1, None], history="no", stepStartedAt="not a time")
    out = render.render_status(junk, NOW)
    assert "Phase:       Progressing" in out
    assert "Analysis:    no check yet" in out


def test_list_table_columns_and_all_namespaces() -> None:
    items = [mdep("b"), mdep("a", "prod", phase="Healthy", stage="Stable", canaryWeight=0)]
    out = render.render_list(items, NOW).splitlines()
    assert out[0].split() == ["NAME", "MODEL", "DESIRED", "STABLE", "STAGE", "WEIGHT", "PHASE", "AGE"]
    assert out[1].split() == ["b", "fraud_scorer", "7", "6", "Canary", "2/4", "25%", "Progressing", "14m"]
    wide = render.render_list(items, NOW, all_namespaces=True).splitlines()
    assert wide[0].startswith("NAMESPACE")
    assert wide[1].split()[:2] == ["ml", "b"] and wide[2].split()[:2] == ["prod", "a"]
    shadow = mdep(stage="Shadow", canaryWeight=0, mirrorPercent=50, awaitingApproval=False)
    assert "mirror 50%" in render.render_list([shadow], NOW)
    assert "Progressing (approval)" in render.render_list([mdep(awaitingApproval=True)], NOW)


def test_history_table_is_chronological_with_who_and_why() -> None:
    obj = mdep()
    obj["status"]["history"].insert(
        0,
        {
            "revision": "9ab12e",
            "version": "7",
            "event": "Approved",
            "by": "alice",
            "time": "2024-05-01T10:12:00Z",
            "reason": "looks good",
        },
    )
    lines = render.render_history(obj).splitlines()
    assert lines[0].split() == ["TIME", "REVISION", "VERSION", "EVENT", "STAGE", "OUTCOME", "BY", "REASON"]
    assert [line.split()[3] for line in lines[1:]] == ["Started", "StageChanged", "Approved"]
    assert "alice" in lines[3] and "looks good" in lines[3]
    empty = mdep(history=[])
    assert render.render_history(empty) == "no history yet for ml/fraud-scorer"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (7200, "120m"),
        (3 * 3600, "3h"),
        (50 * 3600, "2d2h"),
        (10 * 86400, "10d"),
    ],
)
def test_human_age_matches_kubectl_style(seconds: int, expected: str) -> None:
    assert render.human_age(timedelta(seconds=seconds)) == expected


def test_time_parsing_and_numbers() -> None:
    assert render.parse_time("2024-05-01T10:00:00Z") == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert render.parse_time("nope") is None and render.parse_time(None) is None
    assert (
        render.number(0.000123456) == "0.0001235"
        and render.number(None) == "-"
        and render.number(True) == "-"
    )


def test_status_in_shadow_shows_the_comparators_evidence() -> None:
    shift = {"name": "outputShift", "value": 3.9, "max": 0.25, "verdict": "Fail",
             "message": "outputShift 3.9 > max 0.25 over 412 compared requests; score p50 0.97 (stable 0.62)"}
    obj = mdep(stage="Shadow", step=None, canaryWeight=0, mirrorPercent=100, lastAnalysis={
        "time": "2024-05-01T10:13:30Z", "verdict": "Fail", "requests": 420, "compared": 412, "metrics": [shift]})
    out = render.render_status(obj, NOW)
    assert "Analysis:    Fail 40s ago, 420 requests, 412 compared by the shadow comparator" in out
    row = next(line for line in out.splitlines() if line.strip().startswith("outputShift"))
    assert "<= 0.25" in row and "score p50 0.97 (stable 0.62)" in row
