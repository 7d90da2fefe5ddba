"""The audit trail of manual requests on the real stack (issue 8 item 6): who asked is who the API server says.

Two real users, service accounts `alice` and `bob` of the scenario's namespace with tokens from the TokenRequest
API, allowed to read and patch ModelDeployments and nothing else. The `modelship-requester` admission policy
(crds/requester-policy.yaml, installed by the `kubectl` fixture) ties `modelship.dev/requested-by` to the user
the API server authenticated; the operator records that name as verified while the policy is in force.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, status_when
from e2e.manifests import model_deployment
from e2e.rollout_watch import triton_ready
from e2e.stack import REPO, StackContext
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
PLUGIN = REPO / ".venv" / "bin" / "kubectl-modelship"
STEPS: list[dict[str, Any]] = [{"weight": 25, "duration": "6s"}, {"approval": {}}, {"weight": 60, "duration": "6s"}]
REQUEST = "modelship.dev/request"
REQUESTED_BY = "modelship.dev/requested-by"
IGNORED_FLOOD = 30
IGNORED_BUDGET = 5  # status.IGNORED_HISTORY_LIMIT: what the CRD documents for ignored requests


class User:
    """A service account of the scenario's namespace, acting through its own kubeconfig and token."""

    def __init__(self, kubectl: Kubectl, stack: StackContext, namespace: str, account: str, directory: Path) -> None:
        self.stack, self.namespace = stack, namespace
        self.name = f"system:serviceaccount:{namespace}:{account}"
        kubectl.run("create", "serviceaccount", account, "-n", namespace)
        kubectl.run("create", "rolebinding", f"steer-{account}", "-n", namespace, "--role=steer",
                    f"--serviceaccount={namespace}:{account}")
        token = kubectl.run("create", "token", account, "-n", namespace, "--duration=30m").stdout.strip()
        self.kubeconfig = directory / f"{account}.kubeconfig"
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": stack.server,
                                                   "certificate-authority": str(stack.ca_file)}}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": account}}],
        }))

    def plugin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`kubectl modelship ...` as this user runs it."""
        return subprocess.run([str(PLUGIN), "--kubeconfig", str(self.kubeconfig), "-n", self.namespace, *args],
                              capture_output=True, text=True, timeout=90, check=False)

    def annotate(self, annotations: dict[str, str]) -> subprocess.CompletedProcess[str]:
        """`kubectl annotate` by hand, as this user: what someone bypassing the plugin would do."""
        pairs = [f"{key}={value}" for key, value in annotations.items()]
        return subprocess.run([str(self.stack.kubectl), f"--kubeconfig={self.kubeconfig}", "annotate", "--overwrite",
                               "-n", self.namespace, "modeldeployment", NAME, *pairs],
                              capture_output=True, text=True, timeout=60, check=False)


def entries(status: dict[str, Any], event: str, version: str | None = None) -> list[dict[str, Any]]:
    return [h for h in status.get("history") or []
            if h["event"] == event and (version is None or h["version"] == version)]


def test_requests_are_recorded_under_verified_names_and_never_erase_outcomes(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext, tmp_path: Path,
) -> None:
    """Given v1 Healthy, two users alice and bob who may patch ModelDeployments, and steps 25% -> approval -> 60%,
    when alice approves v2 at its gate with `kubectl modelship promote`,
    then history records the approval by alice's authenticated name, verified, and v2 promotes;
    when bob writes a request by hand naming alice as requester, the API server refuses it and nothing changes;
    when bob aborts v3 at its gate, history records RolledBack by bob;
    when alice and bob then send 30 requests the operator ignores (pause and resume with nothing to pause),
    then history keeps v2's Promoted and v3's RolledBack records and at most 5 ignored requests;
    when alice's old approval is written again at v4's gate (a replayed request id),
    then the operator ignores it as a replay and v4 stays at the gate until a new approval promotes it."""
    ns = namespace
    kubectl.run("create", "role", "steer", "-n", ns, "--verb=get,list,watch,patch",
                "--resource=modeldeployments.modelship.dev")
    alice = User(kubectl, stack, ns, "alice", tmp_path)
    bob = User(kubectl, stack, ns, "bob", tmp_path)
    operator(ns)
    with printed_figures("guard audit: verified requesters, forged names, ignored floods, replays") as fig:
        kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS))
        status_when(kubectl, ns, "v1 Healthy", lambda s: s.get("phase") == "Healthy", timeout=90)
        triton_ready(kubectl, ns, NAME)
        traffic(ns, NAME)

        def at_gate(version: str) -> dict[str, Any]:
            return status_when(kubectl, ns, f"v{version} waiting for approval", lambda s: bool(
                s.get("awaitingApproval")) and (s.get("canaryRevision") or {}).get("version") == version,
                timeout=60)

        def healthy(version: str) -> dict[str, Any]:
            return status_when(kubectl, ns, f"v{version} Healthy", lambda s: s.get("phase") == "Healthy" and (
                s.get("stableRevision") or {}).get("version") == version, timeout=90)

        # When: alice approves v2 with the plugin.
        kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS))
        at_gate("2")
        approved_by_alice = alice.plugin("promote", NAME)
        assert approved_by_alice.returncode == 0, approved_by_alice.stdout + approved_by_alice.stderr
        alice_request = kubectl.mdep(NAME, ns)["metadata"]["annotations"][REQUEST]
        promoted = healthy("2")
        # Then: the approval is alice's verified name, as the API server authenticated it.
        approvals = entries(promoted, "Approved", "2")
        fig["approved_by"] = [a["by"] for a in approvals]
        assert [a["by"] for a in approvals] == [alice.name], approvals
        assert approvals[0]["request"] == json.loads(alice_request)["id"]

        # When: bob forges a request in alice's name, bypassing the plugin.
        before = kubectl.mdep(NAME, ns)
        forged = bob.annotate({REQUEST: json.dumps({"id": "forged-1", "action": "pause",
                                                    "at": json.loads(alice_request)["at"]}),
                               REQUESTED_BY: alice.name})
        # Then: the API server refuses it with the policy's message naming bob; the object is unchanged.
        fig["forged_refusal"] = forged.stderr.strip()
        assert forged.returncode != 0
        assert "ValidatingAdmissionPolicy 'modelship-requester'" in forged.stderr, forged.stderr
        assert f'must be your own user name "{bob.name}"' in forged.stderr, forged.stderr
        after = kubectl.mdep(NAME, ns)
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert after["metadata"]["annotations"][REQUESTED_BY] == alice.name

        # When: bob aborts v3 at its gate.
        kubectl.apply(model_deployment(NAME, ns, "3", steps=STEPS))
        at_gate("3")
        aborted = bob.plugin("abort", NAME)
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        rolled = status_when(kubectl, ns, "v3 RolledBack", lambda s: s.get("phase") == "RolledBack")
        assert [(h["by"], h["version"]) for h in entries(rolled, "RolledBack")] == [(bob.name, "3")]

        # When: 30 requests the operator ignores (nothing to pause, nothing to resume), from both users.
        refused: list[str] = []
        for index in range(IGNORED_FLOOD):
            user, action = (alice, "pause") if index % 2 == 0 else (bob, "resume")
            result = user.plugin(action, NAME, "--force")  # --force: the plugin would refuse these itself
            assert result.returncode != 0 and "the operator ignored the request" in result.stderr, (
                result.stdout + result.stderr)
            refused.append(action)
        flooded = kubectl.status(NAME, ns)
        ignored = entries(flooded, "RequestIgnored")
        fig["history_after_flood"] = {"entries": len(flooded["history"]), "ignored_kept": len(ignored)}
        # Then: the outcomes stay; ignored requests keep to their own small budget.
        assert len(refused) == IGNORED_FLOOD
        assert 0 < len(ignored) <= IGNORED_BUDGET, ignored
        assert {h["by"] for h in ignored} == {alice.name, bob.name}
        assert [h["version"] for h in entries(flooded, "Promoted")][-1:] == ["2"], flooded["history"]
        assert [(h["by"], h["version"]) for h in entries(flooded, "RolledBack")] == [(bob.name, "3")]
        assert [a["by"] for a in entries(flooded, "Approved", "2")] == [alice.name]
        assert flooded["phase"] == "RolledBack"

        # When: v4 waits at its gate and alice's old approval (its id, its time) is written again.
        kubectl.apply(model_deployment(NAME, ns, "4", steps=STEPS))
        gate = at_gate("4")
        replay = alice.annotate({REQUEST: alice_request, REQUESTED_BY: alice.name})
        assert replay.returncode == 0, replay.stderr  # the API server lets alice write her own name
        old_id = json.loads(alice_request)["id"]
        handled = status_when(kubectl, ns, "the replayed request handled", lambda s: s.get("lastRequestId") == old_id)
        # Then: ignored as a replay; v4 is still at the gate, at the same weight.
        replayed = [h for h in handled["history"] if h.get("request") == old_id and h["event"] == "RequestIgnored"]
        fig["replay_reason"] = [h["reason"] for h in replayed]
        assert len(replayed) == 1 and "a replay" in replayed[0]["reason"], replayed
        assert handled["awaitingApproval"] and handled["step"] == gate["step"], handled
        assert handled["canaryWeight"] == gate["canaryWeight"] == 25, handled
        assert [a["by"] for a in entries(handled, "Approved", "4")] == []
        # A new approval still works.
        approved_again = alice.plugin("promote", NAME)
        assert approved_again.returncode == 0, approved_again.stdout + approved_again.stderr
        final = healthy("4")
        assert [a["by"] for a in entries(final, "Approved", "4")] == [alice.name]
        assert {h["version"] for h in entries(final, "Promoted")} >= {"2", "4"}
        assert [(h["by"], h["version"]) for h in entries(final, "RolledBack")] == [(bob.name, "3")]
        fig["history"] = [(h["event"], h["version"], h["by"]) for h in final["history"]]
