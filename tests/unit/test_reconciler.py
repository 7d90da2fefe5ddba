"""Reconciler: gathers observations, runs the engine, applies actions in order, returns one status patch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.ports import Owner
from modelship.controller.reconciler import Reconciler
from modelship.domain.actions import EnsureComparator, EventType, Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, MetricValue, RevisionState, RouteState, ValidationReport
from modelship.domain.status import Revision

SPEC = {
    "model": {"name": "fraud_scorer", "version": "1", "repository": "s3://models/triton"},
    "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
    "rollout": {"canary": {"steps": [{"weight": 20, "duration": "1m"}]}},
}


class FakeCluster:
    """Deployments become ready as soon as they are applied, like kwok pods do."""

    def __init__(self, fail_events: bool = False) -> None:
        self.deployments: dict[str, int] = {}
        self.calls: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.fail_events = fail_events
        self.comparator: EnsureComparator | None = None

    async def revision_states(self, owner: Owner) -> dict[str, RevisionState]:
        self.calls.append("list")
        return {h: RevisionState(h, n, n) for h, n in self.deployments.items()}

    async def ready_pod_ips(self, owner: Owner, revision_hash: str) -> list[str]:
        return ["10.77.0.5"]

    async def apply_revision(
        self, owner: Owner, spec: ModelDeploymentSpec, revision: Revision, role: Role, replicas: int
    ) -> None:
        self.calls.append(f"apply:{role}:{replicas}")
        self.deployments[revision.hash] = replicas

    async def delete_revision(self, owner: Owner, revision_hash: str) -> None:
        self.deployments.pop(revision_hash, None)

    async def apply_comparator(self, owner: Owner, action: EnsureComparator) -> None:
        self.calls.append(f"comparator:{action.canary.hash}:{action.sample_percent:g}")
        self.comparator = action

    async def remove_comparator(self, owner: Owner) -> None:
        if self.comparator is not None:
            self.calls.append("comparator:removed")
        self.comparator = None

    async def emit_event(self, owner: Owner, type: EventType, reason: str, message: str) -> None:
        if self.fail_events:
            raise RuntimeError("namespace is being terminated")
        self.events.append((str(type), reason))


class FakeRouter:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def apply(self, owner: Owner, spec: ModelDeploymentSpec, action: SetTraffic) -> RouteState:
        self.log.append(f"route:{action.canary_weight}")
        return RouteState(exists=True, canary_weight=action.canary_weight, in_sync=True)

    async def cleanup(self, owner: Owner) -> None:
        self.log.append("cleanup")


class FakeRouters:
    def __init__(self) -> None:
        self.log: list[str] = []

    def __call__(self, spec: ModelDeploymentSpec) -> FakeRouter:
        return FakeRouter(self.log)

    def stale(self, spec: ModelDeploymentSpec) -> Sequence[FakeRouter]:
        return [FakeRouter(self.log)]


class NoMetrics:
    async def snapshot(self, *args: Any, **kwargs: Any) -> MetricsSnapshot:
        return MetricsSnapshot(available=False, error="not used")


class PassingChecks:
    async def validate(self, spec: ModelDeploymentSpec, ips: list[str], stable: str | None) -> ValidationReport:
        return ValidationReport(passed=True, pods_checked=len(ips))


def body(spec: dict[str, Any], status: dict[str, Any] | None = None, generation: int = 1) -> dict[str, Any]:
    meta = {"name": "fraud", "namespace": "ml", "uid": "u-1", "generation": generation, "annotations": {}}
    return {"metadata": meta, "spec": spec, "status": status or {}}


def reconciler(cluster: FakeCluster, routers: FakeRouters) -> Reconciler:
    clock = ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    return Reconciler(cluster, routers, NoMetrics(), PassingChecks(), clock, Telemetry())


async def test_first_revision_is_deployed_and_only_changed_status_keys_are_patched() -> None:
    """Given a new ModelDeployment, when reconciled twice, then the first revision becomes stable and Healthy
    and the second reconcile patches only what changed."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    assert "apply:stable:1" in cluster.calls
    second = await rec.reconcile(body(SPEC, first.status))
    assert second.status["phase"] == "Healthy"
    assert second.status["stableRevision"]["version"] == "1"
    assert set(second.status_patch) < set(second.status), "unchanged keys must not be re-sent"
    assert "route:0" in routers.log


