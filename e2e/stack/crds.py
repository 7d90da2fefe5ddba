"""Ecosystem CRDs (Gateway API, Istio, Prometheus Operator) and the project's own CRDs.

Why from Go modules: the CRD YAML ships inside each project's Go module, and the Go module proxy is
reachable here while GitHub is not. Files are cached next to the binaries, keyed by version, so a
warm start needs no network. Several CRDs exceed the 256 KiB last-applied annotation limit, hence
``kubectl apply --server-side``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from e2e.stack import CACHE, REPO, StackContext, load_versions
from e2e.stack.controlplane import StackError

# (cache key, Go module, version key in versions.env, files inside the module)
SOURCES: list[tuple[str, str, str, list[str]]] = [
    (
        "gateway-api",
        "sigs.k8s.io/gateway-api",
        "GATEWAY_API_VERSION",
        [
            f"config/crd/experimental/gateway.networking.k8s.io_{k}.yaml"
            for k in ("gatewayclasses", "gateways", "httproutes", "grpcroutes", "referencegrants")
        ],
    ),
    ("istio", "istio.io/api", "ISTIO_API_VERSION", ["kubernetes/customresourcedefinitions.gen.yaml"]),
    (
        "prometheus-operator",
        "github.com/prometheus-operator/prometheus-operator",
        "PROMETHEUS_OPERATOR_VERSION",
        [
            f"example/prometheus-operator-crd/monitoring.coreos.com_{k}.yaml"
            for k in ("servicemonitors", "podmonitors", "prometheusrules", "probes")
        ],
    ),
]


def _go() -> str:
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if not go:
        raise StackError("ecosystem CRDs are not cached and the Go toolchain (to fetch them) is missing")
    return go


def fetch(key: str, module: str, version: str, files: list[str]) -> list[Path]:
    """Return cached copies of ``files`` from ``module@version``, downloading the module once."""
    dest = CACHE / "crds" / f"{key}-{version}"
    if not (dest / "done").exists():
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"}
        with tempfile.TemporaryDirectory() as tmp:  # outside any go.mod
            proc = subprocess.run(
                [_go(), "mod", "download", "-json", f"{module}@{version}"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
        if proc.returncode != 0:
            raise StackError(f"go mod download {module}@{version} failed: {proc.stderr or proc.stdout}")
        src = Path(json.loads(proc.stdout)["Dir"])
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(src / f, dest / Path(f).name)
        (dest / "done").write_text("ok\n")
    return [dest / Path(f).name for f in files]


def ecosystem_files() -> list[Path]:
    """Every ecosystem CRD file, fetched into the cache if needed."""
    versions = load_versions()
    return [p for key, mod, vkey, files in SOURCES for p in fetch(key, mod, versions[vkey], files)]


def project_files() -> list[Path]:
    """The project's own files (``crds/*.yaml``: the CRD, the requester policy and the comparator ClusterRole,
    ``make generate``)."""
    return sorted((REPO / "crds").glob("*.yaml"))


def _apply(ctx: StackContext, files: list[Path]) -> None:
    args = ["apply", "--server-side", "--force-conflicts", "--field-manager=modelship-stack"]
    for f in files:
        args += ["-f", str(f)]
    ctx.run_kubectl(*args)


def install(ctx: StackContext) -> tuple[list[Path], list[str]]:
    """Server-side apply all CRDs and wait until the API server serves them; return files and warnings.

    The ecosystem CRDs must apply. The project's own CRDs are applied on their own: if the API server
    rejects them (a bug in the generator), the cluster still comes up and the rejection is reported,
    so one bad schema does not take the whole stack away from everyone.
    """
    files, warnings = ecosystem_files(), []
    _apply(ctx, files)
    for project_file in project_files():  # each on its own: a rejected CRD must not keep the policy out
        try:
            _apply(ctx, [project_file])
            files.append(project_file)
        except RuntimeError as exc:
            warnings.append(f"project file {project_file.name} rejected by the API server: {exc}")
    ctx.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
    return files, warnings
