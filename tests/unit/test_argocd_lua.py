"""The Argo CD health check and resource actions, run in Lua 5.1 inside Argo CD's sandbox (as in gopher-lua).

The sandbox mirrors argo-cd util/lua: base, table and package libraries, `os` with only time and date, no
string or math library. A script that leans on anything else fails here before it fails in Argo CD.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51
from modelship.controller.requests import REQUEST_ANNOTATION, REQUESTER_ANNOTATION, parse_request

ROOT = Path(__file__).resolve().parents[2] / "deploy" / "argocd"
ACTIONS = ("promote", "promote-full", "abort", "pause", "resume", "retry", "undo")
ARGOCD_SERVER = "system:serviceaccount:argocd:argocd-server"

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


def run_lua(script: str, obj: dict[str, Any]) -> Any:
    """Execute `script` with global `obj` in a fresh sandboxed runtime; return its result as Python data."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute("getmetatable('').__index = nil")  # no ("x"):sub() either
    runtime.execute(SANDBOX)
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    return to_python(runtime.execute(script))


def to_python(value: Any) -> Any:
    if lua51.lua_type(value) != "table":
        return value
    items = dict(value.items())
    if items and all(isinstance(k, int) for k in items) and sorted(items) == list(range(1, len(items) + 1)):
        return [to_python(items[k]) for k in sorted(items)]
    return {k: to_python(v) for k, v in items.items()}


def mdep(status: dict[str, Any] | None, generation: int = 3) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": "fraud-scorer",
            "namespace": "ml",
            "generation": generation,
            "resourceVersion": "4711",
            "annotations": {"team": "risk"},
        },
        "spec": {
            "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://m"},
            "rollout": {"canary": {"steps": [{"weight": 5, "duration": "5m"}, {"approval": {}}]}},
        },
    }
    if status is not None:
        obj["status"] = {"observedGeneration": generation, **status}
    return obj


def health(status: dict[str, Any] | None, generation: int = 3) -> dict[str, str]:
    result: dict[str, str] = run_lua((ROOT / "health.lua").read_text(), mdep(status, generation))
    return result


CANARY = {"canaryRevision": {"version": "7", "hash": "9ab12e"}, "message": "step 1/2: 5% for 5m"}


@pytest.mark.parametrize(
    ("status", "expected", "message"),
    [
        ({"phase": "Healthy", "message": "serving v7"}, "Healthy", "serving v7"),
        ({"phase": "Pending"}, "Progressing", "Pending"),
        ({"phase": "Progressing", **CANARY}, "Progressing", "step 1/2: 5% for 5m"),
        ({"phase": "Paused", **CANARY}, "Suspended", "Paused: step 1/2: 5% for 5m"),
        ({"phase": "Progressing", "paused": True, **CANARY}, "Suspended", "Paused: step 1/2: 5% for 5m"),
        (
            {"phase": "Progressing", "awaitingApproval": True, **CANARY},
            "Suspended",
            "Awaiting approval (run the promote action): step 1/2: 5% for 5m",
        ),
        (
            {"phase": "RolledBack", "message": "errorRate 0.2 > 0.01"},
            "Degraded",
            "RolledBack: errorRate 0.2 > 0.01",
        ),
        ({"phase": "Failed", "message": "no GPUs"}, "Degraded", "Failed: no GPUs"),
        ({"phase": "Invalid", "message": "bad step"}, "Degraded", "Invalid: bad step"),
        ({"phase": "RolledBack", "awaitingApproval": True, "message": "m"}, "Degraded", "RolledBack: m"),
        ({"phase": "Exploded", "message": "m"}, "Unknown", "Unknown phase Exploded: m"),
        (
            {"phase": "Progressing", "stage": "PostPromotion", "message": "watching 7 after promotion: 4m of 10m left"},
            "Progressing",
            "Watching after promotion (a breach rolls back to the previous revision): watching 7 after promotion: "
            "4m of 10m left",
        ),
    ],
)
def test_health_maps_every_phase(status: dict[str, Any], expected: str, message: str) -> None:
    assert health(status) == {"status": expected, "message": message}


def test_health_is_progressing_while_the_operator_lags_the_spec() -> None:
    stale = mdep({"phase": "Healthy", "message": "serving v6"}, generation=4)
    stale["status"]["observedGeneration"] = 3
    result = run_lua((ROOT / "health.lua").read_text(), stale)
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the modelship operator to observe generation 4",
    }
    no_observed = mdep({"phase": "RolledBack"})
    del no_observed["status"]["observedGeneration"]
    assert run_lua((ROOT / "health.lua").read_text(), no_observed)["status"] == "Progressing"


def test_health_without_status() -> None:
    assert health(None) == {
        "status": "Progressing",
        "message": "Waiting for the modelship operator to report status",
    }
    assert health({})["status"] == "Progressing"


def discovery(status: dict[str, Any] | None) -> set[str]:
    actions = run_lua((ROOT / "actions" / "discovery.lua").read_text(), mdep(status))
    assert set(actions) == set(ACTIONS)
    return {name for name, spec in actions.items() if not spec["disabled"]}


