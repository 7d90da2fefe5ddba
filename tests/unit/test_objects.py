"""Child object builders: labels, pod contract, GPU resources, probes, owner references."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar

import pytest
from adapter_fixtures import CANARY, OWNER, STABLE, make_spec
from modelship.adapters import objects
from modelship.domain.actions import Role


def _deployment(role: Role = Role.CANARY, **spec_overrides: Any) -> dict[str, Any]:
    return objects.deployment(OWNER, make_spec(**spec_overrides), CANARY, role, 3)


def test_deployment_identity_labels_and_owner() -> None:
    dep = _deployment()
    meta = dep["metadata"]
    assert meta["name"] == "fraud-scorer-9ab12e0000"
    assert meta["namespace"] == "ml"
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "modelship",
        "modelship.dev/deployment": "fraud-scorer",
        "modelship.dev/revision": "9ab12e0000",
        "modelship.dev/role": "canary",
    }
    assert meta["ownerReferences"] == [{
        "apiVersion": "modelship.dev/v1alpha1", "kind": "ModelDeployment", "name": "fraud-scorer",
        "uid": "0c1d2e3f-uid", "controller": True, "blockOwnerDeletion": True,
    }]
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {
        "matchLabels": {"modelship.dev/deployment": "fraud-scorer", "modelship.dev/revision": "9ab12e0000"}
    }


def test_role_is_not_in_pod_template_so_a_role_change_never_restarts_pods() -> None:
    canary, stable = _deployment(Role.CANARY), _deployment(Role.STABLE)
    labels = canary["spec"]["template"]["metadata"]["labels"]
    assert "modelship.dev/role" not in labels
    assert labels == {
        "app.kubernetes.io/managed-by": "modelship",
        "modelship.dev/deployment": "fraud-scorer",
        "modelship.dev/revision": "9ab12e0000",
        "app.kubernetes.io/name": "fraud-scorer",
        "app.kubernetes.io/version": "7",
    }
    assert canary["spec"]["template"] == stable["spec"]["template"]
    assert canary["metadata"]["labels"]["modelship.dev/role"] == "canary"
    assert stable["metadata"]["labels"]["modelship.dev/role"] == "stable"
    # the selector must be a subset of the pod labels
    assert canary["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_container_command_args_and_user_args_last() -> None:
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    assert c["name"] == "triton"
    assert c["command"] == ["tritonserver"]
    assert c["args"] == [
        "--model-repository=s3://models/triton",
        "--model-control-mode=explicit",
        "--load-model=fraud_scorer",
        "--strict-readiness=true",
        "--metrics-config=summary_latencies=true",
        "--allow-metrics=true",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--log-verbose=1",
    ]


def test_env_pins_version_and_user_cannot_override_pin() -> None:
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {
        "MODELSHIP_MODEL_NAME": "fraud_scorer",
        "MODELSHIP_MODEL_VERSION": "7",
        "MODELSHIP_REVISION": "9ab12e0000",
        "OMP_NUM_THREADS": "2",
    }
    assert len(c["env"]) == len(env)  # no duplicate keys: SSA rejects them
    assert c["lifecycle"]["postStart"]["exec"]["command"][:2] == ["python3", "-c"]


def test_ports_probes_and_prometheus_annotations() -> None:
    template = _deployment()["spec"]["template"]
    (c,) = template["spec"]["containers"]
    assert c["ports"] == [
        {"name": "http", "containerPort": 8000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8001, "protocol": "TCP"},
        {"name": "metrics", "containerPort": 8002, "protocol": "TCP"},
    ]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true", "prometheus.io/port": "8002", "prometheus.io/path": "/metrics",
    }


def test_a_removed_pod_keeps_serving_until_endpoints_forget_it() -> None:
    """EndpointSlices drop a terminating pod asynchronously, so requests already routed to it must still be
    answered: Triton gets SIGTERM only after a preStop pause, and the grace period covers that pause plus
    Triton's own wait for in-flight requests (--exit-timeout-secs, 30 s by default)."""
    template = _deployment()["spec"]["template"]
    (c,) = template["spec"]["containers"]
    assert c["lifecycle"]["preStop"] == {"exec": {"command": ["sleep", str(objects.DRAIN_S)]}}
    assert objects.DRAIN_S >= 5
    assert template["spec"]["terminationGracePeriodSeconds"] >= objects.DRAIN_S + 30


