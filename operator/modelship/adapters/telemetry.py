"""Operator metrics on /metrics (prometheus_client): what SREs alert on and the dashboard draws."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modelship.domain.status import AnalysisRecord

PHASES = ("Pending", "Progressing", "Paused", "Healthy", "RolledBack", "Failed", "Invalid")


class Telemetry:
    """Counters and gauges, kept in one registry so tests can read them without global state."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rollouts = Gauge(
            "modelship_rollouts", "ModelDeployments by phase.", ["phase"], registry=self.registry
        )
        self.phase = Gauge(
            "modelship_deployment_phase",
            "1 for the current phase of each ModelDeployment.",
            ["namespace", "name", "phase"],
            registry=self.registry,
        )
        self.canary_weight = Gauge(
            "modelship_canary_weight", "Percent of live traffic on the canary.", ["namespace", "name"],
            registry=self.registry,
        )
        self.analysis = Counter(
            "modelship_analysis", "SLO checks by verdict.", ["namespace", "name", "verdict"], registry=self.registry
        )
        self.slo_value = Gauge(
            "modelship_slo_value", "Latest canary value of each SLO.", ["namespace", "name", "slo"],
            registry=self.registry,
        )
        self.slo_bound = Gauge(
            "modelship_slo_bound", "Upper bound of each SLO.", ["namespace", "name", "slo"], registry=self.registry
        )
        self.rollbacks = Counter(
            "modelship_rollbacks", "Automatic and manual rollbacks by reason.", ["namespace", "name", "reason"],
            registry=self.registry,
        )
        self.promotions = Counter(
            "modelship_promotions", "Canaries promoted to stable.", ["namespace", "name"], registry=self.registry
        )
        self.reconcile_seconds = Histogram(
            "modelship_reconcile_duration_seconds", "Time of one reconcile, I/O included.", registry=self.registry
        )
        self.reconcile_errors = Counter(
            "modelship_reconcile_errors", "Reconciles that raised.", ["namespace", "name"], registry=self.registry
        )
        self._phases: dict[tuple[str, str], str] = {}

    def observe_phase(self, namespace: str, name: str, phase: str, canary_weight: int) -> None:
        """Record the object's phase; the by-phase gauge is recomputed from the latest phase of each object."""
        previous = self._phases.get((namespace, name))
        if previous is not None and previous != phase:
            self.phase.labels(namespace, name, previous).set(0)
        self._phases[(namespace, name)] = phase
        self.phase.labels(namespace, name, phase).set(1)
        self.canary_weight.labels(namespace, name).set(canary_weight)
        self._recount()

    def record_decision(
        self, namespace: str, name: str, checked: AnalysisRecord | None, rolled_back: str | None,
        promoted: bool = False,
    ) -> None:
        """Count what one carried-out decision did: the SLO check it ran (with its values), its rollback or
        promotion."""
        if checked is not None:
            self.analysis.labels(namespace, name, str(checked.verdict)).inc()
            for metric in checked.metrics:
                if metric.value is not None:
                    self.slo_value.labels(namespace, name, metric.name).set(metric.value)
                if metric.max is not None:
                    self.slo_bound.labels(namespace, name, metric.name).set(metric.max)
        if rolled_back is not None:
            self.rollbacks.labels(namespace, name, rolled_back).inc()
        if promoted:
            self.promotions.labels(namespace, name).inc()

    def forget(self, namespace: str, name: str) -> None:
        """Drop a deleted object's series so dashboards don't show ghosts."""
        phase = self._phases.pop((namespace, name), None)
        if phase is not None:
            self.phase.remove(namespace, name, phase)
            self.canary_weight.remove(namespace, name)
        self._recount()

    def _recount(self) -> None:
        counts = dict.fromkeys(PHASES, 0)
        for phase in self._phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, count in counts.items():
            self.rollouts.labels(phase).set(count)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Expose /metrics on its own port."""
        start_http_server(port, addr=addr, registry=self.registry)
