"""The local stack's kubelet duties, pure parts: the operator's pod as the pod runner reads it, and the status it
writes (tests/stack/test_kubelet.py runs them on the real stack)."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_fixtures import CANARY, OWNER, make_spec
from modelship.adapters import objects
from modelship.domain.actions import Role

from e2e.stack.dataplane.kubelet import Action, Lifecycle, Probe, parse_action, parse_lifecycle, status_patch

PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def _operator_pod() -> dict[str, Any]:
    """The pod template the operator writes for a ModelDeployment."""
    template: dict[str, Any] = objects.deployment(OWNER, make_spec(), CANARY, Role.CANARY, 1)["spec"]["template"]
    return template


def test_the_operator_pod_is_read_with_its_probes_hooks_and_grace_period() -> None:
    template = _operator_pod()
    (container,) = template["spec"]["containers"]
    spec = parse_lifecycle(template, container, PORTS)
    assert spec.startup == Probe(Action("http", port=8000, path="/v2/health/live"), period_s=2, timeout_s=3,
                                 failure_threshold=900)  # fmt: skip
    assert spec.readiness is not None and spec.readiness.action == Action("http", port=8000, path="/v2/health/ready")
    assert spec.liveness is not None and spec.liveness.failure_threshold == 6
    assert spec.post_start is not None and spec.post_start.command[:2] == ("python3", "-c")
    assert spec.pre_stop == Action("exec", command=("sleep", str(objects.DRAIN_S)))
    assert spec.grace_s == template["spec"]["terminationGracePeriodSeconds"]


def test_a_probe_on_a_port_the_container_does_not_name_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'admin' is neither a number nor a named container port"):
        parse_action({"httpGet": {"path": "/", "port": "admin"}}, PORTS)


def test_the_status_written_is_what_a_kubelet_writes() -> None:
    spec = Lifecycle(container="triton", image="nvcr.io/nvidia/tritonserver:24.10-py3")
    ready = status_patch(spec, ready=True, started=True, restarts=2, running_since=0.0, now=60.0)["status"]
    assert ready["conditions"] == [
        {"type": "Ready", "status": "True", "lastTransitionTime": "1970-01-01T00:01:00Z"},
        {"type": "ContainersReady", "status": "True", "lastTransitionTime": "1970-01-01T00:01:00Z"},
    ]
    (container,) = ready["containerStatuses"]
    assert container["ready"] is True and container["restartCount"] == 2
    assert container["state"] == {"running": {"startedAt": "1970-01-01T00:00:00Z"}}
    crashed = status_patch(spec, ready=False, started=False, restarts=3, running_since=None, last_exit=(137, "Error"))
    (container,) = crashed["status"]["containerStatuses"]
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff"}}
    assert container["lastState"]["terminated"]["exitCode"] == 137
