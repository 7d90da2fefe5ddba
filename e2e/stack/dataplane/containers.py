"""One thread per running container doing what a kubelet's probe workers and its pod killer do.

`supervise` runs after a server process starts: the postStart hook (a failure kills the container, which the runner
restarts with back-off), the startup probe, then readiness and liveness probes every period; every change of
readiness is written to the pod's status. `terminate` runs when the pod gets a deletionTimestamp: not Ready, the
preStop hook, SIGTERM, the rest of the grace period, SIGKILL, then the pod object is removed (grace 0, uid
precondition), which is when a real kubelet lets it go. See kubelet.py for why.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from e2e.stack.dataplane.kubelet import Lifecycle, Probe, perform, status_patch, timestamp
from e2e.stack.triton import terminate_group

log = logging.getLogger("modelship.podrunner")
TICK_S = 0.1
POST_START_TIMEOUT_S = 3600.0  # a kubelet has none; a hook that outlives its container is killed with it


class Host(Protocol):
    """What a container's thread needs from the runner."""

    core: Any  # CoreV1Api, None in unit tests that run no API server
    lock: threading.Lock
    netns: str | None

    def write_status(self) -> None: ...

    def release(self, run: Any) -> None: ...


def write_pod_status(host: Host, run: Any, *, ready: bool, started: bool, last_exit: tuple[int, str] | None = None
                     ) -> None:  # fmt: skip
    """Patch the pod's conditions and container status; a pod already gone is not an error."""
    run.ready = ready
    run.last_exit = last_exit or run.last_exit  # the container status list is replaced whole: keep lastState
    if host.core is None:
        return
    pod = run.pod
    running_since = run.wall_started_at if run.proc is not None and run.proc.poll() is None else None
    body = status_patch(pod.lifecycle, ready=ready, started=started, restarts=run.restarts,
                        running_since=running_since, last_exit=run.last_exit)  # fmt: skip
    try:
        host.core.patch_namespaced_pod_status(pod.name, pod.namespace, body)
    except Exception as exc:  # 404 after deletion, API server restarts: the next transition writes again
        log.info("%s/%s: status not written (%s)", pod.namespace, pod.name, str(exc).splitlines()[0])


def record_event(host: Host, run: Any, reason: str, message: str, kind: str = "Warning") -> None:
    """A kubelet Event on the pod (`kubectl describe pod` shows why it restarts or is not Ready)."""
    if host.core is None:
        return
    pod = run.pod
    at = timestamp()
    body = {
        "metadata": {"generateName": f"{pod.name}.", "namespace": pod.namespace},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": pod.namespace, "name": pod.name,
                           "uid": pod.uid, "fieldPath": f"spec.containers{{{pod.lifecycle.container}}}"},
        "reason": reason, "message": message[:1000], "type": kind, "count": 1,
        "firstTimestamp": at, "lastTimestamp": at, "source": {"component": "kubelet", "host": pod.node},
    }  # fmt: skip
    try:
        host.core.create_namespaced_event(pod.namespace, body)
    except Exception as exc:  # an Event is best effort, as the kubelet's are
        log.info("%s/%s: event %s not recorded (%s)", pod.namespace, pod.name, reason, str(exc).splitlines()[0])


class _ProbeState:
    """Consecutive successes and failures of one probe, and when it runs next."""

    def __init__(self, probe: Probe, start: float) -> None:
        self.probe = probe
        self.due = start + probe.initial_delay_s
        self.successes = 0
        self.failures = 0

    def run(self, run: Any, host: Host, now: float) -> bool | None:
        """Probe if due; True/False once a threshold is crossed, None while undecided or not due."""
        if now < self.due:
            return None
        self.due = now + self.probe.period_s
        ok, why = perform(self.probe.action, run.pod.ip, run.pod.env, run.netns or host.netns, self.probe.timeout_s)
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            return True if self.successes >= self.probe.success_threshold else None
        self.successes, self.failures = 0, self.failures + 1
        run.probe_error = why
        return False if self.failures >= self.probe.failure_threshold else None


def _alive(run: Any, proc: Any) -> bool:
    return bool(proc.poll() is None and run.proc is proc and not run.terminating)


def _kill(host: Host, run: Any, proc: Any, why: str, reason: str = "Unhealthy") -> None:
    """A failed hook or liveness probe: the container is killed and restarted (restartPolicy Always)."""
    pod = run.pod
    log.warning("%s/%s: %s; killing the container", pod.namespace, pod.name, why)
    record_event(host, run, reason, why)
    record_event(host, run, "Killing", f"Container {pod.lifecycle.container} {why}, will be restarted", "Normal")
    run.error = run.restart_reason = why
    terminate_group(proc, timeout=pod.lifecycle.grace_s)
    write_pod_status(host, run, ready=False, started=False, last_exit=(137, "Error"))


