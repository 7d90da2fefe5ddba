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
    """kubectl against the real API server, with the project CRD installed from crds/."""
    k = Kubectl(stack)
    k.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "modeldeployments.yaml"))
    k.run("wait", "--for=condition=Established", "crd/modeldeployments.modelship.dev", "--timeout=30s")
    return k


@pytest.fixture
def namespace(kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per scenario, deleted afterwards (garbage collection removes the rest)."""
    prefix = "e2e-" + request.node.name.removeprefix("test_")[:20].replace("_", "-").strip("-")
    ns = kubectl.create_namespace(prefix)
    yield ns
    kubectl.delete_namespace(ns)


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
    """`traffic(namespace, name, rps=...)` sends steady requests along the live route until the test ends."""
    running: list[TrafficGenerator] = []

    def start(namespace: str, name: str, rps: float = 25.0, duration: float = 600.0) -> TrafficGenerator:
        gen = from_kubeconfig(stack.kubeconfig, namespace, name, rps=rps, duration=duration).start()
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
