"""Argo Rollouts beside Modelship: its real controller, out of cluster, on the real local API server.

The peer of issue 10 item 5, measured like the Modelship side (bench/fleet.py; the keys are `KEYS`).
`e2e/stack/build-argo-rollouts.sh` builds `rollouts-controller` (pinned in versions.env) once and caches it with
the CRDs. Per row (leader election off; on, with its Lease in the row's namespace), in a fresh namespace:

1. baseline: other clients' API server requests for `baseline_s` (the stack is shared).
2. settle: `rollouts-controller --namespaced --namespace NS` starts, N basic-canary Rollouts are created by 8
   client threads (`argo_objects.canary_steps`: 10% / pause D / 50% / pause D, replicas 1, pods Ready on the
   bench's own kwok nodes), until every one is Healthy at its generation (`first_healthy_s` in details).
   Each canary runs background analysis (`--analysis-interval`, default 10 s, as the fleet bench's): an
   AnalysisTemplate of three Prometheus queries (error rate, p99, request count) against the same
   Prometheus stand-in the Modelship side queries, so both controllers do the same SLO work per step.
3. idle (`idle_s`): idle_requests/writes_per_object_minute from the controller's own
   `controller_clientset_k8s_request_total` (API server counters minus the baseline rate beside them, in
   details); rss_mib_settled (VmRSS after the window), rss_mib_per_1000 = that * 1,000 / N.
4. cold start: the controller is restarted over the N Healthy Rollouts; cold_start_s = process start -> every
   Rollout reconciled once (names in its `rollout_reconcile` histogram).
5. rollout: a new pod template on all (or `--rolling-fraction` of) the Rollouts, until all are Healthy again:
   writes_per_second_rollout (the controller's counter), cpu_seconds_per_1000_transitions (utime+stime per
   1,000 step advances seen by the watch), step_lateness_p50_s/p99_s (each pause's startTime + D -> arrival of
   the watch event showing the next step; see rollout_watch).

The stack is brought up if needed and never down; namespace and nodes are deleted at the end.

    python -m bench.peers.argo_rollouts [--objects N] [--quick] [--pause 30s] [--idle 120s] [--rows both]
                                        [--rolling-fraction 1] [--analysis-interval 10s|off]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, percentile, table, write_results
from bench.measure import (
    COMPARED_KEYS,
    ProcessSampler,
    apiserver_requests,
    http_get,
    is_write,
    others_rate,
    parse_counter,
    parse_histogram_counts,
    stop_process,
)
from bench.peers import argo_objects
from bench.peers.rollout_watch import GROUP, PLURAL, VERSION, RolloutBook, book_watcher
from bench.standins import PrometheusStandIn
from e2e.stack import StackContext, free_port

BUILD_SCRIPT = REPO / "e2e" / "stack" / "build-argo-rollouts.sh"
CLIENT_COUNTER = "controller_clientset_k8s_request_total"
RECONCILE_HISTOGRAM = "rollout_reconcile"
KEYS = COMPARED_KEYS


def build() -> tuple[Path, Path]:
    """The controller binary and its CRD directory, built by the script on first use (cached after)."""
    proc = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False)
    print(proc.stdout, end="", flush=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{BUILD_SCRIPT.name} failed (exit {proc.returncode}); see its messages above")
    binary = Path(lines[-1])
    return binary, binary.parent / "crds"


def load() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


@dataclass
class ArgoRow:
    """One row: one controller process, one namespace, N Rollouts from creation to a finished canary."""

    stack: StackContext
    binary: Path
    node_value: str
    n: int
    pause_s: float
    idle_s: float
    baseline_s: float
    leader_election: bool
    rolling: int
    prometheus_url: str | None = None  # background analysis against this Prometheus (None: no analysis)
    interval_s: float = 10.0
    namespace: str = field(default_factory=lambda: f"bench-argo-{uuid.uuid4().hex[:4]}")
    metrics_port: int = field(default_factory=free_port)
    healthz_port: int = 0  # chosen in __post_init__, different from metrics_port
    proc: subprocess.Popen[bytes] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # free_port() closes its socket, so two calls can return the same port; Argo then fails to serve
        # metrics ("address already in use") while its healthz takes the port.
        while not self.healthz_port or self.healthz_port == self.metrics_port:
            self.healthz_port = free_port()

    @property
    def log_path(self) -> Path:
        return self.stack.stack_dir / "logs" / f"{self.namespace}-controller.log"

    def api(self) -> Any:
        from kubernetes import client  # noqa: PLC0415

        return client.CustomObjectsApi(self.stack.api_client())

    def start_controller(self) -> subprocess.Popen[bytes]:
        cmd = [str(self.binary), "--kubeconfig", str(self.stack.kubeconfig), "--namespaced",
               "--namespace", self.namespace, f"--leader-elect={str(self.leader_election).lower()}",
               "--healthzPort", str(self.healthz_port), "--metricsPort", str(self.metrics_port)]
        # POD_NAMESPACE: where the leader-election Lease lives (Argo's default is the pod's namespace).
        env = {**os.environ, "POD_NAMESPACE": self.namespace}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        print(f"  starting {' '.join(cmd)}  (log {self.log_path})", flush=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self.proc

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10.0)

    def requests(self, text: str | None = None, by: tuple[str, ...] = ("verb",)) -> Counter[str]:
        """The controller's own API request count by verb (or other labels of its counter)."""
        return parse_counter(self.metrics() if text is None else text, CLIENT_COUNTER, by)

    def wait_metrics(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"rollouts-controller exited ({self.proc.returncode}); see {self.log_path}")
            try:
                self.requests()
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"rollouts-controller metrics not served on :{self.metrics_port}; see {self.log_path}")

    def for_all(self, action: Any, count: int) -> float:
        """Run `action(i)` for the first `count` objects on 8 client threads; seconds taken."""
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(action, range(count)))
        return time.monotonic() - started

    def wait_healthy(self, book: RolloutBook, timeout: float) -> float | None:
        """Monotonic time at which the watch showed every Rollout Healthy; None on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if book.healthy_count() >= self.n:
                return time.monotonic()
            refused = book.refused()
            if refused:
                name, message = next(iter(refused.items()))
                raise SystemExit(f"{len(refused)} Rollouts refused by Argo, e.g. {name}: {message}")
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(f"rollouts-controller exited ({self.proc.returncode}); see {self.log_path}")
            time.sleep(0.2)
        return None

    def reconciled(self, text: str | None = None) -> int:
        """Rollouts the running controller has reconciled at least once (its `rollout_reconcile` histogram)."""
        text = self.metrics() if text is None else text
        return sum(1 for count in parse_histogram_counts(text, RECONCILE_HISTOGRAM, ("name",)).values() if count)

    def stop_controller(self) -> None:
        stop_process(self.proc)

    def settle(self, book: RolloutBook) -> ProcessSampler:
        """Phase 2: controller start, N Rollouts created, until every one is Healthy."""
        t_start = time.monotonic()
        sampler = ProcessSampler(self.start_controller().pid)
        sampler.start()
        self.wait_metrics()
        self.details["rss_mib_empty"] = sampler.rss_mib()
        api = self.api()

        def create(i: int) -> None:
            body = argo_objects.rollout_manifest(f"r{i:05d}", self.namespace, self.node_value, self.pause_s,
                                                 analysis=self.prometheus_url is not None)
            api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

        self.details["create_s"] = self.for_all(create, self.n)
        t_healthy = self.wait_healthy(book, max(600.0, self.n * 0.9))
        self.details.update(first_healthy_s=t_healthy - t_start if t_healthy is not None else None,
                            first_healthy=book.healthy_count(), load_settle=load())
        print(f"  settle: {book.healthy_count()}/{self.n} Healthy after {time.monotonic() - t_start:.0f}s "
              f"(load {load()})", flush=True)
        return sampler

    def idle(self, sampler: ProcessSampler, baseline: Counter[str], baseline_s: float) -> dict[str, Any]:
        """Phase 3: nothing changes for `idle_s`; requests by the controller's counter and the API server's."""
        time.sleep(10.0)  # let the last status writes and events land before the window
        kinds = ("kind", "verb")
        idle0, api0, t_idle = self.requests(by=kinds), apiserver_requests(self.stack), time.monotonic()
        time.sleep(self.idle_s)
        by_kind, api_idle = self.requests(by=kinds) - idle0, apiserver_requests(self.stack) - api0
        idle: Counter[str] = Counter()
        for key, count in by_kind.items():
            idle[key.split()[-1]] += count
        minutes = (time.monotonic() - t_idle) / 60
        rss = sampler.rss_mib()
        ours = others_rate(baseline, baseline_s, api_idle, minutes * 60)
        self.details.update(
            load_idle=load(), idle_window_s=minutes * 60, idle_controller_requests_by_kind_verb=dict(by_kind),
            idle_apiserver_requests_per_object_minute_est=sum(ours.values()) / self.n / minutes,
            idle_apiserver_writes_per_object_minute_est=sum(
                v for k, v in ours.items() if is_write(k.split()[0])) / self.n / minutes,
            idle_apiserver_requests_est=dict(ours), vmhwm_mib_settled=sampler.hwm_mib())
        print(f"  idle: {sum(idle.values())} controller requests in {minutes * 60:.0f}s, RSS {rss:.0f} MiB",
              flush=True)
        return {
            "rss_mib_settled": rss,
            "rss_mib_per_1000": rss * 1000 / self.n,
            "idle_requests_per_object_minute": sum(idle.values()) / self.n / minutes,
            "idle_writes_per_object_minute": sum(v for k, v in idle.items() if is_write(k)) / self.n / minutes,
        }

    def cold_start(self, sampler: ProcessSampler) -> tuple[ProcessSampler, float | None]:
        """Phase 4: restart over N Healthy Rollouts; seconds from process start to every one reconciled once.

        With leader election the new process first waits for the old Lease to expire (Argo does not release
        it on shutdown), as a restarted single replica would; `cold_start_first_write_s` (the process's first
        write: the Lease, or a status) shows that wait.
        """
        sampler.stopped.set()
        self.stop_controller()
        t_start = time.monotonic()
        sampler = ProcessSampler(self.start_controller().pid)
        sampler.start()
        self.wait_metrics()
        deadline = t_start + max(300.0, self.n * 0.6)
        cold: float | None = None
        while time.monotonic() < deadline:
            text = self.metrics()
            if self.details.get("cold_start_first_write_s") is None and any(
                    is_write(verb) for verb in self.requests(text)):
                self.details["cold_start_first_write_s"] = time.monotonic() - t_start
            if self.reconciled(text) >= self.n:
                cold = time.monotonic() - t_start
                break
            time.sleep(0.5)
        self.details.update(cold_start_reconciled=self.reconciled(), rss_mib_after_cold_start=sampler.rss_mib(),
                            load_cold_start=load())
        print(f"  cold start: {self.reconciled()}/{self.n} reconciled after {time.monotonic() - t_start:.1f}s",
              flush=True)
        return sampler, cold

    def rollout(self, book: RolloutBook, sampler: ProcessSampler, baseline: Counter[str],
                baseline_s: float) -> dict[str, Any]:
        """Phase 5: a new pod template on `rolling` Rollouts, followed to the end of the canary."""
        api = self.api()
        book.start_recording()
        roll0, api0 = self.requests(by=("kind", "verb")), apiserver_requests(self.stack)
        cpu0, t_roll = sampler.cpu_seconds(), time.monotonic()
        patch = argo_objects.new_version_patch("2")

        def change(i: int) -> None:
            api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, f"r{i:05d}", patch)

        self.details["patch_s"] = self.for_all(change, self.rolling)
        time.sleep(1.0)  # the watch shows the new generations before "all Healthy" is asked again
        t_done = self.wait_healthy(book, max(900.0, 4 * self.pause_s + self.rolling * 1.2))
        seconds = (t_done or time.monotonic()) - t_roll
        cpu = sampler.cpu_seconds() - cpu0
        by_kind = self.requests(by=("kind", "verb")) - roll0
        writes = sum(v for k, v in by_kind.items() if is_write(k.split()[-1]))
        ours = others_rate(baseline, baseline_s, apiserver_requests(self.stack) - api0, seconds)
        lateness = book.lateness()
        self.details.update(
            load_rollout=load(), rolling=self.rolling, rollout_s=seconds, rollout_finished=book.healthy_count(),
            rollout_cpu_s=cpu, rollout_controller_writes=writes,
            rollout_controller_writes_by_kind_verb={k: v for k, v in by_kind.items() if is_write(k.split()[-1])},
            rollout_apiserver_writes_per_s_est=sum(v for k, v in ours.items() if is_write(k.split()[0])) / seconds,
            pauses_measured=len(lateness), step_lateness_max_s=max(lateness, default=0.0),
            vmhwm_mib=sampler.hwm_mib(), rss_mib_max_sampled=sampler.max_sampled_mib())
        print(f"  rollout: {book.healthy_count()}/{self.n} Healthy after {seconds:.0f}s, "
              f"{book.transitions} transitions, {len(lateness)} pauses measured (load {load()})", flush=True)
        return {
            "writes_per_second_rollout": writes / seconds,
            "cpu_seconds_per_1000_transitions": cpu / book.transitions * 1000 if book.transitions else None,
            "step_lateness_p50_s": percentile(lateness, 50) if lateness else None,
            "step_lateness_p99_s": percentile(lateness, 99) if lateness else None,
            "transitions": book.transitions,
        }

    def run(self) -> dict[str, Any]:
        """The row's figures (exactly `KEYS`); more in `self.details`."""
        steps = argo_objects.canary_steps(self.pause_s)
        book = RolloutBook(argo_objects.pause_steps(steps), self.pause_s)
        self.stack.run_kubectl("create", "namespace", self.namespace)
        if self.prometheus_url is not None:
            template = argo_objects.analysis_template(self.namespace, self.prometheus_url, self.interval_s)
            self.stack.run_kubectl("create", "-f", "-", stdin=json.dumps(template))
        watcher = book_watcher(self.stack.api_client(), self.namespace, book)
        self.details.update(namespace=self.namespace, load_start=load())
        try:
            base_start, t_base = apiserver_requests(self.stack), time.monotonic()
            time.sleep(self.baseline_s)
            baseline, baseline_s = apiserver_requests(self.stack) - base_start, time.monotonic() - t_base
            watcher.start()
            sampler = self.settle(book)
            figures: dict[str, Any] = {"objects": self.n, "leader_election": self.leader_election}
            figures.update(self.idle(sampler, baseline, baseline_s))
            sampler, figures["cold_start_s"] = self.cold_start(sampler)
            figures.update(self.rollout(book, sampler, baseline, baseline_s))
            sampler.stopped.set()
            self.details["watch_errors"] = watcher.errors[-5:]
            return {key: figures[key] for key in KEYS}
        finally:
            watcher.stopped.set()
            self.cleanup()

    def cleanup(self, timeout: float = 180.0) -> None:
        """Stop the controller, then delete the namespace and wait (bounded) until it is gone."""
        self.stop_controller()
        self.stack.run_kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.stack.run_kubectl("get", "namespace", self.namespace, "--ignore-not-found", "-o", "name",
                                           check=False)
            if not found.strip():
                return
            time.sleep(2.0)
        print(f"  namespace {self.namespace} still terminating after {timeout:.0f}s; left to the API server")


