"""The async API transport: token-bucket rate limit, error mapping against a loopback server, Kube's write fence."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from adapter_fixtures import OWNER, FakeTransport, fake_kube
from aiohttp import web
from aiohttp.test_utils import TestServer
from modelship.adapters import objects
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.transport import AsyncTransport, CachedCredential, RateLimiter


class FakeTime:
    """A monotonic clock that only moves when told; `sleep` records delays and (optionally) advances it."""

    def __init__(self, advance_on_sleep: bool = True) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        self.advance_on_sleep = advance_on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(round(delay, 9))
        if self.advance_on_sleep:
            self.now += delay


def limiter(qps: float, burst: int, time: FakeTime) -> RateLimiter:
    return RateLimiter(qps, burst, clock=time.clock, sleep=time.sleep)


async def test_a_burst_passes_at_once_then_callers_wait_at_the_steady_rate() -> None:
    time = FakeTime()
    bucket = limiter(qps=10, burst=3, time=time)
    for _ in range(6):
        await bucket.acquire()
    assert time.sleeps == [0.1, 0.1, 0.1]
    assert bucket.waited_seconds == pytest.approx(0.3)


async def test_concurrent_callers_beyond_the_burst_are_spaced_in_arrival_order() -> None:
    time = FakeTime(advance_on_sleep=False)
    bucket = limiter(qps=4, burst=2, time=time)
    await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    assert time.sleeps == [0.25, 0.5, 0.75]
    assert bucket.waited_seconds == pytest.approx(1.5)


async def test_an_idle_bucket_refills_only_up_to_the_burst() -> None:
    time = FakeTime()
    bucket = limiter(qps=10, burst=2, time=time)
    await bucket.acquire()
    await bucket.acquire()
    time.now += 3600
    for _ in range(3):
        await bucket.acquire()
    assert time.sleeps == [0.1]


async def test_zero_qps_is_unlimited() -> None:
    time = FakeTime()
    bucket = limiter(qps=0, burst=0, time=time)
    for _ in range(1000):
        await bucket.acquire()
    assert time.sleeps == [] and bucket.waited_seconds == 0


async def test_a_cancelled_waiter_gives_its_token_back() -> None:
    time = FakeTime()
    release = asyncio.Event()

    async def blocked_sleep(delay: float) -> None:
        time.sleeps.append(delay)
        await release.wait()

    bucket = RateLimiter(1, 1, clock=time.clock, sleep=blocked_sleep)
    await bucket.acquire()
    waiter = asyncio.ensure_future(bucket.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    time.now += 1.0  # one token's worth of refill: enough again because the cancelled one came back
    await bucket.acquire()
    assert time.sleeps == [1.0]  # only the cancelled waiter slept


def test_a_rate_limit_without_burst_is_refused_with_the_setting_named() -> None:
    with pytest.raises(ValueError, match="MODELSHIP_API_BURST"):
        RateLimiter(5, 0)


class Api:
    """A loopback stand-in for the API server: records requests, answers by path."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.hang = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append({"method": request.method, "path": request.path, "query": list(request.query.items()),
                          "headers": dict(request.headers), "body": body})
        name = request.path.rsplit("/", 1)[-1]
        if name == "hang":
            await self.hang.wait()
        if request.query.get("watch") == "1" and name not in STATUS_ANSWERS:
            return await self.watch(request)
        if name in STATUS_ANSWERS:
            code, reason = STATUS_ANSWERS[name]
            status = {"kind": "Status", "status": "Failure", "reason": reason, "code": code,
                      "message": f'services "{name}" {reason}: spec.ports[0].port: Invalid value: 0'}
            return web.json_response(status, status=code)
        if name == "boom":
            return web.Response(status=500, text="<html>upstream exploded</html>")
        if name == "garbage":
            return web.Response(status=200, text="<html>not json</html>")
        if name == "empty":
            return web.Response(status=200)
        return web.json_response({"kind": "Service", "echo": json.loads(body) if body else None})


    async def watch(self, request: web.Request) -> web.StreamResponse:
        """Three events over ~0.2 s, cut at awkward places: mid-line, and one object larger than aiohttp's line
        buffer (128 KiB)."""
        response = web.StreamResponse()
        await response.prepare(request)
        big = {"type": "MODIFIED", "object": {"kind": "Service", "metadata": {"name": "big"}, "pad": "x" * 300_000}}
        wire = b"".join(json.dumps(e).encode() + b"\n" for e in (
            {"type": "ADDED", "object": {"kind": "Service", "metadata": {"name": "a", "resourceVersion": "7"}}},
            big,
            {"type": "BOOKMARK", "object": {"kind": "Service", "metadata": {"resourceVersion": "9"}}},
        ))
        for cut in (30, 100_000, len(wire)):
            await response.write(wire[:cut])
            wire = wire[cut:]
            await asyncio.sleep(0.07)
        return response


