"""The fleet bench's phases against the real operator process (see bench/fleet.py for what is measured)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import counted, fleet_objects
from bench.common import REPO, percentile
from bench.fleet_watch import GROUP, PLURAL, VERSION, FleetBook, book_watcher
from bench.measure import ProcessSampler, apiserver_requests, is_write, others_rate, stop_process
from bench.operator_scale import reconcile_histogram
from bench.standins import PrometheusStandIn, spawn_ready
from bench.watching import ObjectWatcher
from e2e.stack import StackContext, free_port
from e2e.stack.dataplane.netns import DEFAULT_NETNS


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


class StandIns:
    """The Prometheus stand-in on loopback and the Triton stand-in inside the pod network namespace, fed the
    bench namespace's pod IPs by a pod watch."""

    def __init__(self, stack: StackContext, namespace: str, logs: Path) -> None:
        self.stack, self.namespace, self.logs = stack, namespace, logs
        self.prometheus = PrometheusStandIn(logs / "standin-prometheus.log")
        self.netns = str(stack.state.get("netns") or DEFAULT_NETNS)  # the data plane's state
        self.triton: subprocess.Popen[str] | None = None
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.owners: dict[str, set[str]] = {}  # pod IP -> uids of live pods holding it

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.prometheus.start()
        self.triton = spawn_ready(["ip", "netns", "exec", self.netns, sys.executable, "-m", "bench.standins",
                                   "triton", "--stats", str(self.logs / "standin-triton.json")],
                                  self.logs / "standin-triton.log")
        threading.Thread(target=self._feed, daemon=True, name="pod-ips").start()

    @property
    def prometheus_url(self) -> str:
        return self.prometheus.url

    def prometheus_queries(self) -> int:
        return self.prometheus.queries()

    def _send(self, line: str) -> None:
        if self.triton is not None and self.triton.stdin is not None and self.triton.poll() is None:
            self.triton.stdin.write(line + "\n")
            self.triton.stdin.flush()

    def _see(self, pod: Any, deleted: bool) -> None:
        ip, uid = pod.status.pod_ip if pod.status else None, pod.metadata.uid
        with self.lock:
            for held, uids in list(self.owners.items()):  # a pod that lost or changed its IP
                if uid in uids and (deleted or held != ip):
                    uids.discard(uid)
                    if not uids:
                        del self.owners[held]
                        self._send(f"-{held}")
            if ip and not deleted and pod.metadata.deletion_timestamp is None:
                uids = self.owners.setdefault(ip, set())
                if not uids:
                    self._send(f"+{ip}")
                uids.add(uid)

    def _feed(self) -> None:
        from kubernetes import client, watch  # noqa: PLC0415

        core = client.CoreV1Api(self.stack.api_client())
        while not self.stopped.is_set():
            try:
                listing = core.list_namespaced_pod(self.namespace)
                for pod in listing.items:
                    self._see(pod, False)
                for event in watch.Watch().stream(core.list_namespaced_pod, self.namespace, timeout_seconds=60,
                                                  resource_version=listing.metadata.resource_version):
                    self._see(event["object"], event["type"] == "DELETED")
                    if self.stopped.is_set():
                        return
            except Exception:  # 410 or a dropped connection: list again
                time.sleep(0.5)

    def stop(self) -> None:
        self.stopped.set()
        self.prometheus.stop()
        if self.triton is not None:
            if self.triton.stdin is not None:
                self.triton.stdin.close()  # the Triton stand-in exits at end of input (and writes its stats)
            try:
                self.triton.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.triton.kill()