def print_row(row: dict[str, Any], extra: dict[str, Any]) -> None:
    switch = "on" if row["leader_election"] else "off"
    title = f"Argo Rollouts v1.10.2: {row['objects']} Rollouts, leader election {switch}"
    shown = {**row, "leader_election": switch}
    print(table([(key, shown[key]) for key in KEYS], title))
    print(table(sorted((k, v) for k, v in extra.items() if not isinstance(v, dict | list)), "details"))
    idle = extra.get("idle_controller_requests_by_kind_verb", {})
    print(table(sorted(idle.items(), key=lambda item: -item[1])[:15], "idle requests by kind and verb"))
    writes = extra.get("rollout_controller_writes_by_kind_verb", {})
    print(table(sorted(writes.items(), key=lambda item: -item[1])[:15], "rollout writes by kind and verb"), flush=True)


def run(stack: StackContext, n: int, pause_s: float = 30.0, idle_s: float = 120.0, baseline_s: float = 20.0,
        rows: tuple[bool, ...] = (False, True), rolling: int | None = None, interval_s: float | None = 10.0,
        ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Install the CRDs, add the bench's nodes, run one row per leader-election setting; (figures, details).

    `interval_s`: the canaries' background analysis interval against a Prometheus stand-in (None: none)."""
    binary, crds = build()
    print(f"  CRDs: {', '.join(argo_objects.install_crds(stack, crds))}", flush=True)
    node_value = f"bench-argo-{uuid.uuid4().hex[:4]}"
    argo_objects.create_nodes(stack, node_value, n)
    prometheus = None
    if interval_s is not None:
        prometheus = PrometheusStandIn(stack.stack_dir / "logs" / "argo-standin-prometheus.log")
        prometheus.start()
    figures, details = [], []
    try:
        for leader_election in rows:
            row = ArgoRow(stack, binary, node_value, n, pause_s, idle_s, baseline_s, leader_election,
                          n if rolling is None else rolling, prometheus.url if prometheus else None,
                          interval_s or 10.0)
            print(f"row: {n} Rollouts, leader election {'on' if leader_election else 'off'}, "
                  f"analysis every {interval_s} s, namespace {row.namespace}, load {load()}", flush=True)
            queries0 = prometheus.queries() if prometheus else 0
            figures.append(row.run())
            row.details["prometheus_standin_queries"] = prometheus.queries() - queries0 if prometheus else 0
            details.append(row.details)
            print_row(figures[-1], row.details)  # as soon as it is known: a later row may fail
            write_results("argo_rollouts", {"pause_s": pause_s, "idle_s": idle_s, "rows": figures,
                                            "details": details})
    finally:
        argo_objects.delete_nodes(stack, node_value)
        if prometheus is not None:
            prometheus.stop()
    return figures, details


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.peers.argo_rollouts", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=None, help="Rollouts (default 1000, --quick 100)")
    parser.add_argument("--quick", action="store_true", help="100 objects, 60 s idle window, 10 s baseline")
    parser.add_argument("--pause", default="30s", help="each canary pause step's duration (default 30s)")
    parser.add_argument("--idle", default=None, help="idle window (default 120s, --quick 60s)")
    parser.add_argument("--rolling-fraction", type=float, default=1.0,
                        help="share of the Rollouts given a new template in the rollout phase, (0, 1] (default 1)")
    parser.add_argument("--analysis-interval", default="10s",
                        help="background analysis (3 Prometheus queries) every this long; 'off': none")
    parser.add_argument("--rows", choices=("both", "off", "on"), default="both",
                        help="leader election off, on, or one row of each (default)")
    args = parser.parse_args(argv)
    # SIGTERM (e.g. `kill` of a nohup'd run, which ignores SIGINT) still stops the controller and deletes
    # the namespace and nodes (the `finally` blocks), instead of orphaning them on the shared stack.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.objects is not None and args.objects < 1:
        raise SystemExit(f"--objects: {args.objects} is not a positive number of Rollouts; use e.g. --objects 100")
    n = args.objects or (100 if args.quick else 1000)
    if not 0 < args.rolling_fraction <= 1:
        raise SystemExit(f"--rolling-fraction: {args.rolling_fraction} is outside (0, 1]; use e.g. 0.1 or 1")
    rolling = max(1, round(n * args.rolling_fraction))
    pause_s = argo_objects.parse_duration(args.pause, "--pause")
    idle_s = argo_objects.parse_duration(args.idle or ("60s" if args.quick else "120s"), "--idle")
    rows = {"both": (False, True), "off": (False,), "on": (True,)}[args.rows]

    from bench.operator_scale import ensure_stack  # noqa: PLC0415  (the stack is only needed when run)

    interval_s = None if args.analysis_interval == "off" else argo_objects.parse_duration(
        args.analysis_interval, "--analysis-interval")
    figures, details = run(ensure_stack(), n, pause_s, idle_s, 10.0 if args.quick else 20.0, rows, rolling,
                           interval_s)
    result = {"pause_s": pause_s, "idle_s": idle_s, "rows": figures, "details": details}
    print(f"  results: {write_results('argo_rollouts', result)}")
    return result


if __name__ == "__main__":
    main()