STATUS_ANSWERS = {"unauthorized": (401, "Unauthorized"), "missing": (404, "NotFound"), "taken": (409, "AlreadyExists"),
                  "invalid": (422, "Invalid")}
BASE = "/api/v1/namespaces/ml/services"


@contextlib.asynccontextmanager
async def serving(timeout_s: float) -> AsyncIterator[tuple[Api, AsyncTransport]]:
    """The stand-in on a loopback port, and a transport to it whose tokens change on every read."""
    stand_in = Api()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", stand_in.handle)
    server = TestServer(app)
    await server.start_server()
    tokens = iter(f"Bearer token-{n}" for n in range(1000))
    transport = AsyncTransport(str(server.make_url("")), authorization=lambda: next(tokens), timeout_s=timeout_s)
    try:
        yield stand_in, transport
    finally:
        stand_in.hang.set()
        await transport.close()
        await server.close()


@pytest.fixture
async def api() -> AsyncIterator[tuple[Api, AsyncTransport]]:
    async with serving(timeout_s=5) as served:
        yield served


@pytest.mark.parametrize(("name", "status", "reason", "refused"), [
    ("missing", 404, "NotFound", True), ("taken", 409, "AlreadyExists", False), ("invalid", 422, "Invalid", True),
])
async def test_error_answers_keep_the_status_reason_and_message(
    api: tuple[Api, AsyncTransport], name: str, status: int, reason: str, refused: bool
) -> None:
    _, transport = api
    with pytest.raises(KubeError) as err:
        await transport.request("GET", f"{BASE}/{name}")
    assert (err.value.status, err.value.reason, err.value.refused) == (status, reason, refused)
    assert "spec.ports[0].port" in err.value.message


async def test_a_server_error_without_a_status_body_keeps_the_http_reason(api: tuple[Api, AsyncTransport]) -> None:
    _, transport = api
    with pytest.raises(KubeError) as err:
        await transport.request("GET", f"{BASE}/boom")
    assert (err.value.status, err.value.reason, err.value.message) == (500, "Internal Server Error", "")
    assert not err.value.refused
    assert "token" not in str(err.value)


async def test_an_unreachable_server_is_status_0() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = AsyncTransport(f"http://127.0.0.1:{port}")
    with pytest.raises(KubeError) as err:
        await transport.request("GET", BASE)
    await transport.close()
    assert err.value.status == 0 and not err.value.refused


async def test_a_request_past_its_timeout_is_status_0() -> None:
    async with serving(timeout_s=0.05) as (_, transport):
        with pytest.raises(KubeError) as err:
            await transport.request("GET", f"{BASE}/hang")
    assert err.value.status == 0


async def test_bodies_are_json_decoded_and_an_empty_body_is_none(api: tuple[Api, AsyncTransport]) -> None:
    stand_in, transport = api
    assert await transport.request("POST", BASE, body={"a": [1, 2]}) == {"kind": "Service", "echo": {"a": [1, 2]}}
    assert stand_in.seen[-1]["headers"]["Content-Type"] == "application/json"
    assert await transport.request("GET", f"{BASE}/empty") is None
    assert "Content-Type" not in stand_in.seen[-1]["headers"]
    with pytest.raises(KubeError) as err:
        await transport.request("GET", f"{BASE}/garbage")
    assert (err.value.status, err.value.reason) == (0, "InvalidResponse")


