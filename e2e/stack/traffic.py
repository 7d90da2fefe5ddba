"""Steady inference traffic that follows a ModelDeployment's live route, like a real gateway would.

Why: with no real Gateway/Istio data plane here, something must honour the weights and mirrors the
operator writes, or canary analysis would see no traffic. Every second the generator re-reads the
route from the API server -- Gateway API HTTPRoute (backendRefs weights, RequestMirror percent),
Istio VirtualService (route weights, mirror, mirrorPercentage), or with no route the ready pods of
the deployment's Services (replica ratio) -- resolves Services to ready pod IPs via EndpointSlices,
and sends KServe v2 requests with tritonclient at a fixed rate (open loop: slow backends do not slow
the sender). Mirrored requests are fire-and-forget. Only loopback and the stack's pod CIDR are ever
contacted; other endpoint addresses are counted as ``refused_address`` and skipped.

CLI: ``python -m e2e.stack.traffic --namespace ml --name fraud-scorer --rps 20 --duration 60``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MANAGED = "app.kubernetes.io/managed-by=modelship"
GATEWAY = "gateway"
ALLOWED = [ipaddress.ip_network(os.environ.get("MODELSHIP_POD_CIDR", "10.77.0.0/16")),
           ipaddress.ip_network("127.0.0.0/8")]  # fmt: skip


@dataclass
class Backend:
    """A weighted destination: a Service (or a static list) and its ready endpoints ``host:port``."""

    name: str
    weight: float
    endpoints: list[str] = field(default_factory=list)
    role: str = ""


@dataclass
class Plan:
    """Where the next requests go."""

    kind: str  # httproute | virtualservice | replicas | static
    backends: list[Backend]
    mirror: Backend | None = None
    mirror_percent: float = 0.0


def _allowed(host: str) -> bool:
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in ALLOWED)


class RouteReader:
    """Reads a ModelDeployment's route and endpoints from the API server."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        self.ns, self.name = namespace, name
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.discovery = client.DiscoveryV1Api(api_client)
        self.selector = f"modelship.dev/deployment={name}"

    def model_name(self) -> str | None:
        try:
            mdep = self.custom.get_namespaced_custom_object(
                "modelship.dev", "v1alpha1", self.ns, "modeldeployments", self.name
            )
        except Exception:
            return None
        return str(mdep.get("spec", {}).get("model", {}).get("name") or "") or None

    def _objects(self, group: str, versions: tuple[str, ...], plural: str) -> list[dict[str, Any]]:
        for version in versions:
            try:
                items = self.custom.list_namespaced_custom_object(
                    group, version, self.ns, plural, label_selector=self.selector
                )["items"]
                if not items:
                    items = [self.custom.get_namespaced_custom_object(group, version, self.ns, plural, self.name)]
                return list(items)
            except Exception:
                continue
        return []

    def endpoints(self, service: str, port: int | None = None) -> list[str]:
        """Ready ``ip:port`` of a Service from its EndpointSlices (the http port, or ``port``)."""
        out: list[str] = []
        slices = self.discovery.list_namespaced_endpoint_slice(
            self.ns, label_selector=f"kubernetes.io/service-name={service}"
        ).items
        for sl in slices:
            ports = sl.ports or []
            chosen = next((p.port for p in ports if p.name == "http"), None) or (
                ports[0].port if ports else port or 8000
            )
            for ep in sl.endpoints or []:
                if ep.conditions is not None and ep.conditions.ready is False:
                    continue
                out += [f"{a}:{chosen}" for a in ep.addresses or []]
        return sorted(set(out))

    def _role(self, service: str) -> str:
        try:
            labels = self.core.read_namespaced_service(service, self.ns).metadata.labels or {}
        except Exception:
            return ""
        return str(labels.get("modelship.dev/role", ""))

    def _backend(self, service: str, weight: float) -> Backend:
        return Backend(service, weight, self.endpoints(service), self._role(service))

    def plan(self) -> Plan:
        """HTTPRoute first, then VirtualService, then replica ratio over the deployment's Services."""
        for route in self._objects("gateway.networking.k8s.io", ("v1", "v1beta1"), "httproutes"):
            rule = (route.get("spec", {}).get("rules") or [{}])[0]
            backends = [
                self._backend(ref["name"], float(ref.get("weight", 1))) for ref in rule.get("backendRefs") or []
            ]
            plan = Plan("httproute", backends)
            for flt in rule.get("filters") or []:
                if flt.get("type") == "RequestMirror":
                    rm = flt.get("requestMirror", {})
                    plan.mirror = self._backend(rm["backendRef"]["name"], 0)
                    if "percent" in rm:
                        plan.mirror_percent = float(rm["percent"])
                    elif "fraction" in rm:
                        fr = rm["fraction"]
                        plan.mirror_percent = 100.0 * fr["numerator"] / fr.get("denominator", 100)
                    else:
                        plan.mirror_percent = 100.0
            return plan
        for vs in self._objects("networking.istio.io", ("v1", "v1beta1", "v1alpha3"), "virtualservices"):
            http = (vs.get("spec", {}).get("http") or [{}])[0]
            backends = [
                self._backend(r["destination"]["host"].split(".")[0], float(r.get("weight", 100)))
                for r in http.get("route") or []
            ]
            plan = Plan("virtualservice", backends)
            if http.get("mirror"):
                plan.mirror = self._backend(http["mirror"]["host"].split(".")[0], 0)
                plan.mirror_percent = float((http.get("mirrorPercentage") or {"value": 100.0})["value"])
            return plan
        services = self.core.list_namespaced_service(self.ns, label_selector=f"{MANAGED},{self.selector}").items
        seen: set[str] = set()
        backends = []
        for svc in services:  # one Backend per endpoint: the split follows the replica ratio
            for ep in self.endpoints(svc.metadata.name):
                if ep not in seen:
                    seen.add(ep)
                    role = (svc.metadata.labels or {}).get("modelship.dev/role", "")
                    backends.append(Backend(f"{svc.metadata.name}/{ep}", 1.0, [ep], role))  # split per pod
        return Plan("replicas", backends)


