"""`modelship`: run the operator, or print what it generates (CRD YAML, API reference).

    modelship crds                  # the ModelDeployment CRD, to kubectl apply or to ship in the chart
    modelship docs                  # the API reference in Markdown
    modelship policy                # the admission policy that verifies who sent a manual request
    modelship comparator-role       # the ClusterRole every shadow comparator is bound to
    modelship validate FILE...      # check manifests as the operator would (field paths and fixes)
    modelship run [--namespace NS ... | --all-namespaces] [--liveness URL] [--verbose]
    modelship compare --namespace NS --deployment NAME   # the shadow comparator (the operator deploys it)
    modelship dashboard [--namespace NS ...] [--actions read-only|impersonate]   # the web dashboard in a pod

kopf and the handlers are imported only by `run`, so the generators work without a cluster or kopf.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelship.adapters.comparator_objects import cluster_role
from modelship.comparator.main import add_arguments as add_compare_arguments
from modelship.comparator.main import run as run_comparator
from modelship.dashboard.incluster import add_arguments as add_dashboard_arguments
from modelship.dashboard.incluster import run as run_dashboard
from modelship.domain.admission import policy_yaml
from modelship.domain.api import API_VERSION, KIND
from modelship.domain.crd import crd_yaml
from modelship.domain.reference import reference_markdown
from modelship.domain.validation import check_manifest

DEFAULT_LIVENESS = "http://0.0.0.0:8081/healthz"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelship", description="Kubernetes operator that rolls out Triton model versions safely."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("crds", help="print the ModelDeployment CustomResourceDefinition (YAML)")
    sub.add_parser("docs", help="print the API reference (Markdown)")
    sub.add_parser("policy", help="print the modelship-requester ValidatingAdmissionPolicy and binding (YAML)")
    sub.add_parser("comparator-role", help="print the modelship-comparator ClusterRole (YAML)")
    check = sub.add_parser("validate", help="check ModelDeployment manifests (YAML files, '-' for stdin)")
    check.add_argument("files", nargs="+", metavar="FILE")
    run = sub.add_parser("run", help="run the operator")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch this namespace (repeatable; glob patterns as in kopf); default: all namespaces",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument(
        "--liveness",
        default=DEFAULT_LIVENESS,
        metavar="URL",
        help=f"liveness endpoint served by kopf, '' to disable (default {DEFAULT_LIVENESS})",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    compare = sub.add_parser("compare", help="run the shadow output comparator of one ModelDeployment")
    add_compare_arguments(compare)
    web = sub.add_parser("dashboard", help="serve the web dashboard in the cluster (read-only, or acting as the "
                                           "viewer an authenticating proxy names)")
    add_dashboard_arguments(web)
    return parser


def _load_manifests(name: str) -> list[tuple[str, Any]]:
    text = sys.stdin.read() if name == "-" else Path(name).read_text()
    return [(f"{name}#{i}", doc) for i, doc in enumerate(yaml.safe_load_all(text)) if doc is not None]


def _validate(files: Sequence[str]) -> int:
    failed = 0
    for name in files:
        for where, doc in _load_manifests(name):
            if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("apiVersion") != API_VERSION:
                continue
            problems = check_manifest(doc)
            label = f"{where} ({doc.get('metadata', {}).get('name', '?')})"
            if problems:
                failed += 1
                print(f"{label}: invalid")
                for problem in problems:
                    print(f"  - {problem}")
            else:
                print(f"{label}: ok")
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> int:  # pragma: no cover - needs a cluster; exercised by e2e
    import kopf  # noqa: PLC0415  (only `run` needs kopf)

    import modelship.handlers  # noqa: F401, PLC0415  (registers the handlers with kopf)

    kopf.configure(verbose=args.verbose)
    namespaces: list[str] = list(args.namespace)
    # Settings (lease name, lease namespace) read the watched namespaces from the environment.
    os.environ["MODELSHIP_NAMESPACES"] = ",".join(namespaces)
    # standalone: kopf's peering pauses operators that see each other; Lease election (controller/wiring.py)
    # decides which replica writes, and standbys keep their watch caches warm.
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
        standalone=True,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "crds":
        sys.stdout.write(crd_yaml())
        return 0
    if args.command == "docs":
        sys.stdout.write(reference_markdown())
        return 0
    if args.command == "policy":
        sys.stdout.write(policy_yaml())
        return 0
    if args.command == "comparator-role":
        sys.stdout.write(yaml.safe_dump(cluster_role(), sort_keys=False))
        return 0
    if args.command == "validate":
        return _validate(args.files)
    if args.command == "compare":
        return run_comparator(args)
    if args.command == "dashboard":
        return run_dashboard(args)
    return _run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
