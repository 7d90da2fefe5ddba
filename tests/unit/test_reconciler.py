"""Reconciler: gathers observations, runs the engine, applies actions in order, returns one status patch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.ports import Owner
from modelship.controller.reconciler import Reconciler
from modelship.domain.actions import EventType, Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, RevisionState, RouteState, ValidationReport
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
    async def snapshot(self, *args: Any) -> MetricsSnapshot:
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


async def test_a_second_handler_with_the_body_from_before_our_patch_does_not_decide_again() -> None:
    """Given a reconcile that patched status, when the timer hands over the same (pre-patch) body, then nothing
    is decided or announced again; once the patched status arrives, reconciling goes on."""
    cluster, routers = FakeCluster(), FakeRouters()
    rec = reconciler(cluster, routers)
    first = await rec.reconcile(body(SPEC))
    started = cluster.events.count(("Normal", "RolloutStarted"))
    assert started == 1
    stale = await rec.reconcile(body(SPEC))
    assert stale.status_patch == {} and cluster.events.count(("Normal", "RolloutStarted")) == 1
    fresh = await rec.reconcile(body(SPEC, first.status))
    assert fresh.status["phase"] == "Healthy"
