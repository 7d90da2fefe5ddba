"""The kubelet's duties the pod runner does for Modelship pods: probes, the Ready condition, hooks, termination.

Why: kwok used to mark every pod Ready the moment it ran and to delete a pod the moment it was asked to. So a
readiness probe never gated traffic (weight moved onto canary pods whose Triton was not listening yet) and a
scaled-down pod vanished while its EndpointSlice still listed it. kwok now only gives Modelship pods an IP and
phase Running (`kwok-stages.yaml`); the runner then does what a kubelet does: runs the postStart hook, runs
startup, readiness and liveness probes as the pod spec says, writes the pod's Ready/ContainersReady conditions
and container statuses (restart counts included), and on deletion runs preStop, sends SIGTERM, waits out the
grace period, kills, and only then removes the pod object.

This module is the pure part (reading the pod spec, building the status patch) plus one function that performs
an action (probe or hook) against a pod; the runner owns processes and threads.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from e2e.stack.triton import http_ok

DEFAULT_GRACE_S = 30.0


def _get(obj: Any, *path: str) -> Any:
    """Nested fields by their python names: attributes of kubernetes client models, or the camelCase keys of
    a manifest (``startup_probe`` reads ``startupProbe``)."""
    for part in path:
        if obj is None:
            return None
        if isinstance(obj, dict):
            head, *rest = part.lstrip("_").split("_")
            obj = obj.get(part, obj.get(head + "".join(word.title() for word in rest)))
        else:
            obj = getattr(obj, part, None)
    return obj


@dataclass(frozen=True)
class Action:
    """What a probe or hook does: an HTTP GET, a TCP connect, a command, or a sleep."""

    kind: str  # "http" | "tcp" | "exec" | "sleep"
    port: int = 0
    path: str = "/"
    command: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class Probe:
    """A probe with the kubelet's defaults (period 10 s, timeout 1 s, 3 failures, 1 success)."""

    action: Action
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    failure_threshold: int = 3
    success_threshold: int = 1


@dataclass(frozen=True)
class Lifecycle:
    """What the kubelet reads from one container (and the pod's grace period)."""

    container: str = ""
    image: str = ""
    startup: Probe | None = None
    readiness: Probe | None = None
    liveness: Probe | None = None
    post_start: Action | None = None
    pre_stop: Action | None = None
    grace_s: float = DEFAULT_GRACE_S


def _port(raw: Any, ports: Mapping[str, int]) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        return int(raw)
    if raw in ports:
        return int(ports[raw])
    raise ValueError(f"port {raw!r} is neither a number nor a named container port ({sorted(ports)})")


def parse_action(raw: Any, ports: Mapping[str, int]) -> Action | None:
    """The handler of a probe or hook (http_get, tcp_socket, _exec, sleep), or None when it has none."""
    if raw is None:
        return None
    http = _get(raw, "http_get")
    if http is not None:
        return Action("http", port=_port(_get(http, "port"), ports), path=str(_get(http, "path") or "/"))
    tcp = _get(raw, "tcp_socket")
    if tcp is not None:
        return Action("tcp", port=_port(_get(tcp, "port"), ports))
    command = _get(raw, "_exec", "command")
    if command:
        return Action("exec", command=tuple(str(c) for c in command))
    sleep = _get(raw, "sleep", "seconds")
    if sleep is not None:
        return Action("sleep", seconds=float(sleep))
    return None


def parse_probe(raw: Any, ports: Mapping[str, int]) -> Probe | None:
    action = parse_action(raw, ports)
    if action is None:
        return None

    def number(name: str, default: float) -> float:
        value = _get(raw, name)
        return default if value is None else float(value)

    return Probe(
        action,
        initial_delay_s=number("initial_delay_seconds", 0),
        period_s=number("period_seconds", 10),
        timeout_s=number("timeout_seconds", 1),
        failure_threshold=int(number("failure_threshold", 3)),
        success_threshold=int(number("success_threshold", 1)),
    )