def test_discovery_enables_only_meaningful_actions() -> None:
    assert discovery(None) == set()
    assert discovery({"phase": "Healthy"}) == set()
    assert discovery({"phase": "Progressing", **CANARY}) == {"promote-full", "abort", "pause"}
    assert discovery({"phase": "Progressing", "awaitingApproval": True, **CANARY}) == {
        "promote",
        "promote-full",
        "abort",
        "pause",
    }
    assert discovery({"phase": "Paused", **CANARY}) == {"promote-full", "abort", "resume"}
    assert discovery({"phase": "Progressing", "stage": "Promoting", **CANARY}) == {"abort", "pause"}
    assert discovery({"phase": "RolledBack"}) == {"retry"}
    assert discovery({"phase": "Failed"}) == {"retry"}
    previous = {"previousRevision": {"version": "6", "hash": "5d8f7c"}}
    assert discovery({"phase": "Progressing", "stage": "PostPromotion", **previous}) == {"abort", "undo"}
    served = {"revisions": [{"version": "6", "hash": "5d8f7c"}, {"version": "7", "hash": "9ab12e"}]}
    assert discovery({"phase": "Healthy", "stage": "Stable", **served}) == {"undo"}
    assert discovery({"phase": "Healthy", "stage": "Stable", "revisions": served["revisions"][:1]}) == set()


@pytest.mark.parametrize("action", ACTIONS)
def test_action_sets_only_the_request_annotation(action: str) -> None:
    before = mdep({"phase": "Progressing", **CANARY})
    after = run_lua((ROOT / "actions" / action / "action.lua").read_text(), copy.deepcopy(before))
    annotations = after["metadata"].pop("annotations")
    before_annotations = before["metadata"].pop("annotations")
    assert after["spec"] == before["spec"] and after["metadata"] == before["metadata"]
    assert after["status"] == before["status"]
    assert annotations.pop("team") == before_annotations["team"]
    written = {key: annotations.pop(key) for key in (REQUEST_ANNOTATION, REQUESTER_ANNOTATION)}
    assert annotations == {}
    request = json.loads(written[REQUEST_ANNOTATION])
    parsed = parse_request(written, policy_in_force=True)
    assert parsed is not None and parsed.problem is None
    assert (parsed.action, parsed.by, parsed.verified) == (action, ARGOCD_SERVER, True)
    assert parsed.at is not None and abs(datetime.now(UTC) - parsed.at) < timedelta(seconds=5)
    assert request["at"].endswith("Z") and len(request["at"]) == 20
    assert request["id"].startswith("argocd-") and request["id"].endswith(f"-{action}-4711")
    assert "by" not in request  # who asked is requested-by alone, checked by the admission policy


@pytest.mark.parametrize("action", ACTIONS)
def test_action_replaces_a_previous_requester(action: str) -> None:
    """An earlier request by someone else stays in the annotations; the action must not send its own request
    under that name (the admission policy would refuse it, and history would blame the wrong user)."""
    obj = mdep({"phase": "Progressing", **CANARY})
    obj["metadata"]["annotations"].update({REQUEST_ANNOTATION: '{"id":"old"}', REQUESTER_ANNOTATION: "alice"})
    after = run_lua((ROOT / "actions" / action / "action.lua").read_text(), obj)
    assert after["metadata"]["annotations"][REQUESTER_ANNOTATION] == ARGOCD_SERVER
    assert json.loads(after["metadata"]["annotations"][REQUEST_ANNOTATION])["id"] != "old"


def test_generate_renders_the_actions_for_another_argo_cd_identity() -> None:
    generate = generator()
    other = "system:serviceaccount:kube-system:argocd-manager"
    data = yaml.safe_load(generate.render(requester=other))["data"]
    definitions = yaml.safe_load(data["resource.customizations.actions.modelship.dev_ModelDeployment"])["definitions"]
    assert [d["name"] for d in definitions] == list(ACTIONS)
    for definition in definitions:
        after = run_lua(definition["action.lua"], mdep({"phase": "Progressing", **CANARY}))
        assert after["metadata"]["annotations"][REQUESTER_ANNOTATION] == other
        assert ARGOCD_SERVER not in definition["action.lua"]


@pytest.mark.parametrize("name", ["", 'a"b', "a\\b", "line\nbreak", "x" * 254])
def test_generate_refuses_a_requester_that_breaks_the_lua(name: str) -> None:
    with pytest.raises(ValueError, match="--requester"):
        generator().render(requester=name)


def test_action_creates_annotations_when_absent() -> None:
    obj = mdep({"phase": "RolledBack"})
    del obj["metadata"]["annotations"]
    after = run_lua((ROOT / "actions" / "retry" / "action.lua").read_text(), obj)
    assert json.loads(after["metadata"]["annotations"]["modelship.dev/request"])["action"] == "retry"


def generator() -> Any:
    """deploy/argocd/generate.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("argocd_generate", ROOT / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    return generate


def test_argocd_cm_patch_matches_the_lua_files() -> None:
    generate = generator()
    checked_in = (ROOT / "argocd-cm-patch.yaml").read_text()
    assert checked_in == generate.render(), (
        "run: python deploy/argocd/generate.py > deploy/argocd/argocd-cm-patch.yaml"
    )
    data = yaml.safe_load(checked_in)["data"]
    assert (
        data["resource.customizations.health.modelship.dev_ModelDeployment"]
        == (ROOT / "health.lua").read_text()
    )
    actions = yaml.safe_load(data["resource.customizations.actions.modelship.dev_ModelDeployment"])
    assert actions["discovery.lua"] == (ROOT / "actions" / "discovery.lua").read_text()
    assert {d["name"]: d["action.lua"] for d in actions["definitions"]} == {
        a: (ROOT / "actions" / a / "action.lua").read_text() for a in ACTIONS
    }


def test_the_sandbox_is_as_strict_as_argo_cds() -> None:
    for script in (
        "return string.format('%d', 1)",
        "return ('abc'):sub(1, 1)",
        "return math.random()",
        "return io.open('/etc/hostname')",
    ):
        with pytest.raises(lua51.LuaError):
            run_lua(script, {})
    assert run_lua("local os = require('os'); return os.date('!%Y')", {}) == str(datetime.now(UTC).year)
