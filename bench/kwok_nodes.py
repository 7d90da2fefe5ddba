"""kwok nodes that only one bench run's pods land on (bench.fleet_objects, bench.peers.argo_objects).

Why a bench's own nodes: the stack's two GPU nodes hold 110 pods each and serve other people's e2e scenarios.
kwok makes a pod on such a node Running and Ready without running anything. A taint `<label>=<run id>`
(NoSchedule) keeps everyone else's pods off; the label of the same name lets the bench's pods (with a
toleration) select them. Each caller picks its pod CIDRs, capacity and addresses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from e2e.stack import StackContext
from e2e.stack.controlplane import KWOK_SELECTOR


def node_manifests(label: str, run_id: str, cidrs: Sequence[str], capacity: dict[str, str],
                   address: Callable[[int], str] | None = None) -> list[dict[str, Any]]:
    """One node `<run_id>-node-<i>` per pod CIDR, tainted and labelled `label: run_id`.

    `address(i)`: node i's InternalIP (then it also gets a Hostname address); None: no addresses at all.
    """
    ann_key, ann_value = KWOK_SELECTOR.split("=")
    nodes = []
    for i, cidr in enumerate(cidrs):
        name = f"{run_id}-node-{i}"
        status: dict[str, Any] = {"capacity": capacity, "allocatable": capacity}
        if address is not None:
            status["addresses"] = [{"type": "InternalIP", "address": address(i)},
                                   {"type": "Hostname", "address": name}]
        nodes.append({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {ann_key: ann_value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", label: run_id},
            },
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr],
                     "taints": [{"key": label, "value": run_id, "effect": "NoSchedule"}]},
            "status": status,
        })
    return nodes


def create_nodes(stack: StackContext, label: str, run_id: str, nodes: list[dict[str, Any]],
                 timeout: float = 60.0) -> list[str]:
    """Create `nodes` (labelled `label: run_id`) and wait until kwok reports them Ready."""
    stack.run_kubectl("create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": nodes}))
    names = [node["metadata"]["name"] for node in nodes]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = json.loads(stack.run_kubectl("get", "nodes", "-l", f"{label}={run_id}", "-o", "json"))["items"]
        ready = {item["metadata"]["name"] for item in items
                 if any(c["type"] == "Ready" and c["status"] == "True"
                        for c in item.get("status", {}).get("conditions", []))}
        if set(names) <= ready:
            return names
        time.sleep(0.5)
    raise SystemExit(f"bench nodes {names} not Ready after {timeout:.0f}s (is kwok running? .stack/logs/kwok.log)")


def delete_nodes(stack: StackContext, label: str, run_id: str) -> None:
    stack.run_kubectl("delete", "nodes", "-l", f"{label}={run_id}", "--wait=false", check=False)
