"""The watch cache: primed by one paged LIST per kind, kept by watch events, versions decide, our writes and
deletes are never undone by a late event, and `ensure` writes only what would change something."""

from __future__ import annotations

from typing import Any

from adapter_fixtures import OWNER, FakeTransport, fake_kube
from modelship.adapters.cache import APPLIED_HASH, WatchCache, ensure, with_hash
from modelship.adapters.kube import KubeError


def deployment(name: str, version: int, replicas: int = 1, controller: str = OWNER.uid,
               labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}", "resourceVersion": str(version),
                     "labels": labels or {"app.kubernetes.io/managed-by": "modelship"},
                     "ownerReferences": [{"controller": True, "uid": controller, "kind": "ModelDeployment"}],
                     "managedFields": [{"manager": "modelship"}]},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "triton"}]}}},
        "status": {"readyReplicas": replicas},
    }


class PagedTransport(FakeTransport):
    """LISTs: two pages of Deployments, nothing of the other served kinds, 404 for the route kinds (their CRDs
    are not installed). Records each LIST's query."""

    def __init__(self) -> None:
        super().__init__()
        self.queries: list[dict[str, str]] = []
        self.cache: WatchCache | None = None
        self.cached_before_page_2: int | None = None

    def request(self, method: str, path: str, *, query: Any = None, body: Any = None,
                content_type: str | None = None) -> Any:
        params = dict(query or [])
        self.queries.append({"path": path, **params})
        if "httproutes" in path or "virtualservices" in path:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        if path.endswith("/deployments"):
            if params.get("continue") == "page-2":
                if self.cache is not None:
                    self.cached_before_page_2 = self.cache.size()
                return {"items": [{k: v for k, v in deployment("b", 6).items() if k != "kind"}], "metadata": {}}
            return {"items": [{k: v for k, v in deployment("a", 5).items() if k != "kind"}],
                    "metadata": {"continue": "page-2"}}
        return {"items": [], "metadata": {}}


async def test_given_a_restart_when_primed_then_every_page_is_listed_and_unserved_kinds_are_skipped() -> None:
    transport = PagedTransport()
    kube, _ = fake_kube(transport)
    cache = WatchCache(kube)
    transport.cache = cache
    assert not cache.authoritative
    counts = await cache.prime(["ml"])
    # page by page: the first page was kept (trimmed) before the second was read, so a listing of 15,000
    # Services is never all in memory at once (it was: 2.1 GiB RSS after a restart at 10,000 objects)
    assert transport.cached_before_page_2 == 1
    assert counts["Deployment"] == 2 and cache.authoritative
    assert all(q["labelSelector"] == "app.kubernetes.io/managed-by=modelship" and q["limit"] for q in transport.queries)
    assert [q.get("continue") for q in transport.queries if q["path"].endswith("/deployments")] == [None, "page-2"]
    names = {d["metadata"]["name"] for d in await cache.owned("apps/v1", "Deployment", "ml", OWNER.uid, {})}
    assert names == {"a", "b"}
    cached = cache.cached("Deployment", OWNER.uid, "a")
    assert cached is not None and "managedFields" not in cached["metadata"] and "template" not in cached["spec"]


async def test_an_event_older_than_our_write_does_not_undo_it() -> None:
    cache = WatchCache(fake_kube()[0])
    assert cache.observe(None, deployment("a", 5, replicas=1))
    cache.remember(deployment("a", 9, replicas=3))  # the API server's answer to our apply
    assert not cache.observe("MODIFIED", deployment("a", 7, replicas=1))  # the watch, late: no news
    assert cache.cached("Deployment", OWNER.uid, "a")["spec"]["replicas"] == 3  # type: ignore[index]
    assert cache.observe("MODIFIED", deployment("a", 10, replicas=4))  # a newer change: news
    assert cache.cached("Deployment", OWNER.uid, "a")["spec"]["replicas"] == 4  # type: ignore[index]


