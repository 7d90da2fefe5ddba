"""GitOps scenarios (issue 4, scenarios 12-14): the operator as Argo CD or Flux see it.

12. Re-applying the same manifest (server-side apply, a GitOps field manager) changes nothing; the operator
    never owns a spec field; a rollback leaves spec at the new version and says so in status; the shipped
    Argo CD health Lua maps the real status objects to Progressing / Suspended / Healthy / Degraded.
13. Bad manifests are refused by the API server (naming the field) or marked Invalid (naming the field and
    the fix), while a healthy ModelDeployment beside them -- and the running object they update -- keeps
    serving from an untouched stable revision.
14. Deleting a ModelDeployment mid-canary leaves nothing behind and no route ever points at a missing Service.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from lupa import lua51

from e2e.conftest import printed_figures
from e2e.harness import Kubectl, wait_for
from e2e.manifests import model_deployment
from e2e.stack import REPO, StackContext
from e2e.stack.routes import route_mirrors

pytestmark = pytest.mark.e2e

HEALTH_LUA = REPO / "deploy" / "argocd" / "health.lua"
ARGOCD = "argocd-controller"  # the field manager Argo CD uses for server-side apply
GITOPS_MANAGERS = {ARGOCD, "e2e-gitops"}
# Argo CD's Lua sandbox: base, table and package libraries, os.time/os.date only (see tests/unit/test_argocd_lua.py).
SANDBOX = """
local safe_os = {time = os.time, date = os.date}
package.loaded.os = safe_os
package.preload = {}
os = safe_os
string = nil
math = nil
io = nil
debug = nil
dofile = nil
loadfile = nil
"""


# --- helpers -----------------------------------------------------------------------------------------------


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """Run the shipped health.lua on a real object, as Argo CD would."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute("getmetatable('').__index = nil")
    runtime.execute(SANDBOX)
    runtime.globals().obj = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = runtime.execute(HEALTH_LUA.read_text())
    return {str(k): str(v) for k, v in dict(result.items()).items()}


def gitops_apply(kubectl: Kubectl, manifest: dict[str, Any], manager: str = ARGOCD) -> None:
    """`kubectl apply --server-side` with a GitOps tool's field manager (what Argo CD's sync does)."""
    Kubectl(kubectl.stack, field_manager=manager).apply(manifest)


def managed_fields(kubectl: Kubectl, name: str, namespace: str) -> list[dict[str, Any]]:
    """metadata.managedFields (kubectl hides them unless asked)."""
    out = kubectl.run("get", "modeldeployment", name, "-n", namespace, "--show-managed-fields", "-o", "json").stdout
    return list(json.loads(out)["metadata"]["managedFields"])