def supervise(host: Host, run: Any, proc: Any) -> None:
    """postStart, startup probe, then readiness and liveness until the process ends or the pod is deleted."""
    pod, spec = run.pod, run.pod.lifecycle
    write_pod_status(host, run, ready=False, started=False)
    if spec.post_start is not None:
        ok, why = perform(spec.post_start, pod.ip, pod.env, run.netns or host.netns, POST_START_TIMEOUT_S,
                          alive=lambda: _alive(run, proc))  # fmt: skip
        if not _alive(run, proc):
            return
        if not ok:
            _kill(host, run, proc, f"postStart hook failed: {why}", reason="FailedPostStartHook")
            return
        log.info("%s/%s: postStart hook done %.2fs after start", pod.namespace, pod.name,
                 time.monotonic() - run.started_at)  # fmt: skip
    start = time.monotonic()
    if spec.startup is not None:
        startup = _ProbeState(spec.startup, start)
        while _alive(run, proc):
            verdict = startup.run(run, host, time.monotonic())
            if verdict is True:
                break
            if verdict is False:
                failures = spec.startup.failure_threshold
                _kill(host, run, proc, f"startup probe failed {failures} times: {run.probe_error}")
                return
            time.sleep(TICK_S)
    _watch(host, run, proc, spec, time.monotonic())


def _watch(host: Host, run: Any, proc: Any, spec: Lifecycle, start: float) -> None:
    readiness = _ProbeState(spec.readiness, start) if spec.readiness is not None else None
    liveness = _ProbeState(spec.liveness, start) if spec.liveness is not None else None
    if readiness is None:
        _became_ready(host, run, True)
    while _alive(run, proc):
        now = time.monotonic()
        verdict = readiness.run(run, host, now) if readiness is not None else None
        if verdict is not None and verdict != run.ready:
            if not verdict:
                record_event(host, run, "Unhealthy", f"Readiness probe failed: {run.probe_error}")
            _became_ready(host, run, verdict)
        if liveness is not None and liveness.run(run, host, now) is False:
            _kill(host, run, proc, f"liveness probe failed {liveness.probe.failure_threshold} times: {run.probe_error}")
            return
        time.sleep(TICK_S)
    if proc.poll() is not None and run.proc is proc and not run.terminating:
        write_pod_status(host, run, ready=False, started=False, last_exit=(proc.returncode or 0, "Error"))


def _became_ready(host: Host, run: Any, ready: bool) -> None:
    pod = run.pod
    if ready and run.ready_after_s is None:
        with host.lock:
            run.ready_after_s = time.monotonic() - run.started_at
            run.history.append(run.ready_after_s)
            host.write_status()
    log.info("%s/%s: %s after %.2fs", pod.namespace, pod.name, "Ready" if ready else "not Ready",
             time.monotonic() - run.started_at)  # fmt: skip
    write_pod_status(host, run, ready=ready, started=True)


def terminate(host: Host, run: Any, grace_s: float) -> None:
    """preStop, SIGTERM, wait out the grace period, SIGKILL; then the pod object goes."""
    pod = run.pod
    deadline = time.monotonic() + grace_s
    log.info("%s/%s: terminating (grace %.0fs)", pod.namespace, pod.name, grace_s)
    if run.ready:
        write_pod_status(host, run, ready=False, started=True)
    proc = run.proc
    if proc is not None and proc.poll() is None:
        if pod.lifecycle.pre_stop is not None:
            left = max(0.0, deadline - time.monotonic())
            ok, why = perform(pod.lifecycle.pre_stop, pod.ip, pod.env, run.netns or host.netns, left)
            if not ok:
                log.warning("%s/%s: preStop hook failed: %s", pod.namespace, pod.name, why)
        terminate_group(proc, timeout=max(0.0, deadline - time.monotonic()))
    host.release(run)
    remove_pod(host, pod.namespace, pod.name, pod.uid)
    log.info("%s/%s: terminated after %.1fs", pod.namespace, pod.name, grace_s - (deadline - time.monotonic()))


def remove_pod(host: Host, namespace: str, name: str, uid: str) -> None:
    """The kubelet's final delete: grace 0, only this pod (a new pod of the same name is not touched)."""
    if host.core is None:
        return
    from kubernetes import client  # noqa: PLC0415

    options = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid))
    try:
        host.core.delete_namespaced_pod(name, namespace, body=options, grace_period_seconds=0)
    except Exception as exc:  # already gone (404) or replaced (409): nothing left to do
        log.info("%s/%s: delete: %s", namespace, name, str(exc).splitlines()[0])
