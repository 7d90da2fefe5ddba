"""The informer: children listed once (paged), then watched from the listing's version; watched again from the
last version seen (never listed again) when the server ends a watch; listed again only when that version is
gone (410), dropping what was deleted meanwhile; a kind the cluster does not serve is looked for again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from adapter_fixtures import OWNER, FakeTransport, fake_kube
from modelship.adapters.cache import WatchCache
from modelship.adapters.informer import UNSERVED_RETRY_S, ChildInformer
from modelship.adapters.kube import KubeError
from test_watch_cache import deployment

MANAGED = "app.kubernetes.io/managed-by=modelship"


def listed(obj: dict[str, Any]) -> dict[str, Any]:
    """As a LIST answers: items carry no kind."""
    return {k: v for k, v in obj.items() if k != "kind"}


class FakeApi(FakeTransport):
    """Deployments at a resourceVersion, listed one per page; each Deployment watch plays the next script
    (events, or an exception to raise). Route kinds are not served unless `routes_served`; other kinds are
    empty, and their watches wait until cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.deployments: dict[str, dict[str, Any]] = {}
        self.version = 10
        self.scripts: list[list[dict[str, Any]] | KubeError] = []
        self.watched_from: list[str] = []
        self.queries: list[dict[str, str]] = []
        self.routes_served = False
        self.cache: WatchCache | None = None
        self.cached_before_page_2: int | None = None

    def request(self, method: str, path: str, *, query: Any = None, body: Any = None,
                content_type: str | None = None) -> Any:
        params = dict(query or [])
        self.queries.append({"path": path, **params})
        if ("httproutes" in path or "virtualservices" in path) and not self.routes_served:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        meta: dict[str, str] = {"resourceVersion": str(self.version)}
        if not path.endswith("/deployments"):
            return {"items": [], "metadata": meta}
        index = int(params.get("continue") or 0)
        if index == 1 and self.cache is not None:
            self.cached_before_page_2 = self.cache.size()
        names = sorted(self.deployments)
        if index + 1 < len(names):
            meta["continue"] = str(index + 1)
        return {"items": [listed(self.deployments[n]) for n in names[index:index + 1]], "metadata": meta}

    async def stream(self, path: str, *, query: Any) -> AsyncIterator[dict[str, Any]]:
        params = dict(query)
        assert params["watch"] == "1" and params["labelSelector"] == MANAGED and params["allowWatchBookmarks"]
        if path.endswith("/deployments") and self.scripts:
            self.watched_from.append(params["resourceVersion"])
            script = self.scripts.pop(0)
            if isinstance(script, KubeError):
                raise script
            for event in script:
                yield event
            return
        await asyncio.Event().wait()

    def lists_of(self, plural: str) -> int:
        return sum(1 for q in self.queries if q["path"].endswith(plural) and not q.get("continue"))


def informer_for(api: FakeApi) -> tuple[ChildInformer, list[tuple[str, str]], list[float]]:
    woken: list[tuple[str, str]] = []
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    cache = WatchCache(fake_kube(api)[0])
    api.cache = cache
    def wake(obj: dict[str, Any]) -> None:
        woken.append((obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))

    return ChildInformer(fake_kube(api)[0], cache, wake, ["ml"], sleep=sleep), woken, sleeps


def backoffs(sleeps: list[float]) -> list[float]:
    """The waits after failures (not the unserved route kinds' slow polling)."""
    return [s for s in sleeps if s != UNSERVED_RETRY_S]


async def run_until(informer: ChildInformer, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(informer.run())
    for _ in range(2000):
        if done():
            break
        await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert done()


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "object": obj}


def bookmark(version: int) -> dict[str, Any]:
    return event("BOOKMARK", {"kind": "Deployment", "metadata": {"resourceVersion": str(version)}})


