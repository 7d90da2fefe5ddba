"""The data plane's "kubelet": runs a real tritonserver for every Modelship pod that kwok runs.

Why: kwok makes pods Running without running anything. The operator, Prometheus and the traffic
generator need real Triton servers behind those pod IPs, so this daemon watches pods, gives each
pod's IP to the stack's network namespace, materialises a repository pinned to the pod's model
version and starts tritonserver bound to the pod IP inside the namespace. It stops the server when
the pod is deleted or stops Running, and restarts a crashed server with backoff (CrashLoopBackOff).
State for tests and measurements: ``<workdir>/status.json``; logs: ``<workdir>/pods/<ns>_<pod>/``.

Run: ``python -m e2e.stack.dataplane.podrunner --kubeconfig K --workdir D [--netns N --cidr C]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.stack.dataplane.comparator import ApiRelay, pod_token, write_kubeconfig
from e2e.stack.dataplane.comparator import command as comparator_command
from e2e.stack.dataplane.containers import remove_pod, supervise, terminate, write_pod_status
from e2e.stack.dataplane.netns import DEFAULT_CIDR, DEFAULT_NETNS, PodNetwork
from e2e.stack.dataplane.podfeed import PodFeed
from e2e.stack.dataplane.podspec import (
    MANAGED_BY,
    TritonPod,
    deletion_grace_s,
    identity_env,
    is_candidate,
    is_deleting,
    parse_key,
    parse_pod,
    raw_identity,
    resolve_repository,
)
from e2e.stack.prometheus import Prometheus
from e2e.stack.triton import (
    REPOS_DIR,
    build_command,
    prepare_backend_dir,
    process_group_rss,
    terminate_group,
    triton_env,
)

log = logging.getLogger("modelship.podrunner")


@dataclass
class Running:
    """One pod's server and its bookkeeping."""

    pod: TritonPod
    proc: Any = None  # subprocess.Popen[bytes]
    started_at: float = 0.0
    ready_after_s: float | None = None
    restarts: int = 0
    next_start: float = 0.0
    error: str = ""
    history: list[float] = field(default_factory=list)  # ready times of every start
    ip_held: bool = False  # an ip-only pod's IP is in the namespace (no server to run)
    ready: bool = False  # the pod's Ready condition as last written (containers.py)
    terminating: bool = False  # deletion under way: preStop, SIGTERM, grace period
    wall_started_at: float = 0.0  # the container's startedAt
    netns: str | None = None  # the pod's own network namespace (a sandbox), for servers that run here
    probe_error: str = ""
    last_exit: tuple[int, str] | None = None  # exit code and reason of the previous container, for lastState
    restart_reason: str = ""  # why the kubelet duties last killed the container (hook, startup or liveness)


