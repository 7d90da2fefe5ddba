"""The hostile-spec table (tests/integration/hostile_table.py) through the real API server and the operator.

Given a good manifest with one field made hostile, then:
- the API server refuses it naming the field and the fix, or stores it and the operator refuses it so (or no
  JSON client can even send it);
- the operator's own checks (`check_manifest`: `parse_spec` + `semantic_problems`) refuse every entry naming
  the field and the fix, since an object may predate today's CRD;
- reconciling it over a running revision never raises, and the running revision keeps serving: the stable
  revision, its Deployment and 100% of the traffic stay as they were.

The API server is asked with `kubectl create --dry-run=server`: full admission (schema, CEL, strict fields),
nothing stored, no kubectl annotation added.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from modelship.domain.validation import check_manifest

from e2e.stack import REPO, StackContext
from tests.integration.hostile_table import TABLE, Hostile, good
from tests.unit.test_reconciler import FakeCluster, FakeRouter, FakeRouters, reconciler

pytestmark = pytest.mark.integration

IDS = [entry.id for entry in TABLE]
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def hostile(entry: Hostile) -> dict[str, Any]:
    """The good manifest with `entry.path` set to `entry.value`."""
    doc = good()
    keys: list[str | int] = [
        name if name else int(index) for name, index in _TOKEN.findall(entry.path)
    ]
    node: Any = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = copy.deepcopy(entry.value)
    return doc


# --- the operator's own checks ------------------------------------------------------------------------------


def test_the_table_has_at_least_80_distinct_entries() -> None:
    assert len(TABLE) >= 80 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("entry", TABLE, ids=IDS)
def test_the_operator_refuses_it_naming_field_and_fix(entry: Hostile) -> None:
    field, fix = entry.op_field or entry.field, entry.op_fix or entry.fix
    problems = check_manifest(hostile(entry))
    assert any(field in p.path and fix in p.message for p in problems), [str(p) for p in problems]


# --- the API server -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespace(stack: StackContext) -> Iterator[str]:
    stack.run_kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=modelship-stack",
        "-f", str(REPO / "crds" / "modeldeployments.yaml"),
    )
    stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.modelship.dev")
    name = f"hostile-{uuid.uuid4().hex[:6]}"
    stack.run_kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        stack.run_kubectl("delete", "namespace", name, "--wait=false", check=False)


def admit(stack: StackContext, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(stack.kubectl), f"--kubeconfig={stack.kubeconfig}", "create", "--dry-run=server", "-o", "name",
         "-f", "-"],
        input=text, capture_output=True, text=True, timeout=60, check=False,
    )


@pytest.mark.parametrize("entry", TABLE, ids=IDS)
def test_the_api_server_refuses_it_or_stores_what_the_operator_refuses(
    stack: StackContext, namespace: str, entry: Hostile
) -> None:
    doc = hostile(entry)
    doc["metadata"]["namespace"] = namespace
    proc = admit(stack, json.dumps(doc, ensure_ascii=False))
    if entry.by == "server":
        assert proc.returncode != 0, "admitted"
        assert entry.field in proc.stderr and entry.fix in proc.stderr, proc.stderr
    elif entry.by == "json":  # NaN and infinities: JSON has no such numbers, the client refuses to send them
        assert proc.returncode != 0 and "NaN" not in proc.stdout and "Infinity" not in proc.stdout
    else:
        assert proc.returncode == 0, proc.stderr


# --- reconciling over a running revision --------------------------------------------------------------------

STORABLE = [entry for entry in TABLE if isinstance(hostile(entry)["spec"], dict)]
"""Every entry but a spec that is no object, which the API server refuses under any CRD (type: object)."""


class StaleRouter(FakeRouter):
    async def cleanup(self, owner: Any) -> None:
        self.log.append("cleanup:not-selected")


class Routers(FakeRouters):
    """Tells the selected route's changes from the clean-up of routers the spec does not select."""

    def stale(self, spec: Any) -> list[FakeRouter]:
        return [StaleRouter(self.log)]


def body_of(doc: dict[str, Any], generation: int, status: dict[str, Any] | None = None) -> dict[str, Any]:
    meta = {"name": doc["metadata"]["name"], "namespace": "ml", "uid": "u-1", "generation": generation,
            "annotations": {}}
    return {"metadata": meta, "spec": copy.deepcopy(doc["spec"]), "status": copy.deepcopy(status or {})}


@pytest.mark.parametrize("entry", STORABLE, ids=[entry.id for entry in STORABLE])
async def test_reconciling_it_never_raises_and_the_running_revision_keeps_serving(entry: Hostile) -> None:
    cluster, routers = FakeCluster(), Routers()
    rec = reconciler(cluster, routers)
    running = await rec.reconcile(body_of(good(), 1))
    running = await rec.reconcile(body_of(good(), 1, running.status))
    assert running.status["phase"] == "Healthy", running.status
    deployments = dict(cluster.deployments)
    routers.log.clear()

    result = await rec.reconcile(body_of(hostile(entry), 2, running.status))

    assert result.status["phase"] == "Invalid", result.status
    assert result.status["stableRevision"] == running.status["stableRevision"]
    assert result.status.get("canaryWeight", 0) == 0 and "canaryRevision" not in result.status
    assert cluster.deployments == deployments
    assert set(routers.log) <= {"route:0", "cleanup:not-selected"}, routers.log
