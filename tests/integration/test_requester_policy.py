"""The modelship-requester ValidatingAdmissionPolicy on the real API server (Kubernetes 1.34, RBAC on).

Two real users: service accounts `alice` and `bob` with bearer tokens from the TokenRequest API (authenticated
by the API server like any user, names `system:serviceaccount:NS:alice`), plus `kubectl --as` impersonation
(authorised through RBAC). Proves: the plugin's request carries the caller's verified name; a requester set to
someone else, a requester changed alone (claiming or blaming), a request without requester and a create with
forged annotations are refused with the policy's message; clearing a request is allowed; the operator's
check sees the installed policy as in force; and the shipped Argo CD actions pass it as Argo CD's service account.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lupa import lua51
from modelship.adapters.admission import RequesterPolicyCheck
from modelship.adapters.kube import Kube
from modelship.adapters.transport import AsyncTransport
from modelship.domain.admission import policy_yaml
from test_plugin_cluster import NAME, manifest, plugin, user_kubeconfig

from e2e.stack import REPO, StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CRD_NAME = "crd/modeldeployments.modelship.dev"
USERS = ("alice", "bob")


def username(namespace: str, user: str) -> str:
    return f"system:serviceaccount:{namespace}:{user}"


@pytest.fixture(scope="module")
def namespace(stack: StackContext) -> Iterator[str]:
    """CRD and policy installed; a namespace where alice and bob may patch ModelDeployments."""
    if not stack.run_kubectl("get", CRD_NAME, "--ignore-not-found", "-o", "name").strip():
        stack.run_kubectl("apply", "--server-side", "--field-manager=modelship-stack", "-f",
                          str(REPO / "crds" / "modeldeployments.yaml"))
        stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", CRD_NAME)
    stack.run_kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelship-stack", "-f", "-",
                      stdin=policy_yaml())
    ns = f"requester-{uuid.uuid4().hex[:8]}"
    stack.run_kubectl("create", "namespace", ns)
    stack.run_kubectl("create", "role", "steer", "-n", ns, "--verb=get,list,watch,patch,update,create",
                      "--resource=modeldeployments.modelship.dev")
    for user in USERS:
        stack.run_kubectl("create", "serviceaccount", user, "-n", ns)
        stack.run_kubectl("create", "rolebinding", f"steer-{user}", "-n", ns, "--role=steer",
                          f"--serviceaccount={ns}:{user}")
    stack.run_kubectl("create", "rolebinding", "steer-carol", "-n", ns, "--role=steer", "--user=carol")
    stack.run_kubectl("apply", "-f", "-", stdin=json.dumps(manifest(ns)))
    wait_until_enforced(stack, ns)
    yield ns
    stack.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def wait_until_enforced(stack: StackContext, namespace: str, attempts: int = 60) -> None:
    """A new policy takes effect once the API server has loaded and type-checked it: probe with a forgery."""
    for _ in range(attempts):
        probe = annotate(stack, namespace, request(), "modelship.dev/requested-by=someone-else", as_user="carol")
        if probe.returncode != 0 and "modelship-requester" in probe.stderr:
            return
        annotate(stack, namespace, "modelship.dev/request-", "modelship.dev/requested-by-")
        time.sleep(1)
    raise AssertionError("the modelship-requester policy never took effect on the API server")


def token_kubeconfig(stack: StackContext, directory: Path, namespace: str, user: str) -> Path:
    """A kubeconfig for a service account, with a short-lived token the API server issued."""
    token = stack.run_kubectl("create", "token", user, "-n", namespace, "--duration=10m").strip()
    stack.tokens[f"{namespace}:{user}"] = token
    return user_kubeconfig(stack, directory, f"{namespace}:{user}")


def annotations(stack: StackContext, namespace: str) -> dict[str, str]:
    obj = json.loads(stack.run_kubectl("get", "modeldeployment", NAME, "-n", namespace, "-o", "json"))
    return dict(obj["metadata"].get("annotations") or {})


def annotate(stack: StackContext, namespace: str, *pairs: str, as_user: str | None = None
             ) -> subprocess.CompletedProcess[str]:
    who = [f"--as={as_user}"] if as_user else []
    return subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", *who, "annotate", "--overwrite",
         "modeldeployment", NAME, "-n", namespace, *pairs],
        capture_output=True, text=True, check=False, timeout=60,
    )


def request(action: str = "pause") -> str:
    return "modelship.dev/request=" + json.dumps({"id": uuid.uuid4().hex, "action": action,
                                                  "at": "2030-01-01T00:00:00.000Z"})


def test_two_real_users_send_requests_recorded_under_their_own_names(
    stack: StackContext, namespace: str, tmp_path: Path
) -> None:
    for user in USERS:
        config = token_kubeconfig(stack, tmp_path, namespace, user)
        result = plugin(config, "pause", NAME, "-n", namespace, "--force", "--no-wait")
        assert result.returncode == 0, result.stderr
        assert annotations(stack, namespace)["modelship.dev/requested-by"] == username(namespace, user)


def test_a_forged_requester_is_refused_by_the_api_server_with_the_policys_message(
    stack: StackContext, namespace: str
) -> None:
    alice, bob = username(namespace, "alice"), username(namespace, "bob")
    before = annotations(stack, namespace)
    forged = annotate(stack, namespace, request(), f"modelship.dev/requested-by={alice}", as_user=bob)
    assert forged.returncode != 0
    assert "ValidatingAdmissionPolicy 'modelship-requester'" in forged.stderr
    assert f'must be your own user name "{bob}"' in forged.stderr
    missing = annotate(stack, namespace, request(), "modelship.dev/requested-by-", as_user=bob)
    assert missing.returncode != 0 and "modelship-requester" in missing.stderr
    assert annotations(stack, namespace) == before


def test_changing_only_the_requester_is_refused_claiming_or_blaming(stack: StackContext, namespace: str) -> None:
    bob = username(namespace, "bob")
    sent = annotate(stack, namespace, request(), f"modelship.dev/requested-by={bob}", as_user=bob)
    assert sent.returncode == 0, sent.stderr
    claim = annotate(stack, namespace, "modelship.dev/requested-by=carol", as_user="carol")
    assert claim.returncode != 0 and "may change only together with a new modelship.dev/request" in claim.stderr
    assert annotations(stack, namespace)["modelship.dev/requested-by"] == bob
    cleared = annotate(stack, namespace, "modelship.dev/request-", as_user="carol")
    assert cleared.returncode == 0, cleared.stderr  # clearing a request is allowed


def test_create_with_forged_annotations_is_refused(stack: StackContext, namespace: str) -> None:
    obj = manifest(namespace)
    obj["metadata"]["name"] = "forged"
    obj["metadata"]["annotations"] = {"modelship.dev/request": json.dumps({"id": "c1", "action": "abort",
                                                                         "at": "2030-01-01T00:00:00Z"}),
                                      "modelship.dev/requested-by": "alice"}
    proc = subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", "--as=carol", "create", "-f", "-"],
        input=json.dumps(obj), capture_output=True, text=True, check=False, timeout=60,
    )
    assert proc.returncode != 0 and 'must be your own user name "carol"' in proc.stderr


def test_an_oversized_request_is_refused(stack: StackContext, namespace: str) -> None:
    big = "modelship.dev/request=" + json.dumps({"id": "x", "action": "pause", "at": "2030-01-01T00:00:00Z",
                                                 "pad": "x" * 2000})
    proc = annotate(stack, namespace, big, "modelship.dev/requested-by=carol", as_user="carol")
    assert proc.returncode != 0 and "longer than 1024 characters" in proc.stderr


def test_the_operator_sees_the_installed_policy_as_in_force(stack: StackContext, namespace: str) -> None:
    transport = AsyncTransport.from_kubeconfig(str(stack.kubeconfig))

    async def in_force() -> bool:
        try:
            return await RequesterPolicyCheck(Kube(transport)).in_force()
        finally:
            await transport.close()

    assert asyncio.run(in_force()) is True


ARGOCD_SERVER = "system:serviceaccount:argocd:argocd-server"


def argocd_action(stack: StackContext, namespace: str, action: str) -> dict[str, Any]:
    """What Argo CD sends for a resource action: the shipped Lua run on the live object, as a merge patch of
    what changed (Argo CD diffs the Lua's result against the live object)."""
    live = json.loads(stack.run_kubectl("get", "modeldeployment", NAME, "-n", namespace, "-o", "json"))
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = runtime.table_from(live, recursive=True)
    result = runtime.execute((REPO / "deploy" / "argocd" / "actions" / action / "action.lua").read_text())
    after = dict(result["metadata"]["annotations"].items())
    before = live["metadata"].get("annotations") or {}
    return {"metadata": {"annotations": {k: v for k, v in after.items() if before.get(k) != v}}}


def patch_as(stack: StackContext, namespace: str, user: str, patch: dict[str, Any]
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", f"--as={user}", "patch", "modeldeployment", NAME,
         "-n", namespace, "--type=merge", "-p", json.dumps(patch)],
        capture_output=True, text=True, check=False, timeout=60,
    )


def test_argo_cd_actions_pass_the_policy_as_argo_cds_service_account(stack: StackContext, namespace: str) -> None:
    """Given Argo CD's server account allowed to patch ModelDeployments (as its ClusterRole allows),
    when it runs the shipped actions, the API server accepts them and requested-by names that account;
    the same patch sent by anyone else is refused, so the name in history is Argo CD's, verified."""
    stack.run_kubectl("create", "rolebinding", "steer-argocd", "-n", namespace, "--role=steer",
                      "--serviceaccount=argocd:argocd-server")
    for action in ("pause", "abort"):  # the second keeps requested-by: only the request is in its patch
        patch = argocd_action(stack, namespace, action)
        sent = patch_as(stack, namespace, ARGOCD_SERVER, patch)
        assert sent.returncode == 0, sent.stderr
        written = annotations(stack, namespace)
        assert written["modelship.dev/requested-by"] == ARGOCD_SERVER
        assert json.loads(written["modelship.dev/request"])["action"] == action
    forged = patch_as(stack, namespace, "carol", argocd_action(stack, namespace, "retry"))
    assert forged.returncode != 0 and 'must be your own user name "carol"' in forged.stderr