class PodRunner:
    """Reconciles the set of running tritonservers with the set of candidate pods."""

    def __init__(
        self,
        network: PodNetwork,
        workdir: Path,
        *,
        repos_dir: Path = REPOS_DIR,
        repo_table: Mapping[str, str] | None = None,
        fault_file: Path | None = None,
        core: Any = None,
        relay: ApiRelay | None = None,
        ca_file: str = "",
    ) -> None:
        self.core = core  # CoreV1Api: TokenRequests for comparator pods, as a kubelet would
        self.relay = relay
        self.ca_file = ca_file
        self.network = network
        self.workdir = workdir
        self.repos_dir = repos_dir
        self.repo_table = dict(repo_table or {})
        self.fault_file = fault_file
        self.running: dict[str, Running] = {}
        self.parsed: dict[tuple[str, str], TritonPod | None] = {}  # by parse_key (None: skipped): read once
        self.status_written = 0.0
        self.lock = threading.Lock()
        self.closed = False
        self.backend_dir = prepare_backend_dir(workdir / "backends")
        self.netns: str | None = network.name
        self.removed: set[str] = set()  # uids of pods terminated here whose delete event has not arrived yet
        self.writers = ThreadPoolExecutor(4, thread_name_prefix="pod-status")  # ip-only Ready, runless deletes

    # -- reconcile -------------------------------------------------------------------------
    def reconcile(self, pods: Iterable[Any]) -> None:
        """Stop what should not run, (re)start what should; never blocks on readiness."""
        wanted: dict[str, TritonPod] = {}
        deleting: dict[str, float] = {}  # key -> grace period of the deletion
        parsed: dict[tuple[str, str], TritonPod | None] = {}
        seen: set[str] = set()
        for raw in pods:
            if not is_candidate(raw):
                continue
            ident = parse_key(raw)
            seen.add(ident[0])
            if ident[0] in self.removed:  # terminated, its delete event not seen yet
                continue
            if ident[1] and ident in self.parsed:  # seen at this resourceVersion: same verdict, nothing to log
                pod = parsed[ident] = self.parsed[ident]
            else:
                pod = self._parse(raw)
                if ident[1]:  # a pod without resourceVersion (a test's fake) is read afresh every time
                    parsed[ident] = pod
            if pod is None:
                if is_deleting(raw):  # never run here: nothing to stop, the kubelet just lets it go
                    self.removed.add(ident[0])
                    self.writers.submit(remove_pod, self, *raw_identity(raw))
                continue
            wanted[pod.key] = pod
            if is_deleting(raw):
                deleting[pod.key] = deletion_grace_s(raw, pod.lifecycle.grace_s)
        self.parsed = parsed
        self.removed &= seen
        self._write_targets(p for k, p in wanted.items() if k not in deleting)
        with self.lock:
            if self.closed:
                return
            changed = False
            for key in [k for k in self.running if k not in wanted]:
                self._stop(self.running.pop(key))
                changed = True
            now = time.monotonic()
            for key, pod in wanted.items():
                run = self.running.setdefault(key, Running(pod))
                if key in deleting:
                    if not run.terminating:
                        run.terminating = True
                        threading.Thread(target=terminate, args=(self, run, deleting[key]), daemon=True).start()
                    continue
                if pod.ip_only:
                    if self._hold_ip(run) and run.ip_held:  # nothing to probe: Ready once its IP answers
                        self.writers.submit(write_pod_status, self, run, ready=True, started=True)
                        changed = True
                    continue
                alive = run.proc is not None and run.proc.poll() is None
                if not alive and now >= run.next_start:
                    self._start(run)
                    changed = True
            self._write_status(force=changed)

    def _parse(self, raw: Any) -> TritonPod | None:
        """The pod as the runner runs it, or None (logged) when it cannot run here."""
        pod = parse_pod(raw)
        if not self.network.owns(pod.ip):
            log.warning("skip %s/%s: IP %s not in %s", pod.namespace, pod.name, pod.ip, self.network.cidr)
            return None
        if pod.errors:
            log.warning("skip %s/%s: %s", pod.namespace, pod.name, "; ".join(pod.errors))
            return None
        return pod

    def release(self, run: Running) -> None:
        """A terminated pod's process, IP and files go; until its delete event arrives it is not run again."""
        with self.lock:
            self.removed.add(run.pod.uid)
            if self.running.get(run.pod.key) is run:
                del self.running[run.pod.key]
            self._stop(run)
            self._write_status()

    def write_status(self) -> None:
        self._write_status()

    def _pod_dir(self, pod: TritonPod) -> Path:
        return self.workdir / "pods" / f"{pod.namespace}_{pod.name}"

    def _start(self, run: Running) -> None:
        pod = run.pod
        if run.proc is not None:  # crashed: CrashLoopBackOff-like delay before the next try
            run.restarts += 1
            log.warning("%s/%s: tritonserver exited rc=%s, restart #%d", pod.namespace, pod.name,
                        run.proc.returncode, run.restarts)  # fmt: skip
        run.next_start = time.monotonic() + min(30.0, 2.0 ** min(run.restarts, 5))
        pod_dir = self._pod_dir(pod)
        pod_dir.mkdir(parents=True, exist_ok=True)
        if pod.comparator_args is not None:
            self._start_comparator(run, pod_dir)
            return
        try:
            repo = resolve_repository(pod.repository_uri, self.repos_dir, self.repo_table)
            models = pod.models or tuple(sorted(p.name for p in repo.iterdir() if (p / "config.pbtxt").is_file()))
            run.netns = self.network.add_sandbox(pod.ip)  # its own loopback: the pin hook calls 127.0.0.1
        except (OSError, RuntimeError, ValueError) as exc:
            run.error = f"cannot prepare {pod.repository_uri}: {exc}"
            run.proc = None
            log.error("%s/%s: %s", pod.namespace, pod.name, run.error)
            return
        extra = list(pod.passthrough)
        if not pod.models and pod.control_mode == "explicit":
            extra.append("--model-control-mode=explicit")  # explicit with nothing named loads nothing
        cmd = build_command(
            repo, self.backend_dir, address="0.0.0.0", http_port=pod.ports["http"],
            grpc_port=pod.ports["grpc"], metrics_port=pod.ports["metrics"],
            load_models=pod.models, extra_args=extra, netns=run.netns,
        )  # fmt: skip
        env = {**identity_env(pod), **pod.env}
        if self.fault_file is not None:
            env.setdefault("MODELSHIP_FAULT_FILE", str(self.fault_file))
        with open(pod_dir / "tritonserver.log", "ab") as logf:
            logf.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
            logf.flush()
            run.proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=triton_env(env), start_new_session=True, cwd=pod_dir,
            )  # fmt: skip
        run.started_at, run.wall_started_at, run.ready_after_s, run.error = time.monotonic(), time.time(), None, ""
        log.info("%s/%s: tritonserver pid %d on %s (models %s, repo %s; the pod's postStart hook pins version %s)",
                 pod.namespace, pod.name, run.proc.pid, pod.ip, ",".join(models), repo, pod.version)  # fmt: skip
        threading.Thread(target=supervise, args=(self, run, run.proc), daemon=True).start()

    def _start_comparator(self, run: Running, pod_dir: Path) -> None:
        """`modelship compare` at the pod's IP, with a token of the pod's ServiceAccount (dataplane/comparator.py)."""
        pod = run.pod
        try:
            if self.core is None or self.relay is None:
                raise RuntimeError("the pod runner has no API client to mint the pod's token")
            token = pod_token(self.core, pod.namespace, pod.service_account, pod.name, pod.uid)
            kubeconfig = write_kubeconfig(pod_dir / "kubeconfig", self.relay.url, self.ca_file, token)
            self.network.add_ip(pod.ip)
        except Exception as exc:  # a refused TokenRequest is the pod's problem, not the runner's
            run.error = f"cannot start the comparator: {exc}"
            run.proc = None
            log.error("%s/%s: %s", pod.namespace, pod.name, run.error)
            return
        cmd = comparator_command(list(pod.comparator_args or ()), pod.ip, kubeconfig, self.network.name)
        env = {**os.environ, **pod.env, "PYTHONDONTWRITEBYTECODE": "1"}
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "KUBERNETES_SERVICE_HOST"):
            env.pop(var, None)
        with open(pod_dir / "comparator.log", "ab") as logf:
            logf.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(cmd)}\n".encode())
            logf.flush()
            run.proc = subprocess.Popen(
                cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, cwd=pod_dir,
            )  # fmt: skip
        run.started_at, run.wall_started_at, run.ready_after_s, run.error = time.monotonic(), time.time(), None, ""
        log.info("%s/%s: comparator pid %d on %s", pod.namespace, pod.name, run.proc.pid, pod.ip)
        threading.Thread(target=supervise, args=(self, run, run.proc), daemon=True).start()

    def _hold_ip(self, run: Running) -> bool:
        """An ip-only pod: its IP answers in the namespace (whoever listens there), no tritonserver.
        Whether anything changed."""
        if run.ip_held:
            return False
        try:
            self.network.add_ip(run.pod.ip)
        except (RuntimeError, ValueError) as exc:
            run.error = f"cannot add {run.pod.ip}: {exc}"
            log.error("%s/%s: %s", run.pod.namespace, run.pod.name, run.error)
            return True
        run.ip_held, run.error = True, ""
        log.info("%s/%s: ip-only, %s in the pod network", run.pod.namespace, run.pod.name, run.pod.ip)
        return True

    def _stop(self, run: Running) -> None:
        pod = run.pod
        if run.proc is not None:
            terminate_group(run.proc, timeout=5.0)
            log.info("%s/%s: tritonserver stopped", pod.namespace, pod.name)
        still_used = any(r.pod.ip == pod.ip for r in self.running.values())
        if not still_used:
            with contextlib.suppress(RuntimeError, ValueError):
                if run.netns is not None:
                    self.network.del_sandbox(pod.ip)
                else:
                    self.network.del_ip(pod.ip)

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            for run in list(self.running.values()):
                if run.proc is not None and run.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.proc.pid, signal.SIGTERM)  # all at once, then wait each
            while self.running:
                self._stop(self.running.popitem()[1])
            self._write_status()
        self.writers.shutdown(wait=False, cancel_futures=True)

    def _write_targets(self, pods: Iterable[TritonPod]) -> None:
        """file_sd targets with the labels Kubernetes discovery + our relabeling would give.

        Used when the installed Prometheus lacks ``kubernetes_sd_configs`` (Debian's build).
        """
        groups = []
        for p in sorted(pods, key=lambda p: p.key):
            if p.ip_only:  # nothing serves its metrics port
                continue
            labels = {re.sub(r"[^a-zA-Z0-9_]", "_", k): v for k, v in p.labels.items()}
            labels.update(namespace=p.namespace, pod=p.name, node=p.node)
            groups.append({"targets": [f"{p.ip}:{p.ports['metrics']}"], "labels": labels})
        body = json.dumps(groups, indent=1, sort_keys=True)
        path = self.workdir / "targets.json"
        if not path.exists() or path.read_text() != body:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(body)
            tmp.replace(path)

    def _write_status(self, force: bool = True) -> None:
        """status.json; unforced (nothing started or stopped) at most once a second: with 1,000 pods one
        write costs tens of milliseconds, and every pod event reconciles."""
        if not force and time.monotonic() - self.status_written < 1.0:
            return
        self.status_written = time.monotonic()
        pods = {}
        for run in self.running.values():
            p = run.pod
            alive = run.proc is not None and run.proc.poll() is None
            pods[f"{p.namespace}/{p.name}"] = {
                "uid": p.uid, "ip": p.ip, "ports": dict(p.ports), "models": list(p.models),
                "version": p.version, "repository": p.repository_uri, "ip_only": p.ip_only,
                "pid": run.proc.pid if alive else None, "running": alive,
                "ready_after_s": run.ready_after_s, "ready_history_s": run.history,
                "restarts": run.restarts, "error": run.error, "restart_reason": run.restart_reason,
                "rss_bytes": process_group_rss(run.proc.pid) if alive else 0,
            }  # fmt: skip
        tmp = self.workdir / "status.json.tmp"
        tmp.write_text(json.dumps({"time": time.time(), "pods": pods}, indent=1))
        tmp.replace(self.workdir / "status.json")

    # -- watch loop ------------------------------------------------------------------------
    def run_forever(self, core: Any, stop: threading.Event, resync_s: int = 5) -> None:
        """Reconcile whenever the pod cache changed, and at least every ``resync_s`` (a crashed server's
        backoff ends without an event); the network self-heal runs before every watch request."""
        feed = PodFeed(core, f"{MANAGED_BY[0]}={MANAGED_BY[1]}", resync_s)
        threading.Thread(target=feed.run, args=(stop, self.network.up), daemon=True, name="pod-feed").start()
        while not stop.is_set():
            feed.changed.wait(resync_s)
            feed.changed.clear()
            if not feed.synced:
                continue
            try:
                self.reconcile(feed.snapshot())
            except Exception as exc:  # one bad pass must not stop the data plane
                log.warning("reconcile failed (%s); retrying", exc)
                stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("--netns", default=DEFAULT_NETNS)
    ap.add_argument("--cidr", default=DEFAULT_CIDR)
    ap.add_argument("--repo-map", type=Path, help="JSON object: repository URI -> local directory")
    ap.add_argument("--fault-file", type=Path, help="default MODELSHIP_FAULT_FILE for every pod")
    ap.add_argument("--stack-ca", type=Path, help="exit (tearing the data plane down) when this file goes")
    ap.add_argument("--prometheus-dir", type=Path, help="Prometheus workdir to stop on such an exit")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from kubernetes import client, config  # noqa: PLC0415

    api = config.new_client_from_config(config_file=args.kubeconfig)
    core = client.CoreV1Api(api)
    table = json.loads(args.repo_map.read_text()) if args.repo_map else None
    network = PodNetwork(args.netns, args.cidr).up()
    args.workdir.mkdir(parents=True, exist_ok=True)
    relay = ApiRelay(network.host_addr, api.configuration.host)
    runner = PodRunner(network, args.workdir, repo_table=table, fault_file=args.fault_file, core=core, relay=relay,
                       ca_file=str(api.configuration.ssl_ca_cert or ""))
    stop = threading.Event()

    def _term(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    worker = threading.Thread(target=runner.run_forever, args=(core, stop), daemon=True)
    worker.start()
    identity = _file_identity(args.stack_ca)
    orphaned = False
    while not stop.wait(1.0):
        if args.stack_ca is not None and _file_identity(args.stack_ca) != identity:
            log.warning("the control plane that started us is gone (%s changed); tearing down", args.stack_ca)
            orphaned = True
            stop.set()
    runner.shutdown()
    relay.close()
    if orphaned:  # nobody will call down() for a stack that was removed without its data plane
        if args.prometheus_dir is not None:
            Prometheus(args.prometheus_dir).stop()
        traefik_pid = args.workdir.parent / "traefik" / "traefik.pid"  # the optional gateway, if any
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(traefik_pid.read_text()), signal.SIGTERM)
        network.down()
    log.info("pod runner stopped")
    return 0


def _file_identity(path: Path | None) -> tuple[int, int] | None:
    """(inode, mtime) of the stack's CA: a new stack writes a new CA, a removed stack has none."""
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns) if st is not None else None


if __name__ == "__main__":
    raise SystemExit(main())
