"""Manual requests: who asked is verified or says it is not; every field is bounded; stale and replayed requests
never run; ignored requests cannot push outcomes out of history; the last approval gate wants a passing check."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from engine_fixtures import MIN, Sim, bad, make_spec, req, rolled_out
from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.controller.requests import parse_request
from modelship.domain.admission import policy_enforced, policy_yaml, requester_binding, requester_policy
from modelship.domain.status import (
    IGNORED_HISTORY_LIMIT,
    OUTCOME_HISTORY_LIMIT,
    REQUEST_MAX_AGE,
    ModelDeploymentStatus,
    Phase,
    Stage,
)

REPO = Path(__file__).resolve().parents[2]
STATUS_LIMIT = 256 * 1024
OUTCOMES = ("Promoted", "RolledBack", "Failed", "Superseded", "Abandoned")


def annotations(action: str, at: str, request_id: str = "r-1", by: str = "alice", **extra: object) -> dict[str, str]:
    return {"modelship.dev/request": json.dumps({"id": request_id, "action": action, "at": at, **extra}),
            "modelship.dev/requested-by": by}


def at_gate(last_is_gate: bool = True) -> Sim:
    """A canary waiting at an approval gate (the last step, or one before a 50% step)."""
    steps: list[dict[str, object]] = [{"weight": 10, "duration": "1m"}, {"approval": {}}]
    if not last_is_gate:
        steps.append({"weight": 50, "duration": "1m"})
    sim = rolled_out(steps=steps, analysis={"failureLimit": 5})
    sim.decide(validation=None)
    sim.decide()
    sim.run_checks(1)
    assert sim.status.awaiting_approval
    return sim


def size(status: ModelDeploymentStatus) -> int:
    return len(status.model_dump_json(by_alias=True).encode())


def outcomes(status: ModelDeploymentStatus) -> list[tuple[str, str, str]]:
    return [(h.event, h.revision, h.time.isoformat()) for h in status.history if h.event in OUTCOMES]


# --- who asked -------------------------------------------------------------------------------------------


def test_given_requester_annotation_when_policy_in_force_then_recorded_as_verified() -> None:
    sim = at_gate(last_is_gate=False)
    raw = annotations("promote", sim.now.isoformat(), by="system:serviceaccount:ml:deployer")
    d = sim.decide(request=parse_request(raw, policy_in_force=True))
    approved = [h for h in d.status.history if h.event == "Approved"]
    assert [(h.by, h.request) for h in approved] == [("system:serviceaccount:ml:deployer", "r-1")]


def test_given_no_policy_when_request_handled_then_requester_says_unverified() -> None:
    sim = at_gate(last_is_gate=False)
    d = sim.decide(request=parse_request(annotations("promote", sim.now.isoformat(), by="bob")))
    assert [h.by for h in d.status.history if h.event == "Approved"] == ["bob (unverified)"]


def test_given_old_plugin_payload_with_by_inside_when_parsed_then_never_verified() -> None:
    raw = {"modelship.dev/request": json.dumps({"id": "x1", "action": "abort", "by": "root",
                                                 "at": "2024-05-01T12:00:00Z"})}
    request = parse_request(raw, policy_in_force=True)
    assert request is not None and request.by == "root" and not request.verified


# --- bounds --------------------------------------------------------------------------------------------


def test_given_200_kib_requester_when_handled_then_name_cut_and_status_small() -> None:
    sim = at_gate(last_is_gate=False)
    huge = "m" * (200 * 1024)
    request = parse_request(annotations("pause", sim.now.isoformat(), by=huge), policy_in_force=True)
    assert request is not None and len(request.by) <= 256
    d = sim.decide(request=request)
    assert d.status.paused and size(d.status) < 64 * 1024
    assert all(len(e.message) <= 1000 for e in d.actions if hasattr(e, "message"))


def test_given_unreadable_annotations_when_parsed_then_each_becomes_one_ignored_request_with_the_reason() -> None:
    sim = at_gate(last_is_gate=False)
    cases = {
        "x" * 5000: "over 1024",
        "not json": "not JSON",
        '["a"]': "not a JSON object",
        json.dumps({"id": "bad id with spaces", "action": "abort", "at": sim.now.isoformat()}): "request id must",
        json.dumps({"id": "a" * 65, "action": "abort", "at": sim.now.isoformat()}): "request id must",
        json.dumps({"id": "ok", "action": "delete-everything", "at": sim.now.isoformat()}): "unknown action",
        json.dumps({"id": "ok2", "action": "abort", "at": "yesterday"}): "RFC 3339",
        json.dumps({"id": "ok3", "action": "abort", "at": "2024-05-01T12:00:00"}): "with a zone",
    }
    for raw, expected in cases.items():
        request = parse_request({"modelship.dev/request": raw})
        assert request is not None and request.problem is not None and expected in request.problem, raw[:40]
        d = sim.decide(request=request)
        assert d.status.canary_revision is not None  # nothing was aborted
        assert d.status.history[-1].outcome == "Ignored" and expected in d.status.history[-1].reason
        again = sim.decide(request=request)
        assert again.status.history == d.status.history  # recorded once


# --- freshness and replays ------------------------------------------------------------------------------


def test_given_stale_or_future_request_when_seen_then_ignored_with_the_reason() -> None:
    sim = at_gate(last_is_gate=False)
    d = sim.decide(request=req("abort", "old", at=sim.now - REQUEST_MAX_AGE - MIN))
    assert d.status.canary_revision is not None and "stale" in d.status.history[-1].reason
    d = sim.decide(request=req("abort", "future", at=sim.now + 10 * MIN))
    assert d.status.canary_revision is not None and "in the future" in d.status.history[-1].reason
    d = sim.decide(request=req("pause", "skewed", at=sim.now + MIN))
    assert d.status.paused  # within the allowed skew


def test_given_old_request_replayed_after_another_was_handled_then_it_does_not_run_again() -> None:
    sim = at_gate(last_is_gate=False)
    pause = req("pause", "p1", at=sim.now)
    assert sim.decide(request=pause).status.paused
    assert not sim.decide(request=req("resume", "r2", at=sim.now + timedelta(seconds=1)),
                          after=timedelta(seconds=2)).status.paused
    d = sim.decide(request=pause, after=timedelta(seconds=2))  # the old annotation written back
    assert not d.status.paused
    assert d.status.history[-1].outcome == "Ignored" and "replay" in d.status.history[-1].reason


# --- history budget ---------------------------------------------------------------------------------------


def test_given_many_ignored_requests_when_recorded_then_outcomes_stay_in_history() -> None:
    sim = Sim(make_spec("1")).healthy()
    sim.change(make_spec("2"))
    sim.decide(validation=None)
    sim.decide(request=req("abort", "a0"))
    assert sim.status.phase == Phase.ROLLED_BACK
    for n in range(1, 40):
        sim.decide(request=req("pause", f"n{n}"), after=timedelta(seconds=1))
    assert [h.event for h in sim.status.history].count("RolledBack") == 1
    assert sum(h.outcome == "Ignored" for h in sim.status.history) == IGNORED_HISTORY_LIMIT


requests = st.tuples(
    st.sampled_from(["promote", "promote-full", "abort", "pause", "resume", "retry"]),
    st.integers(0, 8),  # id: small range, so ids repeat (replays)
    st.integers(-30, 5),  # at, minutes from now: stale, fresh and future
    st.sampled_from(["alice", "b" * 300_000, "\x1b]52;c;aGk=\x07"]),
    st.booleans(),
)
ops = st.one_of(st.tuples(st.just("tick"), st.booleans()), st.tuples(st.just("request"), requests),
                st.tuples(st.just("spec"), st.just(None)))


@settings(max_examples=60, deadline=None)
@given(script=st.lists(ops, min_size=5, max_size=50))
def test_requests_at_random_never_evict_outcomes_run_twice_or_grow_status(script: list[tuple[str, object]]) -> None:
    sim = Sim(make_spec("1", steps=[{"weight": 10, "duration": "1m"}, {"approval": {}}])).healthy()
    version = 1
    acted_upon: set[str] = set()
    for kind, arg in script:
        before = outcomes(sim.status)
        if kind == "tick":
            sim.decide(metrics=bad() if arg else None, after=MIN)
        elif kind == "spec":
            version += 1
            sim.change(make_spec(str(version), steps=[{"weight": 10, "duration": "1m"}, {"approval": {}}]))
            sim.decide()
        else:
            action, number, minutes, by, force = arg  # type: ignore[misc]
            at = (sim.now + timedelta(minutes=minutes)).isoformat()
            raw = annotations(action, at, f"id-{number}", by, force=force)
            d = sim.decide(request=parse_request(raw, policy_in_force=True), after=timedelta(seconds=1))
            if d.status.last_request_at is not None and d.status.last_request_at.isoformat() == at:
                assert f"id-{number}@{at}" not in acted_upon  # the same request never acts twice
                acted_upon.add(f"id-{number}@{at}")
        after = outcomes(sim.status)
        gone = [o for o in before if o not in after]
        assert gone == before[: len(gone)]  # outcomes leave oldest first, by age only
        assert not gone or len(after) == OUTCOME_HISTORY_LIMIT  # and only when newer outcomes need the room
        assert size(sim.status) < STATUS_LIMIT


# --- the last approval gate (item 9) -------------------------------------------------------------------


def test_given_failing_latest_check_at_last_gate_when_promote_then_refused_and_said_why() -> None:
    sim = at_gate()
    sim.run_checks(1, bad())
    d = sim.decide(request=req("promote", "p1"), after=MIN)
    assert d.status.stage == Stage.CANARY and d.status.awaiting_approval
    assert d.status.history[-1].outcome == "Ignored" and "latest check did not pass" in d.status.history[-1].reason


def test_given_failing_latest_check_at_last_gate_when_promote_forced_then_promotes_recorded_as_forced() -> None:
    sim = at_gate()
    sim.run_checks(1, bad())
    d = sim.decide(request=req("promote", "p1", force=True), after=MIN)
    assert d.status.stage in (Stage.PROMOTING, Stage.STABLE)
    approved = next(h for h in d.status.history if h.event == "Approved")
    assert "with --force over: the latest check did not pass" in approved.reason and approved.by == "alice"


def test_given_passing_latest_check_at_last_gate_when_promote_then_promotes() -> None:
    sim = at_gate()
    d = sim.decide(request=req("promote", "p1"), after=MIN)
    assert d.status.stage in (Stage.PROMOTING, Stage.STABLE)


# --- the shipped policy ----------------------------------------------------------------------------------


def test_generated_policy_files_are_current() -> None:
    assert (REPO / "crds" / "requester-policy.yaml").read_text() == policy_yaml()
    template = (REPO / "charts" / "modelship" / "templates" / "requester-policy.yaml").read_text()
    assert template == "{{- if .Values.requesterPolicy.enabled }}\n" + policy_yaml() + "{{- end }}\n"


def test_policy_counts_as_enforced_only_when_installed_as_shipped() -> None:
    policy, binding = requester_policy(), requester_binding()
    assert policy_enforced(policy, binding)
    assert not policy_enforced(None, binding) and not policy_enforced(policy, None)
    warn_only = {**binding, "spec": {**binding["spec"], "validationActions": ["Warn"]}}
    assert not policy_enforced(policy, warn_only)
    narrowed = {**binding, "spec": {**binding["spec"],
                                    "matchResources": {"namespaceSelector": {"matchLabels": {"x": "y"}}}}}
    assert not policy_enforced(policy, narrowed)
    ignore = {**policy, "spec": {**policy["spec"], "failurePolicy": "Ignore"}}
    assert not policy_enforced(ignore, binding)
    defaulted = {**binding, "spec": {**binding["spec"], "matchResources": {
        "namespaceSelector": {}, "objectSelector": {}, "matchPolicy": "Equivalent"}}}
    assert policy_enforced(policy, defaulted)