async def test_spec_change_removes_routes_of_routers_no_longer_selected() -> None:
    """Given a reconciled object, when the generation moves on, then stale routers are cleaned up once."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    assert routers.log.count("cleanup") == 0, "a new object has no routes of other kinds"
    await rec.reconcile(body(SPEC, first.status))
    assert routers.log.count("cleanup") == 0, "same generation: nothing to clean"
    await rec.reconcile(body(SPEC, first.status, generation=2))
    assert routers.log.count("cleanup") == 1


async def test_unparseable_spec_is_marked_invalid_and_nothing_is_applied() -> None:
    """Given a spec pydantic refuses, then status says Invalid naming the field, and no object is touched."""
    cluster, routers = FakeCluster(), FakeRouters()
    bad = {**SPEC, "model": {"name": "fraud_scorer", "version": "seven", "repository": "s3://m"}}
    result = await reconciler(cluster, routers).reconcile(body(bad))
    assert result.status["phase"] == "Invalid"
    assert "spec.model.version" in result.status["message"]
    assert not [c for c in cluster.calls if c.startswith("apply")] and not routers.log
    assert ("Warning", "Invalid") in cluster.events


async def test_refused_events_do_not_fail_the_reconcile() -> None:
    """Given Events are refused (namespace terminating), the decision is still applied and returned."""
    cluster, routers = FakeCluster(fail_events=True), FakeRouters()
    result = await reconciler(cluster, routers).reconcile(body(SPEC))
    assert result.status["stableRevision"]["version"] == "1"


async def test_next_reconcile_time_is_kept_in_status() -> None:
    """Durable scheduling: the next due time is in status, not in memory."""
    cluster, routers = FakeCluster(), FakeRouters()
    result = await reconciler(cluster, routers).reconcile(body(SPEC))
    assert result.status["nextReconcileAt"].startswith("2026-11-23T12:00")
    assert 0 < result.requeue_after <= 60


# --- issue 8: analysis counted once per check (item 17), Invalid specs keep the rollout guarded (item 2) ---

V2 = {**SPEC, "model": {**SPEC["model"], "version": "2"}}  # type: ignore[dict-item]


class FailingMetrics:
    """Every window shows a 90% error rate on the canary."""

    async def snapshot(self, *args: Any, **kwargs: Any) -> MetricsSnapshot:
        return MetricsSnapshot(available=True, canary_requests=1000,
                               values={"errorRate": MetricValue(canary=0.9, stable=0.0)})


async def at_canary_step(rec: Reconciler) -> dict[str, Any]:
    """v1 Healthy, then v2 applied and validated: returns the status at its first canary step."""
    status = (await rec.reconcile(body(SPEC))).status
    status = (await rec.reconcile(body(SPEC, status))).status
    status = (await rec.reconcile(body(V2, status, generation=2))).status
    status = (await rec.reconcile(body(V2, status, generation=2))).status
    assert status["stage"] == "Canary" and status["canaryWeight"] == 20, status
    return status


def checks(rec: Reconciler, verdict: str) -> float:
    value = rec.telemetry.registry.get_sample_value(
        "modelship_analysis_total", {"namespace": "ml", "name": "fraud", "verdict": verdict})
    return value or 0.0


async def test_each_check_is_counted_once_however_often_the_object_is_reconciled() -> None:
    """Given a canary under analysis, when one check runs and the object is then reconciled three more times
    before the next one is due, then modelship_analysis_total counts one check."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    status = await at_canary_step(rec)
    assert isinstance(rec.clock, ManualClock)
    rec.clock.advance(60)
    status = (await rec.reconcile(body(V2, status, generation=2))).status
    assert status["lastAnalysis"]["verdict"] == "Error"
    assert checks(rec, "Error") == 1
    for _ in range(3):
        rec.clock.advance(5)
        status = (await rec.reconcile(body(V2, status, generation=2))).status
    assert checks(rec, "Error") == 1


async def test_rollback_is_counted_once_with_its_cause() -> None:
    cluster, routers = FakeCluster(), FakeRouters()
    rec = Reconciler(cluster, routers, FailingMetrics(), PassingChecks(),
                     ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)), Telemetry())
    status = await at_canary_step(rec)
    for _ in range(4):
        assert isinstance(rec.clock, ManualClock)
        rec.clock.advance(60)
        status = (await rec.reconcile(body(V2, status, generation=2))).status
    assert status["phase"] == "RolledBack"
    assert checks(rec, "Fail") == 2
    rollbacks = rec.telemetry.registry.get_sample_value(
        "modelship_rollbacks_total", {"namespace": "ml", "name": "fraud", "reason": "AnalysisFailed"})
    assert rollbacks == 1