def test_startup_probe_notices_a_listening_server_within_seconds_and_waits_half_an_hour() -> None:
    """A pod is Ready no sooner than its startup probe passes: a 10 s period made every new pod wait up to 10 s
    after Triton listened; large models still get 30 minutes to load."""
    (c,) = _deployment()["spec"]["template"]["spec"]["containers"]
    startup = c["startupProbe"]
    assert startup["periodSeconds"] <= 2
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 1800


def test_gpu_resources_placement_and_no_surge() -> None:
    dep = _deployment()
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    expected = {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert c["resources"] == {"requests": expected, "limits": expected}
    assert pod["nodeSelector"] == {"gpu": "a100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_cpu_only_serving_has_no_gpu_request() -> None:
    spec = make_spec(serving={"resources": {"gpus": 0, "cpu": "500m", "memory": "1Gi"}})
    dep = objects.deployment(OWNER, spec, STABLE, Role.STABLE, 1)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "nodeSelector" not in dep["spec"]["template"]["spec"]
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"] != 0


def test_services_select_revisions_and_entry_selects_all() -> None:
    stable = objects.role_service(OWNER, STABLE, Role.STABLE)
    canary = objects.role_service(OWNER, CANARY, Role.CANARY)
    entry = objects.entry_service(OWNER)
    assert stable["metadata"]["name"] == "fraud-scorer-stable"
    assert stable["spec"]["selector"] == {"modelship.dev/deployment": "fraud-scorer",
                                          "modelship.dev/revision": "5d8f7c0000"}
    assert canary["metadata"]["name"] == "fraud-scorer-canary"
    assert canary["metadata"]["labels"]["modelship.dev/role"] == "canary"
    assert entry["metadata"]["name"] == "fraud-scorer"
    assert entry["spec"]["selector"] == {"modelship.dev/deployment": "fraud-scorer",
                                         "app.kubernetes.io/name": "fraud-scorer"}
    for svc in (stable, canary, entry):
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http", "grpc", "metrics"]
        assert svc["metadata"]["ownerReferences"][0]["controller"] is True
        assert svc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "modelship"


class _FakeTriton(BaseHTTPRequestHandler):
    """Answers the model-control calls the pin hook makes and records the load request."""

    loads: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/v2/models/fraud_scorer/config":
            self._reply(200, {"name": "fraud_scorer", "backend": "python",
                              "version_policy": {"latest": {"num_versions": 1}}})
        elif self.path == "/v2/models/fraud_scorer/versions/7/ready" and self.loads:
            self._reply(200, {})
        else:
            self._reply(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v2/repository/models/fraud_scorer/load":
            self.loads.append(body)
            self._reply(200, {})
        else:
            self._reply(404, {"error": "not found"})


def test_pin_hook_reloads_the_model_with_a_specific_version_policy() -> None:
    server = HTTPServer(("127.0.0.1", 0), _FakeTriton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {**os.environ, "MODELSHIP_HTTP_PORT": str(server.server_port),
               "MODELSHIP_MODEL_NAME": "fraud_scorer", "MODELSHIP_MODEL_VERSION": "7",
               "MODELSHIP_PIN_TIMEOUT_S": "10", "NO_PROXY": "*", "no_proxy": "*"}
        done = subprocess.run([sys.executable, "-c", objects.PIN_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=30, check=False)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    (load,) = _FakeTriton.loads
    config = json.loads(load["parameters"]["config"])
    assert config["version_policy"] == {"specific": {"versions": [7]}}
    assert config["backend"] == "python"


def test_pod_contract_matches_the_local_stack_pod_runner() -> None:
    """The stack's pod runner (e2e/stack/dataplane/podspec.py) must read our pods as we mean them."""
    podspec = pytest.importorskip("e2e.stack.dataplane.podspec")
    client = pytest.importorskip("kubernetes.client")
    template = _deployment()["spec"]["template"]
    pod = client.V1Pod.from_dict({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {**template["metadata"], "name": "p", "namespace": "ml", "uid": "u"},
        "spec": template["spec"], "status": {"phase": "Running", "podIP": "10.0.0.5"},
    })
    parsed = podspec.parse_pod(pod)
    assert parsed.errors == ()
    assert parsed.repository_uri == "s3://models/triton"
    assert parsed.models == ("fraud_scorer",)
    assert parsed.version == 7
    assert parsed.control_mode == "explicit"
    assert dict(parsed.ports) == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert "--log-verbose=1" in parsed.passthrough