def spec_owners(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Field managers that own anything under spec, with the top-level spec keys they own."""
    owners: dict[str, list[str]] = {}
    for entry in entries:
        spec = (entry.get("fieldsV1") or {}).get("f:spec")
        if spec is not None:
            owners.setdefault(entry["manager"], []).extend(sorted(k for k in spec if k.startswith("f:")))
    return owners


def plugin(stack: StackContext, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "modelship.plugin.main", f"--kubeconfig={stack.kubeconfig}", *args]
    env = {**os.environ, **{k: str(v) for k, v in stack.env.items()}, "KUBECONFIG": str(stack.kubeconfig)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, env=env, check=False, cwd=REPO)


class Recorder:
    """Polls the ModelDeployment and keeps one real object per distinct (phase, stage, step, approval)."""

    def __init__(self, kubectl: Kubectl, name: str, namespace: str) -> None:
        self.kubectl, self.name, self.namespace = kubectl, name, namespace
        self.seen: dict[tuple[Any, ...], dict[str, Any]] = {}

    def poll(self) -> dict[str, Any]:
        obj = self.kubectl.mdep(self.name, self.namespace)
        st = obj.get("status") or {}
        key = (st.get("phase"), st.get("stage"), st.get("step"), bool(st.get("awaitingApproval")))
        self.seen.setdefault(key, copy.deepcopy(obj))
        return obj

    def until(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout: float = 120.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.poll()
            return obj if pred(obj.get("status") or {}) else None

        return wait_for(what, probe, timeout=timeout, interval=0.5)


def steady(obj: dict[str, Any]) -> tuple[Any, ...]:
    """What a no-op re-apply must leave unchanged."""
    meta, st = obj["metadata"], obj.get("status") or {}
    return (
        meta["generation"],
        (st.get("canaryRevision") or {}).get("hash"),
        st.get("rolloutStartedAt"),
        len([h for h in st.get("history") or [] if h.get("event") == "Started"]),
    )


# --- scenario 12 -------------------------------------------------------------------------------------------


def test_gitops_reapply_is_a_noop_and_rollback_keeps_spec(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given a Healthy v1 served through a Gateway API route, with steady traffic,
    when v2 is synced by a GitOps tool and the same manifest is re-applied (server-side, Argo CD's field
    manager) during the canary, at an approval gate and after promotion, and then faulty v90 is synced,
    then no re-apply bumps the generation or restarts the rollout, the operator never owns a spec field,
    v90 is rolled back while spec still says 90 and status says RolledBack with the reason, and the
    shipped Argo CD health check maps the real objects to Progressing, Suspended, Healthy and Degraded.
    """
    name = "gitops"
    steps: list[dict[str, Any]] = [{"weight": 20, "duration": "8s"}, {"approval": {}}, {"weight": 50, "duration": "8s"}]
    operator(namespace)
    # no sample inference: v90 fails half its requests, so a sample would catch it before any traffic
    # (ValidationFailed); this scenario wants the analysis verdict in status
    v1 = model_deployment(name, namespace, "1", steps=steps, samples=False)
    gitops_apply(kubectl, v1)
    rec = Recorder(kubectl, name, namespace)
    with printed_figures("scenario-12 gitops") as figures:
        t0 = time.monotonic()
        rec.until("v1 Healthy", lambda s: s.get("phase") == "Healthy")
        figures["v1_healthy_s"] = round(time.monotonic() - t0, 1)
        gen = traffic(namespace, name, rps=20)
        baseline = warmed_up(gen)  # requests before v1's Triton listened are not the rollout's

        v2 = model_deployment(name, namespace, "2", steps=steps, samples=False)
        gitops_apply(kubectl, v2)
        canary = rec.until("v2 at canary step 0", lambda s: s.get("stage") == "Canary" and s.get("step") == 0)
        before = steady(canary)
        noop_applies = 0
        for _ in range(3):  # during a judged canary step
            gitops_apply(kubectl, v2)
            noop_applies += 1
            assert steady(rec.poll()) == before, "a no-op re-apply during the canary changed the rollout"
            time.sleep(1)

        waiting = rec.until("approval gate", lambda s: bool(s.get("awaitingApproval")), timeout=90)
        assert steady(waiting) == before
        gitops_apply(kubectl, v2)
        noop_applies += 1
        time.sleep(2)
        assert steady(rec.poll()) == before, "a no-op re-apply at the approval gate restarted the rollout"
        assert rec.poll()["status"].get("awaitingApproval"), "a no-op re-apply passed the approval gate"

        promoted = plugin(stack, "promote", name, "-n", namespace)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        healthy = rec.until(
            "v2 Healthy",
            lambda s: s.get("phase") == "Healthy" and (s.get("stableRevision") or {}).get("version") == "2",
        )
        history_len = len(healthy["status"].get("history") or [])
        for _ in range(2):  # after the rollout
            gitops_apply(kubectl, v2)
            noop_applies += 1
        time.sleep(3)
        after = rec.poll()
        assert after["metadata"]["generation"] == healthy["metadata"]["generation"]
        assert after["status"]["phase"] == "Healthy"
        assert after["status"]["stableRevision"] == healthy["status"]["stableRevision"]
        assert len(after["status"].get("history") or []) == history_len, "a no-op re-apply added history"
        figures["noop_reapplies"] = noop_applies

        # faulty v90: fails half its requests, rolled back on the error-rate SLO
        v90 = model_deployment(name, namespace, "90", steps=steps, samples=False)
        gitops_apply(kubectl, v90)
        t1 = time.monotonic()
        rolled = rec.until("v90 RolledBack", lambda s: s.get("phase") == "RolledBack", timeout=150)
        figures["v90_rollback_s"] = round(time.monotonic() - t1, 1)
        st = rolled["status"]
        assert rolled["spec"]["model"]["version"] == "90", "the operator rewrote spec on rollback"
        assert st["stableRevision"]["version"] == "2"
        assert st.get("canaryWeight", 0) == 0
        degraded = next(c for c in st["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "AnalysisFailed", degraded
        assert "errorRate" in degraded["message"] or "errorRate" in st.get("message", ""), st.get("message")
        figures["rollback_reason"] = degraded["message"][:200]

        # re-syncing the rolled-back spec does not restart it
        gitops_apply(kubectl, v90)
        time.sleep(3)
        again = rec.poll()
        assert again["metadata"]["generation"] == rolled["metadata"]["generation"]
        assert again["status"]["phase"] == "RolledBack"
        assert again["spec"]["model"]["version"] == "90"

        entries = managed_fields(kubectl, name, namespace)
        owners = spec_owners(entries)
        assert ARGOCD in owners, f"the GitOps tool should own spec: {owners}"
        assert set(owners) <= GITOPS_MANAGERS, f"spec fields owned by a non-GitOps manager: {owners}"
        figures["spec_owners"] = owners
        figures["managers"] = sorted({f"{e['manager']}/{e.get('subresource', '')}" for e in entries})

        totals = _traffic_totals(gen.stop())
        figures["traffic_after_warm_up"] = {k: totals[k] - baseline[k] for k in totals}

    # Argo CD health on the real objects captured above
    mapped: dict[str, set[str]] = {}
    for (phase, _stage, _step, awaiting), obj in rec.seen.items():
        label = "AwaitingApproval" if awaiting else str(phase)  # phase None: no status written yet
        mapped.setdefault(label, set()).add(argocd_health(obj)["status"])
    print(f"[scenario-12 argocd health] {mapped}")
    expected = {"Progressing": {"Progressing"}, "AwaitingApproval": {"Suspended"}, "Healthy": {"Healthy"},
                "RolledBack": {"Degraded"}}
    assert mapped.get("None", {"Progressing"}) == {"Progressing"}, mapped
    for label, health in expected.items():
        assert label in mapped, f"no real {label} object was captured: {sorted(mapped)}"
        assert mapped[label] == health, f"{label} objects mapped to {mapped[label]}, expected {health}"
    final = argocd_health(again)
    assert final["status"] == "Degraded" and "RolledBack" in final["message"], final


def _traffic_totals(summary: dict[str, Any]) -> dict[str, int]:
    """Requests summed over the traffic generator's backends: sent, ok, error (model), failed (transport)."""
    totals = {"sent": 0, "ok": 0, "error": 0, "failed": 0}
    for backend in (summary.get("backends") or {}).values():
        for key in totals:
            totals[key] += int(backend.get(key, 0))
    return totals


def warmed_up(gen: Any, ok: int = 20) -> dict[str, int]:
    """Wait until the live route serves (kwok marks pods Ready before their Triton listens); the baseline."""
    seen: list[Any] = []

    def served() -> dict[str, int] | None:
        summary = gen.summary()
        seen[:] = [summary]
        totals = _traffic_totals(summary)
        return totals if totals["ok"] >= ok else None

    try:
        return wait_for("traffic served", served, timeout=120)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; traffic: {seen}") from None


# --- scenario 13 -------------------------------------------------------------------------------------------

Spec = dict[str, Any]
QUERY = ('sum(rate(nv_inference_request_success{namespace="{{namespace}}",'
         'modelship_dev_revision="{{revision}}"}[{{interval}}]))')


def _set(*path: str | int, value: Any) -> Callable[[Spec], None]:
    def mutate(spec: Spec) -> None:
        node: Any = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _drop(key: str) -> Callable[[Spec], None]:
    return lambda spec: spec.pop(key)


def _steps(*steps: dict[str, Any]) -> Callable[[Spec], None]:
    return _set("rollout", "canary", "steps", value=list(steps))


def _custom(*slos: dict[str, Any]) -> Callable[[Spec], None]:
    return _set("slo", "custom", value=list(slos))


def _shadow_without_router(spec: Spec) -> None:
    spec["traffic"] = {"none": {}}
    spec["rollout"]["shadow"] = {"duration": "8s"}


def _sample_input(**fields: Any) -> Callable[[Spec], None]:
    return lambda spec: spec["validation"]["samples"][0]["inputs"][0].update(fields)


# (case, mutation of a good spec, "reject" | "invalid", field the message must name, fix it must state)
BAD: list[tuple[str, Callable[[Spec], None], str, str, str]] = [
    ("missing-model", _drop("model"), "reject", "spec.model", "Required"),
    ("version-number", _set("model", "version", value=7), "reject", "spec.model.version", "string"),
    ("version-list", _set("model", "version", value=["7"]), "reject", "spec.model.version", "string"),
    ("version-not-integer", _set("model", "version", value="v7"), "reject", "spec.model.version", "match"),
    ("weights-out-of-order", _steps({"weight": 50, "duration": "8s"}, {"weight": 20, "duration": "8s"}),
     "reject", "spec.rollout.canary.steps", "strictly increase"),
    ("weight-0", _steps({"weight": 0, "duration": "8s"}), "reject", "spec.rollout.canary.steps[0].weight", "1"),
    ("weight-101", _steps({"weight": 101, "duration": "8s"}), "reject", "spec.rollout.canary.steps[0].weight",
     "100"),
    ("two-routers", _set("traffic", "none", value={}), "reject", "spec.traffic", "exactly one"),
    ("approval-with-duration", _steps({"weight": 20, "duration": "8s"}, {"approval": {}, "duration": "8s"}),
     "reject", "spec.rollout.canary.steps[1]", "approval step takes no duration"),
    ("weight-without-duration", _steps({"weight": 20}), "reject", "spec.rollout.canary.steps[0]",
     "needs a duration"),
    ("error-rate-zero", _set("slo", "errorRate", value={"max": 0}), "reject", "spec.slo.errorRate.max",
     "greater than 0"),
    ("latency-negative", _set("slo", "latencyP99Ms", value={"max": -5}), "reject", "spec.slo.latencyP99Ms.max",
     "greater than 0"),
    ("failure-limit-zero", _set("rollout", "analysis", "failureLimit", value=0), "reject",
     "spec.rollout.analysis.failureLimit", "greater than or equal to 1"),
    ("duration-in-words", _steps({"weight": 20, "duration": "5 minutes"}), "reject",
     "spec.rollout.canary.steps[0].duration", "should match"),
    ("unknown-field", _set("rollout", "canaryz", value={}), "reject", "spec.rollout.canaryz", "not declared"),
    ("query-no-namespace", _custom({"name": "q", "max": 1, "query": "sum(up)"}), "reject",
     "spec.slo.custom[0].query", 'namespace="{{namespace}}"'),
    ("custom-min-above-max", _custom({"name": "q", "min": 2, "max": 1, "query": QUERY}), "reject",
     "spec.slo.custom[0]", "min must not exceed max"),
    ("custom-duplicate-names", _custom({"name": "q", "max": 1, "query": QUERY}, {"name": "q", "min": 0,
                                                                                  "query": QUERY}),
     "reject", "spec.slo.custom", "unique"),
    ("replicas-0", _set("serving", "replicas", value=0), "reject", "spec.serving.replicas", "greater than or equal"),
    ("gpus-negative", _set("serving", "resources", "gpus", value=-1), "reject", "spec.serving.resources.gpus",
     "greater than or equal to 0"),
    ("shadow-with-traffic-none", _shadow_without_router, "reject", "spec.rollout.shadow", "traffic.gatewayAPI"),
    ("deadline-below-interval-x-limit", _set("rollout", "progressDeadline", value="6s"), "reject",
     "spec.rollout.progressDeadline", "analysis.interval x analysis.failureLimit"),
    ("step-shorter-than-interval", _steps({"weight": 20, "duration": "2s"}), "reject", "spec.rollout.canary.steps",
     "at least analysis.interval"),
    ("mirror-percent-0", _set("rollout", "shadow", value={"mirrorPercent": 0, "duration": "8s"}), "reject",
     "spec.rollout.shadow.mirrorPercent", "greater than or equal to 1"),
    ("on-no-data-unknown", _set("rollout", "analysis", "onNoData", value="Ignore"), "reject",
     "spec.rollout.analysis.onNoData", '"Hold", "Fail"'),
    ("datatype-unknown", _sample_input(datatype="FLOAT32"), "reject", "spec.validation.samples[0].inputs[0].datatype",
     "FP32"),
    ("toleration-exists-with-value", _set("serving", "tolerations", value=[{"key": "k", "operator": "Exists",
                                                                             "value": "v"}]),
     "reject", "spec.serving.tolerations[0]", "takes no value"),
    # CEL cannot parse PromQL, count tensor elements or see duplicates by key: the operator marks these Invalid
    ("query-all-namespaces", _custom({"name": "q", "max": 1, "query": QUERY + ' + sum(up{namespace=~".*"})'}),
     "invalid", "spec.slo.custom[0].query", 'exactly namespace="{{namespace}}"'),
    ("query-bare-metric", _custom({"name": "q", "max": 1, "query": QUERY + " / sum(up)"}), "invalid",
     "spec.slo.custom[0].query", "no namespace matcher"),
    ("query-unknown-variable", _custom({"name": "q", "max": 1, "query": QUERY.replace("{{revision}}", "{{pod}}")}),
     "invalid", "spec.slo.custom[0].query", "use only {{namespace}}"),
    ("sample-data-vs-shape", _sample_input(data=[0.1, 0.2, 0.3]), "invalid",
     "spec.validation.samples[0].inputs[0].data", "give exactly 4 values"),
    ("sample-int-fraction", _sample_input(datatype="INT32", data=[1, 2, 3.5, 4]), "invalid",
     "spec.validation.samples[0].inputs[0].data", "whole numbers"),
    ("args-override-repository", _set("serving", "args", value=["--model-repository=/tmp/x"]), "invalid",
     "spec.serving.args[0]", "remove it from args"),
    ("env-duplicate", _set("serving", "env", value=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
     "invalid", "spec.serving.env[1].name", "keep one"),
    ("approval-only", _steps({"approval": {}}), "invalid", "spec.rollout.canary.steps", "add e.g. {weight: 10"),
]


def bad_manifest(good: dict[str, Any], name: str, mutate: Callable[[Spec], None]) -> dict[str, Any]:
    manifest = copy.deepcopy(good)
    manifest["metadata"]["name"] = name
    mutate(manifest["spec"])
    return manifest


def strict_apply(kubectl: Kubectl, manifest: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """What a GitOps sync does with a manifest: server-side apply, unknown fields refused."""
    import yaml  # noqa: PLC0415

    return kubectl.run("apply", "--server-side", f"--field-manager={ARGOCD}", "--validate=strict", "-f", "-",
                       input_text=yaml.safe_dump(manifest), check=False)


def children(kubectl: Kubectl, namespace: str, name: str) -> dict[str, Any]:
    """Identity and spec of what serves `name`: its Deployments and HTTPRoute (status churn excluded)."""
    out: dict[str, Any] = {}
    for kind in ("deployments", "services", "httproutes.gateway.networking.k8s.io"):
        listed = kubectl.run("get", kind, "-n", namespace, "-l", f"modelship.dev/deployment={name}", "-o", "json")
        for item in json.loads(listed.stdout)["items"]:
            meta = item["metadata"]
            out[f"{kind}/{meta['name']}"] = (meta["uid"], meta.get("generation"), json.dumps(item["spec"],
                                                                                            sort_keys=True))
    return out


def invalid_condition(obj: dict[str, Any]) -> dict[str, Any] | None:
    st = obj.get("status") or {}
    if st.get("phase") != "Invalid":
        return None
    return next((c for c in st.get("conditions") or [] if c["type"] == "Invalid" and c["status"] == "True"), None)


def test_bad_manifests_are_refused_and_the_running_model_keeps_serving(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any
) -> None:
    """Given a Healthy ModelDeployment serving steady traffic through its HTTPRoute,
    when 35 bad manifests are synced -- first as new objects beside it, then as updates (with a new version)
    to the running object itself --
    then each is refused by the API server with a message naming the field, or (where CEL cannot tell)
    accepted and marked phase Invalid with a condition naming the field and the fix; the running object's
    stable revision, Deployments, Service and route stay byte-for-byte the same, no request fails, and
    re-syncing the good manifest brings it back to Healthy on the same revision without a rollout.
    """
    name = "steady"
    operator(namespace)
    good = model_deployment(name, namespace, "1")
    gitops_apply(kubectl, good)
    wait_for("steady Healthy", lambda: kubectl.status(name, namespace).get("phase") == "Healthy", timeout=120)
    gen = traffic(namespace, name, rps=20)
    baseline = warmed_up(gen)
    serving = children(kubectl, namespace, name)
    stable = kubectl.status(name, namespace)["stableRevision"]
    assert any(k.startswith("httproutes") for k in serving) and any(k.startswith("deployments") for k in serving)
    assert len({case for case, *_ in BAD}) == len(BAD) >= 20

    with printed_figures("scenario-13 bad manifests") as figures:
        # 1. as new objects beside the healthy one
        rejected, accepted = 0, []
        for case, mutate, outcome, field, fix in BAD:
            result = strict_apply(kubectl, bad_manifest(good, f"bad-{case}", mutate))
            if outcome == "reject":
                assert result.returncode != 0, f"{case}: the API server accepted it"
                assert field in result.stderr and fix in result.stderr, f"{case}: {result.stderr.strip()}"
                assert kubectl.get_json("modeldeployment", f"bad-{case}", namespace) is None
                rejected += 1
            else:
                assert result.returncode == 0, f"{case}: refused, expected Invalid: {result.stderr.strip()}"
                accepted.append((case, field, fix))
        t0 = time.monotonic()
        for case, field, fix in accepted:

            def marked_new(c: str = case) -> dict[str, Any] | None:
                return invalid_condition(kubectl.mdep(f"bad-{c}", namespace))

            cond = wait_for(f"bad-{case} Invalid", marked_new, timeout=60)
            assert field in cond["message"] and fix in cond["message"], f"{case}: {cond['message']}"
            assert children(kubectl, namespace, f"bad-{case}") == {}, f"{case}: an Invalid object got children"
        figures["new_objects"] = {"rejected": rejected, "invalid": len(accepted),
                                  "all_invalid_within_s": round(time.monotonic() - t0, 1)}
        assert children(kubectl, namespace, name) == serving

        # 2. as updates to the running object, with a new version that must not start rolling out
        generation = kubectl.mdep(name, namespace)["metadata"]["generation"]
        update_rejected, update_invalid = 0, 0
        for case, mutate, outcome, field, fix in BAD:
            manifest = bad_manifest(good, name, mutate)
            if "model" in manifest["spec"] and isinstance(manifest["spec"]["model"].get("version"), str) \
                    and manifest["spec"]["model"]["version"] == "1":
                manifest["spec"]["model"]["version"] = "2"
            result = strict_apply(kubectl, manifest)
            obj = kubectl.mdep(name, namespace)
            if outcome == "reject":
                assert result.returncode != 0, f"{case}: the API server accepted the update"
                assert field in result.stderr, f"{case}: {result.stderr.strip()}"
                assert obj["metadata"]["generation"] == generation, f"{case}: a refused update changed the object"
                update_rejected += 1
                continue
            assert result.returncode == 0, f"{case}: {result.stderr.strip()}"
            generation = obj["metadata"]["generation"]

            def marked(g: int = generation) -> dict[str, Any] | None:
                current = kubectl.mdep(name, namespace)
                ok = current.get("status", {}).get("observedGeneration") == g
                return invalid_condition(current) if ok else None

            cond = wait_for(f"steady Invalid after {case}", marked, timeout=60)
            assert field in cond["message"] and fix in cond["message"], f"{case}: {cond['message']}"
            st = kubectl.status(name, namespace)
            assert st["stableRevision"] == stable, f"{case}: the stable revision moved"
            assert not st.get("canaryRevision"), f"{case}: an Invalid spec started a rollout"
            assert children(kubectl, namespace, name) == serving, f"{case}: a child object changed"
            update_invalid += 1
        figures["updates_to_running"] = {"rejected": update_rejected, "invalid": update_invalid}

        # 3. the good manifest again: Healthy on the same revision, no rollout
        gitops_apply(kubectl, good)
        wait_for("steady Healthy again", lambda: kubectl.status(name, namespace).get("phase") == "Healthy",
                 timeout=60)
        st = kubectl.status(name, namespace)
        assert st["stableRevision"] == stable and not st.get("canaryRevision")
        assert children(kubectl, namespace, name) == serving
        totals = _traffic_totals(gen.stop())
        during = {k: totals[k] - baseline[k] for k in totals}
        figures["traffic_during_bad_applies"] = during
    assert during["sent"] > 100 and during["error"] == 0 and during["failed"] == 0, during


# --- scenario 14 -------------------------------------------------------------------------------------------

ROUTE_KINDS = ("httproutes.gateway.networking.k8s.io",)
OWNED_KINDS = ("deployments", "replicasets", "services", "endpointslices", "pods", *ROUTE_KINDS)


class DanglingRouteWatch:
    """Polls Services, then routes, and records every route backendRef naming a Service that does not exist.

    Services are listed first: a Service missing at t1 and still referenced by a route seen at t2 > t1 was
    missing while the route pointed at it (nothing is created during deletion), so no false alarms.
    """

    def __init__(self, stack: StackContext, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        api = stack.api_client()
        self.core, self.custom, self.namespace = client.CoreV1Api(api), client.CustomObjectsApi(api), namespace
        self.dangling: list[tuple[float, str, str]] = []
        self.polls = 0
        self._stop = False

    def poll(self) -> int:
        services = {s.metadata.name for s in self.core.list_namespaced_service(self.namespace).items if s.metadata}
        listed: Any = self.custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", self.namespace,
                                                                "httproutes")
        routes: list[dict[str, Any]] = listed["items"]
        for route in routes:
            refs = route_refs(route)
            self.dangling += [(time.time(), route["metadata"]["name"], r) for r in sorted(refs) if r not in services]
        self.polls += 1
        return len(routes)

    def run(self) -> None:
        while not self._stop:
            self.poll()
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop = True


def route_refs(route: dict[str, Any]) -> set[str]:
    """Every Service an HTTPRoute sends to: backendRefs of all rules and its mirror targets (filter or annotation)."""
    refs = {r["name"] for rule in route.get("spec", {}).get("rules") or [] for r in rule.get("backendRefs") or []}
    return refs | {m["backendRef"]["name"] for m in route_mirrors(route, first_rule_only=False)}


class EventLog:
    """Watches Services and HTTPRoutes from a listed state and replays every change in etcd order.

    One etcd orders every write by its revision (resourceVersion), across kinds, so the replay shows each
    state the API server actually went through -- not just the ones a poller happened to sample.
    """

    def __init__(self, stack: StackContext, namespace: str) -> None:
        from kubernetes import client  # noqa: PLC0415

        self.api = stack.api_client()
        self.core, self.custom, self.namespace = client.CoreV1Api(self.api), client.CustomObjectsApi(self.api), \
            namespace
        services: Any = self.core.list_namespaced_service(namespace)
        routes: Any = self.custom.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace,
                                                                "httproutes")
        self.services = {s.metadata.name for s in services.items if s.metadata}
        self.routes = {r["metadata"]["name"]: route_refs(r) for r in routes["items"]}
        self.starts = (services.metadata.resource_version, routes["metadata"]["resourceVersion"])
        self.events: list[tuple[int, str, str, str, set[str]]] = []  # (rv, kind, type, name, refs)
        self._threads: list[Any] = []

    def start(self) -> None:
        import threading  # noqa: PLC0415

        from kubernetes import watch  # noqa: PLC0415

        def follow(kind: str, fn: Any, *args: Any, rv: str) -> None:
            watcher: Any = watch.Watch()  # type: ignore[no-untyped-call]
            for ev in watcher.stream(fn, *args, resource_version=rv, timeout_seconds=30):
                obj = ev["object"]
                if isinstance(obj, dict):  # custom objects come as dicts, Services as V1Service
                    version, name, refs = obj["metadata"]["resourceVersion"], obj["metadata"]["name"], route_refs(obj)
                else:
                    version, name, refs = obj.metadata.resource_version, obj.metadata.name, set()
                self.events.append((int(version), kind, ev["type"], name, refs))
                if kind == "route" and ev["type"] == "DELETED" and not self._live_routes():
                    return

        self._threads = [
            threading.Thread(target=follow, args=("service", self.core.list_namespaced_service, self.namespace),
                             kwargs={"rv": self.starts[0]}, daemon=True),
            threading.Thread(target=follow, args=("route", self.custom.list_namespaced_custom_object,
                                                  "gateway.networking.k8s.io", "v1", self.namespace, "httproutes"),
                             kwargs={"rv": self.starts[1]}, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _live_routes(self) -> set[str]:
        alive = set(self.routes)
        for _, kind, typ, name, _ in sorted(self.events, key=lambda e: e[0]):
            if kind == "route":
                (alive.discard if typ == "DELETED" else alive.add)(name)
        return alive

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout=timeout)

    def dangling(self) -> list[str]:
        """States (in etcd order) in which a live route named a Service that did not exist."""
        services, routes, bad = set(self.services), dict(self.routes), []
        for rv, kind, typ, name, refs in sorted(self.events, key=lambda e: e[0]):
            if kind == "service":
                (services.discard if typ == "DELETED" else services.add)(name)
            elif typ == "DELETED":
                routes.pop(name, None)
            else:
                routes[name] = refs
            bad += [f"rv {rv}: route {r} -> missing Service {ref}" for r, rs in routes.items()
                    for ref in sorted(rs - services)]
        return bad


def leftovers(kubectl: Kubectl, namespace: str, name: str) -> dict[str, list[str]]:
    out = {}
    for kind in OWNED_KINDS:
        listed = kubectl.run("get", kind, "-n", namespace, "-l", f"modelship.dev/deployment={name}", "-o", "name")
        if listed.stdout.strip():
            out[kind] = listed.stdout.split()
    return out


def test_delete_mid_canary_leaves_nothing_and_no_dangling_route(
    kubectl: Kubectl, namespace: str, operator: Any, traffic: Any, stack: StackContext
) -> None:
    """Given a ModelDeployment in the middle of a canary step (stable v1 and canary v2 both serving, the
    HTTPRoute splitting traffic between their Services),
    when the ModelDeployment is deleted (kubectl delete, background propagation as GitOps prune does),
    then the operator removes the HTTPRoute before releasing its finalizer, the real garbage collector
    removes every Deployment, ReplicaSet, Service, EndpointSlice and pod carrying its labels, and in no state
    the API server went through (watch events replayed in resourceVersion order) does an HTTPRoute name a
    Service that does not exist.
    """
    import threading  # noqa: PLC0415

    name = "doomed"
    operator(namespace)
    steps: list[dict[str, Any]] = [{"weight": 30, "duration": "60s"}, {"weight": 60, "duration": "60s"}]
    gitops_apply(kubectl, model_deployment(name, namespace, "1", steps=steps, progress_deadline="120s"))
    wait_for("v1 Healthy", lambda: kubectl.status(name, namespace).get("phase") == "Healthy", timeout=120)
    gen = traffic(namespace, name, rps=20)
    gitops_apply(kubectl, model_deployment(name, namespace, "2", steps=steps, progress_deadline="120s"))
    wait_for("canary at 30%", lambda: kubectl.status(name, namespace).get("canaryWeight") == 30, timeout=120)
    before = leftovers(kubectl, namespace, name)
    assert len(before.get("deployments", [])) == 2 and before.get(ROUTE_KINDS[0]), before

    watch = DanglingRouteWatch(stack, namespace)
    assert watch.poll() == 1 and not watch.dangling, watch.dangling
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    log = EventLog(stack, namespace)
    assert log.routes and not log.dangling()
    log.start()
    with printed_figures("scenario-14 delete mid-canary") as figures:
        figures["children_before"] = {k: len(v) for k, v in before.items()}
        t0 = time.monotonic()
        kubectl.run("delete", "modeldeployment", name, "-n", namespace, "--wait=true", "--timeout=60s")
        figures["mdep_gone_s"] = round(time.monotonic() - t0, 2)
        wait_for("every child garbage-collected", lambda: leftovers(kubectl, namespace, name) == {},
                 timeout=90, interval=0.25)
        figures["children_gone_s"] = round(time.monotonic() - t0, 2)
        time.sleep(1)
        watch.stop()
        thread.join(timeout=10)
        log.join(timeout=30)
        figures["route_polls"] = watch.polls
        figures["dangling_polled"] = watch.dangling[:5]
        deletions = [(rv, kind, name) for rv, kind, typ, name, _ in sorted(log.events) if typ == "DELETED"]
        figures["deletion_order"] = deletions
        figures["dangling_replayed"] = log.dangling()[:5]
        gen.stop()
    assert watch.polls > 5
    assert not watch.dangling, f"an HTTPRoute pointed at a missing Service: {watch.dangling[:5]}"
    assert {k for _, k, _ in deletions} == {"route", "service"}, deletions
    assert not log.dangling(), f"an HTTPRoute named a missing Service: {log.dangling()[:5]}"
    route_gone = max(rv for rv, kind, _ in deletions if kind == "route")
    assert all(rv > route_gone for rv, kind, _ in deletions if kind == "service"), deletions  # routes go first
