"""Run the real Triton Inference Server binary shipped inside ``nvidia-pytriton`` on CPU.

Why not pytriton's own launcher: the stack must run *plain* ``tritonserver`` with a model repository
exactly like a Kubernetes pod would, so the operator's probes, tritonclient calls and Prometheus
scrapes hit the same server and metrics as in production. This module knows the local gotchas
(library path order, backend directory layout, stub for this interpreter) and pins a revision to
exactly one model version by materialising a per-revision repository whose ``config.pbtxt``
carries ``version_policy: { specific: { versions: [N] } }`` and links only version ``N``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELS_DIR = REPO_ROOT / "e2e" / "models"
REPOS_DIR = MODELS_DIR / "repos"

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class TritonDist:
    """Locations inside the installed nvidia-pytriton wheel."""

    binary: Path
    libs_dir: Path
    python_backend: Path
    stub: Path

    @classmethod
    def find(cls) -> TritonDist:
        import pytriton  # noqa: PLC0415  (only the data plane needs the wheel)

        pkg = Path(pytriton.__file__).resolve().parent
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        dist = cls(
            binary=pkg / "tritonserver" / "bin" / "tritonserver",
            libs_dir=pkg.parent / "nvidia_pytriton.libs",
            python_backend=pkg / "tritonserver" / "backends" / "python",
            stub=pkg / "tritonserver" / "python_backend_stubs" / ver / "triton_python_backend_stub",
        )
        for path in (dist.binary, dist.libs_dir, dist.python_backend, dist.stub):
            if not path.exists():
                raise FileNotFoundError(f"nvidia-pytriton layout changed, missing {path}")
        return dist


def prepare_backend_dir(dest: Path, dist: TritonDist | None = None) -> Path:
    """Create ``dest/python`` with links to the Python backend and a copy of this interpreter's stub.

    The stub is copied (not linked) because Triton looks for it next to ``libtriton_python.so``'s
    directory entry and the wheel keeps stubs for several Python versions elsewhere.
    """
    dist = dist or TritonDist.find()
    py = dest / "python"
    py.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        link = py / name
        if not link.exists():
            link.symlink_to(dist.python_backend / name)
    stub = py / "triton_python_backend_stub"
    if not stub.exists():
        shutil.copy2(dist.stub, stub)
        stub.chmod(0o755)
    return dest


def triton_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: interpreter libdir BEFORE the wheel's libs, venv bin first on PATH.

    Otherwise the stub picks up Debian's libpython and dies with ``_thread.RLock ... _recursion_count``.
    """
    dist = TritonDist.find()
    env = dict(os.environ if base is None else base)
    libdir = str(sysconfig.get_config_var("LIBDIR") or "")
    ld = [p for p in (libdir, str(dist.libs_dir), env.get("LD_LIBRARY_PATH", "")) if p]
    env["LD_LIBRARY_PATH"] = ":".join(ld)
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env.pop(var, None)
    env.update(extra or {})
    return env


_VERSION_POLICY = re.compile(r"^\s*version_policy\s*:.*$", re.MULTILINE)


def materialize_repository(source: Path, dest: Path, pins: Mapping[str, int | None]) -> Path:
    """Build a repository at ``dest`` that serves each model in ``pins`` at one version (or all if None).

    Version directories are symlinks into ``source`` so model code stays shared and faults stay
    editable in place; only ``config.pbtxt`` is rewritten. Real Triton honours the appended
    ``version_policy`` and reports exactly that version as READY.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for model, version in pins.items():
        src = source / model
        if not (src / "config.pbtxt").is_file():
            raise FileNotFoundError(f"model {model!r} not found in repository {source}")
        out = dest / model
        out.mkdir()
        config = (src / "config.pbtxt").read_text(encoding="utf-8")
        if version is None:
            versions = sorted(p.name for p in src.iterdir() if p.is_dir() and p.name.isdigit())
        else:
            if not (src / str(version)).is_dir():
                raise FileNotFoundError(f"model {model!r} has no version {version} in {source}")
            versions = [str(version)]
            config = _VERSION_POLICY.sub("", config).rstrip() + (
                f"\nversion_policy: {{ specific: {{ versions: [ {version} ] }} }}\n"
            )
        (out / "config.pbtxt").write_text(config, encoding="utf-8")
        for v in versions:
            (out / v).symlink_to((src / v).resolve(), target_is_directory=True)
    return dest


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host`` (racy by nature; good enough for a local stack)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class TritonServer:
    """A running tritonserver process (in its own session so stubs die with it)."""

    proc: subprocess.Popen[bytes]
    address: str
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{self.metrics_port}/metrics"

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Poll /v2/health/ready; return seconds from start to ready, raise with the log tail if it dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited rc={self.proc.returncode}:\n{self.log_tail()}")
            if http_ok(f"{self.http_url}/v2/health/ready"):
                self.ready_after_s = time.monotonic() - self.started_at
                return self.ready_after_s
            time.sleep(0.1)
        raise TimeoutError(f"tritonserver not ready after {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def rss_bytes(self) -> int:
        """Resident memory of the server plus its Python backend stubs (same process group)."""
        return process_group_rss(self.proc.pid)

    def stop(self, timeout: float = 10.0) -> None:
        terminate_group(self.proc, timeout)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with _NO_PROXY_OPENER.open(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def terminate_group(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``timeout``; safe to call twice."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftover stubs of a server that already exited
    if proc.poll() is None:
        proc.wait(5)


def process_group_rss(pgid: int) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:  # fields after comm: state ppid pgrp ...
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, IndexError, ValueError):
            continue
    return total


def build_command(
    repository: Path,
    backend_dir: Path,
    *,
    address: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    load_models: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    netns: str | None = None,
) -> list[str]:
    """The tritonserver command line; ``netns`` wraps it in ``ip netns exec`` (pid stays tritonserver's)."""
    dist = TritonDist.find()
    cmd = [
        str(dist.binary),
        f"--model-repository={repository}",
        f"--backend-directory={backend_dir}",
        f"--http-address={address}",
        f"--grpc-address={address}",
        f"--metrics-address={address}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
        "--metrics-interval-ms=1000",
        "--exit-timeout-secs=3",
    ]
    if load_models:
        cmd.append("--model-control-mode=explicit")
        cmd += [f"--load-model={m}" for m in load_models]
    cmd += list(extra_args)
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd


def start_triton(
    source_repo: Path,
    workdir: Path,
    *,
    model: str = "fraud_scorer",
    version: int | None = None,
    address: str = "127.0.0.1",
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    env: Mapping[str, str] | None = None,
    netns: str | None = None,
    extra_args: Sequence[str] = (),
) -> TritonServer:
    """Materialise a pinned repository under ``workdir`` and start tritonserver serving ``model``.

    Ports default to free loopback ports (only meaningful when ``address`` is loopback).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    backend_dir = prepare_backend_dir(workdir / "backends")
    repo = materialize_repository(source_repo, workdir / "repo", {model: version})
    http_port = http_port or free_port()
    grpc_port = grpc_port or free_port()
    metrics_port = metrics_port or free_port()
    cmd = build_command(
        repo,
        backend_dir,
        address=address,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        load_models=[model],
        extra_args=extra_args,
        netns=netns,
    )
    log_path = workdir / "tritonserver.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=triton_env(env),
            start_new_session=True,
            cwd=workdir,
        )
    return TritonServer(proc, address, http_port, grpc_port, metrics_port, log_path)
