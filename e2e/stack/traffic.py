"""Steady inference traffic along a ModelDeployment's live route: through the stack's real gateway where it has one.

Why: canary analysis needs traffic that follows the weights and mirrors the operator writes. Every second the
generator re-reads the route from the API server -- Gateway API HTTPRoute (backendRefs weights, RequestMirror
percent or the ``modelship.dev/mirror`` annotation of ``mirror: External``), Istio VirtualService (route weights,
mirror, mirrorPercentage), or with no route the ready pods of the deployment's Services (replica ratio) -- and
resolves Services to ready pod IPs via EndpointSlices. An HTTPRoute attached to the stack's Gateway
(``gateways/inference-gw``, Traefik) gets its live requests sent to the gateway, which does the weighted split;
each request carries an id, and the gateway's access log says which pod it went to (``accesslog.py``), so results
are still counted per Service. Everything else (Istio, which does not run here, the replica ratio, and the shadow
copy Traefik cannot make) the generator routes itself. KServe v2 requests with tritonclient at a fixed rate (open
loop: slow backends do not slow the sender); mirrored requests are fire-and-forget. Only loopback and the stack's
pod CIDR are ever contacted; other endpoint addresses are counted as ``refused_address`` and skipped.

CLI: ``python -m e2e.stack.traffic --namespace ml --name fraud-scorer --rps 20 --duration 60``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from e2e.stack.accesslog import REQUEST_ID, AccessLog
from e2e.stack.routes import (
    GATEWAY,
    STACK_GATEWAY,
    Backend,
    Plan,
    RouteReader,
    allowed,
)


def _gateway_request(plan: Plan) -> tuple[str, dict[str, str]]:
    """A fresh request id (the gateway's access log keeps it) and the headers that select the route."""
    request_id = uuid.uuid4().hex
    headers = {REQUEST_ID: request_id}
    if plan.hostnames:
        headers["Host"] = plan.hostnames[0]
    return request_id, headers


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
        gateway: str | None = None,
        access_log: Path | None = None,
        await_gateway_s: float = 30.0,
    ) -> None:
        """``gateway`` (``host:port`` of the stack's Gateway) with its ``access_log``: an HTTPRoute attached to
        ``STACK_GATEWAY`` has its live requests sent there and attributed from the log, once the gateway routes
        it (up to ``await_gateway_s``; 0 sends at once)."""
        if reader is None and static is None:
            raise ValueError("need a RouteReader or a static Plan")
        self.gateway, self.await_gateway_s = gateway, await_gateway_s
        self.access_log = AccessLog(access_log) if gateway and access_log else None
        self.owners: dict[str, Backend] = {}
        """Which Service each pod address served for, from every plan read (a pod just removed still counts)."""
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
        # Mirrored copies on their own workers: a gateway mirrors without holding live requests back, and a slow
        # shadow canary must not queue live requests behind copies waiting for their timeout.
        self._mirror_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="traffic-mirror")
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
            plan = self.reader.plan()
        except Exception:
            with self._lock:
                self.route_errors += 1  # keep the last plan: a gateway keeps routing too
            return
        with self._lock:
            for backend in plan.backends + ([plan.mirror] if plan.mirror else []):
                self.owners.update(dict.fromkeys(backend.endpoints, backend))
            self.plan = plan

    def _await_gateway(self, timeout_s: float) -> None:
        """Until the gateway routes this route to a pod: it learns routes and endpoints on its own schedule (1 s
        throttle here), as on a cluster, and a client does not send live traffic to a route not yet programmed.
        These requests are not counted."""
        deadline = time.monotonic() + timeout_s
        while not self._stop.is_set() and time.monotonic() < deadline and self.through_gateway(self.plan):
            request_id, headers = _gateway_request(self.plan)
            assert self.gateway is not None
            outcome, _, _ = self._infer(self.gateway, headers)
            upstream = self.access_log.upstream(request_id) if self.access_log is not None else None
            if upstream or (upstream is None and outcome != "failed"):
                return
            self._stop.wait(0.2)
            self._refresh()

    def _run(self) -> None:
        self._refresh()
        t0 = time.monotonic()
        last_refresh = t0
        sent = 0
        routed = False
        while not self._stop.is_set():
            if not routed and self.through_gateway(self.plan):  # at start, or once the route appears
                self._await_gateway(self.await_gateway_s)
                routed = True
                t0 = time.monotonic() - sent / self.rps  # resume the schedule: no burst to catch up
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
        self._mirror_pool.shutdown(wait=True)
        if self.access_log is not None:
            self.access_log.close()

    # -- sending -----------------------------------------------------------------------------
    def through_gateway(self, plan: Plan) -> bool:
        """Live requests of this plan go to the real gateway (an HTTPRoute attached to the stack's Gateway)."""
        return bool(self.gateway) and plan.kind == "httproute" and STACK_GATEWAY in plan.gateways

    def _dispatch(self, plan: Plan) -> None:
        live = [b for b in plan.backends if b.weight > 0 and b.endpoints]
        if self.through_gateway(plan):
            self._pool.submit(self._send_via_gateway, plan)
        elif not live:
            with self._lock:
                self.stats["(none)"]["no_backend"] += 1
            return
        else:
            backend = random.choices(live, weights=[b.weight for b in live])[0]
            self._pool.submit(self._send, backend, random.choice(backend.endpoints), False)
        m = plan.mirror
        if m and m.endpoints and random.uniform(0, 100) < plan.mirror_percent:
            self._mirror_pool.submit(self._send, m, random.choice(m.endpoints), True)

    def _client(self, endpoint: str) -> Any:
        import tritonclient.http as httpclient  # noqa: PLC0415

        clients = self._local.__dict__.setdefault("clients", {})
        if endpoint not in clients:
            clients[endpoint] = httpclient.InferenceServerClient(
                endpoint, connection_timeout=2.0, network_timeout=self.timeout_s
            )
        return clients[endpoint]

    def _infer(self, endpoint: str, headers: dict[str, str] | None = None) -> tuple[str, str, str]:
        """One request: (outcome ok|error|failed, served model version or "?", failure text)."""
        import tritonclient.http as httpclient  # noqa: PLC0415

        try:
            inp = httpclient.InferInput("x", [1, 4], "FP32")
            inp.set_data_from_numpy(np.random.rand(1, 4).astype(np.float32))
            result = self._client(endpoint).infer(self.model, [inp], headers=headers)
            return "ok", str(result.get_response().get("model_version", "?")), ""
        except Exception as exc:
            text = str(exc)
            if "fault injection" in text or "500" in text:
                return "error", "?", text
            self._local.__dict__.get("clients", {}).pop(endpoint, None)  # reconnect next time
            return "failed", "?", f"{endpoint}: {type(exc).__name__}: {text[:200]}"

    def _send(self, backend: Backend, endpoint: str, mirror: bool) -> None:
        key = f"mirror:{backend.name}" if mirror else backend.name
        t = time.monotonic()
        if not allowed(endpoint.rsplit(":", 1)[0]):
            outcome, version, failure = "refused_address", "?", ""
        else:
            outcome, version, failure = self._infer(endpoint)
            if backend.name == GATEWAY and outcome == "ok":  # the gateway split: the pinned version tells where
                key = f"{GATEWAY}:v{version}"
        self._record(key, backend.role, outcome, version, failure, time.monotonic() - t, mirror)

    def _send_via_gateway(self, plan: Plan) -> None:
        """A live request through the real gateway; the access log names the pod, the plans its Service."""
        assert self.gateway is not None
        request_id, headers = _gateway_request(plan)
        t = time.monotonic()
        outcome, version, failure = self._infer(self.gateway, headers)
        elapsed = time.monotonic() - t
        upstream = self.access_log.upstream(request_id) if self.access_log is not None else None
        with self._lock:
            backend = self.owners.get(upstream or "")
        if backend is not None:
            key, role = backend.name, backend.role
        else:  # no access log, or an address no plan listed: who served is all we know
            key, role = (f"{GATEWAY}:v{version}" if outcome == "ok" else f"{GATEWAY}:{upstream or 'no upstream'}"), ""
        if upstream == "" and outcome == "error":  # the gateway answered itself: no model ran, a transport failure
            outcome, failure = "failed", f"the gateway answered without an upstream: {failure[:200]}"
        self._record(key, role, outcome, version, failure, elapsed, False)

    def _record(self, key: str, role: str, outcome: str, version: str, failure: str, elapsed: float,
                mirror: bool) -> None:
        with self._lock:
            entry = self.stats[key]
            entry["sent"] += 1
            entry[outcome] += 1
            entry["role"] = role
            if outcome == "failed":
                entry["last_failure"] = failure
            if outcome == "ok":
                self.latencies[key].append(elapsed)
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


def from_kubeconfig(kubeconfig: str | Path, namespace: str, name: str, *,
                    stack_env: Mapping[str, str] | None = None, **kw: Any) -> TrafficGenerator:
    """A generator following ModelDeployment ``namespace/name`` (model name read from its spec), through the
    stack's gateway when ``stack_env`` (the stack's exports; default: this process's environment) names one."""
    env = os.environ if stack_env is None else stack_env
    kw.setdefault("gateway", env.get("MODELSHIP_GATEWAY_URL") or None)
    if kw["gateway"] and "access_log" not in kw and env.get("MODELSHIP_GATEWAY_ACCESS_LOG"):
        kw["access_log"] = Path(env["MODELSHIP_GATEWAY_ACCESS_LOG"])
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
