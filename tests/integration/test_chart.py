"""The Helm chart against the real local API server (e2e/stack) with a real helm binary.

- ``helm lint --strict`` passes with the defaults and every ``ci/`` values file; the values schema
  rejects unknown keys and more than one replica without leader election.
- Every ``ci/`` example renders and is accepted by the API server (``kubectl apply --dry-run=server``:
  CRD, RBAC, ServiceMonitor and PrometheusRule schemas of the installed CRDs, admission), and its
  pod spec passes the ``restricted`` Pod Security Standard.
- RBAC is really installed (``helm install --skip-crds``, operator scaled to 0) and probed with
  ``kubectl auth can-i --as=system:serviceaccount:...``: what the operator needs is granted, the rest
  (Secrets, nodes, pod writes, ModelDeployment create/update/delete, RBAC writes, other namespaces in
  namespaced mode) is not. ``test_chart_operator.py`` runs the operator itself with the ServiceAccount's token.

RBAC cannot tell ``spec`` from ``metadata``: the operator keeps ``patch`` on modeldeployments for
kopf's finalizer and progress annotations, so "never writes spec" is the code's promise, not RBAC's.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from chart_support import CHART, ensure_namespace, kubectl, render, run, sa_of

from e2e.stack import StackContext

pytestmark = pytest.mark.integration

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
VALUE_SETS = [None, *CI_VALUES]
IDS = ["defaults", *[p.stem for p in CI_VALUES]]


# --- helm only --------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_lint(helm: Path, values: Path | None) -> None:
    proc = run(helm, "lint", "--strict", CHART, *(["-f", values] if values else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [("bogus=1", "additional properties 'bogus' not allowed"),
     ("replicaCount=2,leaderElection.enabled=false", "maximum")],
)
def test_schema_rejects_bad_values(helm: Path, setting: str, message: str) -> None:
    proc = run(helm, "template", "m", CHART, "--set", setting)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_namespaced_mode_grants_nothing_namespaced_cluster_wide(helm: Path) -> None:
    docs = [d for d in yaml.safe_load_all(render(helm, CHART / "ci" / "namespaced-values.yaml", "ops")) if d]
    comparator = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "modelship-comparator"]
    assert [rule["resources"] for rule in comparator[0]["rules"]] == [["endpointslices"]], "bound to comparators"
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole" and d not in comparator]
    assert len(cluster_roles) == 1
    resources = {r for rule in cluster_roles[0]["rules"] for r in rule["resources"]}
    by_name = {"validatingadmissionpolicies", "validatingadmissionpolicybindings"}  # resourceNames-scoped gets
    # Gateways: `get` only, cluster-wide by necessity (a route's Gateway is usually in a platform namespace), to
    # read whether its class can mirror; no list or watch, so nothing is enumerated.
    gateway_rules = [rule for rule in cluster_roles[0]["rules"] if "gateways" in rule["resources"]]
    assert gateway_rules == [{"apiGroups": ["gateway.networking.k8s.io"], "resources": ["gateways", "gatewayclasses"],
                              "verbs": ["get"]}]
    assert resources - by_name == {"customresourcedefinitions", "namespaces", "gateways", "gatewayclasses"}
    roles = {d["metadata"]["namespace"] for d in docs if d["kind"] == "Role"}
    assert roles == {"ml-team-a", "ml-team-b", "ops"}
    in_ops = {d["metadata"]["name"]: {r for rule in d["rules"] for r in rule["resources"]}
              for d in docs if d["kind"] == "Role" and d["metadata"]["namespace"] == "ops"}  # fmt: skip
    assert in_ops == {"modelship-leader-election": {"leases"}, "modelship-notifications": {"secrets"}}, (
        "ops gets the Lease and the operator-level notification Secrets only")
    for doc in docs:
        for rule in doc.get("rules", []):
            assert "*" not in rule["resources"] + rule["verbs"]
            if "secrets" in rule["resources"]:  # notification URLs and keys: get, by name, nothing else
                assert rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                                "resourceNames": ["modelship-notifications"]}, rule


# --- the real API server ----------------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_server_dry_run_accepts_every_example(
    helm: Path, stack: StackContext, namespaces: list[str], values: Path | None
) -> None:
    release_ns = f"chart-dry-{uuid.uuid4().hex[:6]}"
    restricted = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    ensure_namespace(stack, namespaces, release_ns, restricted)
    cfg = yaml.safe_load(values.read_text()) if values else {}
    for ns in cfg.get("watchNamespaces", []):
        ensure_namespace(stack, namespaces, ns)
    manifest = render(helm, values, release_ns)
    kinds = {d["kind"] for d in yaml.safe_load_all(manifest) if d}
    assert {"CustomResourceDefinition", "Deployment", "ServiceAccount", "ClusterRole"} <= kinds
    proc = kubectl(
        stack,
        "apply",
        "--dry-run=server",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelship-chart-test",
        "-f",
        "-",
        stdin=manifest,
    )
    assert proc.returncode == 0, proc.stderr
    assert "violate PodSecurity" not in proc.stderr, proc.stderr
    assert proc.stdout.count("(server dry run)") == manifest.count("\nkind: "), proc.stdout
    if "ServiceMonitor" in kinds:
        assert "servicemonitor.monitoring.coreos.com/" in proc.stdout


def test_a_namespace_left_terminating_by_an_earlier_case_is_waited_for(
    stack: StackContext, namespaces: list[str]
) -> None:
    """Given ml-team-a deleted (not yet gone) by the previous example, when the next example ensures it, then it is
    a live namespace again: CI once failed with "unable to create new content ... because it is being terminated"."""
    name = f"chart-again-{uuid.uuid4().hex[:6]}"
    ensure_namespace(stack, namespaces, name)
    kubectl(stack, "create", "configmap", "keep", "-n", name)  # content: the namespace controller takes a moment
    assert kubectl(stack, "delete", "namespace", name, "--wait=false").returncode == 0

    ensure_namespace(stack, namespaces, name)

    phase = kubectl(stack, "get", "namespace", name, "-o", "jsonpath={.status.phase}")
    assert phase.stdout == "Active", phase.stdout + phase.stderr
    made = kubectl(stack, "create", "configmap", "after", "-n", name)
    assert made.returncode == 0, made.stderr


def test_pod_security_check_would_catch_a_privileged_pod(stack: StackContext, namespaces: list[str]) -> None:
    """Control for the check above: the same dry run warns on a pod spec that breaks `restricted`."""
    ns = ensure_namespace(
        stack,
        namespaces,
        f"chart-psa-{uuid.uuid4().hex[:6]}",
        {"pod-security.kubernetes.io/warn": "restricted"},
    )
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "bad", "namespace": ns},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [{"name": "c", "image": "x:1", "securityContext": {"privileged": True}}]
                },
            },
        },
    }
    proc = kubectl(stack, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad))
    assert "violate PodSecurity" in proc.stderr, proc.stdout + proc.stderr


def can_i(stack: StackContext, sa: str, verb: str, resource: str, *flags: str) -> bool:
    proc = kubectl(stack, "auth", "can-i", verb, resource, f"--as={sa}", *flags)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stdout + proc.stderr
    return answer == "yes"


MDEP = "modeldeployments.modelship.dev"
LEASES = "leases.coordination.k8s.io"
LEASE_VERBS = ("get", "create", "update")
NEEDED = [  # (verb, resource, extra flags) the operator must have in a watched namespace
    ("watch", MDEP, ()),
    ("patch", MDEP, ()),
    ("patch", MDEP, ("--subresource=status",)),
    ("get", MDEP, ()),
    ("create", "deployments.apps", ()),
    ("delete", "deployments.apps", ()),
    ("watch", "deployments.apps", ()),
    ("list", "replicasets.apps", ()),
    ("watch", "replicasets.apps", ()),
    ("create", "services", ()),
    ("watch", "services", ()),
    ("list", "pods", ()),
    ("watch", "pods", ()),
    ("patch", "httproutes.gateway.networking.k8s.io", ()),
    ("watch", "httproutes.gateway.networking.k8s.io", ()),
    ("watch", "virtualservices.networking.istio.io", ()),
    ("create", "virtualservices.networking.istio.io", ()),
    ("create", "events", ()),
    # the shadow comparator's Service, ServiceAccount and RoleBinding (to modelship-comparator only)
    ("delete", "services", ()),
    ("create", "serviceaccounts", ()),
    ("delete", "serviceaccounts", ()),
    ("create", "rolebindings.rbac.authorization.k8s.io", ()),
]
DENIED = [  # never, in any namespace
    ("get", "secrets", ()),
    ("list", "secrets", ()),
    ("create", "pods", ()),
    ("delete", "pods", ()),
    ("patch", "pods", ()),
    ("create", MDEP, ()),
    ("update", MDEP, ()),
    ("delete", MDEP, ()),
    ("bind", "clusterroles.rbac.authorization.k8s.io/admin", ()),
    ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin", ()),
    ("create", "roles.rbac.authorization.k8s.io", ()),
    ("escalate", "roles.rbac.authorization.k8s.io", ()),
    ("get", "configmaps", ()),
    ("create", "serviceaccounts", ("--subresource=token",)),  # TokenRequest: never (its own SAs or others)
    # verbs the code never uses (tests/unit/test_rbac.py derives the grants from every adapter call)
    ("update", "deployments.apps", ()),
    ("get", "pods", ()),
    ("update", "services", ()),
    ("update", "httproutes.gateway.networking.k8s.io", ()),
    ("patch", "events", ()),
    ("create", "events.events.k8s.io", ()),
    ("update", MDEP, ("--subresource=status",)),
]
CLUSTER_DENIED = [
    ("get", "secrets", ("-A",)),
    ("list", "secrets", ("-A",)),
    ("delete", "nodes", ()),
    ("patch", "nodes", ()),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ()),
    ("escalate", "clusterroles", ()),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ()),
    ("impersonate", "serviceaccounts", ("-A",)),
    ("delete", "namespaces", ()),
]


def test_cluster_mode_rbac(stack: StackContext, installed: dict[str, object], namespaces: list[str]) -> None:
    release_ns = installed["install"]()  # type: ignore[operator]
    sa = sa_of(stack, release_ns)
    elsewhere = ensure_namespace(stack, namespaces, f"chart-any-{uuid.uuid4().hex[:6]}")
    for verb, resource, flags in NEEDED:
        assert can_i(stack, sa, verb, resource, "-n", elsewhere, *flags), f"cannot {verb} {resource} {flags}"
    assert can_i(stack, sa, "watch", MDEP, "-A")
    assert can_i(stack, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert can_i(stack, sa, "get", "namespaces"), "the per-namespace Prometheus URL annotation is read with get"
    assert not can_i(stack, sa, "list", "namespaces"), "cluster-wide kopf scans no namespaces"
    policies = "validatingadmissionpolicies.admissionregistration.k8s.io"
    assert can_i(stack, sa, "get", f"{policies}/modelship-requester"), "is the requester policy in force?"
    assert not can_i(stack, sa, "get", f"{policies}/someone-elses"), "only the requester policy is readable"
    for verb, resource, flags in DENIED:
        for ns in (elsewhere, release_ns):
            assert not can_i(stack, sa, verb, resource, "-n", ns, *flags), f"can {verb} {resource} in {ns}"
    for verb, resource, flags in CLUSTER_DENIED:
        assert not can_i(stack, sa, verb, resource, *flags), f"can {verb} {resource} {flags}"
    assert_comparator_bind(stack, sa, elsewhere)
    assert_lease_grants(stack, sa, release_ns, elsewhere)
    assert_notification_secrets(stack, sa, [elsewhere, release_ns])


def assert_notification_secrets(stack: StackContext, sa: str, namespaces: list[str]) -> None:
    """Notifications: `get` on the Secret named in notifications.secretNames, in these namespaces; no other."""
    for ns in namespaces:
        assert can_i(stack, sa, "get", "secrets/modelship-notifications", "-n", ns), f"cannot read it in {ns}"
        assert not can_i(stack, sa, "get", "secrets/someone-elses", "-n", ns), f"can read another in {ns}"
        assert not can_i(stack, sa, "list", "secrets", "-n", ns), f"can list Secrets in {ns}"


def assert_comparator_bind(stack: StackContext, sa: str, namespace: str) -> None:
    """`bind` on this release's comparator ClusterRole only (another release's, or any other role: no)."""
    own = f"clusterroles.rbac.authorization.k8s.io/{sa.rsplit(':', 1)[1]}-comparator"
    assert can_i(stack, sa, "bind", own, "-n", namespace), f"cannot bind {own} in {namespace}"
    for other in ("modelship-comparator", "other-release-modelship-comparator", "edit"):
        role = f"clusterroles.rbac.authorization.k8s.io/{other}"
        assert not can_i(stack, sa, "bind", role, "-n", namespace), f"can bind {role} in {namespace}"


def assert_lease_grants(stack: StackContext, sa: str, release_ns: str, elsewhere: str) -> None:
    """Leader election: get/create/update on Leases in the release namespace, nothing more, nowhere else."""
    for verb in LEASE_VERBS:
        assert can_i(stack, sa, verb, LEASES, "-n", release_ns), f"cannot {verb} leases in {release_ns}"
        assert not can_i(stack, sa, verb, LEASES, "-n", elsewhere), f"can {verb} leases in {elsewhere}"
    for verb in ("delete", "patch", "list", "watch"):
        assert not can_i(stack, sa, verb, LEASES, "-n", release_ns), f"can {verb} leases in {release_ns}"


def test_namespaced_mode_rbac(
    stack: StackContext, installed: dict[str, object], namespaces: list[str]
) -> None:
    suffix = uuid.uuid4().hex[:6]
    watched = [f"chart-ml-a-{suffix}", f"chart-ml-b-{suffix}"]
    release_ns = installed["install"](watch=watched, auth_secret="prom-token")  # type: ignore[operator]
    kubectl(
        stack, "create", "secret", "generic", "prom-token", "-n", release_ns, "--from-literal=token=t0ken"
    )
    sa = sa_of(stack, release_ns)
    other = ensure_namespace(stack, namespaces, f"chart-other-{suffix}")
    for ns in watched:
        for verb, resource, flags in NEEDED:
            assert can_i(stack, sa, verb, resource, "-n", ns, *flags), (
                f"cannot {verb} {resource} {flags} in {ns}"
            )
    for verb, resource, flags in NEEDED:  # nothing in namespaces it does not watch, nor cluster-wide
        assert not can_i(stack, sa, verb, resource, "-n", other, *flags), f"can {verb} {resource} in {other}"
        assert not can_i(stack, sa, verb, resource, "-A", *flags), f"can {verb} {resource} cluster-wide"
    # kopf's discovery: the only cluster-wide grants.
    assert can_i(stack, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io")
    assert can_i(stack, sa, "list", "namespaces")
    assert can_i(stack, sa, "get", "namespaces"), "the per-namespace Prometheus URL annotation is read with get"
    # The Prometheus token is mounted by the kubelet; the operator cannot read it (nor any Secret but the
    # notification ones, by name).
    assert not can_i(stack, sa, "get", "secrets/prom-token", "-n", release_ns)
    for verb, resource, flags in DENIED:
        for ns in (*watched, release_ns):
            assert not can_i(stack, sa, verb, resource, "-n", ns, *flags), f"can {verb} {resource} in {ns}"
    for verb, resource, flags in CLUSTER_DENIED:
        assert not can_i(stack, sa, verb, resource, *flags), f"can {verb} {resource} {flags}"
    for ns in watched:
        assert_comparator_bind(stack, sa, ns)
    assert_lease_grants(stack, sa, release_ns, other)
    assert_notification_secrets(stack, sa, [*watched, release_ns])
    assert not can_i(stack, sa, "get", "secrets/modelship-notifications", "-n", other)
