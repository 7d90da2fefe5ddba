"""Watching a rollout from the outside while a scenario drives it: status, route and role Services sampled
together in one `kubectl get` every few hundred milliseconds, so a scenario can assert on the whole sequence
(no skipped or repeated step, the route never on a superseded revision, stable never below a floor).

Only what `kubectl` shows is read; nothing reaches into the operator.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from e2e.harness import Kubectl

LABEL_REVISION = "modelship.dev/revision"
LABEL_ROLE = "modelship.dev/role"


@dataclass(frozen=True)
class Sample:
    """One coherent look at the rollout (a single `kubectl get` call)."""

    t: float
    phase: str | None
    stage: str | None
    step: int | None
    weight: int
    canary: str | None
    """status.canaryRevision.hash"""
    stable: str | None
    awaiting: bool
    history: int
    route_canary_weight: int | None
    """Weight of the canary backend in the HTTPRoute (None: no route or no canary backend)."""
    canary_service_revision: str | None
    """Revision the `<name>-canary` Service selects (None: no such Service)."""
    replicas: dict[str, int] = field(default_factory=dict)
    """spec.replicas of each owned Deployment, by revision hash."""
    failed: dict[str, int] = field(default_factory=dict)
    """Transport failures so far per traffic backend (when the watcher follows a traffic generator)."""

    @property
    def position(self) -> tuple[Any, ...]:
        """Where the rollout is: what must never go backwards or repeat within one rollout."""
        return (self.canary, self.stage, self.step, self.awaiting)


def _route_canary_weight(routes: list[dict[str, Any]], canary_service: str) -> int | None:
    for route in routes:
        for rule in (route.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("name") == canary_service:
                    return int(ref.get("weight", 1))
    return None


def sample(kubectl: Kubectl, namespace: str, name: str, t0: float = 0.0) -> Sample | None:
    """Deployments, Services, HTTPRoute and status of `name`, read by one kubectl call.

    kubectl reads the kinds one after the other, in the order given. The operator writes children first and the
    status that records the decision last, so the status is read last: a sample may pair children with a newer
    status, never a status with children from a later decision (which would show, e.g., a stable shrunk for
    Promoting beside a status still at the canary step)."""
    result = kubectl.run("get", "deployments,services,httproutes,modeldeployments", "-n", namespace,
                         "-o", "json", check=False)
    if result.returncode != 0:
        return None
    items = json.loads(result.stdout).get("items") or []
    mdep = next((i for i in items if i["kind"] == "ModelDeployment" and i["metadata"]["name"] == name), None)
    if mdep is None:
        return None
    st = mdep.get("status") or {}
    owned = [i for i in items if (i["metadata"].get("labels") or {}).get("modelship.dev/deployment") == name]
    routes = [i for i in owned if i["kind"] == "HTTPRoute"]
    canary_svc = next((i for i in owned if i["kind"] == "Service" and i["metadata"]["name"] == f"{name}-canary"),
                      None)
    replicas = {
        (d["metadata"].get("labels") or {}).get(LABEL_REVISION, "?"): int((d.get("spec") or {}).get("replicas", 1))
        for d in owned if d["kind"] == "Deployment"
    }
    return Sample(
        t=time.monotonic() - t0,
        phase=st.get("phase"),
        stage=st.get("stage"),
        step=st.get("step"),
        weight=int(st.get("canaryWeight") or 0),
        canary=(st.get("canaryRevision") or {}).get("hash"),
        stable=(st.get("stableRevision") or {}).get("hash"),
        awaiting=bool(st.get("awaitingApproval")),
        history=len(st.get("history") or []),
        route_canary_weight=_route_canary_weight(routes, f"{name}-canary"),
        canary_service_revision=None if canary_svc is None else
        ((canary_svc.get("spec") or {}).get("selector") or {}).get(LABEL_REVISION),
        replicas=replicas,
    )


class RolloutWatcher:
    """Samples a ModelDeployment in a background thread until stopped; `positions()` is the deduplicated path."""

    def __init__(self, kubectl: Kubectl, namespace: str, name: str, period: float = 0.3,
                 traffic: Any = None) -> None:
        self.kubectl, self.namespace, self.name, self.period = kubectl, namespace, name, period
        self.traffic = traffic
        self.samples: list[Sample] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"watch-{name}", daemon=True)

    def __enter__(self) -> RolloutWatcher:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is not None:  # the scenario failed: show what the rollout did meanwhile
            print(f"--- {self.namespace}/{self.name} path: {self.positions()}")
            if self.samples:
                print(f"--- last sample: {self.samples[-1]}")
            last = self.kubectl.status(self.name, self.namespace) if self.samples else {}
            print(f"--- message: {last.get('message')}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            s = sample(self.kubectl, self.namespace, self.name, self.t0)
            if s is not None:
                if self.traffic is not None:
                    backends = self.traffic.summary()["backends"]
                    s.failed.update({k: int(v.get("failed", 0)) for k, v in backends.items() if v.get("failed")})
                self.samples.append(s)
            self._stop.wait(self.period)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def positions(self) -> list[tuple[Any, ...]]:
        """Distinct consecutive positions (canary, stage, step, awaiting) in the order they were seen."""
        out: list[tuple[Any, ...]] = []
        for s in self.samples:
            if not out or out[-1] != s.position:
                out.append(s.position)
        return out

    def failures(self) -> list[tuple[float, tuple[Any, ...], dict[str, int]]]:
        """(time, position, failures so far) whenever the transport failure count grew."""
        out, last = [], 0
        for s in self.samples:
            total = sum(s.failed.values())
            if total > last:
                out.append((round(s.t, 1), s.position, dict(s.failed)))
                last = total
        return out

    def first(self, pred: Any, after: float = 0.0) -> Sample | None:
        return next((s for s in self.samples if s.t >= after and pred(s)), None)


def assert_monotone_path(positions: list[tuple[Any, ...]], steps: int) -> None:
    """Within each rollout (one canary hash), stages and steps only move forward, one step at a time,
    and no position is entered twice (a resumed operator must not re-run or skip a step)."""
    order = {"Validating": 0, "Shadow": 1, "Canary": 2, "Promoting": 3}
    seen: set[tuple[Any, ...]] = set()
    prev: tuple[Any, ...] | None = None
    for pos in positions:
        canary, stage, step, _awaiting = pos
        if canary is None:
            prev = None
            continue
        assert pos not in seen or pos == prev, f"position {pos} entered twice in {positions}"
        seen.add(pos)
        if prev is not None and prev[0] == canary:
            _, pstage, pstep, _ = prev
            assert order.get(stage, 9) >= order.get(pstage, 9), f"stage went back {prev} -> {pos} in {positions}"
            if stage == pstage == "Canary" and step is not None and pstep is not None:
                assert step - pstep in (0, 1), f"step skipped or went back {prev} -> {pos} in {positions}"
            if stage == "Canary" and pstage != "Canary":
                assert step == 0, f"canary did not start at step 0: {prev} -> {pos}"
            if stage == "Promoting" and pstage == "Canary":
                assert pstep == steps - 1, f"promoted from step {pstep} of {steps}: {positions}"
        prev = pos


def triton_ready(kubectl: Kubectl, namespace: str, name: str, timeout: float = 60.0) -> list[str]:
    """Wait until every Running pod of `name` answers /v2/health/ready, and return their IPs.

    kwok marks pods Ready at once (no kubelet runs readiness probes), so a first revision is Healthy before its
    Triton listens; scenarios start live traffic only after this, as a real readiness probe would ensure."""
    import urllib.request  # noqa: PLC0415

    from e2e.harness import wait_for  # noqa: PLC0415

    def probe() -> list[str] | None:
        out = kubectl.run("get", "pods", "-n", namespace, "-l", f"modelship.dev/deployment={name}", "-o", "json")
        ips = [p["status"].get("podIP") for p in json.loads(out.stdout)["items"]
               if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        if not ips or None in ips:
            return None
        for ip in ips:
            try:
                with urllib.request.urlopen(f"http://{ip}:8000/v2/health/ready", timeout=2) as resp:
                    if resp.status != 200:
                        return None
            except OSError:
                return None
        return [str(ip) for ip in ips]

    return wait_for(f"Triton ready on every pod of {namespace}/{name}", probe, timeout=timeout)