async def test_query_is_encoded_and_the_token_is_reused_until_a_401(api: tuple[Api, AsyncTransport]) -> None:
    """Reading the token runs the kubeconfig loader's refresh hook (the whole file again): once per TTL, and
    again at once after the API server says 401."""
    stand_in, transport = api
    query = [("labelSelector", "app=fraud scorer,modelship.dev/role=canary"), ("limit", "5")]
    await transport.request("GET", BASE, query=query)
    await transport.request("GET", BASE)
    with pytest.raises(KubeError) as err:
        await transport.request("GET", f"{BASE}/unauthorized")
    assert err.value.status == 401
    await transport.request("GET", BASE)
    first, second, refused, after = stand_in.seen
    assert first["query"] == query and second["query"] == []
    assert [seen["headers"]["Authorization"] for seen in (first, second, refused, after)] == [
        "Bearer token-0", "Bearer token-0", "Bearer token-0", "Bearer token-1"]
    assert first["headers"]["Accept"] == "application/json"


def test_a_cached_credential_is_read_again_once_its_ttl_has_passed() -> None:
    reads: list[float] = []
    now = [100.0]

    def source() -> str:
        reads.append(now[0])
        return f"Bearer {len(reads)}"

    credential = CachedCredential(source, ttl=60.0, clock=lambda: now[0])
    assert [credential(), credential()] == ["Bearer 1", "Bearer 1"]
    now[0] += 59.9
    assert credential() == "Bearer 1"
    now[0] += 0.1
    assert credential() == "Bearer 2"
    credential.invalidate()
    assert credential() == "Bearer 3"
    assert reads == [100.0, 160.0, 160.0]


