"""Real Prometheus for the local stack, discovering Triton pods through the local API server.

Why real Prometheus with ``kubernetes_sd_configs``: the operator tells stable and canary apart by the
pod labels that Kubernetes discovery attaches (``modelship_dev_revision``...), so the stack must
produce series exactly as a cluster's Prometheus would. It runs detached (pid file in its workdir)
so it outlives ``python -m e2e.stack up``; ``stop()``/``start()`` keep the same port and TSDB so
tests can simulate an outage and a recovery.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from e2e.stack.progress import StepFailed, run_step
from e2e.stack.triton import free_port, http_ok

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
METRICS_PORT = 8002
UPSTREAM_VERSION = "v2.53.4"  # the wrapper module pins the same release (module version v0.53.4)
UPSTREAM_MODULE = "github.com/prometheus/prometheus"
WRAPPER_MODULE = Path(__file__).resolve().parent / "dataplane" / "gomod" / "prometheus"


def ensure_installed() -> str:
    """Path of the ``prometheus`` binary; installs Debian's package if missing.

    apt may start a packaged service on some machines: anything named prometheus that appears
    during *our* install is stopped again, since the stack runs its own instance.
    """
    found = shutil.which("prometheus")
    if found:
        return found
    before = set(_pids_named("prometheus"))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "prometheus"], check=True, env=env, capture_output=True)
    for service in ("prometheus", "prometheus-node-exporter"):
        subprocess.run(["service", service, "stop"], check=False, capture_output=True)
    for pid in set(_pids_named("prometheus")) - before:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    found = shutil.which("prometheus")
    if not found:
        raise FileNotFoundError("apt-get install prometheus did not provide a prometheus binary")
    return found


def supports_kubernetes_sd(binary: str) -> bool:
    """Debian's ``+ds`` build strips Kubernetes discovery (``field kubernetes_sd_configs not found``)."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return "+ds" not in (out.stdout + out.stderr).splitlines()[0]


def upstream_path() -> Path:
    cache = Path(os.environ.get("MODELSHIP_CACHE", Path.home() / ".cache" / "modelship"))
    return cache / "bin" / f"prometheus-{UPSTREAM_VERSION}" / "prometheus"


