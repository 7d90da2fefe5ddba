"""A child apply the API server refuses (4xx) is state, not a crash: condition, Event, rollback at the deadline.

Before this, a refused route made every reconcile raise: no status, no Event, and the transition that needed
the route (e.g. entering a canary step) was re-decided each time, resetting the progress deadline forever.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelship.adapters.kube import KubeError
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.ports import Owner
from modelship.controller.reconciler import Reconciler, ReconcileResult
from modelship.domain.actions import SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import RouteState

from tests.unit.test_reconciler import SPEC, FakeCluster, FakeRouters, NoMetrics, PassingChecks, body

DENIED = (
    'httproutes.gateway.networking.k8s.io "fraud" is forbidden: ValidatingAdmissionPolicy '
    "'deny-routes' with binding 'deny-routes' denied request: route updates are frozen"
)
SPEC_V2 = {**SPEC, "model": {**SPEC["model"], "version": "2"},
           "rollout": {**SPEC["rollout"], "progressDeadline": "5m"}}


class RefusingRouter:
    """Accepts routes that give the canary nothing; refuses any live canary weight, as a webhook would."""

    def __init__(self, log: list[str], status: int) -> None:
        self.log, self.status = log, status

    async def apply(self, owner: Owner, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        if action.canary_weight > 0:
            self.log.append(f"refused:{action.canary_weight}")
            raise KubeError(self.status, "Forbidden" if self.status == 403 else "InternalError", DENIED)
        self.log.append(f"route:{action.canary_weight}")
        return RouteState(exists=True, canary_weight=0, in_sync=True)

    async def cleanup(self, owner: Owner) -> None:
        self.log.append("cleanup")


class RefusingRouters(FakeRouters):
    def __init__(self, status: int = 403) -> None:
        super().__init__()
        self.status = status

    def __call__(self, spec: ModelDeploymentSpec) -> RefusingRouter:  # type: ignore[override]
        return RefusingRouter(self.log, self.status)


def _setup(status: int = 403) -> tuple[Reconciler, ManualClock, FakeCluster, RefusingRouters]:
    clock = ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    cluster, routers = FakeCluster(), RefusingRouters(status)
    return Reconciler(cluster, routers, NoMetrics(), PassingChecks(), clock, Telemetry()), clock, cluster, routers


async def _validating(rec: Reconciler, clock: ManualClock) -> dict[str, Any]:
    """v1 stable and Healthy, then v2 validating (its pods are ready at once in the fake)."""
    first = await rec.reconcile(body(SPEC))
    healthy = await rec.reconcile(body(SPEC, first.status))
    clock.advance(20)
    started = await rec.reconcile(body(SPEC_V2, healthy.status, generation=2))
    assert started.status["stage"] == "Validating"
    return started.status


def _condition(result: ReconcileResult, kind: str) -> dict[str, Any]:
    return next(c for c in result.status["conditions"] if c["type"] == kind)


async def test_refused_route_is_a_condition_and_one_event_and_the_step_is_not_entered() -> None:
    """Given a canary that passed validation, when the API server refuses the route that would give it 20%,
    then the reconcile does not raise, status stays in Validating (the step did not happen), a condition
    names the API error, one Warning Event says so, and a second reconcile neither re-emits it nor moves
    the progress deadline."""
    rec, clock, cluster, routers = _setup()
    status = await _validating(rec, clock)
    clock.advance(5)
    refused = await rec.reconcile(body(SPEC_V2, status, generation=2))
    assert routers.log[-1] == "refused:20"
    assert refused.status["stage"] == "Validating", "the step whose route was refused must not be recorded"
    assert refused.status.get("canaryWeight", 0) == 0
    applied = _condition(refused, "Applied")
    assert applied["status"] == "False" and applied["reason"] == "ApplyRefused"
    assert "403" in applied["message"] and "route updates are frozen" in applied["message"]
    assert "route updates are frozen" in refused.status["message"]
    assert [e for e in cluster.events if e[1] == "ApplyRefused"] == [("Warning", "ApplyRefused")]
    assert refused.status["progressAt"] == status["progressAt"], "a refused transition keeps the deadline"
    clock.advance(5)
    again = await rec.reconcile(body(SPEC_V2, refused.status, generation=2))
    assert again.status["progressAt"] == status["progressAt"]
    assert [e for e in cluster.events if e[1] == "ApplyRefused"] == [("Warning", "ApplyRefused")]


async def test_refused_route_rolls_back_at_the_progress_deadline_and_stable_keeps_serving() -> None:
    """Given the route stays refused, when progressDeadline (5m) has passed since the last progress, then the
    canary is rolled back (Degraded: ApplyRefused, naming the API error), traffic stays 100% stable and
    the Applied condition clears once the rollback's own applies went through."""
    rec, clock, cluster, routers = _setup()
    status = await _validating(rec, clock)
    clock.advance(5)
    status = (await rec.reconcile(body(SPEC_V2, status, generation=2))).status
    clock.advance(301)
    result = await rec.reconcile(body(SPEC_V2, status, generation=2))
    assert result.status["phase"] == "RolledBack"
    degraded = _condition(result, "Degraded")
    assert degraded["reason"] == "ApplyRefused" and "route updates are frozen" in degraded["message"]
    assert routers.log[-1] == "route:0", "rollback routes everything to stable"
    assert _condition(result, "Applied")["status"] == "True"
    assert ("Warning", "RolledBack") in cluster.events


async def test_transient_server_errors_still_raise_for_kopf_to_retry() -> None:
    """Given a 500 from the API server (transient), the reconcile raises as before: no condition is
    written for an error a retry may clear."""
    rec, clock, _, _ = _setup(status=500)
    status = await _validating(rec, clock)
    clock.advance(5)
    try:
        await rec.reconcile(body(SPEC_V2, status, generation=2))
    except KubeError as exc:
        assert exc.status == 500
    else:
        raise AssertionError("a 500 must propagate so kopf retries with backoff")


def test_only_client_errors_count_as_refusals() -> None:
    """4xx except timeouts, conflicts and throttling are refusals; 5xx and unreached servers are not."""
    assert KubeError(422, "Invalid").refused and KubeError(403, "Forbidden").refused
    assert KubeError(404, "NotFound").refused, "a missing route kind (CRD not installed) is not transient"
    for transient in (0, 408, 409, 429, 500, 503):
        assert not KubeError(transient, "x").refused, transient
