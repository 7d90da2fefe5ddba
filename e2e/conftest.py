"""Fixtures for end-to-end scenarios: a namespace per scenario, an operator process scoped to it,
traffic that follows the real route, and live fault injection into the real Triton pods.

Each scenario runs its own operator watching only its own namespace, so a scenario that SIGKILLs the
operator or stops Prometheus cannot disturb another one.
"""

from __future__ import annotations

import fcntl
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from e2e.harness import Kubectl, OperatorProcess
from e2e.stack import REPO, StackContext, dataplane
from e2e.stack.traffic import TrafficGenerator, from_kubeconfig

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def kubectl(stack: StackContext) -> Kubectl:
    """kubectl against the real API server, with the project CRD and the modelship-requester admission
    policy installed from crds/ (scenarios record approvers as verified only while that policy is in force)."""
    k = Kubectl(stack)
    k.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "modeldeployments.yaml"))
    k.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "requester-policy.yaml"))
    k.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "comparator-clusterrole.yaml"))
    k.run("wait", "--for=condition=Established", "crd/modeldeployments.modelship.dev", "--timeout=30s")
    return k


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per scenario, deleted afterwards (garbage collection removes the rest)."""
    prefix = "e2e-" + request.node.name.removeprefix("test_")[:20].replace("_", "-").strip("-")
    ns = kubectl.create_namespace(prefix)
    yield ns
    kubectl.delete_namespace(ns)
    release_finalizers(kubectl, ns)


def release_finalizers(kubectl: Kubectl, namespace: str) -> None:
    """Let a finished scenario's namespace go: its operator stopped first (fixtures tear down in reverse), so
    nothing would remove kopf's finalizer from its ModelDeployments and the namespace, with its Triton pods,
    would stay Terminating for good. Owner references then garbage-collect the rest."""
    listed = kubectl.run("get", "modeldeployments", "-n", namespace, "-o", "name", check=False)
    for name in listed.stdout.split():
        kubectl.run("patch", name, "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
                    check=False)


class OperatorFactory:
    """Starts `modelship run --namespace NS` processes and stops them at the end of the scenario."""

    def __init__(self, stack: StackContext) -> None:
        self.stack = stack
        self.started: list[OperatorProcess] = []

    def __call__(self, namespace: str, **env: str) -> OperatorProcess:
        op = ScopedOperator(self.stack, extra_env=dict(env), namespace=namespace)
        op.start()
        self.started.append(op)
        return op

    def stop_all(self) -> None:
        for op in self.started:
            op.kill(signal.SIGTERM)


class ScopedOperator(OperatorProcess):
    """An operator process that watches one namespace only."""

    def __init__(self, stack: StackContext, extra_env: dict[str, str], namespace: str) -> None:
        super().__init__(stack, extra_env=extra_env)
        self.namespace = namespace

    def scope(self) -> list[str]:
        return ["--namespace", self.namespace]


@pytest.fixture
def operator(stack: StackContext, request: pytest.FixtureRequest) -> Iterator[OperatorFactory]:
    """`operator(namespace)` starts a scoped operator; its log tail is printed if the scenario fails."""
    factory = OperatorFactory(stack)
    yield factory
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for op in factory.started:
            print(f"--- operator log {op.log_path} ---\n{op.tail(60)}")
    factory.stop_all()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def traffic(stack: StackContext) -> Iterator[Callable[..., TrafficGenerator]]:
    """`traffic(namespace, name, rps=...)` sends steady requests along the live route until the test ends:
    through the stack's gateway (Traefik) for an HTTPRoute attached to it, the generator's own split otherwise."""
    running: list[TrafficGenerator] = []

    def start(namespace: str, name: str, rps: float = 25.0, duration: float = 600.0) -> TrafficGenerator:
        gen = from_kubeconfig(stack.kubeconfig, namespace, name, stack_env=stack.env, rps=rps,
                              duration=duration).start()
        running.append(gen)
        return gen

    yield start
    for gen in running:
        gen.stop()


@contextmanager
def _fault_file_lock(stack: StackContext) -> Iterator[None]:
    """Serialise read-modify-write of the shared live fault file between concurrent scenarios."""
    lock = dataplane.fault_file(stack.stack_dir).with_suffix(".lock")
    with lock.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _replace_own_rules(stack: StackContext, old: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    """Swap this scenario's rules in the shared fault file, leaving other scenarios' rules in place."""
    with _fault_file_lock(stack):
        try:
            current = json.loads(dataplane.fault_file(stack.stack_dir).read_text() or "{}")
        except (OSError, ValueError):
            current = {}
        rules = current.get("rules") if isinstance(current, dict) else None
        others = [r for r in (rules or []) if r not in old]
        dataplane.set_faults(stack.stack_dir, others + new)


@pytest.fixture
def faults(stack: StackContext) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """`faults([{"match": {"namespace": ns, "version": "3"}, "latency_ms": 300}])` flips live Triton faults.

    The fault file is shared by every scenario running on the stack: each call replaces only the rules this
    scenario set before (others' rules stay), and the scenario's rules are removed when it ends. Scope rules
    with `match.namespace`, since a rule without it applies to every scenario's pods.
    """
    mine: list[dict[str, Any]] = []

    def set_rules(rules: list[dict[str, Any]]) -> None:
        nonlocal mine
        new = [dict(r) for r in rules]
        _replace_own_rules(stack, mine, new)
        mine = new

    yield set_rules
    if mine:
        _replace_own_rules(stack, mine, [])


@contextmanager
def printed_figures(title: str) -> Iterator[dict[str, Any]]:
    """Collect the figures a scenario measured and print them (pytest -s or the junit log shows them)."""
    figures: dict[str, Any] = {}
    yield figures
    print(f"\n[{title}] " + json.dumps(figures, default=str))


class GpuPool:
    """Fake GPU nodes reserved for one scenario: tainted and labelled with its namespace, so GPU arithmetic
    (who fits where, what stays Pending) is not disturbed by other scenarios sharing the stack's nodes."""

    def __init__(self, kubectl: Kubectl, namespace: str) -> None:
        self.kubectl, self.namespace = kubectl, namespace
        self.nodes: list[str] = []

    @property
    def placement(self) -> dict[str, Any]:
        """`serving` fields that put a revision's pods on this pool only."""
        return {
            "nodeSelector": {POOL_LABEL: self.namespace},
            "tolerations": [{"key": POOL_LABEL, "operator": "Equal", "value": self.namespace,
                             "effect": "NoSchedule"}],
        }

    def create(self, count: int, gpus: int) -> GpuPool:
        nodes = json.loads(self.kubectl.run("get", "nodes", "-o", "json").stdout)["items"]
        used = {int(c.split(".")[2]) for n in nodes for c in (n.get("spec") or {}).get("podCIDRs") or []}
        free = [i for i in range(100, 240) if i not in used]
        start = (hash(self.namespace) % len(free)) if free else 0
        octets = (free[start:] + free[:start])[:count]
        assert len(octets) == count, "no free pod CIDR left for a scenario GPU pool"
        items = []
        for k, octet in enumerate(octets):
            name = f"{self.namespace}-gpu-{k}"
            cidr = f"10.77.{octet}.0/24"
            capacity = {"cpu": "16", "memory": "64Gi", "pods": "110", "nvidia.com/gpu": str(gpus)}
            items.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                               "kubernetes.io/arch": "amd64", POOL_LABEL: self.namespace},
                },
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr],
                         "taints": [{"key": POOL_LABEL, "value": self.namespace, "effect": "NoSchedule"}]},
                "status": {"capacity": capacity, "allocatable": capacity,
                           "addresses": [{"type": "InternalIP", "address": f"10.77.251.{octet}"},
                                         {"type": "Hostname", "address": name}]},
            })
            self.nodes.append(name)
        self.kubectl.run("create", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                     "items": items}))
        self.kubectl.run("wait", "--for=condition=Ready", *[f"node/{n}" for n in self.nodes], "--timeout=60s")
        return self

    def delete(self) -> None:
        if self.nodes:
            self.kubectl.run("delete", "node", *self.nodes, "--wait=false", check=False)


POOL_LABEL = "modelship.dev/e2e-pool"


@pytest.fixture
def gpu_pool(kubectl: Kubectl) -> Iterator[Callable[[str, int, int], GpuPool]]:
    """`gpu_pool(namespace, nodes, gpus_per_node)`: dedicated tainted kwok nodes, deleted after the scenario."""
    pools: list[GpuPool] = []

    def create(namespace: str, count: int = 2, gpus: int = 4) -> GpuPool:
        pool = GpuPool(kubectl, namespace).create(count, gpus)
        pools.append(pool)
        return pool

    yield create
    for pool in pools:
        pool.delete()