def build_upstream() -> Path | None:
    """Build upstream Prometheus (with Kubernetes SD) once into the stack cache; None without Go.

    Takes ~5 min on 2 cores the first time (module downloads + compile); cached by version afterwards.
    """
    out = upstream_path()
    if out.exists():
        return out
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(".prometheus.tmp")
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=mod", GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "local"))
    t0 = time.monotonic()
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={UPSTREAM_VERSION.lstrip('v')}"
    try:
        run_step(f"prometheus {UPSTREAM_VERSION}", [go, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp),
                 f"{UPSTREAM_MODULE}/cmd/prometheus"], key="prometheus", cwd=WRAPPER_MODULE, env=env)
    except StepFailed as exc:
        print(f"  (falling back to Debian's prometheus: {str(exc).splitlines()[0]})", flush=True)
        return None
    tmp.replace(out)
    (out.parent / "build-seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
    return out


def find_binary() -> str:
    """Upstream build (Kubernetes SD) from the cache, built on first use where Go is available;
    Debian's package otherwise, or when ``MODELSHIP_PROMETHEUS=debian``."""
    if os.environ.get("MODELSHIP_PROMETHEUS", "upstream") != "debian":
        built = build_upstream()
        if built is not None:
            return str(built)
    return ensure_installed()


def _pids_named(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def scrape_config(
    api_server: str | None,
    ca_file: Path | None,
    token_file: Path | None,
    *,
    interval: str = "2s",
    static_targets: Sequence[tuple[str, dict[str, str]]] = (),
    file_sd: Path | None = None,
    operators_sd: Path | None = None,
) -> dict[str, Any]:
    """Prometheus config: pod discovery (managed-by=modelship, podIP:8002) plus optional static targets.

    ``file_sd``: targets file the pod runner writes with the same labels, for a Prometheus build
    without Kubernetes discovery; used instead of ``kubernetes_sd_configs``.
    """
    jobs: list[dict[str, Any]] = []
    if operators_sd is not None:  # operator processes a test registers (their /metrics), as a ServiceMonitor would
        jobs.append({
            "job_name": "modelship-operator",
            "honor_labels": True,  # the chart's ServiceMonitor: the objects' namespace label wins over the target's
            "file_sd_configs": [{"files": [str(operators_sd)], "refresh_interval": "1s"}],
        })  # fmt: skip
    if file_sd is not None:
        jobs.append({
            "job_name": "modelship-triton",
            "file_sd_configs": [{"files": [str(file_sd)], "refresh_interval": "1s"}],
        })  # fmt: skip
        api_server = None
    if api_server:
        sd: dict[str, Any] = {
            "role": "pod",
            "api_server": api_server,
            "selectors": [{"role": "pod", "label": "app.kubernetes.io/managed-by=modelship"}],
        }
        if ca_file:
            sd["tls_config"] = {"ca_file": str(ca_file)}
        if token_file:
            sd["authorization"] = {"type": "Bearer", "credentials_file": str(token_file)}
        jobs.append(
            {
                "job_name": "modelship-triton",
                "kubernetes_sd_configs": [sd],
                "relabel_configs": [
                    {
                        "source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_managed_by"],
                        "regex": "modelship",
                        "action": "keep",
                    },
                    # the fleet benches' pods (namespaces bench-*) serve no metrics: thousands of them would
                    # be scraped every 2 s for nothing (half a core at 2,500 pods)
                    {"source_labels": ["__meta_kubernetes_namespace"], "regex": "bench-.*", "action": "drop"},
                    {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running", "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_pod_ip"], "regex": ".+", "action": "keep"},
                    # one target per pod: the port named "metrics", else 8002, else a port-less container
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_container_port_name",
                            "__meta_kubernetes_pod_container_port_number",
                        ],
                        "regex": f"metrics;.*|[^;]*;{METRICS_PORT}|;",
                        "action": "keep",
                    },
                    {
                        "source_labels": ["__meta_kubernetes_pod_ip"],
                        "target_label": "__address__",
                        "replacement": f"$1:{METRICS_PORT}",
                    },
                    {
                        "source_labels": [
                            "__meta_kubernetes_pod_container_port_name",
                            "__meta_kubernetes_pod_ip",
                            "__meta_kubernetes_pod_container_port_number",
                        ],
                        "regex": "metrics;(.+);(.+)",
                        "target_label": "__address__",
                        "replacement": "$1:$2",
                    },
                    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                ],
            }
        )
    if static_targets:
        jobs.append(
            {
                "job_name": "static",
                "static_configs": [{"targets": [t], "labels": labels} for t, labels in static_targets],
            }
        )
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": "1s"},
        "scrape_configs": jobs,
    }


@dataclass
class Prometheus:
    """A detached Prometheus whose config, TSDB, pid and port live in ``workdir``."""

    workdir: Path

    @property
    def config_file(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def pid_file(self) -> Path:
        return self.workdir / "prometheus.pid"

    @property
    def port(self) -> int:
        port_file = self.workdir / "port"
        if not port_file.exists():
            port_file.parent.mkdir(parents=True, exist_ok=True)
            port_file.write_text(str(free_port()))
        return int(port_file.read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, config: dict[str, Any]) -> None:
        """Write the config; a running instance picks it up through /-/reload."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        if self.running():
            req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
            with _NO_PROXY.open(req, timeout=10):
                pass

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout: float = 60.0) -> float:
        """Start (or keep) the instance; return seconds until /-/ready answered."""
        if self.running():
            return 0.0
        binary = find_binary()
        t0 = time.monotonic()
        cmd = [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--log.level=info",
        ]
        with open(self.workdir / "prometheus.log", "ab") as log:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.workdir,
            )  # fmt: skip
        self.pid_file.write_text(str(proc.pid))
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                log_path = self.workdir / "prometheus.log"
                raise RuntimeError(f"prometheus exited rc={proc.returncode}, see {log_path}")
            if http_ok(f"{self.url}/-/ready"):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(f"prometheus not ready after {timeout}s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (the TSDB stays on disk for the next ``start``)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; returns ``data.result`` (raises on HTTP or Prometheus errors)."""
        qs = urllib.parse.urlencode({"query": promql})
        with _NO_PROXY.open(f"{self.url}/api/v1/query?{qs}", timeout=10) as resp:
            body = json.load(resp)
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query failed: {body}")
        return list(body["data"]["result"])

    def targets(self) -> list[dict[str, Any]]:
        with _NO_PROXY.open(f"{self.url}/api/v1/targets?state=active", timeout=10) as resp:
            return list(json.load(resp)["data"]["activeTargets"])


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (zombies count as gone: the reaper is not us after a restart)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