async def test_unparseable_newest_spec_mid_canary_still_rolls_back_a_failing_canary() -> None:
    """Given v2 at its 20% step failing its checks, when a v3 spec arrives that does not parse and the operator
    restarts, then status says Invalid naming the field, nothing of v3 is applied, and the failing canary is still
    rolled back."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = Reconciler(cluster, routers, FailingMetrics(), PassingChecks(),
                     ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)), Telemetry())
    status = await at_canary_step(rec)
    known = set(cluster.deployments)
    broken = {**V2, "model": {"name": "fraud_scorer", "version": "seven", "repository": "s3://m"}}
    # The operator restarts: nothing but status carries the last valid spec over.
    rec = Reconciler(cluster, routers, FailingMetrics(), PassingChecks(),
                     ManualClock(datetime(2026, 11, 23, 12, 1, tzinfo=UTC)), Telemetry())
    for _ in range(3):
        assert isinstance(rec.clock, ManualClock)
        rec.clock.advance(60)
        status = (await rec.reconcile(body(broken, status, generation=3))).status
    assert status["phase"] == "Invalid" and "spec.model.version" in status["message"]
    assert "canaryRevision" not in status and status["failedRevision"]["version"] == "2"
    assert routers.log[-1] == "route:0"
    assert set(cluster.deployments) <= known, "nothing of the invalid spec is applied"


async def test_semantically_invalid_newest_spec_is_not_applied_and_abort_still_works() -> None:
    """Given v2 at its 20% step, when a v3 spec arrives that parses but the operator refuses (step shorter than
    the analysis interval), then no v3 Deployment appears, and an abort still rolls v2 back."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    status = await at_canary_step(rec)
    known = set(cluster.deployments)
    v3 = {**V2, "model": {**SPEC["model"], "version": "3"},  # type: ignore[dict-item]
          "rollout": {"canary": {"steps": [{"weight": 20, "duration": "1s"}]}}}
    status = (await rec.reconcile(body(v3, status, generation=3))).status
    assert status["phase"] == "Invalid" and "steps[0].duration" in status["message"]
    assert status["canaryRevision"]["version"] == "2" and status["canaryWeight"] == 20
    assert set(cluster.deployments) == known
    aborted = body(v3, status, generation=3)
    aborted["metadata"]["annotations"] = {"modelship.dev/request": json.dumps(
        {"id": "a1", "action": "abort", "by": "carol", "at": rec.clock.now().isoformat()})}
    status = (await rec.reconcile(aborted)).status
    assert "canaryRevision" not in status and status["failedRevision"]["version"] == "2"
    assert routers.log[-1] == "route:0"


class PassingMetrics:
    async def snapshot(self, *args: Any, **kwargs: Any) -> MetricsSnapshot:
        return MetricsSnapshot(available=True, canary_requests=1000,
                               values={"errorRate": MetricValue(canary=0.0, stable=0.0)})


async def test_promotion_and_its_checks_are_counted_once() -> None:
    cluster, routers = FakeCluster(), FakeRouters()
    rec = Reconciler(cluster, routers, PassingMetrics(), PassingChecks(),
                     ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)), Telemetry())
    status = await at_canary_step(rec)
    for _ in range(4):
        assert isinstance(rec.clock, ManualClock)
        rec.clock.advance(30)
        status = (await rec.reconcile(body(V2, status, generation=2))).status
        status = (await rec.reconcile(body(V2, status, generation=2))).status  # an extra reconcile: no count
    assert status["phase"] == "Healthy" and status["stableRevision"]["version"] == "2"
    promotions = rec.telemetry.registry.get_sample_value(
        "modelship_promotions_total", {"namespace": "ml", "name": "fraud"})
    assert promotions == 1
    assert checks(rec, "Pass") == 1  # the 1m step holds one 1m check


class RecordingChecks:
    """Passes, and remembers which model version each validation asked the pods for."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    async def validate(self, spec: ModelDeploymentSpec, ips: list[str], stable: str | None) -> ValidationReport:
        self.versions.append(spec.model.version)
        return ValidationReport(passed=True, pods_checked=len(ips))


async def test_a_revision_brought_back_by_undo_is_validated_as_its_own_version() -> None:
    """Given v2 stable after a promotion and v1's Deployment gone, when an undo brings v1 back (the spec still
    names v2), then Triton validation asks the pods for version 1, and v1 takes the traffic once it passed."""
    cluster, routers, checker = FakeCluster(), FakeRouters(), RecordingChecks()
    rec = Reconciler(cluster, routers, NoMetrics(), checker, ManualClock(datetime(2024, 5, 1, tzinfo=UTC)),
                     Telemetry())
    v1 = (await rec.reconcile(body(SPEC))).status
    v1 = (await rec.reconcile(body(SPEC, v1))).status
    earlier = v1["stableRevision"]
    promoted = {**v1, "stableRevision": {"version": "2", "hash": "2222222222"}, "revisions": [
        {"version": "1", "hash": earlier["hash"], "promotedAt": "2024-05-01T00:00:00Z",
         "retiredAt": "2024-05-01T00:00:00Z", "outcome": "Replaced"},
        {"version": "2", "hash": "2222222222", "promotedAt": "2024-05-01T00:00:00Z"}]}
    cluster.deployments.pop(earlier["hash"], None)
    undo = body(V2, promoted, generation=2)
    undo["metadata"]["annotations"] = {"modelship.dev/request": json.dumps(
        {"id": "u1", "action": "undo", "at": "2024-05-01T00:00:00Z"})}
    status = (await rec.reconcile(undo)).status
    assert status["canaryRevision"]["version"] == "1" and status["restoring"]["outcome"] == "Undone"
    undo["status"] = status
    status = (await rec.reconcile(undo)).status
    assert checker.versions == ["1"]
