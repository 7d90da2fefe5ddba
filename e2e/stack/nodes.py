"""Fake GPU nodes run by kwok.

Why: the scheduler must really enforce ``nvidia.com/gpu`` capacity (a canary that needs GPUs the
cluster does not have must stay Pending), and pods must get IPs from a pod network the data plane
can route (``10.77.<i>.0/24`` per node; kwok allocates pod IPs from ``node.spec.podCIDR``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from e2e.stack import StackContext
from e2e.stack.controlplane import KWOK_SELECTOR, StackError

POD_NETWORK = "10.77.0.0/16"


def node_count() -> int:
    """Number of fake nodes (``MODELSHIP_STACK_NODES``, default 2)."""
    return int(os.environ.get("MODELSHIP_STACK_NODES", "2"))


def gpus_per_node() -> int:
    """GPUs each fake node offers (``MODELSHIP_STACK_GPUS_PER_NODE``, default 4)."""
    return int(os.environ.get("MODELSHIP_STACK_GPUS_PER_NODE", "4"))


def pod_cidr(i: int) -> str:
    """Pod CIDR of node ``i``; the routed pod network is ``10.77.0.0/16``."""
    return f"10.77.{i}.0/24"


def node_manifest(i: int, gpus: int) -> dict[str, Any]:
    """A Node object kwok manages (selected by annotation) with GPU capacity and a pod CIDR."""
    name = f"gpu-node-{i}"
    capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
    ann_key, ann_value = KWOK_SELECTOR.split("=")
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {ann_key: ann_value, "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node-role.kubernetes.io/agent": "",
                "nvidia.com/gpu.present": "true",
            },
        },
        "spec": {"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            # Outside every node's pod CIDR but inside the routed pod network.
            "addresses": [
                {"type": "InternalIP", "address": f"10.77.250.{i + 1}"},
                {"type": "Hostname", "address": name},
            ],
        },
    }


def ensure_nodes(ctx: StackContext, timeout: float = 60.0) -> list[str]:
    """Create the fake nodes (create-only: status is set on create) and wait until kwok has them Ready."""
    count, gpus = node_count(), gpus_per_node()
    existing = json.loads(ctx.run_kubectl("get", "nodes", "-o", "json"))["items"]
    have = {n["metadata"]["name"] for n in existing}
    wanted = [node_manifest(i, gpus) for i in range(count)]
    new = [n for n in wanted if n["metadata"]["name"] not in have]
    if new:
        ctx.run_kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": new}))
    names = [n["metadata"]["name"] for n in wanted]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(ctx.run_kubectl("get", "nodes", "-o", "json"))["items"]
        ready = {
            n["metadata"]["name"]
            for n in items
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        }
        if set(names) <= ready:
            return names
        time.sleep(0.5)
    raise StackError(f"fake nodes {names} not Ready after {timeout:.0f}s (is kwok running? see .stack/logs/kwok.log)")
