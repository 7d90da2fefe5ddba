"""Issue 8 on the real stack, the child objects' items.

3. A route the API server refuses (here a ValidatingAdmissionPolicy of the platform team that freezes canary
   weight in the scenario's namespace) no longer makes every reconcile raise with nothing to show: status gets
   `Applied=False` naming the API error, one Warning Event `ApplyRefused` says so, the rollout holds and is
   rolled back at progressDeadline, and stable keeps serving all along (before the fix: no status, no Event,
   the deadline never fired).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.rollout_watch import RolloutWatcher, triton_ready
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
POLICY_MESSAGE = "canary traffic is frozen in this namespace by the platform team"
# No backendRef to a `*-canary` Service may carry weight (a missing weight counts as 1, as in Gateway API).
FREEZE_RULE = (
    "!has(object.spec.rules) || object.spec.rules.all(r, !has(r.backendRefs) || r.backendRefs.all(b, "
    "!b.name.endsWith('-canary') || (has(b.weight) && b.weight == 0)))"
)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def freeze_policy(name: str, namespace: str) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy and its binding that refuse HTTPRoutes with canary weight in `namespace`."""
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["gateway.networking.k8s.io"], "apiVersions": ["*"],
                "resources": ["httproutes"], "operations": ["CREATE", "UPDATE"],
            }]},
            "validations": [{"expression": FREEZE_RULE, "message": POLICY_MESSAGE}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }
    return [policy, binding]


def probe_route(namespace: str) -> dict[str, Any]:
    """An HTTPRoute giving a canary weight: what the policy must refuse (sent as a server dry run only)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "policy-probe", "namespace": namespace},
        "spec": {"parentRefs": [{"name": "inference-gw"}],
                 "rules": [{"backendRefs": [{"name": "probe-canary", "port": 8000, "weight": 20}]}]},
    }


@pytest.fixture
def canary_freeze(kubectl: Kubectl) -> Iterator[Callable[[str], None]]:
    """`canary_freeze(namespace)` installs the policy and waits until the API server enforces it; removed after."""
    made: list[str] = []

    def install(namespace: str) -> None:
        name = f"modelship-e2e-freeze-{namespace}"
        made.append(name)
        kubectl.run("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List",
                                                                "items": freeze_policy(name, namespace)}))

        def enforced() -> bool:
            refused = kubectl.run("apply", "--dry-run=server", "-f", "-",
                                  input_text=json.dumps(probe_route(namespace)), check=False)
            return refused.returncode != 0 and POLICY_MESSAGE in refused.stderr

        wait_for(f"policy {name} enforced", enforced, timeout=30)

    yield install
    for name in made:
        kubectl.run("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name,
                    "--ignore-not-found", check=False)


def test_refused_route_is_a_condition_an_event_and_a_rollback_at_the_deadline(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    canary_freeze: Callable[[str], None],
) -> None:
    """Given v1 Healthy with live traffic, and an admission policy refusing any HTTPRoute that gives the canary
    weight in this namespace,
    when v2 is applied (its first step asks for 20%),
    then status says Applied=False naming the policy's error, one Warning Event ApplyRefused is recorded, the
    route never carries canary weight, v2 is rolled back at progressDeadline citing the refusal, and stable
    serves every request throughout."""
    ns = namespace
    operator(ns)
    kw: dict[str, Any] = {"steps": [{"weight": 20, "duration": "8s"}], "progress_deadline": "20s",
                          "analysis": {"interval": "4s", "failureLimit": 2, "minRequests": 5}}
    with printed_figures("issue 8 item 3: a refused route") as fig:
        kubectl.apply(model_deployment(NAME, ns, "1", **kw))
        v1 = status_when(kubectl, ns, "v1 Healthy", lambda s: s.get("phase") == "Healthy", timeout=90,
                         name=NAME)["stableRevision"]["hash"]
        triton_ready(kubectl, ns, NAME)
        gen = traffic(ns, NAME)
        canary_freeze(ns)
        with RolloutWatcher(kubectl, ns, NAME, traffic=gen) as watch:
            # When
            kubectl.apply(model_deployment(NAME, ns, "2", **kw))
            refused = status_when(kubectl, ns, "Applied=False", lambda s: condition(s, "Applied").get("status")
                                  == "False", timeout=90, interval=0.3, name=NAME)
            refused_at = watch.now()
            served_before = gen.summary()["backends"].get(f"{NAME}-stable", {}).get("ok", 0)
            done = status_when(kubectl, ns, "v2 RolledBack", lambda s: s.get("phase") == "RolledBack",
                               timeout=90, interval=0.3, name=NAME)
            rolled_at = watch.now()
            # status_when saw it first: let the watcher's own sampling catch up before it stops.
            wait_for("the watcher sees RolledBack", lambda: watch.first(
                lambda s: s.t >= refused_at and s.phase == "RolledBack"), timeout=15)
        summary = gen.summary()

        # Then: the refusal is in status, with the API server's words.
        applied = condition(refused, "Applied")
        fig["applied_condition"] = applied
        fig["held_message"] = refused["message"]
        assert applied["reason"] == "ApplyRefused", applied
        assert POLICY_MESSAGE in applied["message"] and "route for canary weight 20%" in applied["message"], applied
        assert "API server refused" in refused["message"], refused["message"]
        v2 = refused["canaryRevision"]["hash"]
        # ... said once as a Warning Event,
        events = json.loads(kubectl.run("get", "events", "-n", ns, "--field-selector",
                                        f"involvedObject.name={NAME},reason=ApplyRefused", "-o", "json").stdout)
        warnings = [e for e in events["items"] if e["type"] == "Warning"]
        fig["apply_refused_events"] = [(e["message"][:160], e.get("count", 1)) for e in warnings]
        assert len(warnings) == 1 and POLICY_MESSAGE in warnings[0]["message"], warnings
        # ... and rolled back at the deadline, after the refusal, naming it.
        fig["refused_to_rolled_back_s"] = round(rolled_at - refused_at, 1)
        rolled = [h for h in done["history"] if h["event"] == "RolledBack" and h["revision"] == v2]
        fig["rollback_reason"] = rolled[-1]["reason"] if rolled else None
        assert rolled and "progressDeadline" in rolled[-1]["reason"], done["history"]
        assert "API server refused" in rolled[-1]["reason"], rolled[-1]
        assert done["stableRevision"]["hash"] == v1 and done.get("canaryRevision") is None
        assert condition(done, "Applied").get("status") == "True", "the rollback's applies went through"
        # The route never gave v2 weight; stable served throughout.
        canary_weights = sorted({s.route_canary_weight or 0 for s in watch.samples})
        fig["route_canary_weights_seen"] = canary_weights
        assert canary_weights == [0], canary_weights
        fig["traffic"] = summary["backends"]
        stable = summary["backends"][f"{NAME}-stable"]
        assert stable["ok"] > served_before, "stable stopped serving while the rollout held"
        assert not stable.get("failed") and not stable.get("error"), stable
        assert not watch.failures(), watch.failures()
