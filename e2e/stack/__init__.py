"""The local stack: a real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok fake GPU nodes) plus an optional data plane, run as local processes.

Why processes and not kind: these machines have no Docker. Binaries are built once from the Go
module proxy (``e2e/stack/build.sh``) and cached outside the repo.

Data-plane hook contract: if ``e2e.stack.dataplane`` is importable, ``python -m e2e.stack up``
calls ``dataplane.up(ctx)`` after the control plane is ready (nodes and CRDs installed), and
``down`` calls ``dataplane.down(ctx)`` before stopping the control plane. ``ctx`` is a
:class:`StackContext`; the hook may add shell exports to ``ctx.env`` (e.g. ``PROMETHEUS_URL``) and
JSON-serialisable data to ``ctx.state`` (saved under ``"dataplane"`` in ``.stack/state.json`` and
given back to ``down``). An optional ``dataplane.healthy(ctx) -> bool`` takes part in health checks.
Processes it starts are its own to stop.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STACK_DIR = Path(os.environ.get("MODELSHIP_STACK_DIR", REPO / ".stack"))
CACHE = Path(os.environ.get("MODELSHIP_CACHE", Path.home() / ".cache" / "modelship"))

BINARIES = ("etcd", "kwok", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")


def load_versions() -> dict[str, str]:
    """Read the pinned versions from ``versions.env`` (the single source of truth)."""
    out: dict[str, str] = {}
    for raw in (HERE / "versions.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def binary_version(name: str) -> str:
    """Version a binary is cached under (Kubernetes components share one version)."""
    v = load_versions()
    return {"etcd": v["ETCD_VERSION"], "kwok": v["KWOK_VERSION"]}.get(name, v["KUBERNETES_VERSION"])


def binary_path(name: str) -> Path:
    """Cache location of a built binary: ``<cache>/bin/<name>-<version>/<name>``."""
    return CACHE / "bin" / f"{name}-{binary_version(name)}" / name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it, so stacks never clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class StackContext:
    """What the stack knows about itself; handed to the data-plane hook."""

    repo: Path
    stack_dir: Path
    kubeconfig: Path
    kubectl: Path
    server: str
    ca_file: Path
    admin_token: str
    tokens: dict[str, str] = field(default_factory=dict)  # user -> bearer token (see pki.USERS)
    env: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def logs_dir(self) -> Path:
        """Where every stack process writes its log."""
        return self.stack_dir / "logs"

    def run_kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        """Run the stack's own kubectl (never a preinstalled one) against the stack; return stdout."""
        proc = subprocess.run(
            [str(self.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def api_client(self, token: str | None = None) -> ApiClient:
        """A kubernetes ``ApiClient`` for the stack: admin by default, or as the user owning ``token``."""
        from kubernetes import client  # noqa: PLC0415  (lazy: the CLI works without the client)

        cfg = client.Configuration()
        cfg.host = self.server
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.api_key = {"authorization": f"Bearer {token or self.admin_token}"}
        return client.ApiClient(cfg)
