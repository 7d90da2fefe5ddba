"""The guard holds whatever arrives: a state machine drives `decide` through hostile sequences (issue 8).

Rules: metric rounds with NaN/Inf, missing series and outages; manual requests at random times, fresh or
replayed (an old id re-sent after others), some with an oversized `by`; spec edits mid-rollout (new version,
steps shrunk or replaced, SLOs changed or removed); the spec made Invalid and valid again; the clock jumping
forwards and backwards; unschedulable canaries; lost status patches.

After every decision: weights sum to 100 and never exceed the current step; a canary leaving without
promotion routes 100% to stable first; promotions follow a passing check; no outcome record leaves history
except by age; status serialises as strict JSON under 256 KiB; a replayed request is never executed twice;
analysis keeps judging a live canary while the spec is Invalid; replaying the decision changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from engine_fixtures import CONTRACT, INVALID, NOT_READY, PASSED, Sim, make_spec
from engine_invariants import (
    PassTracker,
    check_canary_leaves_first,
    check_non_finite_never_passes,
    check_outcomes_kept,
    check_promotion_earned,
    check_replay,
    check_rollback,
    check_round_trip,
    check_serialises,
    check_step_allowance,
    check_traffic,
)
from engine_strategies import SLO_SETS, canary_steps, healthy, rollouts, snapshots
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from modelship.domain.actions import EnsureRevision
from modelship.domain.engine import Decision, decide
from modelship.domain.observations import MetricsSnapshot, Observations, ValidationReport
from modelship.domain.status import ManualRequest, ModelDeploymentStatus, Stage
from pydantic import ValidationError

ACTIONS = ["promote", "promote-full", "abort", "pause", "resume", "retry"]
VALIDATIONS: list[ValidationReport | None] = [PASSED] * 10 + [NOT_READY, CONTRACT, None]
BIG_BY = 200 * 1024


def parse(raw: dict[str, Any] | None) -> ManualRequest | None:
    """As the controller reads the annotation: an unreadable request is no request."""
    if raw is None:
        return None
    try:
        return ManualRequest.model_validate(raw)
    except ValidationError:
        return None


def by_requester(by: str | None, request: ManualRequest) -> bool:
    """History names the requester, perhaps marked (e.g. 'user-3 (unverified)')."""
    return by is not None and by.split(" ")[0] == request.by


class Guard(RuleBasedStateMachine):
    """One ModelDeployment under a random life; every rule ends in one reconcile."""

    def __init__(self) -> None:
        super().__init__()
        self.knobs: dict[str, Any] = {}
        self.version = 1
        self.sim = Sim(make_spec())
        self.invalid = False
        self.pending: dict[str, Any] | None = None
        self.sent: list[dict[str, Any]] = []
        self.handled: set[str] = set()
        self.tracker = PassTracker()

    def _spec(self) -> Any:
        return make_spec(str(self.version), **dict(self.knobs))

    @initialize(knobs=rollouts(), fresh=st.booleans(), slo=st.sampled_from(list(SLO_SETS)))
    def start(self, knobs: dict[str, Any], fresh: bool, slo: str) -> None:
        self.knobs = {**knobs, "slo": SLO_SETS[slo]}
        self.sim = Sim(self._spec())
        if not fresh:  # fresh: the first revision itself is deployed under the rules
            self.sim.healthy()
            self.version += 1
            self.sim.change(self._spec())

    def reconcile(self, metrics: MetricsSnapshot | None = None, validation: ValidationReport | None = PASSED,
                  *, lost: bool = False) -> Decision:
        sim, request = self.sim, parse(self.pending)
        obs = sim.observe(metrics, validation, request, INVALID if self.invalid else ())
        before = sim.status
        d = decide(sim.spec, before, obs, sim.now)
        self.check(obs, before, d)
        if not lost:  # lost: the status patch never landed, the next reconcile starts from the old status
            self.tracker.observe(sim.spec, before, d.status)
            sim.apply(d)
            self.remember_handled(request, d.status)
        return d

    def check(self, obs: Observations, before: ModelDeploymentStatus, d: Decision) -> None:
        spec, now = self.sim.spec, self.sim.now
        check_traffic(d)
        check_round_trip(d.status)
        check_serialises(d.status)
        check_rollback(d)
        check_canary_leaves_first(before, d)
        check_outcomes_kept(before, d.status)
        check_promotion_earned(before, d.status)
        check_non_finite_never_passes(spec, obs, before, d.status)
        check_replay(spec, obs, d, now)
        assert d.requeue_after is None or d.requeue_after >= 0
        self.check_judged(obs, before, d)
        if self.invalid:
            self.check_frozen_but_protected(before, d)
        else:
            check_step_allowance(spec, d.status)
        self.check_request_once(obs, before, d)

    def check_frozen_but_protected(self, before: ModelDeploymentStatus, d: Decision) -> None:
        """Invalid spec (item 2): nothing new is applied (the previous revision kept after a promotion is not new)."""
        serving = (before.stable_revision, before.canary_revision, before.previous_revision)
        known = {r.hash for r in serving if r is not None}
        started = [a.revision.hash for a in d.actions if isinstance(a, EnsureRevision)
                   and a.revision.hash not in known]
        assert not started, f"spec is Invalid but revision {started} was applied"

    def check_judged(self, obs: Observations, before: ModelDeploymentStatus, d: Decision) -> None:
        """A due check on a live canary always runs, Invalid spec or not (item 2)."""
        canary = before.canary_revision
        if canary is None or before.stage not in (Stage.SHADOW, Stage.CANARY) or obs.metrics is None:
            return
        after = d.status
        same = after.canary_revision is not None and after.canary_revision.hash == canary.hash
        if same and after.step_started_at == before.step_started_at:
            state = "Invalid" if self.invalid else "valid"
            assert after.last_check_at == self.sim.now, f"spec {state}: a due check on the live canary was skipped"

    def check_request_once(self, obs: Observations, before: ModelDeploymentStatus, d: Decision) -> None:
        """A request id already handled (and persisted) is never executed again, however it comes back."""
        request = obs.request
        if request is None or request.id not in self.handled:
            return
        seen = {e.model_dump_json() for e in before.history}
        acted = [e.event for e in d.status.history
                 if e.model_dump_json() not in seen and by_requester(e.by, request) and e.event != "RequestIgnored"]
        assert not acted, f"request {request.id} ({request.action}) replayed and executed again: {acted}"

    def remember_handled(self, request: ManualRequest | None, status: ModelDeploymentStatus) -> None:
        if request is None:
            return
        recorded = any(by_requester(e.by, request) for e in status.history)
        if status.last_request_id == request.id or recorded or not self.invalid:
            self.handled.add(request.id)

    @rule(seconds=st.sampled_from([0, 10, 30, 60, 60, 60, 60, 90, 240]), metrics=snapshots(),
          validation=st.sampled_from(VALIDATIONS))
    def tick(self, seconds: int, metrics: MetricsSnapshot, validation: ValidationReport | None) -> None:
        self.sim.now += timedelta(seconds=seconds)
        self.reconcile(metrics, validation)

    @rule(action=st.sampled_from(ACTIONS), big=st.integers(0, 9))
    def request(self, action: str, big: int) -> None:
        number = len(self.sent) + 1
        by = f"user-{number}" + ("-" + "x" * BIG_BY if big == 0 else "")
        at = self.sim.now.replace(microsecond=0)
        raw = {"id": f"r{number}", "action": action, "by": by, "at": at.isoformat().replace("+00:00", "Z")}
        self.sent.append(raw)
        self.pending = raw
        self.reconcile()

    @precondition(lambda self: len(self.sent) >= 2)
    @rule(pick=st.integers(0, 50))
    def replay(self, pick: int) -> None:
        """An old request comes back (a re-applied manifest, a retried kubectl) after newer ones."""
        self.pending = self.sent[pick % (len(self.sent) - 1)]
        self.reconcile()

    @rule(edit=st.sampled_from(["version", "shrink", "steps", "slo"]), data=st.data())
    def change_spec(self, edit: str, data: st.DataObject) -> None:
        if edit == "version":
            self.version += 1
        elif edit == "shrink":
            steps = self.knobs["steps"]
            self.knobs["steps"] = steps[: data.draw(st.integers(1, len(steps)), label="keep")]
        elif edit == "steps":
            self.knobs["steps"] = data.draw(canary_steps(trailing_approval=True), label="steps")
        else:
            self.knobs["slo"] = SLO_SETS[data.draw(st.sampled_from(list(SLO_SETS)), label="slo")]
        self.sim.change(self._spec())
        self.reconcile(healthy())

    @rule(new_version=st.booleans(), metrics=snapshots())
    def toggle_invalid(self, new_version: bool, metrics: MetricsSnapshot) -> None:
        """The spec becomes Invalid (maybe with a new version in it) or valid again."""
        self.invalid = not self.invalid
        if self.invalid and new_version:
            self.version += 1
            self.sim.change(self._spec())
        elif not self.invalid:
            self.sim.change(self.sim.spec)
        self.reconcile(metrics)

    @rule(seconds=st.sampled_from([-7200, -1800, -300, -61, 61, 1800, 7200]), metrics=snapshots())
    def clock_jump(self, seconds: int, metrics: MetricsSnapshot) -> None:
        """NTP steps the clock, or another replica with a skewed clock takes over."""
        self.sim.now += timedelta(seconds=seconds)
        self.reconcile(metrics)

    @rule(on=st.booleans())
    def unschedulable(self, on: bool) -> None:
        target = self.sim.status.canary_revision or self.sim.status.stable_revision
        if on and target is not None:
            self.sim.unschedulable[target.hash] = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu"
        else:
            self.sim.unschedulable.clear()
        self.reconcile()

    @rule(metrics=snapshots())
    def lost_patch(self, metrics: MetricsSnapshot) -> None:
        self.sim.now += timedelta(seconds=60)
        self.reconcile(metrics, lost=True)


Guard.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_guard_holds_over_any_life = Guard.TestCase