def parse_lifecycle(pod: Any, container: Any, ports: Mapping[str, int]) -> Lifecycle:
    """Probes and hooks of `container`, its named ports resolved with `ports` (the runner's view of them)."""
    named = dict(ports)
    for port in _get(container, "ports") or []:
        if _get(port, "name"):
            named.setdefault(str(_get(port, "name")), int(_get(port, "container_port")))
    grace = _get(pod, "spec", "termination_grace_period_seconds")
    return Lifecycle(
        container=str(_get(container, "name") or ""),
        image=str(_get(container, "image") or ""),
        startup=parse_probe(_get(container, "startup_probe"), named),
        readiness=parse_probe(_get(container, "readiness_probe"), named),
        liveness=parse_probe(_get(container, "liveness_probe"), named),
        post_start=parse_action(_get(container, "lifecycle", "post_start"), named),
        pre_stop=parse_action(_get(container, "lifecycle", "pre_stop"), named),
        grace_s=DEFAULT_GRACE_S if grace is None else float(grace),
    )


def perform(action: Action, ip: str, env: Mapping[str, str], netns: str | None, timeout_s: float,
            alive: Callable[[], bool] = lambda: True) -> tuple[bool, str]:  # fmt: skip
    """Run a probe or hook against the pod at `ip`; (succeeded, what went wrong). An exec runs inside the pod's
    network namespace with the container's environment, as `kubectl exec` would, and ends when the container
    does (`alive` turns False)."""
    try:
        if action.kind == "http":
            ok = http_ok(f"http://{ip}:{action.port}{action.path}", timeout=timeout_s)
            return ok, "" if ok else f"GET {action.path} on :{action.port} failed"
        if action.kind == "tcp":
            with socket.create_connection((ip, action.port), timeout=timeout_s):
                return True, ""
        if action.kind == "sleep":
            time.sleep(min(action.seconds, timeout_s))
            return True, ""
        return _execute(action.command, env, netns, timeout_s, alive)
    except OSError as exc:
        return False, str(exc)


def _execute(command: tuple[str, ...], env: Mapping[str, str], netns: str | None, timeout_s: float,
             alive: Callable[[], bool]) -> tuple[bool, str]:  # fmt: skip
    argv = ["ip", "netns", "exec", netns, *command] if netns else list(command)
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(argv, env={"PATH": os.environ.get("PATH", ""), **env}, stdout=output,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline or not alive():
                proc.kill()
                proc.wait()
                return False, "timed out" if alive() else "the container exited"
            time.sleep(0.05)
        output.seek(0)
        tail = output.read().decode(errors="replace").strip()[-300:]
    return proc.returncode == 0, "" if proc.returncode == 0 else f"exit {proc.returncode}: {tail}"


def timestamp(at: float | None = None) -> str:
    """RFC 3339 in UTC, seconds precision, as the API server stores it."""
    return datetime.fromtimestamp(time.time() if at is None else at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_patch(lifecycle: Lifecycle, *, ready: bool, started: bool, restarts: int, running_since: float | None,
                 last_exit: tuple[int, str] | None = None, now: float | None = None) -> dict[str, Any]:
    """The pod status a kubelet would write: Ready and ContainersReady (merged by type) and the container's
    status (the list is replaced whole: ContainerStatus has no merge key)."""
    at = timestamp(now)
    flag = "True" if ready else "False"
    state: dict[str, Any] = (
        {"running": {"startedAt": timestamp(running_since)}} if running_since is not None
        else {"waiting": {"reason": "CrashLoopBackOff" if restarts else "ContainerCreating"}}
    )  # fmt: skip
    container: dict[str, Any] = {
        "name": lifecycle.container, "image": lifecycle.image, "imageID": "", "ready": ready, "started": started,
        "restartCount": restarts, "state": state,
    }  # fmt: skip
    if last_exit is not None:
        container["lastState"] = {"terminated": {"exitCode": last_exit[0], "reason": last_exit[1],
                                                 "startedAt": at, "finishedAt": at}}  # fmt: skip
    return {"status": {
        "conditions": [{"type": kind, "status": flag, "lastTransitionTime": at}
                       for kind in ("Ready", "ContainersReady")],
        "containerStatuses": [container],
    }}  # fmt: skip
