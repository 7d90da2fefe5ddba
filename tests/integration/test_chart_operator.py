"""The operator under the chart's RBAC, for real: `modelship run` authenticated as the chart's ServiceAccount.

Why besides ``kubectl auth can-i`` (test_chart.py): can-i probes the verbs someone listed; only a real run
shows the verbs the code and kopf actually use are all granted. The chart is installed (namespaced mode,
operator scaled to 0), the API server issues a token for its ServiceAccount, and a local operator process uses
only that token while it brings up v1 and rolls back a v2 whose output contract breaks (finalizer and status
patches, Deployment/Service/HTTPRoute applies, ReplicaSet and pod lists, Triton checks, Events, the retired
revision's delete, the requester policy and namespace reads).
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from chart_support import kubectl, sa_of

from e2e.harness import Kubectl, OperatorProcess, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.stack import StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(480)]

NAME = "fraud"
PERMISSION_ERRORS = ("forbidden", "Forbidden", " 403", "Unauthorized", " 401")


def token_kubeconfig(stack: StackContext, directory: Path, service_account: str) -> Path:
    """A kubeconfig holding nothing but a token the API server issued for `service_account`."""
    _, _, namespace, name = service_account.split(":")
    token = kubectl(stack, "create", "token", name, "-n", namespace, "--duration=30m")
    assert token.returncode == 0, token.stderr
    path = directory / "operator.kubeconfig"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "stack", "cluster": {"server": stack.server,
                                                   "certificate-authority": str(stack.ca_file)}}],
        "users": [{"name": "operator", "user": {"token": token.stdout.strip()}}],
        "contexts": [{"name": "operator", "context": {"cluster": "stack", "user": "operator"}}],
    }))
    return path


def _kubectl_with(stack: StackContext, config: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run([str(stack.kubectl), f"--kubeconfig={config}", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr


class ChartOperator(OperatorProcess):
    """`modelship run --namespace NS` with the chart ServiceAccount's kubeconfig."""

    namespace: str = ""

    def scope(self) -> list[str]:
        return ["--namespace", self.namespace]


def test_operator_rolls_out_and_back_under_the_chart_rbac(
    stack: StackContext, installed: dict[str, Any], namespaces: list[str], tmp_path: Path
) -> None:
    # Given the chart installed for one watched namespace and a kubeconfig with only its ServiceAccount's token
    watched = f"chart-run-{uuid.uuid4().hex[:6]}"
    release_ns = installed["install"](watch=[watched])
    service_account = sa_of(stack, release_ns)
    config = token_kubeconfig(stack, tmp_path, service_account)
    code, who = _kubectl_with(stack, config, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert (code, who) == (0, service_account), who
    # (control: the token carries the chart's limits, not more)
    for denied in (("get", "secrets", "-n", watched), ("get", "pods", "-n", release_ns)):
        code, out = _kubectl_with(stack, config, *denied)
        assert code != 0 and "forbidden" in out, out

    # When the operator runs with it, v1 is applied, then a v2 whose output contract breaks
    admin = Kubectl(stack)
    # The chart grants the Lease in the release namespace only, as in a cluster (POD_NAMESPACE there)
    operator = ChartOperator(stack, extra_env={"KUBECONFIG": str(config), "MODELSHIP_LEASE_NAMESPACE": release_ns})
    operator.namespace = watched
    operator.start()
    try:
        kw: dict[str, Any] = {"progress_deadline": "30s", "scale_down_delay": "2s",
                              "steps": [{"weight": 20, "duration": "5s"}]}
        admin.apply(model_deployment(NAME, watched, "1", **kw))
        v1 = status_when(admin, watched, "v1 Healthy", lambda s: s.get("phase") == "Healthy", timeout=90,
                         name=NAME)["stableRevision"]["hash"]
        admin.apply(model_deployment(NAME, watched, "2", variant="renamed-output", **kw))
        done = status_when(admin, watched, "v2 RolledBack", lambda s: s.get("phase") == "RolledBack",
                           timeout=120, name=NAME)
        v2 = done["failedRevision"]["hash"]

        def retired() -> bool:
            out = admin.run("get", "deployments", "-n", watched, "-o", "name").stdout
            return f"{NAME}-{v2}" not in out and f"{NAME}-{v1}" in out

        wait_for(f"v2's Deployment {NAME}-{v2} deleted by the operator", retired, timeout=60)
    finally:
        operator.kill()
        # No operator is left to remove its finalizer: release it, so the namespace can go.
        admin.run("patch", "modeldeployment", NAME, "-n", watched, "--type=merge",
                  "-p", '{"metadata":{"finalizers":null}}', check=False)
    log = operator.tail(100000)

    # Then every step went through under the chart's grants: v2 was checked by Triton and rolled back
    rolled = [h for h in done["history"] if h["event"] == "RolledBack" and h["revision"] == v2]
    assert rolled and "contract" in rolled[-1]["reason"].lower(), done["history"]
    assert done["stableRevision"]["hash"] == v1
    events = json.loads(admin.run("get", "events", "-n", watched, "-o", "json").stdout)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"].get("name") == NAME}
    assert "RolledBack" in reasons, reasons
    route = json.loads(admin.run("get", "httproute", NAME, "-n", watched, "-o", "json",
                                 "--show-managed-fields").stdout)
    assert any(m["manager"] == "modelship" for m in route["metadata"]["managedFields"]), route["metadata"]
    # ... and the operator never met a permission error
    refused = [line for line in log.splitlines() if any(word in line for word in PERMISSION_ERRORS)]
    assert not refused, "\n".join(refused[:20])
