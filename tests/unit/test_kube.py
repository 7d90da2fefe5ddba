"""Kubernetes client wrapper: SSA content type and field manager, 404 handling, revision states, Events."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import AsyncIterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
from adapter_fixtures import CANARY, OWNER, STABLE, fake_kube, make_spec
from kubernetes import client
from modelship.adapters import kube as kube_mod
from modelship.adapters import objects
from modelship.adapters.cluster import KubeCluster
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.transport import AsyncTransport
from modelship.domain.actions import EventType, Role
from modelship.domain.revision import revision_hash
from modelship.domain.status import Revision


async def test_apply_is_forced_server_side_apply_by_modelship() -> None:
    kube, t = fake_kube()
    obj = objects.entry_service(OWNER)
    await kube.apply(obj)
    (call,) = t.calls
    assert call.method == "PATCH"
    assert call.path == "/api/v1/namespaces/ml/services/fraud-scorer"
    assert call.content_type == "application/apply-patch+yaml"
    assert dict(call.query) == {"fieldManager": "modelship", "force": "true", "fieldValidation": "Strict"}
    assert call.body == obj
    await kube.apply(obj, dry_run=True)
    assert ("dryRun", "All") in t.calls[-1].query


def test_resource_paths() -> None:
    assert (kube_mod.resource_path("apps/v1", "Deployment", "ml", "a")
            == "/apis/apps/v1/namespaces/ml/deployments/a")
    assert kube_mod.resource_path("v1", "Pod", "ml") == "/api/v1/namespaces/ml/pods"
    assert (kube_mod.resource_path("gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "r")
            == "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/r")
    assert (kube_mod.resource_path("networking.istio.io/v1", "VirtualService", "ml")
            == "/apis/networking.istio.io/v1/namespaces/ml/virtualservices")


async def test_get_and_delete_treat_404_as_absent_and_list_uses_label_selector() -> None:
    kube, t = fake_kube()
    assert await kube.get("v1", "Service", "ml", "nope") is None
    assert await kube.delete("v1", "Service", "ml", "nope") is False
    t.lists["/api/v1/namespaces/ml/pods"] = [{"metadata": {"name": "p"}}]
    assert await kube.list("v1", "Pod", "ml", {"b": "2", "a": "1"}) == [{"metadata": {"name": "p"}}]
    assert t.calls[-1].query == [("labelSelector", "a=1,b=2")]


def _controller(uid: str) -> list[dict[str, Any]]:
    return [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "n", "uid": uid, "controller": True}]


def _dep(rev: str, replicas: int, ready: int, generation: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": f"fraud-scorer-{rev}", "generation": generation, "uid": f"dep-{rev}",
                     "labels": {"modelship.dev/revision": rev}, "ownerReferences": _controller(OWNER.uid)},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": 2, "readyReplicas": ready, "updatedReplicas": replicas},
    }


def _rs(rev: str) -> dict[str, Any]:
    return {"metadata": {"name": f"rs-{rev}", "uid": f"rs-{rev}", "ownerReferences": _controller(f"dep-{rev}")}}


def _pod(rev: str, ready: bool, unschedulable: str | None = None, ip: str = "10.0.0.1") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": unschedulable})
    return {"metadata": {"name": f"p-{rev}-{ip}", "labels": {"modelship.dev/revision": rev},
                         "ownerReferences": _controller(f"rs-{rev}")},
            "status": {"conditions": conditions, "podIP": ip}}


async def test_revision_states_read_ready_replicas_and_scheduler_message() -> None:
    kube, t = fake_kube()
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = [_dep(STABLE.hash, 4, 4), _dep(CANARY.hash, 2, 1)]
    msg = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    t.lists["/api/v1/namespaces/ml/pods"] = [_pod(CANARY.hash, True), _pod(CANARY.hash, False, msg)]
    t.lists["/apis/apps/v1/namespaces/ml/replicasets"] = [_rs(CANARY.hash)]
    states = await KubeCluster(kube, instance="test").revision_states(OWNER)
    assert states[STABLE.hash].available and states[STABLE.hash].unschedulable is None
    canary = states[CANARY.hash]
    assert (canary.desired_replicas, canary.ready_replicas, canary.unschedulable) == (2, 1, msg)
    assert not canary.available
    selector = "app.kubernetes.io/managed-by=modelship,modelship.dev/deployment=fraud-scorer"
    assert all(c.query == [("labelSelector", selector)] for c in t.calls)


async def test_revision_states_skip_the_pod_list_when_everything_is_ready() -> None:
    kube, t = fake_kube()
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = [_dep(STABLE.hash, 4, 4, generation=3)]
    states = await KubeCluster(kube, instance="test").revision_states(OWNER)
    assert len(t.calls) == 1
    assert states[STABLE.hash].updated is False  # controller has not observed the latest generation


async def test_ready_pod_ips_are_only_ready_pods_of_that_revision() -> None:
    kube, t = fake_kube()
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = [_dep(CANARY.hash, 2, 1)]
    t.lists["/apis/apps/v1/namespaces/ml/replicasets"] = [_rs(CANARY.hash)]
    t.lists["/api/v1/namespaces/ml/pods"] = [_pod(CANARY.hash, True, ip="10.0.0.2"),
                                             _pod(CANARY.hash, False, ip="10.0.0.3")]
    assert await KubeCluster(kube, instance="test").ready_pod_ips(OWNER, CANARY.hash) == ["10.0.0.2"]
    (label_selector,) = dict(t.calls[0].query).values()
    assert f"modelship.dev/revision={CANARY.hash}" in label_selector


async def test_a_revision_the_spec_no_longer_describes_keeps_its_pod_template() -> None:
    """Rolling out a new repository must not roll the stable pods onto it: only replicas change for them."""
    kube, t = fake_kube()
    cluster = KubeCluster(kube, instance="test")
    old_spec = make_spec(model={"name": "fraud_scorer", "version": "6", "repository": "s3://models/triton"})
    stable = Revision(version="6", hash=revision_hash(old_spec))
    await cluster.apply_revision(OWNER, old_spec, stable, Role.STABLE, 2)
    path = f"/apis/apps/v1/namespaces/ml/deployments/fraud-scorer-{stable.hash}"
    created = copy.deepcopy(t.objects[path]["spec"]["template"])
    t.objects[path]["spec"]["template"]["metadata"]["creationTimestamp"] = None  # as the API server returns it
    new_spec = make_spec(model={"name": "fraud_scorer", "version": "7", "repository": "s3://models/renamed"})
    await cluster.apply_revision(OWNER, new_spec, stable, Role.STABLE, 3)
    applied = t.objects[path]
    assert applied["spec"]["replicas"] == 3
    assert applied["spec"]["template"] == created
    assert "--model-repository=s3://models/triton" in applied["spec"]["template"]["spec"]["containers"][0]["args"]
    # The revision the spec asks for is rendered from the spec.
    canary = Revision(version="7", hash=revision_hash(new_spec))
    await cluster.apply_revision(OWNER, new_spec, canary, Role.CANARY, 1)
    args = t.objects[f"/apis/apps/v1/namespaces/ml/deployments/fraud-scorer-{canary.hash}"]["spec"]["template"][
        "spec"]["containers"][0]["args"]
    assert "--model-repository=s3://models/renamed" in args


async def test_apply_and_delete_revision() -> None:
    kube, t = fake_kube()
    cluster = KubeCluster(kube, instance="test")
    await cluster.apply_revision(OWNER, make_spec(), CANARY, Role.CANARY, 2)
    path = f"/apis/apps/v1/namespaces/ml/deployments/fraud-scorer-{CANARY.hash}"
    assert t.objects[path]["spec"]["replicas"] == 2
    await cluster.delete_revision(OWNER, CANARY.hash)
    assert path not in t.objects
    assert dict(t.calls[-1].query) == {"propagationPolicy": "Background"}


async def test_emit_event_targets_the_model_deployment() -> None:
    kube, t = fake_kube()
    await KubeCluster(kube, instance="op-0").emit_event(OWNER, EventType.WARNING, "RolledBack", "x" * 5000)
    (call,) = t.calls
    assert (call.method, call.path) == ("POST", "/api/v1/namespaces/ml/events")
    ev = call.body
    assert ev["involvedObject"] == {"apiVersion": "modelship.dev/v1alpha1", "kind": "ModelDeployment",
                                    "name": "fraud-scorer", "namespace": "ml", "uid": OWNER.uid}
    assert (ev["type"], ev["reason"]) == ("Warning", "RolledBack")
    assert ev["reportingComponent"] == "modelship.dev/operator"
    assert ev["reportingInstance"] == "op-0"
    assert len(ev["message"]) == kube_mod.EVENT_MESSAGE_LIMIT
    assert ev["metadata"]["generateName"] == "fraud-scorer."


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in API server that records what the real kubernetes client sends."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        self.seen.append({"method": self.command, "path": url.path, "query": parse_qs(url.query),
                          "headers": dict(self.headers), "body": body})
        if url.path.endswith("/missing"):
            code = 404
            reply = {"kind": "Status", "reason": "NotFound", "message": 'services "missing" not found'}
        else:
            code, reply = 200, json.loads(body) if body else {"kind": "Service"}
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_POST = do_DELETE = _handle


@pytest.fixture
async def recorder() -> AsyncIterator[Kube]:
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen.clear()
    config = client.Configuration()
    config.host = f"http://127.0.0.1:{server.server_port}"
    config.api_key = {"authorization": "Bearer s3cr3t"}
    config.proxy = None
    transport = AsyncTransport.from_configuration(config)
    yield Kube(transport)
    await transport.close()
    server.shutdown()


async def test_real_client_sends_apply_patch_yaml_with_field_manager(recorder: Kube) -> None:
    obj = objects.role_service(OWNER, STABLE, Role.STABLE)
    result = await recorder.apply(obj)
    assert result["metadata"]["name"] == "fraud-scorer-stable"
    (req,) = _Recorder.seen
    assert req["method"] == "PATCH"
    assert req["path"] == "/api/v1/namespaces/ml/services/fraud-scorer-stable"
    assert req["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert req["query"] == {"fieldManager": ["modelship"], "force": ["true"], "fieldValidation": ["Strict"]}
    assert req["headers"]["Authorization"] == "Bearer s3cr3t"
    assert json.loads(req["body"]) == obj


async def test_real_client_maps_404_and_keeps_the_status_message(recorder: Kube) -> None:
    assert await recorder.get("v1", "Service", "ml", "missing") is None
    with pytest.raises(KubeError) as err:
        await recorder.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "missing",
                                                                                 "namespace": "ml"}})
    assert err.value.status == 404 and "not found" in err.value.message
    assert "s3cr3t" not in str(err.value)
