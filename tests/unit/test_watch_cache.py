"""The watch cache: kept by listings and watch events (test_informer.py), versions decide, our writes and
deletes are never undone by a late event, and `ensure` writes only what would change something."""

from __future__ import annotations

from typing import Any

from adapter_fixtures import OWNER, fake_kube
from modelship.adapters.cache import APPLIED_HASH, WatchCache, ensure, with_hash


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
    assert not cache.observe(None, deployment("a", 11, replicas=3))  # listed again (a relist after 410)
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
