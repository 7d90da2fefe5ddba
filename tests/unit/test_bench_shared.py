"""The helpers both sides of the bench comparison share: kwok nodes, the list-then-watch feed, process stop,
the in-process benches' options."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from bench import fleet_objects, kwok_nodes
from bench.common import in_process_options
from bench.counted import is_watch
from bench.measure import stop_process
from bench.peers import argo_objects
from bench.watching import ObjectWatcher


def test_fleet_nodes_lie_in_the_routed_pod_network_with_a_node_address_each() -> None:
    nodes = fleet_objects.node_manifests("fleet-x", 8_001)
    assert [n["spec"]["podCIDRs"] for n in nodes] == [["10.77.64.0/20"], ["10.77.80.0/20"], ["10.77.96.0/20"]]
    assert [n["status"]["addresses"] for n in nodes][1] == [
        {"type": "InternalIP", "address": "10.77.251.2"}, {"type": "Hostname", "address": "fleet-x-node-1"}]
    assert {n["status"]["capacity"]["pods"] for n in nodes} == {str(2_667 + 50)}
    for node in nodes:
        assert node["metadata"]["labels"][fleet_objects.NODE_LABEL] == "fleet-x"
        assert node["spec"]["taints"] == [{"key": fleet_objects.NODE_LABEL, "value": "fleet-x",
                                           "effect": "NoSchedule"}]


def test_fleet_nodes_that_would_leave_their_address_range_are_refused() -> None:
    with pytest.raises(SystemExit, match=r"fit in 10\.77\.0\.0/16"):
        fleet_objects.node_manifests("fleet-x", 11 * fleet_objects.PODS_PER_NODE + 1)


def test_argo_nodes_are_two_outside_the_routed_pod_network_without_addresses() -> None:
    nodes = argo_objects.node_manifests("bench-argo-abcd", 1000)
    assert [n["metadata"]["name"] for n in nodes] == ["bench-argo-abcd-node-0", "bench-argo-abcd-node-1"]
    assert [n["spec"]["podCIDR"] for n in nodes] == ["10.78.0.0/20", "10.78.16.0/20"]
    assert all("addresses" not in n["status"] for n in nodes)
    assert all(n["status"]["capacity"] == {"cpu": "64", "memory": "256Gi", "pods": "2100"} for n in nodes)
    assert all(n["spec"]["taints"][0]["key"] == argo_objects.NODE_LABEL for n in nodes)


def test_kwok_nodes_carry_the_kwok_annotation_and_one_node_per_cidr() -> None:
    nodes = kwok_nodes.node_manifests("l", "run", ["10.0.0.0/20", "10.0.16.0/20"], {"pods": "1"})
    assert [n["metadata"]["labels"]["kubernetes.io/hostname"] for n in nodes] == ["run-node-0", "run-node-1"]
    assert all(n["metadata"]["annotations"]["node.alpha.kubernetes.io/ttl"] == "0" for n in nodes)
    assert all(n["status"]["allocatable"] == {"pods": "1"} for n in nodes)


class FakeApi:
    """Two lists (resourceVersion 1, then 5); the first watch expires (410), the second deletes `b`."""

    def __init__(self, api_client: Any) -> None:
        self.lists = iter([{"items": [{"metadata": {"name": "a"}}], "metadata": {"resourceVersion": "1"}},
                           {"items": [{"metadata": {"name": "b"}}], "metadata": {"resourceVersion": "5"}}])

    def list_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return next(self.lists)


def test_the_watcher_lists_watches_and_lists_again_when_the_watch_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client, watch  # noqa: PLC0415

    seen: list[tuple[str, bool]] = []
    versions: list[str] = []
    watcher: ObjectWatcher

    class FakeWatch:
        def stream(self, _list: Any, *args: Any, resource_version: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
            versions.append(resource_version)
            if resource_version == "1":
                yield {"type": "ADDED", "object": {"metadata": {"name": "c", "resourceVersion": "2"}}}
                yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "3"}}}
                yield {"type": "ERROR", "object": {"code": 410, "message": "too old"}}
            else:
                watcher.stopped.set()
                yield {"type": "DELETED", "object": {"metadata": {"name": "b", "resourceVersion": "6"}}}

    monkeypatch.setattr(client, "CustomObjectsApi", FakeApi)
    monkeypatch.setattr(watch, "Watch", FakeWatch)
    watcher = ObjectWatcher(None, "ns", lambda obj, _at, deleted: seen.append((obj["metadata"]["name"], deleted)),
                            ("g", "v1", "things"))
    assert watcher.name == "watch-things-ns"
    thread = threading.Thread(target=watcher.run)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert seen == [("a", False), ("c", False), ("b", False), ("b", True)]
    assert versions == ["1", "5"]
    assert watcher.errors == []


def test_a_process_is_stopped_with_sigterm_and_killed_when_it_ignores_it() -> None:
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stop_process(polite)
    assert polite.returncode == -15
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, sys, time\n"
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True)\n"
                                 "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert stubborn.stdout is not None and stubborn.stdout.readline().strip() == "ready"
    stop_process(stubborn, timeout=0.2)
    assert stubborn.returncode == -9
    stop_process(stubborn)  # gone already: nothing to do
    stop_process(None)


def test_the_in_process_benches_size_their_run_from_the_options() -> None:
    assert in_process_options("bench.x", "doc", []) == (1000, 1)
    assert in_process_options("bench.x", "doc", ["--quick", "--seed", "3"]) == (200, 3)
    assert in_process_options("bench.x", "doc", ["--objects", "7", "--quick"]) == (7, 1)


def test_watches_are_counted_apart_whether_params_are_a_dict_or_pairs() -> None:
    """The operator's informer passes (key, value) pairs: its watches were counted as GETs (idle figures 10% high)."""
    assert is_watch({"watch": "true"}) and is_watch([("labelSelector", "a=b"), ("watch", "1")])
    assert not is_watch([("labelSelector", "a=b"), ("limit", "500")]) and not is_watch(None)
