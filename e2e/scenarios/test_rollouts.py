"""Rollout scenarios on the real stack (issue 4: scenarios 1-5 and 8).

Each scenario drives the product as a platform team would: a ModelDeployment manifest applied with kubectl, an
operator process watching only the scenario's namespace, steady traffic that follows the HTTPRoute the operator
writes, and live Triton faults. What is asserted is what an SRE can see: `kubectl get mdep`, status, Events, the
HTTPRoute, the Deployments and the Prometheus series of the pods.

A background `Observer` polls the ModelDeployment and its HTTPRoute every 0.1 s, so the order of stages, the
weights ever written and the time of every transition are measured, not inferred.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest

from e2e.conftest import printed_figures
from e2e.harness import Kubectl, wait_for
from e2e.manifests import model_deployment
from e2e.stack import StackContext
from e2e.stack.routes import mirror_percent, route_mirrors

pytestmark = pytest.mark.e2e

NAME = "fraud-scorer"
SCRAPE_INTERVAL_S = 2.0  # the stack's Prometheus scrape interval (README-dataplane.md)
ROUTE = ("gateway.networking.k8s.io", "v1", "httproutes")
MDEP = ("modelship.dev", "v1alpha1", "modeldeployments")


# --------------------------------------------------------------------------------------------------------------
# Observation helpers (read-only, as kubectl would)
# --------------------------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One poll: wall time, the status fields that matter and what the HTTPRoute says."""

    t: float
    phase: str | None
    stage: str | None
    step: int | None
    weight: int
    mirror: int
    stable: str | None
    canary: str | None
    route_canary: int | None  # percent of backendRef weight on the canary Service; None: no route
    route_mirror: int  # mirror percent the route asks for: RequestMirror filter or External annotation (0: none)
    check: tuple[str, str, str] | None = None  # (time, verdict, message) of status.lastAnalysis

    def key(self) -> tuple[Any, ...]:
        return (self.phase, self.stage, self.step, self.weight, self.mirror, self.stable, self.route_canary,
                self.route_mirror)


def route_split(route: dict[str, Any] | None, name: str = NAME) -> tuple[int | None, int]:
    """(canary weight percent, mirror percent) of an HTTPRoute, read like a gateway would."""
    if route is None:
        return None, 0
    rules = route.get("spec", {}).get("rules") or [{}]
    total = canary = 0
    for ref in rules[0].get("backendRefs") or []:
        w = int(ref.get("weight", 1))
        total += w
        if ref.get("name") == f"{name}-canary":
            canary += w
    mirror = next((int(mirror_percent(m)) for m in route_mirrors(route)), 0)
    return (round(100 * canary / total) if total else 0), mirror


