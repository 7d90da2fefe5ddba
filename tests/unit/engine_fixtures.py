"""Builders for engine tests: specs, observations and a small simulator that feeds decide its own output."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship.domain.actions import Action, EmitEvent, EnsureRevision, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.engine import Decision, analysis_due, decide, validation_due
from modelship.domain.observations import (
    MetricsSnapshot,
    MetricValue,
    Observations,
    RevisionState,
    ValidationFailure,
    ValidationReport,
)
from modelship.domain.revision import desired_revision
from modelship.domain.status import ManualRequest, ModelDeploymentStatus, Revision

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def req(action: str, id_: str = "r1", by: str = "alice", at: datetime | None = None,
        **fields: Any) -> ManualRequest:
    """A verified request; without `at`, Sim stamps it with its own clock when it is observed (fresh)."""
    return ManualRequest.model_validate({"id": id_, "action": action, "by": by, "at": at, "verified": True,
                                         **fields})


def cond(status: ModelDeploymentStatus, kind: str) -> tuple[str, str]:
    c = next(c for c in status.conditions if c.type == kind)
    return c.status, c.reason


def make_spec(version: str = "1", **rollout: Any) -> ModelDeploymentSpec:
    """A spec with short, readable defaults: interval 1m, one 5m step, minRequests 10."""
    raw: dict[str, Any] = {
        "model": {"name": "fraud", "version": version, "repository": "s3://models"},
        "serving": {"replicas": rollout.pop("replicas", 4)},
        "traffic": rollout.pop("traffic", {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}),
        "slo": rollout.pop("slo", {"errorRate": {"max": 0.01}}),
        "rollout": {
            "canary": {"steps": rollout.pop("steps", [{"weight": 10, "duration": "5m"}])},
            "analysis": {"interval": "1m", "failureLimit": 2, "minRequests": 10,
                         **rollout.pop("analysis", {})},
            "progressDeadline": rollout.pop("progressDeadline", "15m"),
            "scaleDownDelay": rollout.pop("scaleDownDelay", "30s"),
            **rollout,
        },
    }
    return ModelDeploymentSpec.model_validate(raw)


def rev(spec: ModelDeploymentSpec) -> Revision:
    return desired_revision(spec)


def good(error_rate: float = 0.001, requests: float = 500, shift: float = 0.02) -> MetricsSnapshot:
    """Healthy Triton metrics and, for checks while the comparator runs, answers that barely moved."""
    return MetricsSnapshot(available=True, canary_requests=requests, compared=requests,
                           values={"errorRate": MetricValue(canary=error_rate, stable=0.001),
                                   "outputShift": MetricValue(canary=shift)})


def bad(error_rate: float = 0.2) -> MetricsSnapshot:
    return good(error_rate=error_rate)


def no_data() -> MetricsSnapshot:
    return MetricsSnapshot(available=True, canary_requests=500, compared=500,
                           values={"errorRate": MetricValue(canary=None), "outputShift": MetricValue(canary=None)})


def outage() -> MetricsSnapshot:
    return MetricsSnapshot(available=False, error="connection refused")


def few_requests() -> MetricsSnapshot:
    return good(requests=3)


PASSED = ValidationReport(passed=True, pods_checked=4)
CONTRACT = ValidationReport(passed=False, failure=ValidationFailure.CONTRACT_MISMATCH,
                            message="output score: FP32 [1,1] became FP16 [1,1]")
NOT_READY = ValidationReport(passed=False, failure=ValidationFailure.NOT_READY, message="model loading")
INVALID = ("spec.rollout.canary.steps[1].weight: must exceed the previous step's weight; raise it",)
"""What validation says of a spec edited into an Invalid one (`invalid=` of Sim.decide)."""


def traffic(d: Decision) -> list[SetTraffic]:
    return [a for a in d.actions if isinstance(a, SetTraffic)]


def ensures(d: Decision) -> list[EnsureRevision]:
    return [a for a in d.actions if isinstance(a, EnsureRevision)]


def events(d: Decision) -> list[EmitEvent]:
    return [a for a in d.actions if isinstance(a, EmitEvent)]


@dataclass
class Sim:
    """Drives decide like the controller does: observations only when due, status fed back, pods obedient."""

    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus = field(default_factory=ModelDeploymentStatus)
    now: datetime = T0
    generation: int = 1
    replicas: dict[str, int] = field(default_factory=dict)
    unschedulable: dict[str, str] = field(default_factory=dict)
    last: Decision | None = None
    actions: list[Action] = field(default_factory=list)

    def observe(self, metrics: MetricsSnapshot | None = None, validation: ValidationReport | None = PASSED,
                request: ManualRequest | None = None, invalid: tuple[str, ...] = ()) -> Observations:
        revisions = {
            h: RevisionState(hash=h, desired_replicas=n,
                             ready_replicas=0 if h in self.unschedulable else n,
                             unschedulable=self.unschedulable.get(h))
            for h, n in self.replicas.items()
        }
        if request is not None and request.at is None:
            request = request.model_copy(update={"at": self.now})
        return Observations(
            generation=self.generation, revisions=revisions,
            validation=validation if validation_due(self.status) else None,
            metrics=metrics if analysis_due(self.spec, self.status, self.now) else None,
            request=request, invalid=invalid,
        )

    def decide(self, metrics: MetricsSnapshot | None = None, validation: ValidationReport | None = PASSED,
               request: ManualRequest | None = None, invalid: tuple[str, ...] = (),
               after: timedelta = timedelta(0)) -> Decision:
        self.now += after
        d = decide(self.spec, self.status, self.observe(metrics, validation, request, invalid), self.now)
        self.apply(d)
        return d

    def apply(self, d: Decision) -> None:
        """Pods follow EnsureRevision instantly (ready unless unschedulable); deletes remove them."""
        self.last = d
        self.status = d.status
        self.actions.extend(d.actions)
        for a in d.actions:
            if isinstance(a, EnsureRevision):
                self.replicas[a.revision.hash] = a.replicas
            elif hasattr(a, "revision_hash"):
                self.replicas.pop(a.revision_hash, None)

    def healthy(self) -> Sim:
        """Bootstrap the spec's revision to Healthy."""
        self.decide()
        self.decide()
        return self

    def change(self, spec: ModelDeploymentSpec) -> Sim:
        self.spec = spec
        self.generation += 1
        return self

    def run_checks(self, n: int, metrics: MetricsSnapshot | None = None) -> Decision:
        """Advance one interval per check and decide."""
        d = self.last
        for _ in range(n):
            d = self.decide(metrics=metrics or good(), after=timedelta(minutes=1))
        assert d is not None
        return d


def rolled_out(steps: list[dict[str, Any]] | None = None, **rollout: Any) -> Sim:
    """A Healthy v1 with v2 requested: the next decide starts the rollout."""
    sim = Sim(make_spec("1", steps=steps or [{"weight": 10, "duration": "5m"}], **dict(rollout))).healthy()
    return sim.change(make_spec("2", steps=steps or [{"weight": 10, "duration": "5m"}], **dict(rollout)))
