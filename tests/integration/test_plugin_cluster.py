"""`kubectl-modelship` as a subprocess against the real local API server (token auth, RBAC on).

Proves: promote writes only the request annotations (generation unchanged), the requester being the caller's
identity from SelfSubjectReview; --wait follows the real watch API until status.lastRequestId confirms; missing objects,
RBAC denials and an unreachable server give one clear line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelship.domain import crd as crd_mod

from e2e.stack import REPO, StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CRD_NAME = "crd/modeldeployments.modelship.dev"
PLUGIN = Path(sys.executable).parent / "kubectl-modelship"
NAME = "fraud-scorer"


def manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"name": "fraud_scorer", "version": "2", "repository": "s3://models/triton"},
            "traffic": {"none": {}},
            "rollout": {"canary": {"steps": [{"weight": 10, "duration": "1m"}, {"approval": {}}]}},
        },
    }


def plugin(kubeconfig: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [str(PLUGIN)] if PLUGIN.exists() else [sys.executable, "-m", "modelship.plugin.main"]
    return subprocess.run(
        [*command, "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def user_kubeconfig(stack: StackContext, directory: Path, user: str, server: str | None = None) -> Path:
    """A kubeconfig for one of the stack's token users (see e2e/stack/controlplane.USERS)."""
    path = directory / f"{user.replace(':', '-')}.kubeconfig"  # the kube client splits paths on ':'
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": server or stack.server,
                            "certificate-authority": str(stack.ca_file),
                        },
                    }
                ],
                "users": [{"name": user, "user": {"token": stack.tokens[user]}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": user}}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def namespace(stack: StackContext) -> Iterator[str]:
    """A namespace with the CRD installed and one ModelDeployment."""
    if not stack.run_kubectl("get", CRD_NAME, "--ignore-not-found", "-o", "name").strip():
        crd_file = REPO / "crds" / "modeldeployments.yaml"
        crd_text = crd_file.read_text() if crd_file.exists() else json.dumps(crd_mod.crd())
        stack.run_kubectl("apply", "--server-side", "--field-manager=modelship-stack", "-f", "-", stdin=crd_text)
        stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", CRD_NAME)
    ns = f"plugin-{uuid.uuid4().hex[:8]}"
    stack.run_kubectl("create", "namespace", ns)
    stack.run_kubectl("apply", "-f", "-", stdin=json.dumps(manifest(ns)))
    yield ns
    stack.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def operator_running(stack: StackContext, namespace: str, wait_s: float = 5) -> bool:
    """Whether a modelship operator on the shared stack handles the object (kopf marks what it manages)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        obj = get(stack, namespace)
        if "modelship.dev/kopf-managed" in (obj["metadata"].get("annotations") or {}) or obj.get("status"):
            return True
        time.sleep(0.5)
    return False


def get(stack: StackContext, namespace: str) -> dict[str, Any]:
    text = stack.run_kubectl("get", "modeldeployment", NAME, "-n", namespace, "-o", "json", "--show-managed-fields")
    result: dict[str, Any] = json.loads(text)
    return result


def test_promote_writes_the_annotation_with_the_callers_identity(stack: StackContext, namespace: str) -> None:
    before = get(stack, namespace)
    result = plugin(stack.kubeconfig, "promote", NAME, "-n", namespace, "--force", "--no-wait")
    assert result.returncode == 0, result.stderr
    after = get(stack, namespace)
    request = json.loads(after["metadata"]["annotations"]["modelship.dev/request"])
    assert request["action"] == "promote"
    assert after["metadata"]["annotations"]["modelship.dev/requested-by"] == "admin"  # SelfSubjectReview's username
    assert uuid.UUID(request["id"]).version == 4 and request["at"].endswith("Z")
    assert f"requested promote of modeldeployment {namespace}/{NAME} as admin" in result.stdout
    assert after["metadata"]["generation"] == before["metadata"]["generation"]  # spec untouched
    assert after["spec"] == before["spec"]
    managers = {m["manager"] for m in after["metadata"]["managedFields"]}
    assert "kubectl-modelship" in managers


def test_wait_follows_the_watch_until_the_operator_confirms(stack: StackContext, namespace: str) -> None:
    """The plugin waits on the real watch API until status.lastRequestId carries its id: confirmed by the real
    operator when one runs on the shared stack, else by a stand-in that patches status as the operator would."""
    if operator_running(stack, namespace):
        # First revision, no canary: the engine records a pause as ignored, and the plugin must say so.
        result = plugin(stack.kubeconfig, "pause", NAME, "-n", namespace, "--force", "--timeout", "90", timeout=120)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "error: the operator ignored the request: pause by admin ignored" in result.stderr
        return
    stop = threading.Event()

    def fake_operator() -> None:
        while not stop.is_set():
            obj = get(stack, namespace)
            raw = (obj["metadata"].get("annotations") or {}).get("modelship.dev/request")
            request = json.loads(raw) if raw else None
            if (
                request
                and request["action"] == "pause"
                and (obj.get("status") or {}).get("lastRequestId") != request["id"]
            ):
                patch = {
                    "status": {
                        "lastRequestId": request["id"],
                        "paused": True,
                        "phase": "Paused",
                        "message": "paused by admin",
                    }
                }
                stack.run_kubectl(
                    "patch",
                    "modeldeployment",
                    NAME,
                    "-n",
                    namespace,
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    json.dumps(patch),
                )
                return
            time.sleep(0.3)

    worker = threading.Thread(target=fake_operator, daemon=True)
    worker.start()
    try:
        result = plugin(stack.kubeconfig, "pause", NAME, "-n", namespace, "--force", "--timeout", "30")
    finally:
        stop.set()
        worker.join(timeout=5)
    assert result.returncode == 0, result.stderr
    assert "done: phase Paused" in result.stdout and "paused by admin" in result.stdout
    status = plugin(stack.kubeconfig, "status", NAME, "-n", namespace)
    assert status.returncode == 0 and "Phase:       Paused" in status.stdout
    assert f"kubectl modelship resume {NAME} -n {namespace}" in status.stdout


def test_get_lists_the_deployment(stack: StackContext, namespace: str) -> None:
    result = plugin(stack.kubeconfig, "get", "-n", namespace)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split()[:3] == ["NAME", "MODEL", "DESIRED"]
    assert row.split()[:3] == [NAME, "fraud_scorer", "2"]


def test_missing_resource_is_one_clear_line(stack: StackContext, namespace: str) -> None:
    result = plugin(stack.kubeconfig, "status", "nope", "-n", namespace)
    assert result.returncode == 1 and result.stdout == ""
    expected = f"modeldeployment {namespace}/nope not found; list them with kubectl modelship get -n {namespace}"
    assert result.stderr == f"error: {expected}\n"


def test_rbac_denial_names_the_missing_verb(stack: StackContext, namespace: str, tmp_path: Path) -> None:
    nobody = user_kubeconfig(stack, tmp_path, "nobody")
    result = plugin(nobody, "get", "-n", namespace)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(
        f"error: forbidden: you may not list modeldeployments.modelship.dev in namespace {namespace}"
    )
    assert f"kubectl auth can-i list modeldeployments.modelship.dev -n {namespace}" in result.stderr

    # Read-only rights: status works, a command is refused at the patch, and says so.
    stack.run_kubectl(
        "create",
        "role",
        "mdep-reader",
        "-n",
        namespace,
        "--verb=get,list,watch",
        "--resource=modeldeployments.modelship.dev",
    )
    stack.run_kubectl("create", "rolebinding", "mdep-reader", "-n", namespace, "--role=mdep-reader", "--user=nobody")
    deadline = time.monotonic() + 20
    while (status := plugin(nobody, "status", NAME, "-n", namespace)).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # RBAC caches settle within a moment
    assert status.returncode == 0, status.stderr
    result = plugin(nobody, "abort", NAME, "-n", namespace, "--force", "--no-wait")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "forbidden: you may not patch modeldeployments.modelship.dev" in result.stderr
    assert "verb 'patch'" in result.stderr


def test_unreachable_server(stack: StackContext, tmp_path: Path) -> None:
    dead = user_kubeconfig(stack, tmp_path, "admin", server="https://127.0.0.1:1")
    result = plugin(dead, "get", "-n", "default", timeout=30)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: cannot reach the API server at https://127.0.0.1:1")
