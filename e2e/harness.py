"""Driving the product as its users do: manifests through kubectl, the operator as a process, status reads.

Nothing here reaches into the operator's internals: scenarios only see what an SRE with kubectl would see.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from e2e.stack import REPO, STACK_DIR, StackContext, free_port

T = TypeVar("T")
LOGS = STACK_DIR / "logs"


class Timeout(AssertionError):
    """A condition did not hold in time; the message says what was waited for and the last value seen."""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.5) -> T:
    """Poll `probe` until it returns a truthy value; fail naming `what` and the last observation."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")


def status_when(kubectl: Kubectl, ns: str, what: str, pred: Callable[[dict[str, Any]], bool],
                timeout: float = 40, interval: float = 0.3, name: str = "fraud") -> dict[str, Any]:
    """Poll a ModelDeployment's status until `pred` holds; returns that status."""

    def probe() -> dict[str, Any] | None:
        st = kubectl.status(name, ns)
        return st if pred(st) else None

    return wait_for(f"{ns}/{name}: {what}", probe, timeout=timeout, interval=interval)


@dataclass
class Kubectl:
    """kubectl against the stack, as a user runs it (server-side apply, field manager of a GitOps tool)."""

    stack: StackContext
    field_manager: str = "e2e-gitops"

    def run(self, *args: str, input_text: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.stack.kubectl), f"--kubeconfig={self.stack.kubeconfig}", *args]
        result = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, manifest: dict[str, Any], check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(
            "apply", "--server-side", f"--field-manager={self.field_manager}", "-f", "-",
            input_text=yaml.safe_dump(manifest), check=check,
        )

    def get_json(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        result = self.run("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if result.returncode != 0:
            return None
        return dict(json.loads(result.stdout))

    def mdep(self, name: str, namespace: str) -> dict[str, Any]:
        obj = self.get_json("modeldeployment", name, namespace)
        assert obj is not None, f"modeldeployment {namespace}/{name} not found"
        return obj

    def status(self, name: str, namespace: str) -> dict[str, Any]:
        return dict(self.mdep(name, namespace).get("status") or {})

    def table(self, namespace: str) -> str:
        """What `kubectl get mdep` prints (the printer columns)."""
        return self.run("get", "mdep", "-n", namespace).stdout

    def create_namespace(self, prefix: str = "e2e") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        self.run("create", "namespace", name)
        return name

    def delete_namespace(self, name: str) -> None:
        self.run("delete", "namespace", name, "--wait=false", check=False)


@dataclass
class OperatorProcess:
    """`modelship run` as a real process: started, SIGKILLed and restarted like in a cluster."""

    stack: StackContext
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: LOGS / f"operator-{uuid.uuid4().hex[:6]}.log")

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k: str(v) for k, v in self.stack.env.items()})
        env["KUBECONFIG"] = str(self.stack.kubeconfig)
        env.setdefault("MODELSHIP_METRICS_PORT", "0")
        env.update(self.extra_env)
        return env

    liveness_port: int = field(default_factory=free_port)

    def scope(self) -> list[str]:
        return ["--all-namespaces"]

    def command(self) -> list[str]:
        liveness = f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz"
        return [sys.executable, "-m", "modelship", "run", *self.scope(), liveness]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        cmd = self.command()
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@contextmanager
def running_operator(stack: StackContext, **env: str) -> Iterator[OperatorProcess]:
    op = OperatorProcess(stack, extra_env=dict(env))
    op.start()
    try:
        yield op
    finally:
        op.kill(signal.SIGTERM)


@contextmanager
def scraped_operator(stack: StackContext, namespace: str, pod: str) -> Iterator[int]:
    """A metrics port for an operator process, scraped by the stack's Prometheus (job `modelship-operator`, labels
    `namespace` and `pod`, as a ServiceMonitor would give them) while the block runs."""
    path = Path(stack.env["MODELSHIP_OPERATOR_TARGETS"])
    port = free_port()
    entry = {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace, "pod": pod}}

    def write(targets: list[dict[str, Any]]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(targets))
        tmp.replace(path)

    write([*json.loads(path.read_text() or "[]"), entry])
    try:
        yield port
    finally:
        write([t for t in json.loads(path.read_text() or "[]") if t != entry])
