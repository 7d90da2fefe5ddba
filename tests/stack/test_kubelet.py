"""The pod runner as the Modelship pods' kubelet, on the real local stack: probes gate Ready, hooks run in the pod,
deletion is graceful (kwok gives a Modelship pod an IP and phase Running; the runner does the rest). The pure
parts are in tests/unit/test_pod_kubelet.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from test_dataplane import _pod_manifest, eventually, serving_versions

from e2e.stack.dataplane import podrunner_status
from e2e.stack.traffic import RouteReader, TrafficGenerator
from e2e.stack.triton import http_ok


# -- on the real local stack ---------------------------------------------------------------------------------------
def _core(stack: Any) -> Any:
    from kubernetes import client  # noqa: PLC0415

    return client.CoreV1Api(stack.api_client())


def _pod(core: Any, ns: str, name: str) -> Any:
    return core.read_namespaced_pod(name, ns)


def _when(core: Any, ns: str, name: str, check: Callable[[Any], bool], what: str, timeout: float = 90) -> Any:
    """The pod once `check` holds for it."""

    def once() -> Any:
        pod = _pod(core, ns, name)
        return pod if check(pod) else None

    return eventually(once, timeout, f"{name}: {what}")


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _restarts(pod: Any) -> int:
    return sum(s.restart_count for s in pod.status.container_statuses or [])


def _service(core: Any, ns: str, name: str, revision: str) -> None:
    core.create_namespaced_service(ns, {
        "metadata": {"name": name, "labels": {
            "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "fraud-scorer",
            "modelship.dev/role": "stable"}},
        "spec": {"selector": {"modelship.dev/revision": revision},
                 "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
    })  # fmt: skip


@pytest.mark.integration
def test_a_pod_failing_its_readiness_probe_is_never_ready_and_gets_no_traffic(stack_ns: tuple[Any, str]) -> None:
    """Given two pods behind one Service, one whose readiness probe asks for a model it does not serve,
    when traffic flows through the Service's endpoints, then only the ready pod receives it."""
    stack, ns = stack_ns
    core = _core(stack)
    good = _pod_manifest("good", "rev5", 5, "stable")
    bad = _pod_manifest("bad", "rev5", 5, "stable")
    for manifest, path in ((good, "/v2/health/ready"), (bad, "/v2/models/no_such_model/ready")):
        manifest["spec"]["containers"][0]["readinessProbe"] = {
            "httpGet": {"path": path, "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}  # fmt: skip
        core.create_namespaced_pod(ns, manifest)
    _service(core, ns, "fraud-scorer-stable", "rev5")
    eventually(lambda: _ready(_pod(core, ns, "good")), 90, "the good pod Ready")
    bad_ip = eventually(lambda: _pod(core, ns, "bad").status.pod_ip, 30, "the bad pod's IP")
    eventually(lambda: http_ok(f"http://{bad_ip}:8000/v2/health/ready"), 60, "the bad pod's Triton listening")
    reader = RouteReader(stack.api_client(), ns, "fraud-scorer")
    summary = TrafficGenerator(reader=reader, rps=40, count=80, duration=20).start().wait(60)
    good_ip = _pod(core, ns, "good").status.pod_ip
    assert list(summary["backends"]) == [f"fraud-scorer-stable/{good_ip}:8000"], summary  # one backend per endpoint
    (backend,) = summary["backends"].values()
    assert backend["ok"] == backend["sent"] == 80, summary
    assert not _ready(_pod(core, ns, "bad"))
    bad_served = podrunner_status(stack.stack_dir)["pods"][f"{ns}/bad"]
    assert bad_served["running"] and bad_served["ready_after_s"] is None
    from kubernetes import client  # noqa: PLC0415

    slices = client.DiscoveryV1Api(stack.api_client()).list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=fraud-scorer-stable").items  # fmt: skip
    conditions = {e.addresses[0]: e.conditions.ready for s in slices for e in s.endpoints or []}
    assert conditions[bad_ip] is False and sum(conditions.values()) == 1, conditions


@pytest.mark.integration
def test_a_failing_post_start_hook_restarts_the_container(stack_ns: tuple[Any, str]) -> None:
    """Given a pod whose postStart hook fails, the container is killed and restarted with back-off, the pod
    never becomes Ready and its restart count shows in the pod status, as on a cluster."""
    stack, ns = stack_ns
    core = _core(stack)
    manifest = _pod_manifest("hooked", "rev6", 6, "canary")
    manifest["spec"]["containers"][0]["lifecycle"] = {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}}
    core.create_namespaced_pod(ns, manifest)
    pod = _when(core, ns, "hooked", lambda p: _restarts(p) >= 2, "two restarts")
    assert not _ready(pod)
    (container,) = pod.status.container_statuses
    assert container.last_state.terminated.exit_code == 137
    reason = podrunner_status(stack.stack_dir)["pods"][f"{ns}/hooked"]["restart_reason"]
    assert reason.startswith("postStart hook failed: exit 3"), reason
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=hooked").items
    assert {"FailedPostStartHook", "Killing"} <= {e.reason for e in events}, [e.reason for e in events]


@pytest.mark.integration
def test_the_operator_pin_hook_serves_exactly_the_pinned_version(stack_ns: tuple[Any, str]) -> None:
    """Given the operator's own pin script as postStart (no pinning by the runner: Triton loads the latest
    version first), when the pod is Ready, then only the pinned version serves."""
    stack, ns = stack_ns
    core = _core(stack)
    core.create_namespaced_pod(ns, _pod_manifest("pinned", "rev2", 2, "stable"))
    pod = _when(core, ns, "pinned", _ready, "Ready")
    assert serving_versions(f"{pod.status.pod_ip}:8000") == ["2"]
    log = podrunner_status(stack.stack_dir)["pods"][f"{ns}/pinned"]
    assert log["restarts"] == 0


@pytest.mark.integration
def test_a_deleted_pod_serves_through_pre_stop_then_goes_before_its_grace_period_ends(
    stack_ns: tuple[Any, str],
) -> None:
    """Given a Ready pod with a 3 s preStop pause and a 30 s grace period, when it is deleted, then it is not
    Ready at once, keeps answering during the pause, and is removed once Triton has stopped (not at 30 s)."""
    stack, ns = stack_ns
    core = _core(stack)
    manifest = _pod_manifest("leaving", "rev3", 3, "stable")
    manifest["spec"]["terminationGracePeriodSeconds"] = 30
    manifest["spec"]["containers"][0]["lifecycle"]["preStop"] = {"exec": {"command": ["sleep", "3"]}}
    core.create_namespaced_pod(ns, manifest)
    pod = _when(core, ns, "leaving", _ready, "Ready")
    url = f"http://{pod.status.pod_ip}:8000/v2/health/live"
    t0 = time.monotonic()
    core.delete_namespaced_pod("leaving", ns)
    eventually(lambda: not _ready(_pod(core, ns, "leaving")), 5, "not Ready once deleting")
    assert http_ok(url), "Triton must answer during preStop"
    from kubernetes.client.rest import ApiException  # noqa: PLC0415

    def gone() -> bool:
        try:
            _pod(core, ns, "leaving")
        except ApiException as exc:
            return exc.status == 404
        return False

    eventually(gone, 25, "the pod removed after Triton stopped")
    took = time.monotonic() - t0
    assert 3 <= took < 15, took
    assert not http_ok(url, timeout=0.5)


@pytest.mark.integration
def test_a_failing_liveness_probe_restarts_the_container(stack_ns: tuple[Any, str]) -> None:
    stack, ns = stack_ns
    core = _core(stack)
    manifest = _pod_manifest("unwell", "rev4", 4, "stable")
    manifest["spec"]["containers"][0]["livenessProbe"] = {
        "httpGet": {"path": "/no/such/path", "port": "http"}, "periodSeconds": 1, "failureThreshold": 2}  # fmt: skip
    core.create_namespaced_pod(ns, manifest)
    eventually(lambda: _restarts(_pod(core, ns, "unwell")) >= 1, 90, "a restart after liveness failures")
    reason = podrunner_status(stack.stack_dir)["pods"][f"{ns}/unwell"]["restart_reason"]
    assert reason.startswith("liveness probe failed 2 times: GET /no/such/path"), reason
