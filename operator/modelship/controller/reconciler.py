"""One reconcile: gather observations, call the pure engine, carry out its actions, return one status patch.

Nothing about a rollout is remembered between calls: a restarted operator reads status and child objects
and continues at the same step. The only in-process thing is metrics; one reconcile (or delete) per object at a
time is the work queue's guarantee (controller/workqueue.py), not a lock here. `step` returns the Events
instead of sending them: the control loop sends them only once the status that records their decision is
written (a decision whose status patch loses a conflict, e.g. to a new leader, announces nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from modelship.adapters.kube import KubeError
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import Clock
from modelship.controller.ports import (
    Cluster,
    GatewaySupports,
    Metrics,
    ModelChecker,
    Notifier,
    Owner,
    RequesterPolicy,
    RouterFactory,
)
from modelship.controller.requests import parse_request, request_id
from modelship.controller.status_patch import status_diff
from modelship.domain.actions import (
    Action,
    DeleteRevision,
    EmitEvent,
    EnsureComparator,
    EnsureRevision,
    EventType,
    RemoveComparator,
    SetTraffic,
)
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.durations import parse_duration
from modelship.domain.engine import Decision, analysis_due, decide, validation_due
from modelship.domain.gateway_support import mirror_problems, needs_mirror_support
from modelship.domain.invalid import mark_invalid
from modelship.domain.last_valid import last_valid_spec
from modelship.domain.notifications import Notification, Subscriber, notifications_for
from modelship.domain.observations import MetricsSnapshot, Observations, RevisionState, RouteState, ValidationReport
from modelship.domain.post_promotion import judged_revision
from modelship.domain.refusal import REFUSED_REASON, mark_applied, mark_refused, refusal
from modelship.domain.revision import spec_for
from modelship.domain.route_scope import RouteScope
from modelship.domain.slos import active_comparison
from modelship.domain.status import ManualRequest, ModelDeploymentStatus
from modelship.domain.validation import parse_spec, semantic_problems

log = logging.getLogger("modelship.reconciler")


@dataclass(frozen=True)
class ReconcileResult:
    """The status patch to send (empty when nothing but the next due time moved), the Events to send once it
    is written, and when to look again."""

    status_patch: dict[str, Any]
    status: dict[str, Any]
    requeue_after: float
    events: tuple[EmitEvent, ...] = ()
    notifications: tuple[Notification, ...] = ()


def owner_of(body: Mapping[str, Any]) -> Owner:
    meta = body["metadata"]
    return Owner(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=int(meta.get("generation") or 0),
        resource_version=meta.get("resourceVersion"),
    )


def route_was_edited(route: RouteState, action: SetTraffic, before: ModelDeploymentStatus) -> bool:
    """A route that differs from what the previous decision wrote (someone changed it): worth a RouteRestored.

    A route that differs only because this decision moves traffic (next step, shadow, promotion, rollback)
    still holds the previous weights: that is the rollout, not drift, and says nothing.
    """
    if route.in_sync or not route.exists:
        return False
    previous = (before.canary_weight, before.mirror_percent)
    moving = (action.canary_weight, action.mirror_percent) != previous
    return not moving or (route.canary_weight, route.mirror_percent) != previous


NEXT_RECONCILE_AT = "nextReconcileAt"
REFUSED_RETRY_SECONDS = 10.0
"""How soon a refused apply is tried again (the object or policy may be fixed; the deadline may pass)."""


def describe(action: Action) -> str:
    """The action in words, for the condition and Event of a refused apply."""
    if isinstance(action, EnsureRevision):
        return (f"the {action.role} Deployment of version {action.revision.version} "
                f"({action.revision.hash}) at {action.replicas} replicas")
    if isinstance(action, SetTraffic):
        return (f"the route for canary weight {action.canary_weight}% and mirror {action.mirror_percent}% "
                f"(stable {action.stable.hash})")
    if isinstance(action, DeleteRevision):
        return f"the deletion of revision {action.revision_hash}"
    if isinstance(action, EnsureComparator):
        return f"the comparator of canary {action.canary.hash} ({action.sample_percent:g}% sampled)"
    if isinstance(action, RemoveComparator):
        return "the removal of the comparator"
    return f"the Event {action.reason}"


ANY_ROUTER = ModelDeploymentSpec.model_validate({"model": {"name": "any", "version": "1", "repository": "any"}})
"""A spec routed by `none`: every other router is stale for it, so its routers clean up a route of any kind."""


class Reconciler:
    """Wires adapters to the engine; one instance serves every ModelDeployment."""

    def __init__(
        self,
        cluster: Cluster,
        routers: RouterFactory,
        metrics: Metrics,
        checker: ModelChecker,
        clock: Clock,
        telemetry: Telemetry,
        idle_resync_seconds: float = 60.0,
        requester_policy: RequesterPolicy | None = None,
        route_scope: RouteScope | None = None,
        notifier: Notifier | None = None,
        subscribers: tuple[Subscriber, ...] = (),
        gateway_supports: GatewaySupports | None = None,
    ) -> None:
        self.cluster = cluster
        self.routers = routers
        self.metrics = metrics
        self.checker = checker
        self.clock = clock
        self.telemetry = telemetry
        self.idle_resync_seconds = idle_resync_seconds
        self.requester_policy = requester_policy
        self.route_scope = route_scope or RouteScope()
        self.notifier = notifier
        self.gateway_supports = gateway_supports
        self.subscribers = subscribers
        """Operator-level subscriptions (their Secrets in the operator's namespace), before each object's own."""

    def forget(self, body: Mapping[str, Any]) -> None:
        owner = owner_of(body)
        self.telemetry.forget(owner.namespace, owner.name)

    async def delete(self, body: Mapping[str, Any]) -> None:
        """While kopf's finalizer still holds the object: remove its routes, then forget it.

        Garbage collection deletes an owner's dependents in no particular order, so without this a route can
        outlive a backend Service it names (measured: e2e scenario 14). With the routes gone first, the
        Services and Deployments left for the garbage collector serve no route. The work queue never runs it
        beside a reconcile of the same object; reconciles of a deleting object do nothing (see `step`).
        """
        owner = owner_of(body)
        parsed = parse_spec(dict(body.get("spec") or {}))
        # A spec that does not parse (stored before today's schema) may still have a route from an earlier
        # valid spec: remove a route of every kind.
        known = parsed if isinstance(parsed, ModelDeploymentSpec) else ANY_ROUTER
        for router in [self.routers(known), *self.routers.stale(known)]:
            await router.cleanup(owner)
        self.forget(body)

    async def reconcile(self, body: Mapping[str, Any]) -> ReconcileResult:
        """`step`, then its Events (for callers that write the status themselves afterwards, e.g. tests)."""
        result = await self.step(body)
        await self.publish(owner_of(body), result)
        return result

    async def step(self, body: Mapping[str, Any]) -> ReconcileResult:
        """Decide and apply children; the status patch and the Events are the caller's to send, in that order."""
        owner = owner_of(body)
        if body.get("metadata", {}).get("deletionTimestamp"):  # being deleted: apply nothing, route included
            return ReconcileResult({}, dict(body.get("status") or {}), self.idle_resync_seconds)
        started = time.perf_counter()
        try:
            return await self._reconcile(owner, body)
        except Exception:
            self.telemetry.count_reconcile_error(owner.namespace, owner.name)
            raise
        finally:
            self.telemetry.reconcile_seconds.observe(time.perf_counter() - started)

    async def publish(self, owner: Owner, result: ReconcileResult) -> None:
        """Send Events and queue notifications (after the status recording their decision was written)."""
        for event in result.events:
            await self._emit(owner, event)
        if self.notifier is not None:
            for notification in result.notifications:
                self.notifier.offer(notification)

    async def _reconcile(self, owner: Owner, body: Mapping[str, Any]) -> ReconcileResult:
        raw_status: dict[str, Any] = dict(body.get("status") or {})
        status = ModelDeploymentStatus.model_validate(raw_status)
        now = self.clock.now()
        parsed = parse_spec(dict(body.get("spec") or {}), name=owner.name)
        newest = parsed if isinstance(parsed, ModelDeploymentSpec) else None
        problems = tuple(str(p) for p in (await self._problems(newest, owner) if newest is not None else parsed))
        # An Invalid newest spec: the running rollout stays guarded under the last valid one (issue 8 item 2).
        spec = last_valid_spec(status) if problems else newest
        if spec is None:  # nothing valid was ever kept: freeze, touch nothing
            new_status = mark_invalid(status, list(problems), owner.generation, now)
            said: tuple[EmitEvent, ...] = ()
            if new_status.phase != status.phase:
                said = (EmitEvent(EventType.WARNING, "Invalid", "; ".join(problems)[:1000]),)
            return self._result(owner, raw_status, new_status, self.idle_resync_seconds, events=said)

        observations = replace(await self._observe(owner, body, spec, status), invalid=problems)
        decision = decide(spec, status, observations, now)
        events, refused = await self._execute(owner, spec, decision.actions, status)
        if refused is not None:
            return self._refused(owner, raw_status, status, refused)
        if status.observed_generation is not None and status.observed_generation != owner.generation:
            await self._remove_stale_routes(owner, spec)
        result = self._result(owner, raw_status, mark_applied(decision.status, now), self._requeue(decision),
                              decision, events=tuple(events))
        subscribers = (*self.subscribers, *(Subscriber(s, owner.namespace) for s in spec.notifications))
        notifications = notifications_for(owner.namespace, owner.name, owner.uid, subscribers, result.events,
                                          decision.status, now)
        return replace(result, notifications=notifications)

    async def _problems(self, spec: ModelDeploymentSpec, owner: Owner) -> list[str]:
        """What the schema cannot check: semantic problems, Istio hosts/gateways outside the namespace, and a
        RequestMirror on a Gateway whose class says it cannot mirror."""
        problems = [*map(str, semantic_problems(spec)), *self.route_scope.problems(spec, owner.namespace)]
        if self.gateway_supports is not None and needs_mirror_support(spec) and spec.traffic.gateway_api:
            supports = await self.gateway_supports.read(spec.traffic.gateway_api.parent_refs, owner.namespace)
            problems += mirror_problems(spec, supports)
        return problems

    def _refused(
        self, owner: Owner, raw_status: dict[str, Any], before: ModelDeploymentStatus, what: str
    ) -> ReconcileResult:
        """Keep the status from before the decision (its transition did not happen), record the refusal
        there and say it once as a Warning Event; retry soon, the deadline is the engine's to enforce."""
        new_status = mark_refused(before, what, self.clock.now())
        events: tuple[EmitEvent, ...] = ()
        if refusal(before) != refusal(new_status):
            events = (EmitEvent(EventType.WARNING, REFUSED_REASON, f"API server refused {what}"),)
        return self._result(owner, raw_status, new_status, min(REFUSED_RETRY_SECONDS, self.idle_resync_seconds),
                            events=events)

    async def _observe(
        self, owner: Owner, body: Mapping[str, Any], spec: ModelDeploymentSpec, status: ModelDeploymentStatus
    ) -> Observations:
        """Ask only what the current stage needs: Triton during validation, Prometheus when a check is due."""
        now = self.clock.now()
        revisions = await self.cluster.revision_states(owner)
        validation: ValidationReport | None = None
        metrics: MetricsSnapshot | None = None
        canary = status.canary_revision
        if canary is not None and validation_due(status):
            validation = await self._validate(owner, spec, status, revisions.get(canary.hash))
        judged = judged_revision(status)
        if judged is not None and analysis_due(spec, status, now):
            window = parse_duration(spec.rollout.analysis.interval).total_seconds()
            comparing = active_comparison(spec, status.stage) is not None
            # after promotion the new stable carries everything: its baseline is in status, not another series
            baseline = None if judged == status.stable_revision else status.stable_revision
            metrics = await self.metrics.snapshot(owner, spec, judged, baseline, window, comparing=comparing)
        return Observations(
            generation=owner.generation,
            revisions=revisions,
            validation=validation,
            metrics=metrics,
            request=await self._request(body, status),
            refused=refusal(status),
        )

    async def _request(self, body: Mapping[str, Any], status: ModelDeploymentStatus) -> ManualRequest | None:
        """The pending manual request; the admission policy is looked up only when one is new."""
        annotations = body["metadata"].get("annotations")
        fresh = request_id(annotations) not in (None, status.last_request_id)
        in_force = fresh and self.requester_policy is not None and await self.requester_policy.in_force()
        return parse_request(annotations, policy_in_force=in_force)

    async def _validate(
        self, owner: Owner, spec: ModelDeploymentSpec, status: ModelDeploymentStatus, canary: RevisionState | None
    ) -> ValidationReport | None:
        if canary is None or not canary.available:
            return None
        canary_ips = await self.cluster.ready_pod_ips(owner, canary.hash)
        stable_ip: str | None = None
        if status.stable_revision is not None:
            stable_ips = await self.cluster.ready_pod_ips(owner, status.stable_revision.hash)
            stable_ip = stable_ips[0] if stable_ips else None
        target = status.canary_revision
        return await self.checker.validate(spec_for(spec, target) if target else spec, canary_ips, stable_ip)

    async def _execute(
        self, owner: Owner, spec: ModelDeploymentSpec, actions: list[Action], before: ModelDeploymentStatus
    ) -> tuple[list[EmitEvent], str | None]:
        """Apply in the engine's order; the Events are returned, to be sent after the status is written, so a
        failed apply never reports what did not happen.

        Also returns what the API server refused (the action and its error), stopping there: the remaining
        actions depended on it. Transient errors (5xx, timeouts, throttling) raise for the queue to retry.
        """
        events: list[EmitEvent] = []
        for action in actions:
            try:
                events.extend(await self._apply(owner, spec, action, before))
            except KubeError as exc:
                if not exc.refused:
                    raise
                log.warning("%s/%s: %s refused: %s", owner.namespace, owner.name, describe(action), exc)
                return [], f"{describe(action)}: {exc}"
        return events, None

    async def _apply(
        self, owner: Owner, spec: ModelDeploymentSpec, action: Action, before: ModelDeploymentStatus
    ) -> list[EmitEvent]:
        """Carry out one action; the Events it implies are returned, to be sent after every apply succeeded."""
        if isinstance(action, EnsureRevision):
            await self.cluster.apply_revision(owner, spec, action.revision, action.role, action.replicas)
        elif isinstance(action, SetTraffic):
            route = await self.routers(spec).apply(owner, spec, action)
            if route_was_edited(route, action, before):
                return [EmitEvent(EventType.WARNING, "RouteRestored", "route differed from the rollout state "
                                  f"and was restored to canary weight {action.canary_weight}%")]
        elif isinstance(action, DeleteRevision):
            await self.cluster.delete_revision(owner, action.revision_hash)
        elif isinstance(action, EnsureComparator):
            await self.cluster.apply_comparator(owner, action)
        elif isinstance(action, RemoveComparator):
            await self.cluster.remove_comparator(owner)
        else:
            return [action]
        return []

    async def _emit(self, owner: Owner, event: EmitEvent) -> None:
        """Events are the story, not the state: a refused Event (e.g. namespace terminating) is logged only."""
        try:
            await self.cluster.emit_event(owner, event.type, event.reason, event.message)
        except Exception as exc:
            log.warning("event %s on %s/%s not recorded: %s", event.reason, owner.namespace, owner.name, exc)

    async def _remove_stale_routes(self, owner: Owner, spec: ModelDeploymentSpec) -> None:
        """After a spec change, delete routes of routers no longer selected (e.g. Istio -> Gateway API),
        only once the new route is in place, so traffic never meets a missing route."""
        for router in self.routers.stale(spec):
            await router.cleanup(owner)

    def _requeue(self, decision: Decision) -> float:
        if decision.requeue_after is None:
            return self.idle_resync_seconds
        return max(0.0, min(decision.requeue_after, self.idle_resync_seconds))

    def _result(
        self, owner: Owner, raw_status: dict[str, Any], status: ModelDeploymentStatus, requeue_after: float,
        decision: Decision | None = None, events: tuple[EmitEvent, ...] = (),
    ) -> ReconcileResult:
        """The patch for `status`; operator metrics from `decision` when it was carried out.

        `nextReconcileAt` alone never makes a patch: it moves on every reconcile of an idle object, and writing
        it would cost a request per object per resync for nothing (the schedule lives in the work queue and is
        rebuilt from status by the first reconcile after a restart). It is written along with real changes.
        """
        now = self.clock.now()
        status = status.model_copy(update={"next_reconcile_at": now + timedelta(seconds=requeue_after)})
        new_raw = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._record(owner, status, decision)
        patch = status_diff(raw_status, new_raw)
        if set(patch) <= {NEXT_RECONCILE_AT}:
            patch = {}
            new_raw = {**new_raw, NEXT_RECONCILE_AT: raw_status.get(NEXT_RECONCILE_AT)}
            if new_raw[NEXT_RECONCILE_AT] is None:
                del new_raw[NEXT_RECONCILE_AT]
        return ReconcileResult(patch, new_raw, requeue_after, events)

    def _record(self, owner: Owner, status: ModelDeploymentStatus, decision: Decision | None) -> None:
        """Update operator metrics from what the decision says happened: each check and rollback is in exactly
        one carried-out decision, so each is counted once however often the object is reconciled."""
        t = self.telemetry
        t.observe_phase(owner.namespace, owner.name, str(status.phase), status.canary_weight)
        if decision is None:
            return
        t.record_decision(owner.namespace, owner.name, decision.checked, decision.rolled_back,
                          promoted=decision.promoted is not None)