async def test_kube_apply_over_the_transport_sends_an_apply_patch(api: tuple[Api, AsyncTransport]) -> None:
    stand_in, transport = api
    obj = objects.entry_service(OWNER)
    result = await Kube(transport).apply(obj)
    assert result["echo"] == obj
    (req,) = stand_in.seen
    assert req["method"] == "PATCH" and req["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert dict(req["query"]) == {"fieldManager": "modelship", "force": "true", "fieldValidation": "Strict"}


async def test_requests_wait_for_the_rate_limiter(api: tuple[Api, AsyncTransport]) -> None:
    stand_in, transport = api
    time = FakeTime()
    transport.limiter = limiter(qps=2, burst=1, time=time)
    for _ in range(3):
        await transport.request("GET", BASE)
    assert len(stand_in.seen) == 3 and time.sleeps == [0.5, 0.5]


def not_leader() -> None:
    raise KubeError(0, "NotLeader", "this replica lost its lease; the new leader takes over")


async def test_a_write_that_waited_for_the_rate_limiter_is_fenced_again_before_it_is_sent(
    api: tuple[Api, AsyncTransport],
) -> None:
    """Given a write held back by the rate limiter, when the lease is lost while it waits, then it is never
    sent (it would land after another replica took over); reads still go."""
    stand_in, transport = api
    leading = [True]

    def fence() -> None:
        if not leading[0]:
            not_leader()

    time = FakeTime()

    async def lose_the_lease_while_waiting(seconds: float) -> None:
        time.sleeps.append(seconds)
        leading[0] = False

    fenced = AsyncTransport(transport.host, limiter=RateLimiter(2, 1, clock=time.clock,
                                                              sleep=lose_the_lease_while_waiting), fence=fence)
    try:
        await fenced.request("PATCH", f"{BASE}/fraud", body={})  # the burst: sent at once
        with pytest.raises(KubeError) as err:
            await fenced.request("PATCH", f"{BASE}/fraud", body={})
        assert err.value.reason == "NotLeader" and time.sleeps == [0.5]
        await fenced.request("GET", f"{BASE}/fraud")
    finally:
        await fenced.close()
    assert [seen["method"] for seen in stand_in.seen] == ["PATCH", "GET"]


async def test_a_fenced_kube_sends_no_write_but_still_reads() -> None:
    transport = FakeTransport(objects={f"{BASE}/fraud-scorer": {"kind": "Service"}}, lists={BASE: []})
    kube = Kube(transport, fence=not_leader)
    assert await kube.get("v1", "Service", "ml", "fraud-scorer") == {"kind": "Service"}
    assert await kube.list("v1", "Service", "ml", {"app": "x"}) == []
    for write in (kube.apply(objects.entry_service(OWNER)), kube.create(objects.entry_service(OWNER)),
                  kube.delete("v1", "Service", "ml", "fraud-scorer")):
        with pytest.raises(KubeError) as err:
            await write
        assert err.value.reason == "NotLeader"
    assert transport.writes() == []
    assert [call.method for call in transport.calls] == ["GET", "GET"]


async def test_an_unfenced_kube_calls_a_synchronous_transport_directly() -> None:
    kube, transport = fake_kube()
    await kube.apply(objects.entry_service(OWNER))
    assert [call.method for call in transport.writes()] == ["PATCH"]


async def test_a_watch_streams_events_as_they_come_past_the_request_timeout_and_lines_of_any_size() -> None:
    async with serving(timeout_s=0.05) as (stand_in, transport):  # a watch outlives a request's timeout
        events = [e async for e in Kube(transport).watch(BASE, "app=x", "5", timeout_s=60)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "BOOKMARK"]
    assert len(events[1]["object"]["pad"]) == 300_000
    query = dict(stand_in.seen[0]["query"])
    assert query == {"labelSelector": "app=x", "watch": "1", "resourceVersion": "5", "allowWatchBookmarks": "true",
                     "timeoutSeconds": "60"}


async def test_a_refused_watch_raises_with_the_status_and_a_401_reads_the_token_again(
    api: tuple[Api, AsyncTransport],
) -> None:
    stand_in, transport = api
    with pytest.raises(KubeError) as err:
        _ = [e async for e in transport.stream(f"{BASE}/unauthorized", query=[("watch", "1")])]
    assert err.value.status == 401
    await transport.request("GET", f"{BASE}/a")
    tokens = [seen["headers"]["Authorization"] for seen in stand_in.seen]
    assert tokens[0] != tokens[1]


async def test_every_request_sent_reaches_the_operator_metrics(api: tuple[Api, AsyncTransport]) -> None:
    """Given the transport wired to telemetry as `modelship run` wires it, when it reads, applies and deletes,
    then modelship_api_requests_total counts each by verb and modelship_api_writes_total the writes (the
    counters existed, on the dashboard, but nothing fed them: found by the e2e dashboard scenario)."""
    from modelship.adapters.kube import APPLY_CONTENT_TYPE  # noqa: PLC0415
    from modelship.adapters.telemetry import Telemetry  # noqa: PLC0415

    _, transport = api
    telemetry = Telemetry()
    transport.observer = telemetry.observe_request
    await transport.request("GET", f"{BASE}/a")
    await transport.request("PATCH", f"{BASE}/a", body={}, content_type=APPLY_CONTENT_TYPE)
    await transport.request("DELETE", f"{BASE}/a")

    def sample(name: str, verb: str) -> float | None:
        return telemetry.registry.get_sample_value(name, {"verb": verb})

    assert [sample("modelship_api_requests_total", verb) for verb in ("get", "apply", "delete")] == [1, 1, 1]
    assert sample("modelship_api_writes_total", "get") is None and sample("modelship_api_writes_total", "apply") == 1


def test_the_operator_wires_its_transport_to_its_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelship.controller import wiring  # noqa: PLC0415
    from modelship.controller.settings import Settings  # noqa: PLC0415

    monkeypatch.setattr(wiring.AsyncTransport, "from_kubeconfig",
                        classmethod(lambda cls, *a, **k: AsyncTransport("http://127.0.0.1:9")))
    operator = wiring.build_operator(Settings(leader_election=False))
    assert operator.transport.observer == operator.loop.reconciler.telemetry.observe_request