class TrafficGenerator:
    """Open-loop sender at ``rps`` for ``duration`` seconds or ``count`` requests, whichever first."""

    def __init__(
        self,
        *,
        rps: float = 20.0,
        duration: float | None = 30.0,
        count: int | None = None,
        model: str = "fraud_scorer",
        reader: RouteReader | None = None,
        static: Plan | None = None,
        refresh_s: float = 1.0,
        timeout_s: float = 5.0,
        workers: int = 32,
    ) -> None:
        if reader is None and static is None:
            raise ValueError("need a RouteReader or a static Plan")
        self.rps, self.duration, self.count, self.model = rps, duration, count, model
        self.reader, self.refresh_s, self.timeout_s = reader, refresh_s, timeout_s
        self.plan: Plan = static or Plan("static", [])
        self.stats: dict[str, dict[str, Any]] = defaultdict(lambda: defaultdict(int))
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.route_errors = 0
        self.served: deque[tuple[float, str]] = deque(maxlen=200_000)
        """(wall time, model version) of every answered live request: who really served, from the answer."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="traffic")
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> TrafficGenerator:
        self._thread = threading.Thread(target=self._run, name="traffic-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        return self.wait()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.summary()

    def _refresh(self) -> None:
        if self.reader is None:
            return
        try:
            self.plan = self.reader.plan()
        except Exception:
            with self._lock:
                self.route_errors += 1  # keep the last plan: a gateway keeps routing too

    def _run(self) -> None:
        self._refresh()
        t0 = time.monotonic()
        last_refresh = t0
        sent = 0
        while not self._stop.is_set():
            now = time.monotonic()
            if self.duration is not None and now - t0 >= self.duration:
                break
            if self.count is not None and sent >= self.count:
                break
            if now - last_refresh >= self.refresh_s:
                self._refresh()
                last_refresh = now
            due = t0 + sent / self.rps
            if due > now:
                self._stop.wait(min(due - now, 0.05))
                continue
            self._dispatch(self.plan)
            sent += 1
        self._pool.shutdown(wait=True)

    # -- sending -----------------------------------------------------------------------------
    def _dispatch(self, plan: Plan) -> None:
        live = [b for b in plan.backends if b.weight > 0 and b.endpoints]
        if not live:
            with self._lock:
                self.stats["(none)"]["no_backend"] += 1
            return
        backend = random.choices(live, weights=[b.weight for b in live])[0]
        self._pool.submit(self._send, backend, random.choice(backend.endpoints), False)
        m = plan.mirror
        if m and m.endpoints and random.uniform(0, 100) < plan.mirror_percent:
            self._pool.submit(self._send, m, random.choice(m.endpoints), True)

    def _client(self, endpoint: str) -> Any:
        import tritonclient.http as httpclient  # noqa: PLC0415

        clients = self._local.__dict__.setdefault("clients", {})
        if endpoint not in clients:
            clients[endpoint] = httpclient.InferenceServerClient(
                endpoint, connection_timeout=2.0, network_timeout=self.timeout_s
            )
        return clients[endpoint]

    def _send(self, backend: Backend, endpoint: str, mirror: bool) -> None:
        import tritonclient.http as httpclient  # noqa: PLC0415

        key = f"mirror:{backend.name}" if mirror else backend.name
        outcome = "ok"
        version = "?"
        t = time.monotonic()
        if not _allowed(endpoint.rsplit(":", 1)[0]):
            outcome = "refused_address"
        else:
            try:
                inp = httpclient.InferInput("x", [1, 4], "FP32")
                inp.set_data_from_numpy(np.random.rand(1, 4).astype(np.float32))
                result = self._client(endpoint).infer(self.model, [inp])
                version = str(result.get_response().get("model_version", "?"))
                if backend.name == GATEWAY:  # the gateway split for us: the pinned version tells where it went
                    key = f"{GATEWAY}:v{version}"
            except Exception as exc:
                text = str(exc)
                outcome = "error" if "fault injection" in text or "500" in text else "failed"
                if outcome == "failed":
                    self._local.__dict__.get("clients", {}).pop(endpoint, None)  # reconnect next time
                    with self._lock:
                        self.stats[key]["last_failure"] = f"{endpoint}: {type(exc).__name__}: {text[:200]}"
        dt = time.monotonic() - t
        with self._lock:
            st = self.stats[key]
            st["sent"] += 1
            st[outcome] += 1
            st["role"] = backend.role
            if outcome == "ok":
                self.latencies[key].append(dt)
                if not mirror:
                    self.served.append((time.time(), version))

    def all_served_by(self, version: str, after: float) -> float | None:
        """When every live answer after `after` came from `version`: the time of its first answer after the
        last answer by any other version (None if another version still answers last)."""
        with self._lock:
            served = [(t, v) for t, v in self.served if t >= after]
        last_other = max((t for t, v in served if v != version), default=after)
        return next((t for t, v in served if t > last_other and v == version), None)

    def summary(self) -> dict[str, Any]:
        """Per backend: sent, ok, error (model failed), failed (transport), p50/p99 seconds."""
        with self._lock:
            out: dict[str, Any] = {"plan": self.plan.kind, "route_errors": self.route_errors, "backends": {}}
            for key, st in self.stats.items():
                lat = sorted(self.latencies.get(key, []))
                entry = dict(st)
                if lat:
                    entry["p50_s"] = round(lat[len(lat) // 2], 4)
                    entry["p99_s"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4)
                out["backends"][key] = entry
            return out


def from_kubeconfig(kubeconfig: str | Path, namespace: str, name: str, **kw: Any) -> TrafficGenerator:
    """A generator following ModelDeployment ``namespace/name`` (model name read from its spec)."""
    from kubernetes import config  # noqa: PLC0415

    reader = RouteReader(config.new_client_from_config(config_file=str(kubeconfig)), namespace, name)
    if "model" not in kw:
        kw["model"] = reader.model_name() or "fraud_scorer"
    return TrafficGenerator(reader=reader, **kw)


def via_gateway(address: str, **kw: Any) -> TrafficGenerator:
    """A generator that sends everything to a real gateway (``host:port`` on loopback), which does the split;
    successes are counted per served model version (``gateway:v7``), since each revision pins one."""
    return TrafficGenerator(static=Plan("gateway", [Backend(GATEWAY, 1.0, [address])]), **kw)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Send steady Triton traffic along a ModelDeployment's route.")
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--rps", type=float, default=20.0)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (0: until --count or Ctrl-C)")
    ap.add_argument("--count", type=int)
    ap.add_argument("--model", help="default: spec.model.name of the ModelDeployment")
    ap.add_argument("--gateway", help="send to this gateway host:port (e.g. $MODELSHIP_GATEWAY_URL) instead")
    default_kc = os.environ.get("KUBECONFIG", str(Path(__file__).resolve().parents[2] / ".stack" / "kubeconfig"))
    ap.add_argument("--kubeconfig", default=default_kc)
    args = ap.parse_args(argv)
    kw: dict[str, Any] = {"rps": args.rps, "duration": args.duration or None, "count": args.count}
    if args.model:
        kw["model"] = args.model
    if args.gateway:
        gen = via_gateway(args.gateway, **kw).start()
    else:
        gen = from_kubeconfig(args.kubeconfig, args.namespace, args.name, **kw).start()
    try:
        while gen._thread is not None and gen._thread.is_alive():
            gen._thread.join(5.0)
            print(json.dumps(gen.summary()), flush=True)
    except KeyboardInterrupt:
        gen.stop()
    print(json.dumps(gen.summary(), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
