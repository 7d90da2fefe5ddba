"""Operator metrics on /metrics (prometheus_client): what SREs alert on and the dashboard draws.

Two kinds of series. Fleet series (`modelship_rollouts{phase}`, `modelship_fleet_*_total`, the control-loop
gauges) have no object labels and are always exact. Per-object series (labels `namespace`, `name`) exist for at
most `max_objects` ModelDeployments, rollouts in flight first (see `SeriesCap`), so a 10,000-object fleet does not
cost Prometheus 10,000 objects' worth of series. Every call is O(1) in the number of objects.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from modelship.adapters.series_cap import Change, Key, SeriesCap
from modelship.domain.status import AnalysisRecord, Phase, Verdict

PHASES = tuple(str(phase) for phase in Phase)
MID_ROLLOUT = frozenset({str(Phase.PROGRESSING), str(Phase.PAUSED)})
"""Phases whose objects take a per-object slot before settled ones."""
Metric = TypeVar("Metric", bound=MetricWrapperBase)


class Telemetry:
    """Counters and gauges, kept in one registry so tests can read them without global state.

    Per-object counters (`modelship_analysis_total`, `modelship_rollbacks_total`, `modelship_promotions_total`,
    `modelship_reconcile_errors_total`) count only while the object holds a slot: when it loses its slot (or is
    deleted) all its series are removed, and if it gets a slot again they start from zero, which `rate()` and
    `increase()` read as a counter reset. The `modelship_fleet_*_total` counters count every object, always.
    """

    def __init__(self, registry: CollectorRegistry | None = None, max_objects: int = 1000) -> None:
        self.registry = registry or CollectorRegistry()
        self._cap = SeriesCap(max_objects)
        registry = self.registry
        self.rollouts = Gauge("modelship_rollouts", "ModelDeployments by phase (all of them).", ["phase"],
                              registry=registry)
        for phase in PHASES:
            self.rollouts.labels(phase).set(0)
        self.phase = Gauge(
            "modelship_deployment_phase", "1 for the current phase of each ModelDeployment with series.",
            ["namespace", "name", "phase"], registry=registry,
        )  # fmt: skip
        self.canary_weight = Gauge(
            "modelship_canary_weight", "Percent of live traffic on the canary.", ["namespace", "name"],
            registry=registry,
        )
        self.analysis = Counter(
            "modelship_analysis", "SLO checks by verdict.", ["namespace", "name", "verdict"], registry=registry
        )
        self.slo_value = Gauge(
            "modelship_slo_value", "Latest canary value of each SLO.", ["namespace", "name", "slo"], registry=registry
        )
        self.slo_bound = Gauge(
            "modelship_slo_bound", "Upper bound of each SLO.", ["namespace", "name", "slo"], registry=registry
        )
        self.rollbacks = Counter(
            "modelship_rollbacks", "Automatic and manual rollbacks by reason.", ["namespace", "name", "reason"],
            registry=registry,
        )
        self.promotions = Counter(
            "modelship_promotions", "Canaries promoted to stable.", ["namespace", "name"], registry=registry
        )
        self.reconcile_seconds = Histogram(
            "modelship_reconcile_duration_seconds", "Time of one reconcile, I/O included.", registry=registry
        )
        self.reconcile_errors = Counter(
            "modelship_reconcile_errors", "Reconciles that raised.", ["namespace", "name"], registry=registry
        )
        self.fleet_analysis = Counter(
            "modelship_fleet_analysis", "SLO checks of all ModelDeployments by verdict.", ["verdict"],
            registry=registry,
        )
        for verdict in Verdict:
            self.fleet_analysis.labels(str(verdict))
        self.fleet_rollbacks = Counter(
            "modelship_fleet_rollbacks", "Rollbacks of all ModelDeployments by reason.", ["reason"], registry=registry
        )
        self.fleet_promotions = Counter(
            "modelship_fleet_promotions", "Canaries of all ModelDeployments promoted.", registry=registry
        )
        self.fleet_reconcile_errors = Counter(
            "modelship_fleet_reconcile_errors", "Reconciles of all ModelDeployments that raised.", registry=registry
        )
        self.series_objects = Gauge(
            "modelship_series_objects", "ModelDeployments with per-object series (at most metrics_max_objects).",
            registry=registry,
        )
        self.series_waiting = Gauge(
            "modelship_series_waiting_rollouts",
            "Rollouts in flight without per-object series: metrics_max_objects is too small for them.",
            registry=registry,
        )
        self.queue_depth = Gauge("modelship_queue_depth", "Objects queued for a reconcile.", registry=registry)
        self.queue_oldest_age = Gauge(
            "modelship_queue_oldest_age_seconds", "How long the oldest due queued object has waited (backlog age).",
            registry=registry,
        )
        self.in_flight = Gauge("modelship_reconciles_in_flight", "Reconciles running now.", registry=registry)
        self.leader = Gauge(
            "modelship_leader", "1 while this replica holds the leader lease (or leader election is off).",
            registry=registry,
        )
        self.api_requests = Counter(
            "modelship_api_requests", "Kubernetes API requests by verb.", ["verb"], registry=registry
        )
        self.api_writes = Counter(
            "modelship_api_writes", "Kubernetes API requests that write, by verb.", ["verb"], registry=registry
        )
        self.api_throttled = Counter(
            "modelship_api_throttled_seconds", "Time requests waited for the client-side rate limit.",
            registry=registry,
        )
        self.notifications = Counter(
            "modelship_notifications", "Notification deliveries by event, target kind (webhook, apprise) and "
            "outcome (delivered, retried, failed, dropped, duplicate).", ["event", "target", "outcome"],
            registry=registry,
        )
        self._latest: dict[Key, tuple[str, int]] = {}
        """(phase, canary weight) of every known object, shown or not: the by-phase counts and a late slot need it."""
        self._counts: Tally[str] = Tally()
        self._leading = False
        self._series: dict[Key, set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}
        """Per-object series written for each shown object, so losing the slot removes exactly those."""

    def observe_phase(self, namespace: str, name: str, phase: str, canary_weight: int) -> None:
        """Record the object's phase: the by-phase counts move by one (no recount), and its series are written
        when it holds a slot."""
        key = (namespace, name)
        previous = self._latest.get(key)
        self._latest[key] = (phase, canary_weight)
        if previous is None or previous[0] != phase:
            if previous is not None:
                self._count(previous[0], -1)
            self._count(phase, +1)
        change = self._cap.update(key, phase in MID_ROLLOUT)
        self._apply(change)
        if key not in change.shown and self._cap.shown(key):
            if previous is not None and previous[0] != phase:
                self._remove_series(key, self.phase, namespace, name, previous[0])
            self._write_object(key)

    def record_decision(
        self, namespace: str, name: str, checked: AnalysisRecord | None, rolled_back: str | None,
        promoted: bool = False,
    ) -> None:
        """Count what one carried-out decision did: the SLO check it ran (with its values), its rollback or
        promotion. Fleet counters always; per-object series only for an object holding a slot."""
        key = (namespace, name)
        shown = self._cap.shown(key)
        if checked is not None:
            self.fleet_analysis.labels(str(checked.verdict)).inc()
            if shown:
                self._object_series(key, self.analysis, namespace, name, str(checked.verdict)).inc()
                for metric in checked.metrics:
                    if metric.value is not None:
                        self._object_series(key, self.slo_value, namespace, name, metric.name).set(metric.value)
                    if metric.max is not None:
                        self._object_series(key, self.slo_bound, namespace, name, metric.name).set(metric.max)
        if rolled_back is not None:
            self.fleet_rollbacks.labels(rolled_back).inc()
            if shown:
                self._object_series(key, self.rollbacks, namespace, name, rolled_back).inc()
        if promoted:
            self.fleet_promotions.inc()
            if shown:
                self._object_series(key, self.promotions, namespace, name).inc()

    def count_reconcile_error(self, namespace: str, name: str) -> None:
        """A reconcile raised. An object never observed before (it fails before its first status) asks for a
        free slot, so `ModelshipReconcileErrors` can name it."""
        key = (namespace, name)
        self.fleet_reconcile_errors.inc()
        if key not in self._latest and not self._cap.shown(key):
            self._apply(self._cap.update(key, rolling=False))
        if self._cap.shown(key):
            self._object_series(key, self.reconcile_errors, namespace, name).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted object: its series go (no ghosts on dashboards) and its phase leaves the counts."""
        key = (namespace, name)
        previous = self._latest.pop(key, None)
        if previous is not None:
            self._count(previous[0], -1)
        self._apply(self._cap.drop(key))

    def observe_queue(self, depth: int, oldest_age_seconds: float, in_flight: int) -> None:
        """The work queue now: objects queued, how long the oldest due one has waited, reconciles running."""
        self.queue_depth.set(depth)
        self.queue_oldest_age.set(oldest_age_seconds)
        self.in_flight.set(in_flight)

    def observe_leader(self, leading: bool) -> None:
        """Whether this replica leads (call it with True at start when leader election is off: the gauge starts
        at 0). A replica that stops leading drops its per-object series and phase counts: it no longer
        reconciles, so they would go stale and be counted twice beside the new leader's."""
        if self._leading and not leading:
            self._apply(self._cap.clear())
            self._latest.clear()
            for phase in self._counts:
                self.rollouts.labels(phase).set(0)
            self._counts.clear()
        self._leading = leading
        self.leader.set(1 if leading else 0)

    def count_api_request(self, verb: str, written: bool) -> None:
        """One Kubernetes API request; `written` when it writes (create, patch, apply, delete), counted again in
        `modelship_api_writes_total`."""
        self.api_requests.labels(verb).inc()
        if written:
            self.api_writes.labels(verb).inc()

    def observe_request(self, verb: str, written: bool, waited_seconds: float) -> None:
        """One request sent by the operator's transport (wired in controller/wiring.py)."""
        self.count_api_request(verb, written)
        if waited_seconds > 0:
            self.observe_throttle(waited_seconds)

    def observe_throttle(self, waited_seconds: float) -> None:
        """Time one request waited for the client-side rate limit (QPS/burst)."""
        self.api_throttled.inc(waited_seconds)

    def count_notification(self, event: str, target: str, outcome: str) -> None:
        """One delivery outcome (labels bounded: the events are an enum, the targets two kinds)."""
        self.notifications.labels(event, target, outcome).inc()

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose /metrics on its own port."""
        start_http_server(port, addr=addr, registry=self.registry)

    def _count(self, phase: str, delta: int) -> None:
        self._counts[phase] += delta
        self.rollouts.labels(phase).set(self._counts[phase])

    def _apply(self, change: Change) -> None:
        for key in change.hidden:
            for metric, labels in self._series.pop(key, set()):
                metric.remove(*labels)
        for key in change.shown:
            self._write_object(key)
        self.series_objects.set(len(self._cap))
        self.series_waiting.set(self._cap.waiting())

    def _write_object(self, key: Key) -> None:
        """Phase and canary weight of a shown object, from its latest observation (none yet: an object whose
        reconciles raise before its first status)."""
        if key not in self._latest:
            return
        phase, weight = self._latest[key]
        namespace, name = key
        self._object_series(key, self.phase, namespace, name, phase).set(1)
        self._object_series(key, self.canary_weight, namespace, name).set(weight)
        self._object_series(key, self.reconcile_errors, namespace, name)  # at 0: rate() is 0, not "no data"

    def _object_series(self, key: Key, metric: Metric, *labels: str) -> Metric:
        """The child series of `metric` for a shown object, remembered so it can be removed with the object."""
        self._series.setdefault(key, set()).add((metric, labels))
        return metric.labels(*labels)

    def _remove_series(self, key: Key, metric: MetricWrapperBase, *labels: str) -> None:
        self._series.get(key, set()).discard((metric, labels))
        metric.remove(*labels)
