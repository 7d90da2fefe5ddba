"""Helpers for tests that install the Helm chart on the real local stack (helm binary, kubectl, namespaces)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from e2e.stack import CACHE, REPO, StackContext, load_versions

CHART = REPO / "charts" / "modelship"


def helm_path() -> Path:
    """Where e2e/stack/build-helm.sh caches helm: ``<cache>/bin/helm-<version>/helm``."""
    return CACHE / "bin" / f"helm-{load_versions()['HELM_VERSION']}" / "helm"


def run(*argv: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], input=stdin, capture_output=True, text=True, timeout=300, check=False
    )


def render(helm: Path, values: Path | None, namespace: str, *extra: str) -> str:
    args: list[str | Path] = [
        helm,
        "template",
        "modelship",
        CHART,
        "--namespace",
        namespace,
        "--include-crds",
    ]
    if values:
        args += ["-f", values]
    proc = run(*args, *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def kubectl(stack: StackContext, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run(stack.kubectl, f"--kubeconfig={stack.kubeconfig}", *args, stdin=stdin)


def ensure_namespace(
    stack: StackContext, made: list[str], name: str, labels: dict[str, str] | None = None
) -> str:
    """The namespace, live: one an earlier test deleted (`--wait=false`) and is still terminating is waited out."""
    if kubectl(stack, "get", "namespace", name, "-o", "jsonpath={.status.phase}").stdout == "Terminating":
        gone = kubectl(stack, "wait", "--for=delete", f"namespace/{name}", "--timeout=120s")
        assert gone.returncode == 0, f"namespace {name} still terminating: {gone.stderr}"
    proc = kubectl(stack, "create", "namespace", name)
    if proc.returncode == 0:
        made.append(name)
    else:
        assert "AlreadyExists" in proc.stderr, proc.stderr
    for key, value in (labels or {}).items():
        kubectl(stack, "label", "--overwrite", "namespace", name, f"{key}={value}")
    return name


def sa_of(stack: StackContext, release_ns: str) -> str:
    out = kubectl(stack, "get", "serviceaccounts", "-n", release_ns, "-o", "name")
    names = [n.split("/", 1)[1] for n in out.stdout.split() if "modelship" in n]
    assert len(names) == 1, out.stdout
    return f"system:serviceaccount:{release_ns}:{names[0]}"