class FleetRun:
    """One run: nodes, namespace, stand-ins, operator; phases in `run`."""

    def __init__(self, stack: StackContext, n: int, rolling: list[int], step_s: float, interval_s: float,
                 idle_s: float, baseline_s: float, run_id: str, operator_path: Path | None = None) -> None:
        self.stack, self.n, self.rolling = stack, n, rolling
        self.step_s, self.interval_s, self.idle_s, self.baseline_s = step_s, interval_s, idle_s, baseline_s
        self.run_id = run_id
        self.operator_path = operator_path  # None: the working tree's operator
        self.namespace = f"bench-{run_id.removeprefix('fleet-')}"
        self.logs = REPO / ".stack" / "logs" / run_id
        self.standins = StandIns(stack, self.namespace, self.logs)
        self.book = FleetBook(step_s)
        self.proc: subprocess.Popen[bytes] | None = None
        self.metrics_port = 0
        self.starts = 0
        self.details: dict[str, Any] = {"run_id": run_id, "namespace": self.namespace, "logs": str(self.logs)}
        self.api: Any = None

    def name(self, i: int) -> str:
        return f"m{i:05d}"

    def start_operator(self) -> subprocess.Popen[bytes]:
        self.metrics_port, self.starts = free_port(), self.starts + 1
        env = {**os.environ, **self.stack.env, "KUBECONFIG": str(self.stack.kubeconfig),
               "MODELSHIP_METRICS_PORT": str(self.metrics_port),
               "MODELSHIP_PROMETHEUS_URL": self.standins.prometheus_url}
        env.pop("PROMETHEUS_URL", None)
        if self.operator_path is not None:
            env["PYTHONPATH"] = str(self.operator_path)
        api = urlsplit(self.stack.server).netloc
        cmd = [sys.executable, "-m", "bench.counted", "--out", str(self.counts_file), "--api", api, "--",
               "run", "--namespace", self.namespace, f"--liveness=http://127.0.0.1:{free_port()}/healthz"]
        with (self.logs / f"operator-{self.starts}.log").open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        return self.proc

    def stop_operator(self) -> None:
        stop_process(self.proc)

    def reconciles(self) -> float | None:
        try:
            return reconcile_histogram(self.metrics_port).count
        except OSError:
            return None

    @property
    def counts_file(self) -> Path:
        return self.logs / f"operator-{self.starts}-requests.json"

    def own_requests(self) -> Counter[str]:
        """The running operator's own API requests by HTTP method (WATCH apart), counted by bench.counted."""
        return counted.read(self.counts_file)

    def for_all(self, indices: list[int], action: Callable[[int], None]) -> float:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(action, indices))
        return time.monotonic() - started

    def wait(self, what: str, done: Callable[[], int], total: int, timeout: float) -> float | None:
        """Seconds until done() reaches total (None after timeout); progress every 30 s."""
        started = last = time.monotonic()
        while time.monotonic() - started < timeout:
            count = done()
            if count >= total:
                return time.monotonic() - started
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                print(f"  {what}: {count}/{total} after {last - started:.0f}s (load {load()})", flush=True)
            time.sleep(0.5)
        print(f"  {what}: gave up at {done()}/{total} after {timeout:.0f}s", flush=True)
        return None

    def leader_lease(self) -> bool:
        from kubernetes import client  # noqa: PLC0415

        leases = client.CoordinationV1Api(self.stack.api_client()).list_namespaced_lease(self.namespace).items
        return any(lease.metadata.name.startswith("modelship") for lease in leases)

    def run(self) -> tuple[dict[str, Any], dict[str, Any]]:
        from kubernetes import client  # noqa: PLC0415

        self.api = client.CustomObjectsApi(self.stack.api_client())
        self.logs.mkdir(parents=True, exist_ok=True)
        watcher = book_watcher(self.stack.api_client(), self.namespace, self.book)
        try:
            fleet_objects.create_nodes(self.stack, self.run_id, self.n + len(self.rolling) + 50)
            self.stack.run_kubectl("create", "namespace", self.namespace)
            self.standins.start()
            return self._phases(watcher)
        finally:
            watcher.stopped.set()
            self.cleanup()

    def _phases(self, watcher: ObjectWatcher) -> tuple[dict[str, Any], dict[str, Any]]:
        d = self.details
        base0, t_base = apiserver_requests(self.stack), time.monotonic()
        time.sleep(self.baseline_s)
        baseline, baseline_s = apiserver_requests(self.stack) - base0, time.monotonic() - t_base
        d["baseline_requests_per_s_others"] = sum(baseline.values()) / baseline_s
        watcher.start()

        # settle: operator start, N objects, every one Healthy at v1
        t_start = time.monotonic()
        sampler = ProcessSampler(self.start_operator().pid)
        sampler.start()

        def create(i: int) -> None:
            body = fleet_objects.manifest(self.name(i), self.namespace, i, self.run_id, self.step_s, self.interval_s)
            self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

        d["create_s"] = self.for_all(list(range(self.n)), create)
        timeout = max(900.0, self.n * 1.5)
        self.wait("first reconciled", lambda: self.book.count(lambda s: s.observed > 0), self.n, timeout)
        d["first_reconciled_s"] = time.monotonic() - t_start
        healthy = self.wait("Healthy at v1", lambda: self.book.count(lambda s: s.healthy("1")), self.n, timeout)
        d["first_healthy_s"] = time.monotonic() - t_start if healthy is not None else None
        d["load_settle"] = load()
        d["leader_election_lease_seen"] = leader = self.leader_lease()

        # idle
        time.sleep(10.0)  # the last status writes and events land before the window
        own0, api0, t_idle = self.own_requests(), apiserver_requests(self.stack), time.monotonic()
        time.sleep(self.idle_s)
        own1, api_idle = self.own_requests(), apiserver_requests(self.stack) - api0
        idle_min = (time.monotonic() - t_idle) / 60
        ours = others_rate(baseline, baseline_s, api_idle, idle_min * 60)
        rss_settled = sampler.rss_mib()
        d.update(load_idle=load(), idle_window_s=idle_min * 60, vmhwm_mib_settle=sampler.hwm_mib(),
                 idle_apiserver_requests_est=dict(ours))
        own = Counter({k: v for k, v in (own1 - own0).items() if k != "WATCH"})
        d["idle_operator_requests_by_method"] = dict(own)
        d["idle_apiserver_requests_per_object_minute_est"] = sum(ours.values()) / self.n / idle_min
        d["idle_apiserver_writes_per_object_minute_est"] = sum(
            v for k, v in ours.items() if is_write(k.split()[0])) / self.n / idle_min
        sampler.stopped.set()

        # cold start over N Healthy objects
        self.stop_operator()
        sampler = ProcessSampler(self.start_operator().pid)
        sampler.start()
        cold = self.wait("reconciled after restart", lambda: int(self.reconciles() or 0), self.n,
                         max(600.0, self.n * 1.0))
        d["rss_mib_after_cold_start"] = sampler.rss_mib()
        d["cold_start_reconciles_seen"] = self.reconciles()
        d["load_cold_start"] = load()
        figures: dict[str, Any] = {
            "objects": self.n, "cold_start_s": cold if cold is not None else None,
            "rss_mib_settled": rss_settled, "rss_mib_per_1000": rss_settled * 1000 / self.n,
            # the operator's own requests (bench.counted), exact; the API-server estimates are details: on a
            # shared stack other clients' rate moves more between windows than the operator's whole idle rate
            "idle_requests_per_object_minute": sum(own.values()) / self.n / idle_min,
            "idle_writes_per_object_minute": sum(v for k, v in own.items() if is_write(k)) / self.n / idle_min,
            "writes_per_second_rollout": None, "cpu_seconds_per_1000_transitions": None,
            "step_lateness_p50_s": None, "step_lateness_p99_s": None, "transitions": 0,
            "leader_election": leader,
        }
        if self.rolling:
            figures.update(self._rollout(sampler, baseline, baseline_s))
        d["t_total_s"] = time.monotonic() - t_base
        d["prometheus_standin_queries"] = self.standins.prometheus_queries()
        sampler.stopped.set()
        return figures, d

    def _rollout(self, sampler: ProcessSampler, baseline: Counter[str], baseline_s: float) -> dict[str, Any]:
        d = self.details
        time.sleep(5.0)
        rolling = {self.name(i) for i in self.rolling}
        self.book.start_recording()
        own0, api0, cpu0, t_roll = self.own_requests(), apiserver_requests(self.stack), sampler.cpu_seconds(), \
            time.monotonic()
        patch = fleet_objects.version_patch("2")

        def change(i: int) -> None:
            self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name(i), patch)

        d["patch_s"] = self.for_all(self.rolling, change)
        done = self.wait("Healthy at v2", lambda: self.book.count(lambda s: s.healthy("2"), rolling), len(rolling),
                         max(900.0, 4 * self.step_s + len(rolling) * 1.5))
        roll_s = time.monotonic() - t_roll
        cpu = sampler.cpu_seconds() - cpu0
        ours = others_rate(baseline, baseline_s, apiserver_requests(self.stack) - api0, roll_s)
        writes = sum(v for k, v in ours.items() if is_write(k.split()[0]))
        own = self.own_requests() - own0
        d["rollout_operator_requests_by_method"] = dict(own)
        d["rollout_apiserver_writes_per_s_est"] = writes / roll_s
        lateness = self.book.lateness()
        deciding, showing = self.book.lateness_split()
        for part, values in (("due_to_decided", deciding), ("decided_to_seen", showing)):
            if values:
                d[f"lateness_{part}_p50_s"] = percentile(values, 50)
                d[f"lateness_{part}_p99_s"] = percentile(values, 99)
                d[f"lateness_{part}_max_s"] = max(values)
        transitions = self.book.transitions
        d.update(load_rollout=load(), rollout_s=roll_s, rollout_finished=done is not None,
                 rolled_healthy=self.book.count(lambda s: s.healthy("2"), rolling), rollout_cpu_s=cpu,
                 steps_measured=len(lateness), step_lateness_max_s=max(lateness, default=0.0),
                 vmhwm_mib=sampler.hwm_mib(), rss_mib_max_sampled=sampler.max_sampled_mib(),
                 rollout_apiserver_requests_est=dict(ours))
        return {
            "writes_per_second_rollout": sum(v for k, v in own.items() if is_write(k)) / roll_s,
            "cpu_seconds_per_1000_transitions": cpu / transitions * 1000 if transitions else None,
            "step_lateness_p50_s": percentile(lateness, 50) if lateness else None,
            "step_lateness_p99_s": percentile(lateness, 99) if lateness else None,
            "transitions": transitions,
        }

    def cleanup(self) -> None:
        """Stop the operator, drop finalizers, delete the namespace (bounded wait), stand-ins, then nodes."""
        self.stop_operator()
        try:
            names = [item["metadata"]["name"] for item in
                     self.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]]

            def release(name: str) -> None:
                self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                        {"metadata": {"finalizers": None}})

            with ThreadPoolExecutor(max_workers=8) as pool:
                list(pool.map(release, names))
        except Exception as exc:  # the namespace may not exist if setup failed
            print(f"  cleanup: finalizers not released ({exc})", flush=True)
        self.stack.run_kubectl("delete", "namespace", self.namespace, "--wait=false", check=False)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            gone = self.stack.run_kubectl("get", "namespace", self.namespace, "--ignore-not-found", "-o", "name",
                                          check=False)
            if not str(gone).strip():
                break
            time.sleep(2)
        self.standins.stop()
        fleet_objects.delete_nodes(self.stack, self.run_id)