async def test_given_a_restart_when_primed_then_every_page_is_listed_and_unserved_kinds_are_skipped() -> None:
    api = FakeApi()
    api.deployments = {"a": deployment("a", 5), "b": deployment("b", 6)}
    informer, _, _ = informer_for(api)
    assert not informer.cache.authoritative
    counts = await informer.prime()
    # page by page: the first page was kept (trimmed) before the second was read, so a listing of 15,000
    # Services is never all in memory at once (it was: 2.1 GiB RSS after a restart at 10,000 objects)
    assert api.cached_before_page_2 == 1
    assert counts == {"Deployment": 2, "ReplicaSet": 0, "Pod": 0, "Service": 0} and informer.cache.authoritative
    assert all(q["labelSelector"] == MANAGED and q["limit"] and "/namespaces/ml/" in q["path"] for q in api.queries)
    assert [q.get("continue") for q in api.queries if q["path"].endswith("/deployments")] == [None, "1"]
    cached = informer.cache.cached("Deployment", OWNER.uid, "a")
    assert cached is not None and "managedFields" not in cached["metadata"] and "template" not in cached["spec"]


async def test_the_watch_starts_at_the_listing_version_resumes_after_the_server_ends_it_and_wakes_on_news() -> None:
    api = FakeApi()
    api.deployments = {"a": deployment("a", 5)}
    informer, woken, sleeps = informer_for(api)
    await informer.prime()
    informer.cache.remember(deployment("a", 12, replicas=3))  # our own apply's answer
    api.scripts = [
        [event("MODIFIED", deployment("a", 11)),  # older than our write: not news
         event("MODIFIED", deployment("a", 12, replicas=3)),  # the echo of our apply: not news
         event("MODIFIED", deployment("a", 13, replicas=3)),  # the ReplicaSet controller moved it: news
         bookmark(15)],
        [event("ADDED", deployment("b", 16))],
    ]
    await run_until(informer, lambda: len(api.watched_from) == 2 and not api.scripts and len(woken) == 2)
    assert api.watched_from == ["10", "15"]  # from the listing, then from the bookmark
    assert woken == [("a", "13"), ("b", "16")]
    assert api.lists_of("/deployments") == 1 and not backoffs(sleeps)  # the server ending a watch is no failure


async def test_given_a_version_too_old_when_watching_then_it_lists_again_and_drops_what_was_deleted() -> None:
    api = FakeApi()
    api.deployments = {"a": deployment("a", 5), "b": deployment("b", 6)}
    informer, woken, _ = informer_for(api)
    await informer.prime()
    api.deployments = {"b": deployment("b", 6), "c": deployment("c", 19)}  # a deleted, c created, unseen
    api.version = 20
    api.scripts = [[event("ERROR", {"kind": "Status", "code": 410, "reason": "Expired"})], []]
    await run_until(informer, lambda: api.watched_from == ["10", "20"])
    assert informer.relists == 1 and api.lists_of("/deployments") == 2
    assert informer.cache.cached("Deployment", OWNER.uid, "a") is None
    assert informer.cache.cached("Deployment", OWNER.uid, "c") is not None
    assert sorted(woken) == [("a", "5"), ("c", "19")]  # b did not change: its owner sleeps on


async def test_a_failed_watch_backs_off_and_resumes_from_the_same_version() -> None:
    api = FakeApi()
    informer, _, sleeps = informer_for(api)
    await informer.prime()
    api.scripts = [KubeError(0, "ClientConnectorError", "connection refused"), KubeError(500, "InternalError"), []]
    await run_until(informer, lambda: len(api.watched_from) == 3)
    assert api.watched_from == ["10", "10", "10"] and backoffs(sleeps) == [1.0, 2.0]
    assert api.lists_of("/deployments") == 1


async def test_a_route_kind_installed_after_start_is_listed_and_watched_without_a_restart() -> None:
    api = FakeApi()
    informer, _, sleeps = informer_for(api)
    counts = await informer.prime()
    assert "HTTPRoute" not in counts
    api.routes_served = True  # the Gateway API CRDs were installed since
    await run_until(informer, lambda: api.lists_of("/httproutes") >= 2)
    assert UNSERVED_RETRY_S in sleeps
