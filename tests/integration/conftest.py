"""Fixtures for the integration tests: a module's scratch namespace; for the chart tests the pinned helm binary,
throwaway namespaces and a real chart install."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from chart_support import CHART, ensure_namespace, helm_path, kubectl, run

from e2e.stack import HERE, StackContext


@pytest.fixture(scope="session")
def helm() -> Path:
    """The pinned helm binary; built once from the Go module proxy when it is not cached yet."""
    path = helm_path()
    if not path.exists():
        proc = subprocess.run(
            ["bash", str(HERE / "build-helm.sh")], capture_output=True, text=True, timeout=1800, check=False
        )
        if proc.returncode != 0 or not path.exists():
            pytest.skip(f"helm could not be built (e2e/stack/build-helm.sh): {proc.stderr.strip()[-500:]}")
    return path


@pytest.fixture(scope="module")
def namespace(stack: StackContext, request: pytest.FixtureRequest) -> Iterator[str]:
    """One empty namespace for a test module, named after it (`test_kube_adapters` -> `kube-adapters-1a2b3c4d`);
    deleted without waiting afterwards. Modules that need more in it (a CRD, a policy) define their own."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")
    ns = f"{prefix[:40]}-{uuid.uuid4().hex[:8]}"
    stack.run_kubectl("create", "namespace", ns)
    yield ns
    stack.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
def namespaces(stack: StackContext) -> Iterator[list[str]]:
    """Namespaces created for one test (by name, appended by the test); deleted afterwards."""
    made: list[str] = []
    yield made
    for ns in made:
        kubectl(stack, "delete", "namespace", ns, "--wait=false", "--ignore-not-found")


@pytest.fixture
def installed(helm: Path, stack: StackContext, namespaces: list[str]) -> Iterator[dict[str, object]]:
    """Install the chart for real (``helm install``, operator at 0 replicas) in the requested mode."""
    releases: list[tuple[str, str]] = []

    def install(watch: list[str] | None = None, auth_secret: str = "") -> str:
        suffix = uuid.uuid4().hex[:6]
        release_ns = ensure_namespace(stack, namespaces, f"chart-rbac-{suffix}")
        for ns in watch or []:
            ensure_namespace(stack, namespaces, ns)
        args: list[str | Path] = [
            helm,
            "install",
            f"ms-{suffix}",
            CHART,
            "--namespace",
            release_ns,
            f"--kubeconfig={stack.kubeconfig}",
            "--skip-crds",  # the CRD is the dry-run test's; leave the shared cluster's CRD alone
            # and its requester policy (cluster-wide, one per cluster: the stack installed it from crds/)
            "--set",
            "requesterPolicy.enabled=false",
            "--set",
            "replicaCount=0",
            "--set",
            "prometheus.url=http://127.0.0.1:9090",
        ]
        for i, ns in enumerate(watch or []):
            args += ["--set", f"watchNamespaces[{i}]={ns}"]
        if auth_secret:
            args += ["--set", f"prometheus.auth.existingSecret={auth_secret}"]
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
        releases.append((f"ms-{suffix}", release_ns))
        return release_ns

    yield {"install": install}
    for release, ns in releases:
        run(helm, "uninstall", release, "--namespace", ns, f"--kubeconfig={stack.kubeconfig}", "--wait")
