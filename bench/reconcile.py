"""Controller cost: the Reconciler over many ModelDeployments through whole rollouts, counting API calls.

The real adapters (KubeCluster, the Gateway API / Istio / replica-ratio routers, Kube's server-side apply)
run against an in-memory API server (`FakeApiServer`, a `Transport`), so the calls counted are the calls
the operator really makes. Deployments become ready a few simulated seconds after they are applied.
Prometheus and Triton are stand-ins (ports `Metrics` and `ModelChecker`) returning passing, or for one
object in five breaching, answers. A manual clock jumps to the next object due.

Reported: reconcile latency (I/O to the in-memory server included), API calls per reconcile by verb and
resource, and calls per reconcile split into steady ones (status unchanged apart from nextReconcileAt)
and transitions (stage, step, weight or phase changed). kopf's own status PATCH (one per reconcile whose
patch is not empty) is counted separately, as `status_patch`.

    python -m bench.reconcile [--objects 1000] [--quick] [--seed 1]
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship.adapters.cluster import KubeCluster
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.routers.factory import RouterFactory
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.ports import Owner
from modelship.controller.reconciler import Reconciler
from modelship.controller.requests import REQUEST_ANNOTATION, REQUESTER_ANNOTATION
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, ValidationReport
from modelship.domain.status import Revision

from bench.common import in_process_options, snapshot, summary_ms, table, varied_spec, write_results

T0 = datetime(2026, 1, 1, tzinfo=UTC)
READY_AFTER_S = 4.0
MAX_RECONCILES_PER_OBJECT = 500
WATCHED = ("phase", "stage", "step", "canaryWeight", "mirrorPercent", "stableRevision", "canaryRevision")


def _verb(method: str, name: str | None) -> str:
    return {"GET": "get" if name else "list", "PATCH": "apply", "POST": "create", "DELETE": "delete"}[method]


class FakeApiServer:
    """Just enough of the API server for the operator's calls: SSA, get, list by labels, create, delete.

    Deployment status is derived on read (ready `READY_AFTER_S` after its replicas were last changed);
    pods are synthesised from Deployments' pod templates.
    """

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.changed_at: dict[tuple[str, str, str], datetime] = {}
        self.calls: Counter[str] = Counter()
        self.events = 0
        self._lock = threading.Lock()

    @staticmethod
    def _parse(path: str) -> tuple[str, str, str | None]:
        parts = path.strip("/").split("/")
        i = parts.index("namespaces")
        return parts[i + 1], parts[i + 2], parts[i + 3] if len(parts) > i + 3 else None

    def request(
        self, method: str, path: str, *, query: list[tuple[str, str]] | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        namespace, plural, name = self._parse(path)
        with self._lock:
            self.calls[f"{_verb(method, name)} {plural}"] += 1
            key = (namespace, plural, name or "")
            if method == "PATCH":
                return self._apply(key, body)
            if method == "GET" and name:
                if key not in self.objects:
                    raise KubeError(404, "NotFound")
                return self._view(key)
            if method == "GET":
                selector = dict(item.split("=", 1) for item in dict(query or []).get("labelSelector", "").split(","))
                return {"items": self._list(namespace, plural, selector)}
            if method == "POST":
                self.events += 1
                return body
            if method == "DELETE":
                if self.objects.pop(key, None) is None:
                    raise KubeError(404, "NotFound")
                return {}
        raise KubeError(405, "MethodNotAllowed")

    def _apply(self, key: tuple[str, str, str], body: Mapping[str, Any]) -> dict[str, Any]:
        old = self.objects.get(key)
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        generation = int((old or {}).get("metadata", {}).get("generation", 0))
        changed = old is None or old.get("spec") != obj.get("spec")
        meta["generation"] = generation + 1 if changed else generation
        if changed:
            self.changed_at[key] = self.clock.now()
        self.objects[key] = obj
        return self._view(key)

    def _ready(self, key: tuple[str, str, str]) -> bool:
        return (self.clock.now() - self.changed_at[key]).total_seconds() >= READY_AFTER_S

    def _view(self, key: tuple[str, str, str]) -> dict[str, Any]:
        obj = self.objects[key]
        if key[1] != "deployments":
            return obj
        replicas = int(obj.get("spec", {}).get("replicas", 1))
        ready = replicas if self._ready(key) else 0
        return {**obj, "status": {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                                  "updatedReplicas": replicas, "readyReplicas": ready}}

    def _list(self, namespace: str, plural: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        if plural == "pods":
            return self._pods(namespace, selector)
        return [
            self._view(k) for k, o in self.objects.items()
            if k[0] == namespace and k[1] == plural and _matches(o["metadata"].get("labels"), selector)
        ]

    def _pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        pods = []
        for key, dep in self.objects.items():
            if key[0] != namespace or key[1] != "deployments":
                continue
            labels = dep["spec"]["template"]["metadata"]["labels"]
            if not _matches(labels, selector):
                continue
            ready = "True" if self._ready(key) else "False"
            for n in range(int(dep["spec"].get("replicas", 1))):
                pods.append({
                    "metadata": {"name": f"{key[2]}-{n}", "labels": labels},
                    "status": {"podIP": f"10.0.{n // 250}.{n % 250 + 1}",
                               "conditions": [{"type": "Ready", "status": ready}]},
                })
        return pods


def _matches(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    return all((labels or {}).get(k) == v for k, v in selector.items())


class StandInMetrics:
    """Metrics port: one answer per check, healthy unless the object was chosen to breach."""

    def __init__(self, breaching: set[str]) -> None:
        self.breaching = breaching
        self.calls = 0

    async def snapshot(
        self, owner: Owner, spec: ModelDeploymentSpec, canary: Revision, stable: Revision | None, window_s: float
    ) -> MetricsSnapshot:
        self.calls += 1
        return snapshot(spec.slo.model_dump(by_alias=True, exclude_none=True), owner.name not in self.breaching)


class StandInChecker:
    """ModelChecker port: every canary pod serves the model and matches the contract."""

    def __init__(self) -> None:
        self.calls = 0

    async def validate(
        self, spec: ModelDeploymentSpec, canary_ips: list[str], stable_ip: str | None
    ) -> ValidationReport:
        self.calls += 1
        return ValidationReport(passed=True, pods_checked=len(canary_ips))


@dataclass
class Obj:
    body: dict[str, Any]
    reconciles: int = 0
    done: bool = False
    outcome: str = ""
    requests: int = 0
    step_calls: list[int] = field(default_factory=list)
    """API calls spent since the last transition, closed at each transition."""
    open_calls: int = 0


def _signature(status: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(json.dumps(status.get(k), sort_keys=True) for k in WATCHED)


def build(n: int, seed: int, namespace: str = "bench") -> list[Obj]:
    rng = random.Random(seed)
    return [
        Obj({"metadata": {"namespace": namespace, "name": f"m{i}", "uid": f"uid-{i}", "generation": 1,
                          "annotations": {}},
             "spec": varied_spec(i, "1", rng), "status": {}})
        for i in range(n)
    ]


async def drive(objs: list[Obj], reconciler: Reconciler, server: FakeApiServer, clock: ManualClock) -> dict[str, Any]:
    latencies: list[float] = []
    per_reconcile: list[int] = []
    steady: list[int] = []
    transition: list[int] = []
    status_patches = 0
    heap: list[tuple[datetime, int]] = [(T0 + timedelta(milliseconds=i), i) for i in range(len(objs))]
    while heap:
        due, i = heapq.heappop(heap)
        if due > clock.now():
            clock.advance((due - clock.now()).total_seconds())
        obj = objs[i]
        before_calls = sum(server.calls.values())
        before_sig = _signature(obj.body["status"])
        started = time.perf_counter()
        result = await reconciler.reconcile(obj.body)
        latencies.append(time.perf_counter() - started)
        calls = sum(server.calls.values()) - before_calls
        per_reconcile.append(calls)
        obj.reconciles += 1
        status_patches += bool(result.status_patch)
        obj.body["status"] = result.status
        st = result.status
        obj.open_calls += calls
        if _signature(st) != before_sig:
            transition.append(calls)
            obj.step_calls.append(obj.open_calls)
            obj.open_calls = 0
        else:
            steady.append(calls)
        meta = obj.body["metadata"]
        if meta["generation"] == 1 and st.get("phase") == "Healthy":
            obj.body["spec"] = {**obj.body["spec"], "model": {**obj.body["spec"]["model"], "version": "2"}}
            meta["generation"] = 2
        elif st.get("awaitingApproval") and not obj.requests:
            obj.requests += 1
            at = clock.now().isoformat(timespec="milliseconds")
            meta["annotations"][REQUEST_ANNOTATION] = json.dumps({"id": f"a{i}", "action": "promote", "at": at})
            meta["annotations"][REQUESTER_ANNOTATION] = "bench"
        elif (meta["generation"] == 2 and st.get("stage") == "Stable" and not st.get("canaryRevision")
              and not st.get("retiredRevisions") and st.get("phase") in ("Healthy", "RolledBack")):
            obj.done, obj.outcome = True, str(st["phase"])
            continue
        if obj.reconciles >= MAX_RECONCILES_PER_OBJECT:
            obj.outcome = f"stuck:{st.get('phase')}/{st.get('stage')}"
            continue
        heapq.heappush(heap, (clock.now() + timedelta(seconds=result.requeue_after), i))
    idle = await idle_round(objs, reconciler, server, clock)
    outcomes = Counter(o.outcome for o in objs)
    steps = [c for o in objs for c in o.step_calls]
    by_kind = {k: v / len(per_reconcile) for k, v in sorted(server.calls.items())}
    return {
        "objects": len(objs),
        "reconciles": len(per_reconcile),
        **{f"reconcile_{k}": v for k, v in summary_ms(latencies).items()},
        "reconciles_per_s": len(latencies) / sum(latencies),
        "api_calls_total": sum(server.calls.values()),
        "api_calls_per_reconcile_mean": sum(per_reconcile) / len(per_reconcile),
        "api_calls_per_reconcile_max": max(per_reconcile),
        "api_calls_steady_mean": sum(steady) / max(1, len(steady)),
        "api_calls_steady_max": max(steady, default=0),
        "api_calls_transition_mean": sum(transition) / max(1, len(transition)),
        "api_calls_transition_max": max(transition, default=0),
        "api_calls_per_step_mean": sum(steps) / max(1, len(steps)),
        "api_calls_per_step_max": max(steps, default=0),
        "status_patches": status_patches,
        "events_created": server.events,
        "prometheus_rounds": reconciler.metrics.calls,  # type: ignore[attr-defined]
        "triton_validations": reconciler.checker.calls,  # type: ignore[attr-defined]
        **idle,
        "calls_per_reconcile_by_kind": {k: round(v, 3) for k, v in by_kind.items()},
        "outcomes": dict(outcomes),
    }


async def idle_round(
    objs: list[Obj], reconciler: Reconciler, server: FakeApiServer, clock: ManualClock
) -> dict[str, Any]:
    """One more reconcile of every settled object (the idle resync of a Healthy or RolledBack one)."""
    clock.advance(reconciler.idle_resync_seconds)
    before = Counter(server.calls)
    latencies = []
    for obj in objs:
        started = time.perf_counter()
        result = await reconciler.reconcile(obj.body)
        latencies.append(time.perf_counter() - started)
        obj.body["status"] = result.status
    calls = server.calls - before
    return {
        "idle_reconcile_p99_ms": summary_ms(latencies)["p99_ms"],
        "idle_api_calls_per_reconcile": sum(calls.values()) / len(objs),
        "idle_calls_by_kind": {k: round(v / len(objs), 3) for k, v in sorted(calls.items())},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    n, seed = in_process_options("bench.reconcile", __doc__, argv)

    clock = ManualClock(T0)
    server = FakeApiServer(clock)
    objs = build(n, seed)
    reconciler = Reconciler(
        cluster=KubeCluster(Kube(server), instance="bench"),
        routers=RouterFactory(Kube(server)),
        metrics=StandInMetrics({f"m{i}" for i in range(n) if i % 5 == 4}),
        checker=StandInChecker(),
        clock=clock,
        telemetry=Telemetry(),
    )
    wall = time.perf_counter()
    figures = asyncio.run(drive(objs, reconciler, server, clock))
    figures["bench_wall_s"] = time.perf_counter() - wall
    by_kind = figures.pop("calls_per_reconcile_by_kind")
    outcomes = figures.pop("outcomes")
    idle_kinds = figures.pop("idle_calls_by_kind")
    print(table(figures.items(), f"reconcile: {n} ModelDeployments through whole rollouts (real adapters, "
                                 "in-memory API server)"))
    print(table(by_kind.items(), "API calls per reconcile, by verb and resource (mean)"))
    print(table(idle_kinds.items(), "idle resync of a settled object: API calls per reconcile (mean)"))
    print(f"  outcomes: {outcomes}")
    print(f"  bar: bounded API calls per step -> max {figures['api_calls_per_reconcile_max']} per reconcile, "
          f"steady state max {figures['api_calls_steady_max']}")
    figures["calls_per_reconcile_by_kind"] = by_kind
    figures["outcomes"] = outcomes
    figures["idle_calls_by_kind"] = idle_kinds
    print(f"  results: {write_results('reconcile', figures)}")
    return figures


if __name__ == "__main__":
    main()
