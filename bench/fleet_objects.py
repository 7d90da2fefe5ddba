"""The objects the fleet bench creates: its own kwok nodes and the ModelDeployments.

Why its own nodes: the stack's two GPU nodes hold 110 pods each and serve other people's e2e scenarios;
1,000 ModelDeployments need 1,000 pods settled and up to 2,000 mid-rollout. The bench adds kwok nodes (kwok
makes their pods Running and Ready) that only its pods can use: a taint keeps everyone else's pods off, a
label and a toleration (`spec.serving`) put the bench's pods on. Their pod CIDRs lie inside the data plane's
routed pod network (10.77.0.0/16, so the operator reaches the pod IPs), away from the stack's nodes
(10.77.<i>.0/24 for small i) and node addresses (10.77.250.x). Every pod carries `PODRUNNER_MODE=ip-only`
(`spec.serving.env`): the stack's pod runner gives it its IP and starts no Triton; the bench's stand-in
answers on it (bench/standins.py).
"""

from __future__ import annotations

import math
from typing import Any

from bench import kwok_nodes
from e2e.stack import StackContext
from e2e.stack.dataplane.podspec import IP_ONLY

NODE_LABEL = "modelship.dev/bench-fleet"
PODS_PER_NODE = 4000  # a /20 holds 4,094 addresses
FIRST_BLOCK, LAST_BLOCK = 64, 224  # third octet of the first and last /20: 10.77.64.0 .. 10.77.239.255


def node_manifests(run_id: str, pods: int) -> list[dict[str, Any]]:
    """kwok nodes only the bench's pods land on, with room for `pods` pods (a /20 of pod IPs each)."""
    count = max(1, math.ceil(pods / PODS_PER_NODE))
    blocks = range(FIRST_BLOCK, LAST_BLOCK + 1, 16)
    if count > len(blocks):
        raise SystemExit(f"{pods} pods need {count} bench nodes; at most {len(blocks)} fit in 10.77.0.0/16")
    capacity = {"cpu": "512", "memory": "2Ti", "pods": str(math.ceil(pods / count) + 50)}
    cidrs = [f"10.77.{block}.0/20" for block in blocks[:count]]
    return kwok_nodes.node_manifests(NODE_LABEL, run_id, cidrs, capacity, address=lambda i: f"10.77.251.{i + 1}")


def create_nodes(stack: StackContext, run_id: str, pods: int, timeout: float = 60.0) -> list[str]:
    """Create the bench's nodes and wait until kwok reports them Ready."""
    return kwok_nodes.create_nodes(stack, NODE_LABEL, run_id, node_manifests(run_id, pods), timeout)


def delete_nodes(stack: StackContext, run_id: str) -> None:
    kwok_nodes.delete_nodes(stack, NODE_LABEL, run_id)


def manifest(name: str, namespace: str, i: int, run_id: str, step_s: float, interval_s: float) -> dict[str, Any]:
    """A small CPU-only ModelDeployment on the bench's nodes: two timed canary steps, passing SLO checks."""
    traffic = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw"}]}} if i % 2 else {"none": {}}
    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {NODE_LABEL: run_id}},
        "spec": {
            "model": {"name": f"bench_model_{i % 20}", "version": "1", "repository": "s3://bench/none"},
            "serving": {
                "replicas": 1,
                "resources": {"gpus": 0, "cpu": "10m", "memory": "16Mi"},
                "nodeSelector": {NODE_LABEL: run_id},
                "tolerations": [{"key": NODE_LABEL, "operator": "Equal", "value": run_id, "effect": "NoSchedule"}],
                "env": [{"name": IP_ONLY[0], "value": IP_ONLY[1]}],
            },
            "traffic": traffic,
            "rollout": {
                "canary": {"steps": [{"weight": 10, "duration": f"{step_s:g}s"},
                                     {"weight": 50, "duration": f"{step_s:g}s"}]},
                "analysis": {"interval": f"{interval_s:g}s", "failureLimit": 2, "minRequests": 100},
                "progressDeadline": "30m",
            },
            "slo": {"errorRate": {"max": 0.01}, "latencyP99Ms": {"max": 500}},
        },
    }


def version_patch(version: str) -> dict[str, Any]:
    """The change that starts a rollout: a new model version."""
    return {"spec": {"model": {"version": version}}}