async def test_the_echo_of_our_own_apply_is_not_news_but_what_others_change_next_is() -> None:
    """Every apply comes back as a watch event with the version its answer had: waking the owner for it
    would cost a reconcile per write that can only find nothing to do. kcm's status update after it is news."""
    cache = WatchCache(fake_kube()[0])
    assert cache.observe(None, deployment("a", 5))
    cache.remember(deployment("a", 9, replicas=3))
    assert not cache.observe("MODIFIED", deployment("a", 9, replicas=3))  # our apply, echoed
    assert cache.observe("MODIFIED", deployment("a", 11, replicas=3))  # readyReplicas moved
    assert not cache.observe(None, deployment("a", 11, replicas=3))  # listed again (kopf's initial listing)
    cache.forget(deployment("a", 11))
    assert not cache.observe("MODIFIED", deployment("a", 11))  # about what we deleted
    assert cache.observe("DELETED", deployment("a", 12))


async def test_an_object_we_deleted_is_not_brought_back_by_a_late_event_but_a_new_one_shows() -> None:
    cache = WatchCache(fake_kube()[0])
    cache.observe(None, deployment("a", 5))
    cache.forget(deployment("a", 5))
    cache.observe("MODIFIED", deployment("a", 5))
    assert cache.cached("Deployment", OWNER.uid, "a") is None
    cache.observe("ADDED", deployment("a", 12))  # created again since
    assert cache.cached("Deployment", OWNER.uid, "a") is not None
    cache.observe("DELETED", deployment("a", 13))
    assert cache.cached("Deployment", OWNER.uid, "a") is None


async def test_children_are_found_by_controller_and_labels_only() -> None:
    cache = WatchCache(fake_kube()[0])
    cache.observe(None, deployment("ours", 5))
    cache.observe(None, deployment("theirs", 5, controller="someone-else"))
    cache.observe(None, deployment("other-label", 6, labels={"team": "x"}))
    found = await cache.owned("apps/v1", "Deployment", "ml", OWNER.uid, {"app.kubernetes.io/managed-by": "modelship"})
    assert [d["metadata"]["name"] for d in found] == ["ours"]


async def test_ensure_writes_only_when_the_hash_or_a_drift_prone_field_differs() -> None:
    kube, transport = fake_kube()
    cache = WatchCache(kube)
    desired = deployment("a", 0)
    desired["metadata"].pop("resourceVersion")
    desired["metadata"].pop("managedFields")
    desired["metadata"].pop("uid")
    desired.pop("status")
    applied = {**with_hash(desired), "metadata": {**with_hash(desired)["metadata"], "resourceVersion": "20"}}
    cache.observe(None, applied)
    assert await ensure(kube, cache, desired) is None and not transport.writes()
    scaled = {**applied, "spec": {**applied["spec"], "replicas": 0},
              "metadata": {**applied["metadata"], "resourceVersion": "21"}}
    cache.observe("MODIFIED", scaled)  # someone scaled it by hand: the hash still matches, replicas do not
    await ensure(kube, cache, desired)
    assert len(transport.writes()) == 1
    sent = transport.writes()[0].body
    assert sent["metadata"]["annotations"][APPLIED_HASH] == applied["metadata"]["annotations"][APPLIED_HASH]


async def test_a_child_event_wakes_its_model_deployment_only_when_it_is_news() -> None:
    from types import SimpleNamespace  # noqa: PLC0415

    from modelship import handlers  # noqa: PLC0415

    woken: list[str] = []
    cache = WatchCache(fake_kube()[0])
    loop = SimpleNamespace(wake=lambda body: woken.append(body["metadata"]["resourceVersion"]))
    memo: Any = SimpleNamespace(operator=SimpleNamespace(cache=cache, loop=loop))
    cache.remember(deployment("a", 9))
    for event_type, version in (("MODIFIED", 9), ("MODIFIED", 10), (None, 10), ("DELETED", 11)):
        await handlers._child_event({"type": event_type, "object": deployment("a", version)}, memo)
    assert woken == ["10", "11"]