@dataclass
class Observer:
    """Polls the ModelDeployment and its HTTPRoute; keeps every change and the `kubectl get mdep` row then."""

    stack: StackContext
    kubectl: Kubectl
    namespace: str
    period: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    rows: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Observer:
        from kubernetes import client  # noqa: PLC0415

        self._api = client.CustomObjectsApi(self.stack.api_client())
        self._thread = threading.Thread(target=self._run, name="observer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _get(self, kind: tuple[str, str, str]) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException  # noqa: PLC0415

        try:
            return dict(self._api.get_namespaced_custom_object(*kind[:2], self.namespace, kind[2], NAME))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                mdep = self._get(MDEP) or {}
                route = self._get(ROUTE)
            except Exception:  # a transient API error is not an observation
                self._stop.wait(self.period)
                continue
            t = time.time()
            st = mdep.get("status") or {}
            rc, rm = route_split(route)
            s = Sample(t, st.get("phase"), st.get("stage"), st.get("step"), int(st.get("canaryWeight") or 0),
                       int(st.get("mirrorPercent") or 0), (st.get("stableRevision") or {}).get("version"),
                       (st.get("canaryRevision") or {}).get("version"), rc, rm,
                       (la["time"], la["verdict"], la.get("message", "")) if (la := st.get("lastAnalysis")) else None)
            changed = not self.samples or self.samples[-1].key()[:5] != s.key()[:5]
            self.samples.append(s)
            if changed:
                rows = self.kubectl.table(self.namespace).strip().splitlines()
                self.rows.extend(rows[1:] if self.rows else rows)
            self._stop.wait(self.period)

    # -- queries over what was seen ------------------------------------------------------------------------------
    def first(self, pred: Callable[[Sample], bool], after: float = 0.0) -> Sample | None:
        return next((s for s in list(self.samples) if s.t >= after and pred(s)), None)

    def wait(self, what: str, pred: Callable[[Sample], bool], timeout: float = 60.0, after: float = 0.0) -> Sample:
        try:
            return wait_for(what, lambda: self.first(pred, after), timeout=timeout, interval=0.1)
        except AssertionError as exc:
            last = self.samples[-1] if self.samples else None
            message = (kubectl_status := self.kubectl.status(NAME, self.namespace)).get("message")
            raise AssertionError(f"{exc}; stages seen {self.stages()}; last sample {last}; "
                                 f"phase {kubectl_status.get('phase')}: {message}") from None

    def stages(self) -> list[tuple[str | None, int | None, int]]:
        """Distinct (stage, step, weight) in the order seen."""
        out: list[tuple[str | None, int | None, int]] = []
        for s in list(self.samples):
            k = (s.stage, s.step, s.weight)
            if not out or out[-1] != k:
                out.append(k)
        return out

    def checks(self) -> dict[str, str]:
        """Every SLO check seen in status: time -> verdict."""
        return {s.check[0]: s.check[1] for s in list(self.samples) if s.check}

    def check_log(self) -> list[str]:
        """Every SLO check seen, in order: 'HH:MM:SS verdict' plus the reason when it did not pass."""
        seen = {s.check[0]: s.check for s in list(self.samples) if s.check}
        return [f"{t[11:19]} {v}" + ("" if v == "Pass" else f" ({m[:120]})") for t, v, m in
                (seen[k] for k in sorted(seen))]

    def max_route_canary(self, since: float = 0.0) -> int:
        return max((s.route_canary or 0 for s in list(self.samples) if s.t >= since), default=0)


class Prometheus:
    """The stack's Prometheus over its HTTP API (what the operator queries, seen from outside)."""

    def __init__(self, stack: StackContext) -> None:
        self.url = stack.env["PROMETHEUS_URL"].rstrip("/")

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
        with urllib.request.urlopen(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
            body = json.loads(r.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def scalar(self, promql: str, at: float | None = None) -> float | None:
        res = self.query(promql, at)
        return float(res[0]["value"][1]) if res else None

    def raw(self, selector: str, window_s: int) -> list[tuple[float, float]]:
        """Raw scraped samples (timestamp, value) of the worst series matching `selector` over the window."""
        out: list[tuple[float, float]] = []
        for series in self.query(f"{selector}[{window_s}s]"):
            out.extend((float(t), float(v)) for t, v in series["values"])
        return sorted(out)


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def revision_hash(kubectl: Kubectl, ns: str, version: str) -> str:
    st = kubectl.status(NAME, ns)
    for key in ("canaryRevision", "stableRevision"):
        rev = st.get(key) or {}
        if rev.get("version") == version:
            return str(rev["hash"])
    for entry in reversed(st.get("history") or []):
        if entry.get("version") == version:
            return str(entry["revision"])
    raise AssertionError(f"no revision of version {version} in status: {st}")


def deployments(kubectl: Kubectl, ns: str) -> dict[str, int]:
    """Owned Deployments by revision hash -> spec.replicas."""
    out = kubectl.run("get", "deploy", "-n", ns, "-l", f"modelship.dev/deployment={NAME}", "-o", "json").stdout
    return {d["metadata"]["labels"]["modelship.dev/revision"]: int(d["spec"].get("replicas") or 0)
            for d in json.loads(out)["items"]}


def canary_triton_ready(kubectl: Kubectl, ns: str, rev: str, version: str) -> dict[str, bool]:
    """pod -> whether its Triton answers READY for the model version (KServe v2 over the pod network)."""
    out = kubectl.run("get", "pods", "-n", ns, "-l", f"modelship.dev/revision={rev}", "-o", "json").stdout
    ready: dict[str, bool] = {}
    for pod in json.loads(out)["items"]:
        ip = pod["status"].get("podIP")
        url = f"http://{ip}:8000/v2/models/fraud_scorer/versions/{version}/ready"
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                ready[pod["metadata"]["name"]] = r.status == 200
        except OSError:
            ready[pod["metadata"]["name"]] = False
    return ready


def pod_names(kubectl: Kubectl, ns: str) -> list[str]:
    out = kubectl.run("get", "pods", "-n", ns, "-l", f"modelship.dev/deployment={NAME}", "-o", "json").stdout
    return sorted(p["metadata"]["name"] for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp"))


def warning_events(kubectl: Kubectl, ns: str) -> list[dict[str, Any]]:
    out = kubectl.run("get", "events", "-n", ns, "--field-selector", "type=Warning", "-o", "json").stdout
    return list(json.loads(out)["items"])


def history(kubectl: Kubectl, ns: str) -> list[dict[str, Any]]:
    return list(kubectl.status(NAME, ns).get("history") or [])


def bring_up_stable(kubectl: Kubectl, ns: str, version: str = "1", **kw: Any) -> dict[str, Any]:
    """Given: version `version` applied as the first revision and Healthy (serving 100%)."""
    kubectl.apply(model_deployment(NAME, ns, version, **kw))
    return wait_for(f"v{version} Healthy", lambda: (st := kubectl.status(NAME, ns)).get("phase") == "Healthy"
                    and st.get("stage") == "Stable" and st, timeout=60)


def wait_traffic_ok(gen: Any, backend: str, n: int = 5, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while (summary := gen.summary())["backends"].get(backend, {}).get("ok", 0) < n:
        assert time.monotonic() < deadline, f"no {n} ok requests on {backend} in {timeout:.0f}s: {summary}"
        time.sleep(0.3)


def rolled_back(kubectl: Kubectl, ns: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        st = kubectl.status(NAME, ns)
        return st if st.get("phase") == "RolledBack" else None

    return probe


# --------------------------------------------------------------------------------------------------------------
# Scenario 1: healthy rollout through shadow and two canary steps
# --------------------------------------------------------------------------------------------------------------
def test_healthy_rollout(kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext) -> None:
    """Given v1 stable and serving live traffic,
    when v2 is applied with a shadow stage (100% mirrored, 8s) and two canary steps (20% then 50%, 8s each),
    then the rollout goes Validating -> Shadow -> Canary 20% -> Canary 50% -> promotion, the HTTPRoute carries
    the mirror and then the weights at each stage, the canary really receives the mirrored requests, v2 becomes
    stable at 100%, v1 is scaled away after scaleDownDelay and history records every stage with its time.
    """
    ns = namespace
    operator(ns)
    prom = Prometheus(stack)
    with printed_figures("scenario 1: healthy rollout") as fig:
        # Given: v1 stable, live traffic on it.
        bring_up_stable(kubectl, ns)
        gen = traffic(ns, NAME, rps=25)
        wait_traffic_ok(gen, f"{NAME}-stable")
        obs = Observer(stack, kubectl, ns).start()

        # When: v2 is applied with shadow + 2 canary steps.
        t_apply = time.time()
        kubectl.apply(model_deployment(NAME, ns, "2", shadow={"mirrorPercent": 100, "duration": "8s"},
                                       steps=[{"weight": 20, "duration": "8s"}, {"weight": 50, "duration": "8s"}],
                                       scale_down_delay="3s"))

        # Then: Validating first, with no traffic moved.
        validating = obs.wait("stage Validating for v2", lambda s: s.canary == "2" and s.stage == "Validating")
        assert validating.route_canary in (None, 0) and validating.route_mirror == 0
        # Shadow: route mirrors 100% to the canary Service and gives it no weight.
        shadow = obs.wait("Shadow with the mirror on the route",
                          lambda s: s.stage == "Shadow" and s.route_mirror == 100, timeout=40)
        assert shadow.route_canary == 0, "shadow must not give the canary live weight"
        v2 = revision_hash(kubectl, ns, "2")
        v1 = revision_hash(kubectl, ns, "1")
        # What validation gated on: the canary pods are live and their Triton reports model version 2 READY.
        assert kubectl.status(NAME, ns)["canaryRevision"]["hash"] == v2
        ready = canary_triton_ready(kubectl, ns, v2, "2")
        assert ready and all(ready.values()), ready
        validated = [h["reason"] for h in history(kubectl, ns) if h["revision"] == v2 and h["event"] == "Validated"]
        assert validated, history(kubectl, ns)
        for evidence in ("version 2 READY", "contract Strict matches stable", "1 sample(s) passed"):
            assert evidence in validated[0], validated[0]
        # Canary step 1: 20/80 on the route; step 2: 50/50.
        step1 = obs.wait("canary step 1 at 20%", lambda s: s.stage == "Canary" and s.step == 0
                         and s.route_canary == 20 and s.route_mirror == 0, timeout=40)
        mirrored_ok = gen.summary()["backends"].get(f"mirror:{NAME}-canary", {}).get("ok", 0)
        canary_sel = f'namespace="{ns}",modelship_dev_revision="{v2}"'
        prom_shadow = prom.scalar(f"sum(nv_inference_request_success{{{canary_sel}}})", at=step1.t)
        step2 = obs.wait("canary step 2 at 50%", lambda s: s.stage == "Canary" and s.step == 1
                         and s.route_canary == 50, timeout=40)
        promoted = obs.wait("v2 promoted: stable=v2, 100% stable", lambda s: s.phase == "Healthy"
                            and s.stable == "2" and s.canary is None and s.route_canary in (0, None), timeout=40)
        t_promoted = promoted.t
        # Old revision scaled away after scaleDownDelay (3s).
        wait_for("v1 Deployment gone (or at 0)", lambda: deployments(kubectl, ns).get(v1, 0) == 0, timeout=30)
        t_v1_gone = time.time()
        obs.stop()

        # The canary received mirrored requests while in shadow: traffic generator and Prometheus agree.
        assert mirrored_ok > 0, gen.summary()
        assert prom_shadow is not None and prom_shadow > 0, "Prometheus saw no canary requests during shadow"
        # Stages in order, exactly once each.
        # Stages in order, each once (Promoting may be too short to see when the canary already has its replicas).
        seen = obs.stages()
        order = [k[0] for k in seen if k[0] != "Promoting"]
        assert order == ["Stable", "Validating", "Shadow", "Canary", "Canary", "Stable"], seen
        assert [k for k in seen if k[0] == "Canary"] == [("Canary", 0, 20), ("Canary", 1, 50)], seen
        # Weights on the route only ever took the declared values.
        assert {s.route_canary for s in obs.samples if s.route_canary is not None} <= {0, 20, 50}
        # kubectl get mdep showed the stage and weight at each step.
        table = "\n".join(obs.rows)
        assert any("Shadow" in r for r in obs.rows), table
        assert any("Canary" in r and " 20 " in r for r in obs.rows), table
        assert any("Canary" in r and " 50 " in r for r in obs.rows), table
        final = kubectl.status(NAME, ns)
        assert final["stableRevision"]["version"] == "2" and final["canaryWeight"] == 0
        route = kubectl.get_json("httproute", NAME, ns)
        assert route_split(route) == (0, 0), route
        # History records every stage with a timestamp.
        hist = [h for h in history(kubectl, ns) if h["revision"] == v2]
        events = [(h["event"], h.get("stage")) for h in hist]
        for needed in ("Started", "Promoted"):
            assert any(e == needed for e, _ in events), events
        stage_changes = [h["reason"] for h in hist if h["event"] == "StageChanged"]
        assert any("shadow" in r for r in stage_changes), stage_changes
        assert any("step 1/2" in r for r in stage_changes) and any("step 2/2" in r for r in stage_changes)
        assert any("promoting" in r for r in stage_changes), stage_changes
        assert all(h.get("time") for h in hist)

        first = {k: obs.first(lambda s, k=k: s.stage == k[0] and s.step == k[1] and s.canary == "2")
                 for k in (("Validating", None), ("Shadow", None), ("Canary", 0), ("Canary", 1), ("Promoting", None))}
        marks = [(k[0] + ("" if k[1] is None else f" step {k[1] + 1}"), s.t) for k, s in first.items() if s]
        marks.append(("promoted", t_promoted))
        fig["seconds_per_stage"] = {a: round(tb - ta, 2) for (a, ta), (_, tb) in itertools.pairwise(marks)}
        fig["apply_to_promoted_s"] = round(t_promoted - t_apply, 2)
        fig["promoted_to_v1_scaled_down_s"] = round(t_v1_gone - t_promoted, 2)
        fig["history_times"] = [(h["event"], h.get("stage"), h["time"]) for h in hist]
        fig["checks"] = obs.check_log()
        fig["mirrored_requests_ok"] = mirrored_ok
        fig["canary_triton_ready"] = ready
        fig["validation"] = validated[0]
        fig["prometheus_canary_success_during_shadow"] = prom_shadow
        fig["shadow_to_step1_route_s"] = round(step1.t - shadow.t, 2)
        fig["step1_to_step2_route_s"] = round(step2.t - step1.t, 2)
        fig["kubectl_get_mdep_rows"] = obs.rows
        print("\n".join(obs.rows))


# --------------------------------------------------------------------------------------------------------------
# Scenario 2: latency breach at a canary step -> automatic rollback, breach-to-stable time
# --------------------------------------------------------------------------------------------------------------
def test_latency_breach_at_canary_step_rolls_back(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic and v2 healthy through canary step 1 (20%),
    when the canary revision turns slow at step 2 (live fault: +400 ms per request, p99 bound 300 ms, a bound
    the shared machine's own p99 spikes stay under, so nothing but the fault can breach it),
    then the operator rolls back on its own: the HTTPRoute gives 100% to stable within analysis interval +
    scrape interval + 2 s of the first Prometheus scrape that shows the canary p99 above its bound.
    """
    ns = namespace
    interval_s = 3
    p99_bound_ms = 300
    operator(ns)
    prom = Prometheus(stack)
    with printed_figures("scenario 2: latency breach at a canary step") as fig:
        # Given: v1 stable with live traffic; v2 rolling out, healthy at step 1.
        bring_up_stable(kubectl, ns)
        gen = traffic(ns, NAME, rps=20)
        wait_traffic_ok(gen, f"{NAME}-stable")
        obs = Observer(stack, kubectl, ns).start()
        kubectl.apply(model_deployment(
            NAME, ns, "2", steps=[{"weight": 20, "duration": "6s"}, {"weight": 50, "duration": "40s"}],
            analysis={"interval": f"{interval_s}s", "failureLimit": 1, "minRequests": 5},
            slo={"errorRate": {"max": 0.05}, "latencyP99Ms": {"max": p99_bound_ms}}, progress_deadline="60s"))
        obs.wait("canary step 1 at 20%", lambda s: s.stage == "Canary" and s.step == 0 and s.route_canary == 20,
                 timeout=40)
        at_step2 = obs.wait("canary step 2 at 50% (step 1 passed)", lambda s: s.stage == "Canary" and s.step == 1
                            and s.route_canary == 50, timeout=30)
        v2 = revision_hash(kubectl, ns, "2")
        assert kubectl.status(NAME, ns)["lastAnalysis"]["verdict"] == "Pass"

        # When: the canary revision turns slow.
        faults([{"match": {"namespace": ns, "revision": v2}, "latency_ms": 400}])
        t_flip = time.time()

        # Then: rolled back, route back to 100% stable.
        back = obs.wait("route 100% stable", lambda s: s.route_canary == 0, after=t_flip, timeout=30)
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=15)
        obs.stop()
        time.sleep(SCRAPE_INTERVAL_S)  # let Prometheus hold the scrape that showed the breach
        sel = f'nv_inference_request_summary_us{{namespace="{ns}",modelship_dev_revision="{v2}",quantile="0.99"}}'
        samples = prom.raw(sel, int(time.time() - t_flip) + 10)
        breach = next((t for t, v in samples if t >= t_flip and v / 1000 > p99_bound_ms), None)
        assert breach is not None, f"Prometheus never saw the canary p99 above the bound: {samples[-10:]}"
        assert st["stableRevision"]["version"] == "1" and st["canaryWeight"] == 0
        assert st["failedRevision"]["version"] == "2"
        p99 = next(m for m in st["lastAnalysis"]["metrics"] if m["name"] == "latencyP99Ms")
        assert p99["verdict"] == "Fail" and p99["value"] > p99_bound_ms, p99
        assert at_step2.t < t_flip < back.t
        assert obs.max_route_canary(since=t_flip) <= 50  # never advanced past the breaching step

        bar = interval_s + SCRAPE_INTERVAL_S + 2
        fig["analysis_interval_s"] = interval_s
        fig["scrape_interval_s"] = SCRAPE_INTERVAL_S
        fig["fault_flip_to_first_breaching_scrape_s"] = round(breach - t_flip, 2)
        fig["first_breaching_scrape_to_100pct_stable_s"] = round(back.t - breach, 2)
        fig["fault_flip_to_100pct_stable_s"] = round(back.t - t_flip, 2)
        fig["bound_s"] = bar
        fig["p99_bound_ms"] = p99_bound_ms
        fig["canary_p99_ms_at_rollback"] = p99["value"]
        fig["rollback_reason"] = st["message"]
        fig["checks"] = obs.check_log()
        assert back.t - breach <= bar, f"breach to 100% stable took {back.t - breach:.1f}s > {bar}s"


# --------------------------------------------------------------------------------------------------------------
# Scenario 3: error-rate breach during shadow -> rolled back without ever taking live traffic
# --------------------------------------------------------------------------------------------------------------
def test_error_breach_in_shadow_rolls_back_before_any_weight(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v1 stable with live traffic,
    when v2 is version 90 (fails 50% of requests) with a shadow stage mirroring 100%,
    then it is rolled back while still in Shadow: the HTTPRoute never gave the canary any weight, status is
    RolledBack with the reason and the evidence (error rate vs bound) and a Warning Event says so.

    Validation samples are off here: with them, version 90 is refused in Validating half of the time (its
    sample request fails with probability 0.5), which is right but is scenario 5's path, not the shadow analysis.
    """
    ns = namespace
    operator(ns)
    with printed_figures("scenario 3: error-rate breach in shadow") as fig:
        # Given: v1 stable with live traffic; the route is watched from before the rollout starts.
        bring_up_stable(kubectl, ns)
        gen = traffic(ns, NAME, rps=25)
        wait_traffic_ok(gen, f"{NAME}-stable")
        obs = Observer(stack, kubectl, ns).start()

        # When: the broken version 90 is rolled out behind a long shadow stage.
        t_apply = time.time()
        kubectl.apply(model_deployment(NAME, ns, "90", shadow={"mirrorPercent": 100, "duration": "40s"},
                                       slo={"errorRate": {"max": 0.05}, "latencyP99Ms": {"max": 500}},
                                       progress_deadline="60s", samples=False))
        shadow = obs.wait("Shadow with the mirror on", lambda s: s.stage == "Shadow" and s.route_mirror == 100,
                          timeout=40)
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=40)
        t_back = time.time()
        time.sleep(1.0)
        obs.stop()

        # Then: never any live weight on the canary; the stage was Shadow when it rolled back.
        assert obs.max_route_canary() == 0, [s for s in obs.samples if s.route_canary]
        assert all(s.weight == 0 for s in obs.samples)
        assert all(s.stage != "Canary" for s in obs.samples), obs.stages()
        assert route_split(kubectl.get_json("httproute", NAME, ns)) == (0, 0), "mirror must be removed"
        rb = next(h for h in reversed(st["history"]) if h["event"] == "RolledBack")
        assert rb["stage"] == "Shadow", rb
        assert rb["outcome"] == "RolledBack"
        err = next(m for m in st["lastAnalysis"]["metrics"] if m["name"] == "errorRate")
        assert err["verdict"] == "Fail" and err["value"] > err["max"] == 0.05, err
        assert "errorRate=" in rb["reason"] and "max 0.05" in rb["reason"], rb["reason"]
        degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "AnalysisFailed", degraded
        warnings = wait_for("Warning Event RolledBack", lambda: [
            e for e in warning_events(kubectl, ns) if e["reason"] == "RolledBack"], timeout=10)
        assert "errorRate=" in warnings[0]["message"], warnings[0]["message"]
        mirrored = gen.summary()["backends"].get(f"{NAME}-canary-mirror", {}) or gen.summary()["backends"].get(
            f"mirror:{NAME}-canary", {})
        assert mirrored.get("error", 0) > 0, gen.summary()

        fig["apply_to_shadow_s"] = round(shadow.t - t_apply, 2)
        fig["shadow_to_rolled_back_s"] = round(t_back - shadow.t, 2)
        fig["error_rate"] = err["value"]
        fig["error_rate_max"] = err["max"]
        fig["max_canary_weight_on_route"] = obs.max_route_canary()
        fig["checks"] = obs.check_log()
        fig["mirrored"] = mirrored
        fig["warning_event"] = warnings[0]["message"]
        fig["status_message"] = st["message"]


# --------------------------------------------------------------------------------------------------------------
# Scenario 4: canary within the absolute bound but slower than maxRatioToStable allows
# --------------------------------------------------------------------------------------------------------------
def test_latency_ratio_to_stable_rolls_back(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, faults: Any, stack: StackContext
) -> None:
    """Given v1 stable (a few ms p99) with live traffic,
    when v2 answers 150 ms slower (live fault) under latencyP99Ms {max: 5000, maxRatioToStable: 1.5},
    then the absolute bound holds but the ratio to stable fails: rolled back, and status.lastAnalysis shows the
    canary value, the stable value and the ratio bound.

    The figures are wider than "stable 5 ms, +40 ms, max 500 ms" because the shared 2-core test machine puts
    p99 spikes of 100 ms-1 s on every Triton under load; +150 ms keeps the ratio clearly above 1.5 and the
    generous absolute bound keeps it from firing first. The canary gets ~2 req/s, well under the one model
    instance's capacity at 150 ms, so the injected latency does not turn into an unbounded queue.
    """
    ns = namespace
    operator(ns)
    with printed_figures("scenario 4: baseline-relative latency") as fig:
        bring_up_stable(kubectl, ns)
        # The fault is keyed on version 2 in this namespace: v1 (stable) stays fast.
        faults([{"match": {"namespace": ns, "version": "2"}, "latency_ms": 150}])
        gen = traffic(ns, NAME, rps=10)
        wait_traffic_ok(gen, f"{NAME}-stable")
        obs = Observer(stack, kubectl, ns).start()

        # When: v2 rolls out with an absolute and a relative p99 bound.
        kubectl.apply(model_deployment(
            NAME, ns, "2", steps=[{"weight": 20, "duration": "12s"}, {"weight": 50, "duration": "12s"}],
            analysis={"interval": "4s", "failureLimit": 1, "minRequests": 3},
            slo={"errorRate": {"max": 0.05}, "latencyP99Ms": {"max": 5000, "maxRatioToStable": 1.5}},
            progress_deadline="60s"))
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=70)
        obs.stop()

        # Then: the ratio failed, not the absolute bound.
        p99 = next(m for m in st["lastAnalysis"]["metrics"] if m["name"] == "latencyP99Ms")
        assert p99["verdict"] == "Fail", p99
        assert p99["value"] < p99["max"] == 5000, p99
        assert p99["maxRatioToStable"] == 1.5 and p99["stableValue"] is not None, p99
        ratio = p99["value"] / p99["stableValue"]
        assert ratio > 1.5, p99
        assert "x stable" in p99["message"], p99["message"]
        assert st["stableRevision"]["version"] == "1" and st["canaryWeight"] == 0
        assert all(s.stage != "Promoting" and s.stable != "2" for s in obs.samples), obs.stages()
        rb = next(h for h in reversed(st["history"]) if h["event"] == "RolledBack")
        assert "maxRatioToStable 1.5" in rb["reason"], rb["reason"]
        summary = gen.summary()["backends"]

        fig["canary_p99_ms"] = round(p99["value"], 2)
        fig["stable_p99_ms"] = round(p99["stableValue"], 2)
        fig["ratio"] = round(ratio, 2)
        fig["max_ratio_to_stable"] = p99["maxRatioToStable"]
        fig["absolute_max_ms"] = p99["max"]
        fig["client_p99_s"] = {k: v.get("p99_s") for k, v in summary.items()}
        fig["reason"] = rb["reason"]


# --------------------------------------------------------------------------------------------------------------
# Scenario 5: incompatible model contract -> refused in Validating before any traffic
# --------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("variant", "change"), [("renamed-output", "'risk'"), ("fp64-output", "FP64")])
def test_incompatible_contract_refused_in_validation(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext, variant: str, change: str
) -> None:
    """Given v1 stable (output `score` FP32) with live traffic,
    when v2 comes from a repository whose output is renamed (`risk`) or whose `score` is FP64,
    then validation refuses it before any traffic moves: RolledBack with a message naming the tensor `score`,
    and the HTTPRoute never had a canary weight or a mirror.
    """
    ns = namespace
    operator(ns)
    with printed_figures(f"scenario 5: incompatible contract ({variant})") as fig:
        bring_up_stable(kubectl, ns)
        gen = traffic(ns, NAME, rps=10)
        wait_traffic_ok(gen, f"{NAME}-stable")
        obs = Observer(stack, kubectl, ns).start()
        stable_pods = pod_names(kubectl, ns)

        # When: the incompatible v2 is applied (shadow and canary declared, so there would be traffic to move).
        t_apply = time.time()
        kubectl.apply(model_deployment(NAME, ns, "2", variant=variant,
                                       shadow={"mirrorPercent": 100, "duration": "8s"}))
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=40)
        t_back = time.time()
        time.sleep(1.0)
        obs.stop()

        # Then: refused in Validating, the message names the tensor, no traffic ever moved.
        rb = next(h for h in reversed(st["history"]) if h["event"] == "RolledBack")
        assert rb["stage"] == "Validating", rb
        assert "ContractMismatch" in rb["reason"] and "'score'" in rb["reason"], rb["reason"]
        assert "no traffic was moved" in rb["reason"], rb["reason"]
        assert change in rb["reason"], rb["reason"]  # "canary has 'risk'" or "datatype FP32 -> FP64"
        degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "ValidationFailed", degraded
        assert "score" in st["message"] or "score" in degraded["message"], (st["message"], degraded)
        assert {s.stage for s in obs.samples} <= {"Stable", "Validating"}, obs.stages()
        assert obs.max_route_canary() == 0 and all(s.route_mirror == 0 for s in obs.samples)
        assert not any(k.startswith("mirror:") or k.endswith("-canary") for k in gen.summary()["backends"])
        assert st["stableRevision"]["version"] == "1"
        # The stable pods kept running untouched: the new repository never reached them.
        assert set(stable_pods) <= set(pod_names(kubectl, ns)), (stable_pods, pod_names(kubectl, ns))
        warnings = [e["message"] for e in warning_events(kubectl, ns) if e["reason"] == "RolledBack"]
        assert warnings and "score" in warnings[0], warnings

        fig["apply_to_refused_s"] = round(t_back - t_apply, 2)
        fig["reason"] = rb["reason"]


# --------------------------------------------------------------------------------------------------------------
# Scenario 8: too little traffic -> Inconclusive checks, never promoted, rolled back at progressDeadline
# --------------------------------------------------------------------------------------------------------------
def test_too_little_traffic_is_inconclusive_and_rolls_back_at_deadline(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given v1 stable with a trickle of traffic (1 request/s),
    when v2 rolls out with analysis.minRequests 1000 (far above what arrives in a 4 s window),
    then every check is Inconclusive (never a pass), the rollout never advances or promotes, and when
    progressDeadline (30 s) passes without progress it is rolled back (engine semantics: Inconclusive holds,
    the deadline turns the hold into a rollback with cause ProgressDeadline).
    """
    ns = namespace
    deadline_s = 30
    operator(ns)
    with printed_figures("scenario 8: too little traffic") as fig:
        bring_up_stable(kubectl, ns)
        traffic(ns, NAME, rps=1)
        obs = Observer(stack, kubectl, ns).start()

        kubectl.apply(model_deployment(NAME, ns, "2", analysis={"minRequests": 1000},
                                       progress_deadline=f"{deadline_s}s"))
        step = obs.wait("canary step 1", lambda s: s.stage == "Canary" and s.step == 0, timeout=40)
        inconclusive = wait_for("an Inconclusive check", lambda: (a := kubectl.status(NAME, ns).get(
            "lastAnalysis")) and a["verdict"] == "Inconclusive" and a, timeout=15)
        held = kubectl.status(NAME, ns)
        assert held["phase"] == "Progressing" and held["stage"] == "Canary" and held["step"] == 0, held
        st = wait_for("phase RolledBack", rolled_back(kubectl, ns), timeout=deadline_s + 20)
        back = obs.wait("route 100% stable", lambda s: s.route_canary == 0, after=step.t, timeout=10)
        obs.stop()

        # Then: never advanced, never promoted, rolled back by the deadline.
        assert all(s.stage != "Promoting" for s in obs.samples), obs.stages()
        assert all(s.step in (None, 0) for s in obs.samples), obs.stages()
        assert obs.max_route_canary() <= 20
        assert st["stableRevision"]["version"] == "1"
        degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
        assert degraded["reason"] == "ProgressDeadline", degraded
        rb = next(h for h in reversed(st["history"]) if h["event"] == "RolledBack")
        assert "progressDeadline" in rb["reason"] and "minRequests" in rb["reason"], rb["reason"]
        assert st["lastAnalysis"]["verdict"] == "Inconclusive"
        verdicts = obs.checks()
        assert len(verdicts) >= 3 and set(verdicts.values()) == {"Inconclusive"}, verdicts
        held_s = back.t - step.t
        assert deadline_s - 1 <= held_s <= deadline_s + 8, held_s

        fig["inconclusive_message"] = inconclusive["message"]
        fig["canary_requests_in_window"] = inconclusive.get("requests")
        fig["checks_seen"] = len(verdicts)
        fig["step_start_to_rollback_s"] = round(held_s, 2)
        fig["progress_deadline_s"] = deadline_s
        fig["reason"] = rb["reason"]
