"""The local stack's control plane behaves like a real cluster where Modelship depends on it."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from e2e.stack import REPO, StackContext, binary_path
from e2e.stack.controlplane import alive, https_ok
from e2e.stack.nodes import gpus_per_node, node_count

pytestmark = pytest.mark.integration


def wait_until(check: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def namespace(stack: StackContext) -> Iterator[str]:
    """A fresh namespace with its default ServiceAccount (pods are refused until it exists)."""
    core = client.CoreV1Api(stack.api_client())
    name = f"cp-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    wait_until(lambda: core.list_namespaced_service_account(name).items, 30, "default ServiceAccount")
    yield name
    core.delete_namespace(name)


def test_apiserver_ready_and_pinned_version(stack: StackContext) -> None:
    assert https_ok(f"{stack.server}/readyz", stack.ca_file)  # CA-verified TLS, unauthenticated probe
    version = client.VersionApi(stack.api_client()).get_code()
    assert version.git_version == "v1.34.4"


def test_rbac_is_enforced(stack: StackContext) -> None:
    admin = client.CoreV1Api(stack.api_client())
    admin.list_namespaced_secret("default")
    for token in (stack.tokens["nobody"], "not-a-token"):
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(stack.api_client(token=token)).list_namespaced_secret("default")
        assert err.value.status in (401, 403)
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(stack.api_client(token=stack.tokens["nobody"])).list_namespaced_secret("default")
    assert err.value.status == 403


def test_fake_gpu_nodes(stack: StackContext) -> None:
    nodes = client.CoreV1Api(stack.api_client()).list_node(label_selector="type=kwok").items
    assert len(nodes) == node_count()
    for node in nodes:
        assert node.status.allocatable["nvidia.com/gpu"] == str(gpus_per_node())
        assert ipaddress.ip_network(node.spec.pod_cidr).subnet_of(ipaddress.ip_network("10.77.0.0/16"))
        assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)
        assert not node.spec.taints


def test_gpu_deployment_runs_with_pod_ips_from_node_cidr(stack: StackContext, namespace: str) -> None:
    api = stack.api_client()
    labels = {"app": "gpu-demo"}
    container = client.V1Container(
        name="triton",
        image="nvcr.io/nvidia/tritonserver:24.10-py3",
        resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "1"}),
    )
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="gpu-demo"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels), spec=client.V1PodSpec(containers=[container])
            ),
        ),
    )
    client.AppsV1Api(api).create_namespaced_deployment(namespace, deployment)
    core = client.CoreV1Api(api)

    def ready_pods() -> list[client.V1Pod]:
        pods = core.list_namespaced_pod(namespace, label_selector="app=gpu-demo").items
        ok = [
            p
            for p in pods
            if p.status.phase == "Running"
            and p.status.pod_ip
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ok if len(ok) == 2 else []

    pods = wait_until(ready_pods, 60, "2 Running+Ready GPU pods")
    cidrs = {n.metadata.name: ipaddress.ip_network(n.spec.pod_cidr) for n in core.list_node().items}
    for pod in pods:
        assert ipaddress.ip_address(pod.status.pod_ip) in cidrs[pod.spec.node_name]
    wait_until(
        lambda: client.AppsV1Api(api).read_namespaced_deployment("gpu-demo", namespace).status.available_replicas == 2,
        30,
        "Deployment available",
    )
    # The EndpointSlice controller publishes the (non-loopback) pod IPs behind a Service.
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="gpu-demo"),
        spec=client.V1ServiceSpec(selector=labels, ports=[client.V1ServicePort(port=8000)]),
    )
    core.create_namespaced_service(namespace, service)
    discovery = client.DiscoveryV1Api(api)

    def slice_ips() -> set[str]:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=gpu-demo"
        ).items
        return {a for s in slices for e in s.endpoints or [] if e.conditions.ready for a in e.addresses}

    wait_until(lambda: slice_ips() == {p.status.pod_ip for p in pods}, 30, "EndpointSlice with the pod IPs")


def test_pod_needing_too_many_gpus_stays_pending(stack: StackContext, namespace: str) -> None:
    core = client.CoreV1Api(stack.api_client())
    too_many = str(gpus_per_node() + 1)
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="greedy"),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="c",
                    image="x",
                    resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": too_many}),
                )
            ]
        ),
    )
    core.create_namespaced_pod(namespace, pod)

    def failed_scheduling() -> bool:
        events = core.list_namespaced_event(namespace, field_selector="involvedObject.name=greedy").items
        return any(e.reason == "FailedScheduling" and "nvidia.com/gpu" in (e.message or "") for e in events)

    wait_until(failed_scheduling, 30, "a FailedScheduling event naming nvidia.com/gpu")
    assert core.read_namespaced_pod("greedy", namespace).status.phase == "Pending"


def test_garbage_collector_deletes_owned_objects(stack: StackContext, namespace: str) -> None:
    core = client.CoreV1Api(stack.api_client())
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace)

    def child_gone() -> bool:
        return not [c for c in core.list_namespaced_config_map(namespace).items if c.metadata.name == "child"]

    wait_until(child_gone, 30, "garbage collection of the owned ConfigMap")


def test_ecosystem_crds_installed(stack: StackContext, namespace: str) -> None:
    ext = client.ApiextensionsV1Api(stack.api_client())
    names = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    for crd in (
        "httproutes.gateway.networking.k8s.io",
        "gateways.gateway.networking.k8s.io",
        "gatewayclasses.gateway.networking.k8s.io",
        "virtualservices.networking.istio.io",
        "destinationrules.networking.istio.io",
        "servicemonitors.monitoring.coreos.com",
        "prometheusrules.monitoring.coreos.com",
        "podmonitors.monitoring.coreos.com",
    ):
        assert crd in names
    # The experimental HTTPRoute accepts a RequestMirror filter with `percent` (server-side dry run).
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "mirror"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "rules": [
                {
                    "backendRefs": [{"name": "stable", "port": 8000, "weight": 100}],
                    "filters": [
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": {"name": "canary", "port": 8000}, "percent": 25},
                        }
                    ],
                }
            ],
        },
    }
    out = subprocess.run(
        [
            str(stack.kubectl),
            f"--kubeconfig={stack.kubeconfig}",
            "-n",
            namespace,
            "apply",
            "--server-side",
            "--dry-run=server",
            "-o",
            "json",
            "-f",
            "-",
        ],
        input=json.dumps(route),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    mirror = json.loads(out)["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror["percent"] == 25


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_down_leaves_no_process_or_port(tmp_path: Path) -> None:
    """A second, throwaway stack (control plane only) comes up and goes down without leftovers."""
    env = {**os.environ, "MODELSHIP_STACK_DIR": str(tmp_path / "stack"), "MODELSHIP_STACK_DATAPLANE": "0"}
    cli = [sys.executable, "-m", "e2e.stack"]
    subprocess.run([*cli, "up"], cwd=REPO, env=env, check=True, timeout=300)
    state = json.loads((tmp_path / "stack" / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"].values()]
    assert set(state["processes"]) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    }
    out = subprocess.run(
        [str(binary_path("kubectl")), f"--kubeconfig={state['kubeconfig']}", "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "node/gpu-node-0" in out
    subprocess.run([*cli, "up"], cwd=REPO, env=env, check=True, timeout=60)  # idempotent: a no-op
    assert json.loads((tmp_path / "stack" / "state.json").read_text())["processes"]["etcd"]["pid"] == pids[0]
    subprocess.run([*cli, "down"], cwd=REPO, env=env, check=True, timeout=120)
    assert not [pid for pid in pids if alive(pid)]
    assert not [port for port in state["ports"].values() if _listening(port)]
    assert not (tmp_path / "stack" / "state.json").exists()
