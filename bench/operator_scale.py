"""The real operator process at scale: N ModelDeployments in one namespace of the real local API server.

`modelship run --namespace bench-XXXX` runs as its own process (as in a cluster) with its /metrics on a free
port. The bench creates N ModelDeployments (CPU-only, tiny requests) whose pods are unschedulable on
purpose (`nodeSelector: {modelship.dev/bench: none}`): the operator reconciles every object and applies
its Deployment, Services and route, but no pod ever runs, so the stack's pod runner starts no Triton
(the shared stack serves other people's e2e scenarios meanwhile). Every object therefore stays in its
first revision's Validating stage ("waiting for pods ... unschedulable"), which is the busiest steady
state the engine has: it polls such objects every POLL_SECONDS.

Measured:
- operator RSS (VmRSS sampled every second, and VmHWM, the kernel's peak) after all objects settled;
- time from the first create to every object first reconciled (status.observedGeneration set);
- reconcile duration from the operator's own `modelship_reconcile_duration_seconds` histogram;
- API requests from the API server's `apiserver_request_total` (by verb and resource), over a steady
  window, minus the rate other clients of the shared stack produced in a baseline window just before.

The namespace is deleted at the end (with the operator still running, so it can release its finalizers).
The stack is brought up if needed (`python -m e2e.stack up`, idempotent) and never brought down.

    python -m bench.operator_scale [--objects 1000] [--quick] [--window 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.common import REPO, table, write_results
from bench.measure import ProcessSampler, apiserver_requests, http_get, stop_process
from e2e.stack import StackContext, free_port
from e2e.stack.orchestrator import context, load_state

GROUP, VERSION, PLURAL = "modelship.dev", "v1alpha1", "modeldeployments"
RESOURCES = ("modeldeployments", "deployments", "replicasets", "services", "httproutes", "virtualservices",
             "events", "pods", "namespaces")


def ensure_stack() -> StackContext:
    """Bring the shared stack up if it is not (idempotent), and return its context."""
    subprocess.run([sys.executable, "-m", "e2e.stack", "up"], cwd=REPO, check=True)
    state = load_state()
    if state is None:
        raise SystemExit("stack state missing after `python -m e2e.stack up`")
    return context(state)


def manifest(name: str, namespace: str, i: int) -> dict[str, Any]:
    """A small CPU-only ModelDeployment whose pods can never be scheduled."""
    traffic = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw"}]}} if i % 2 else {"none": {}}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"modelship.dev/bench": "true"}},
        "spec": {
            "model": {"name": f"bench_model_{i % 20}", "version": "1", "repository": "s3://bench/none"},
            "serving": {
                "replicas": 1,
                "resources": {"gpus": 0, "cpu": "10m", "memory": "16Mi"},
                "nodeSelector": {"modelship.dev/bench": "none"},
            },
            "traffic": traffic,
            "rollout": {"canary": {"steps": [{"weight": 10, "duration": "5m"}]}, "progressDeadline": "30m"},
            "slo": {"errorRate": {"max": 0.01}},
        },
    }


# --- scraping -----------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    count: float = 0.0
    total: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(self.count - other.count, self.total - other.total,
                         {le: v - other.buckets.get(le, 0.0) for le, v in self.buckets.items()})

    def quantile(self, q: float) -> float:
        """Upper bound of the bucket holding the q-quantile (seconds); inf: beyond the last finite bucket."""
        if self.count <= 0:
            return 0.0
        for le in sorted(self.buckets):
            if self.buckets[le] >= q * self.count:
                return le
        return float("inf")


def reconcile_histogram(port: int) -> Histogram:
    text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    h = Histogram()
    for family in text_string_to_metric_families(text):
        if family.name != "modelship_reconcile_duration_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_count"):
                h.count = s.value
            elif s.name.endswith("_sum"):
                h.total = s.value
            elif s.name.endswith("_bucket"):
                h.buckets[float(s.labels["le"])] = s.value
    return h


# --- the run ------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    stack: StackContext
    n: int
    window: float
    settle: float
    namespace: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:6]}")
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: REPO / ".stack" / "logs" / f"bench-operator-{os.getpid()}.log")

    def api(self) -> Any:
        from kubernetes import client  # noqa: PLC0415

        return client.CustomObjectsApi(self.stack.api_client())

    def start_operator(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.stack.env, "KUBECONFIG": str(self.stack.kubeconfig),
               "MODELSHIP_METRICS_PORT": str(self.metrics_port)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "modelship", "run", "--namespace", self.namespace,
               f"--liveness=http://127.0.0.1:{free_port()}/healthz"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        return self.proc

    def requests(self) -> Counter[str]:
        """API requests so far (all clients) for the resources the operator touches."""
        return apiserver_requests(self.stack, RESOURCES)

    def wait_metrics(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                reconcile_histogram(self.metrics_port)
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"operator metrics not served on :{self.metrics_port}; see {self.log_path}")

    def create_all(self) -> float:
        api = self.api()

        def create(i: int) -> None:
            body = manifest(f"m{i:04d}", self.namespace, i)
            api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(self.n)))
        return time.monotonic() - started

    def reconciled(self) -> tuple[int, Counter[str]]:
        items = self.api().list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
        phases: Counter[str] = Counter()
        done = 0
        for item in items:
            status = item.get("status") or {}
            if status.get("observedGeneration"):
                done += 1
                phases[f"{status.get('phase')}/{status.get('stage')}"] += 1
        return done, phases

    def cleanup(self) -> dict[str, Any]:
        """Stop the operator, drop its finalizers (in parallel), then delete the namespace.

        Waiting for a saturated operator to release 1,000 finalizers one by one would take minutes; the
        children go with the namespace (owner references), so nothing of the operator is left behind.
        """
        started = time.monotonic()
        stop_process(self.proc)
        api = self.api()
        names = [i["metadata"]["name"] for i in
                 api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]]

        def release(name: str) -> None:
            api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                               {"metadata": {"finalizers": None}})

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(release, names))
        self.stack.run_kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)
        return {"cleanup_s": time.monotonic() - started}

    def run(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"objects": self.n, "namespace": self.namespace}
        self.stack.run_kubectl("create", "namespace", self.namespace)
        try:
            base_start, t_base = self.requests(), time.monotonic()
            time.sleep(min(self.window, 20.0))
            baseline = self.requests() - base_start
            base_s = time.monotonic() - t_base

            proc = self.start_operator()
            sampler = ProcessSampler(proc.pid)
            sampler.start()
            self.wait_metrics()
            figures["rss_idle_mib"] = sampler.rss_mib()

            ramp_start = self.requests()
            t0 = time.monotonic()
            figures["create_s"] = self.create_all()
            done, phases = 0, Counter[str]()
            while time.monotonic() - t0 < max(600.0, self.n * 0.6):
                done, phases = self.reconciled()
                if done >= self.n:
                    break
                time.sleep(2)
            figures["all_first_reconciled_s"] = time.monotonic() - t0 if done >= self.n else None
            figures["first_reconciled"] = done
            ramp = self.requests() - ramp_start
            figures["ramp_api_requests"] = sum(ramp.values())

            time.sleep(self.settle)
            h0, c0, t_w = reconcile_histogram(self.metrics_port), self.requests(), time.monotonic()
            time.sleep(self.window)
            h1, c1 = reconcile_histogram(self.metrics_port), self.requests()
            span = time.monotonic() - t_w
            done, phases = self.reconciled()
            steady = h1.minus(h0)
            calls = c1 - c0
            others = {k: v * span / base_s for k, v in baseline.items()}
            ours = {k: max(0.0, v - others.get(k, 0.0)) for k, v in calls.items()}
            figures.update({
                "to_thread_workers": min(32, (os.cpu_count() or 1) + 4),
                "rss_mib": sampler.rss_mib(),
                "rss_max_sampled_mib": sampler.max_sampled_mib(),
                "vmhwm_peak_mib": sampler.hwm_mib(),
                "steady_window_s": span,
                "reconciles_per_s": steady.count / span,
                "reconcile_mean_ms": steady.total / steady.count * 1e3 if steady.count else 0.0,
                "reconcile_p50_ms_le": steady.quantile(0.5) * 1e3,
                "reconcile_p99_ms_le": steady.quantile(0.99) * 1e3,
                "reconcile_all_time_p99_ms_le": h1.quantile(0.99) * 1e3,
                "reconciles_all_time": h1.count,
                "api_requests_per_s_all_clients": sum(calls.values()) / span,
                "api_requests_per_s_others_baseline": sum(baseline.values()) / base_s,
                "api_requests_per_s_operator_est": sum(ours.values()) / span,
                "api_requests_per_reconcile_est": sum(ours.values()) / steady.count if steady.count else 0.0,
                "phases": dict(phases),
            })
            figures["api_requests_by_kind_per_s_est"] = {
                k: round(v / span, 2) for k, v in sorted(ours.items()) if v / span >= 0.05
            }
            sampler.stopped.set()
        finally:
            figures.update(self.cleanup())
        return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.operator_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=None, help="ModelDeployments (default 1000, --quick 100)")
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--window", type=float, default=None, help="steady window, s (default 60, --quick 20)")
    args = parser.parse_args(argv)
    n = args.objects or (100 if args.quick else 1000)
    window = args.window or (20.0 if args.quick else 60.0)
    bench = Bench(ensure_stack(), n, window, settle=10.0 if args.quick else 30.0)
    figures = bench.run()
    by_kind = figures.pop("api_requests_by_kind_per_s_est", {})
    phases = figures.pop("phases", {})
    print(table(figures.items(), f"operator_scale: {n} ModelDeployments, real operator process, real API server"))
    print(table(by_kind.items(), "API requests/s by verb and resource (operator, estimated; shared stack)"))
    print(f"  phases: {phases}")
    rss = max(figures.get("vmhwm_peak_mib", 0.0), figures.get("rss_mib", 0.0))
    print(f"  bar: < 300 MiB RSS with 1,000 objects -> peak {rss:.0f} MiB with {n}: "
          f"{'met' if rss < 300 else 'MISSED'}")
    figures["api_requests_by_kind_per_s_est"] = by_kind
    figures["phases"] = phases
    print(f"  operator log: {bench.log_path}")
    print(f"  results: {write_results('operator_scale', figures)}")
    return figures


if __name__ == "__main__":
    main()
