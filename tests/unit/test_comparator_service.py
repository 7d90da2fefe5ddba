"""The comparator service with stand-in upstreams on loopback: it answers mirrors at once, bounds its queue,
times out slow upstreams, counts what it could not compare, and exports the judgement as Prometheus series."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiohttp import ClientSession, web
from modelship.cli import _parser as cli_parser
from modelship.comparator.main import compare_spec
from modelship.comparator.service import Comparator, Limits, Mirrored
from modelship.comparator.tensors import HEADER_LENGTH, Tensor, encode_response
from modelship.comparator.upstreams import EndpointSliceUpstreams, StaticUpstreams, ready_addresses
from modelship.comparator.window import Window
from modelship.domain.compare_spec import CompareSpec
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

REQUEST = b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}'


@dataclass
class Upstream:
    """A stand-in model server: answers every infer with `scores`, after `delay` seconds, or with `status`."""

    scores: list[float]
    delay: float = 0.0
    status: int = 200
    binary: bool = False
    received: list[tuple[str, bytes, str | None]] = field(default_factory=list)

    async def infer(self, request: web.Request) -> web.Response:
        self.received.append((request.path, await request.read(), request.headers.get(HEADER_LENGTH)))
        await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.json_response({"error": "boom"}, status=self.status)
        body, header_length = encode_response(
            [Tensor("scores", "FP32", (len(self.scores),), np.asarray(self.scores, dtype=np.float32))], self.binary
        )
        headers = {HEADER_LENGTH: str(header_length)} if header_length is not None else {}
        return web.Response(body=body, headers=headers)


Serve = Callable[[Upstream], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    runners: list[web.AppRunner] = []

    async def start(upstream: Upstream) -> str:
        app = web.Application()
        app.router.add_post("/v2/models/{model}/infer", upstream.infer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def comparator_for(serve: Serve, stable: Upstream, canary: Upstream, **kwargs: object) -> Comparator:
    upstreams = StaticUpstreams({"stable": [await serve(stable)], "canary": [await serve(canary)]})
    comparator = Comparator(CompareSpec(), upstreams, Window(60), **kwargs)  # type: ignore[arg-type]
    await comparator.start()
    return comparator


def series(comparator: Comparator) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(comparator.metrics.registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def mirror(path: str = "/v2/models/m/infer", body: bytes = REQUEST, headers: dict[str, str] | None = None) -> Mirrored:
    return Mirrored(path, headers or {"Content-Type": "application/json"}, body)


async def test_agreeing_and_disagreeing_pairs_are_counted_and_both_sides_get_the_same_request(serve: Serve) -> None:
    stable, canary = Upstream([0.1, 0.9]), Upstream([0.1, 0.9], binary=True)
    comparator = await comparator_for(serve, stable, canary)
    binary_request = mirror(body=REQUEST + b"\x00\x01", headers={"Content-Type": "application/octet-stream",
                                                                  HEADER_LENGTH: str(len(REQUEST))})
    assert (await comparator.compare(binary_request)).agreed  # type: ignore[union-attr]
    canary.scores = [0.9, 0.1]
    verdict = await comparator.compare(mirror())
    await comparator.stop()
    assert verdict is not None and not verdict.agreed
    assert stable.received[0] == canary.received[0] == ("/v2/models/m/infer", REQUEST + b"\x00\x01", str(len(REQUEST)))
    values = series(comparator)
    assert values[("modelship_comparator_compared_total", ())] == 2
    assert values[("modelship_comparator_agreed_total", ())] == 1
    assert values[("modelship_comparator_requests_total", (("outcome", "compared"),))] == 2
    assert values[("modelship_comparator_disagreements_total", (("output", "scores"), ("reason", "values")))] == 1


async def test_a_shifted_canary_shows_in_the_shift_and_summaries(serve: Serve) -> None:
    stable, canary = Upstream([0.6]), Upstream([0.97])
    comparator = await comparator_for(serve, stable, canary)
    for index in range(40):
        stable.scores, canary.scores = [0.5 + index / 100], [0.95 + index / 1000]
        await comparator.compare(mirror())
    await comparator.stop()
    values = series(comparator)
    assert values[("modelship_comparator_output_shift", (("output", "scores"),))] > 0.25
    p50 = (("output", "scores"), ("side", "canary"), ("stat", "p50"))
    assert values[("modelship_comparator_output_summary", p50)] == pytest.approx(0.97, abs=0.01)
    stable_p50 = (("output", "scores"), ("side", "stable"), ("stat", "p50"))
    assert values[("modelship_comparator_output_summary", stable_p50)] == pytest.approx(0.7, abs=0.01)


async def test_mirrors_are_answered_at_once_and_excess_ones_dropped_never_waited_for(serve: Serve) -> None:
    slow = Upstream([0.5], delay=1.0)
    comparator = await comparator_for(serve, slow, Upstream([0.5]), limits=Limits(queue_size=2, concurrency=1))
    app = comparator.app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    loop = asyncio.get_running_loop()
    started = loop.time()
    outcomes = []
    async with ClientSession() as session:
        for _ in range(6):
            async with session.post(f"http://127.0.0.1:{port}/v2/models/m/infer", data=REQUEST) as answer:
                assert answer.status == 200
                reply = await answer.json()
                assert reply["outputs"] == [], "the comparator never answers with a model's outputs"
                outcomes.append(reply["parameters"]["modelship_comparator"])
    elapsed = loop.time() - started
    await runner.cleanup()
    await comparator.stop()
    assert elapsed < 0.9, "a mirror must never wait for the upstreams"
    assert outcomes.count("dropped") >= 3 and outcomes[0] == "queued"
    assert series(comparator)[("modelship_comparator_requests_total", (("outcome", "dropped"),))] == outcomes.count(
        "dropped")


async def test_slow_failing_and_missing_upstreams_are_counted_by_role_and_reason(serve: Serve) -> None:
    comparator = await comparator_for(serve, Upstream([0.5]), Upstream([0.5], delay=2.0), limits=Limits(timeout_s=0.2))
    assert await comparator.compare(mirror()) is None
    await comparator.stop()
    failing = await comparator_for(serve, Upstream([0.5], status=500), Upstream([0.5]))
    assert await failing.compare(mirror()) is None
    await failing.stop()
    alone = Comparator(CompareSpec(), StaticUpstreams({"stable": [await serve(Upstream([0.5]))]}), Window(60))
    await alone.start()
    assert await alone.compare(mirror()) is None
    await alone.stop()
    failures = "modelship_comparator_upstream_failures_total"
    assert series(comparator)[(failures, (("reason", "timeout"), ("role", "canary")))] == 1
    assert series(failing)[(failures, (("reason", "status"), ("role", "stable")))] == 1
    assert series(alone)[(failures, (("reason", "no_endpoint"), ("role", "canary")))] == 1
    assert series(alone)[("modelship_comparator_compared_total", ())] == 0


async def test_only_the_sampled_share_is_compared() -> None:
    chances = iter([0.05, 0.5, 0.95, 0.2])
    comparator = Comparator(CompareSpec(sample_percent=25), StaticUpstreams({}), Window(60),
                            chance=lambda: next(chances))
    outcomes = [comparator.offer(mirror()) for _ in range(4)]
    assert outcomes == ["queued", "unsampled", "unsampled", "queued"]
    assert Comparator(CompareSpec(), StaticUpstreams({}), Window(60), sample_percent=0).offer(mirror()) == "unsampled"


def test_only_ready_pods_of_the_own_deployment_are_upstreams() -> None:
    def endpoint(ip: str, pod: str, ready: bool | None = True) -> dict[str, object]:
        conditions = {} if ready is None else {"ready": ready}
        return {"addresses": [ip], "conditions": conditions, "targetRef": {"kind": "Pod", "name": pod}}

    slices = {"items": [
        {"ports": [{"name": "http", "port": 8000}, {"name": "metrics", "port": 8002}], "endpoints": [
            endpoint("10.0.0.1", "iris-abc-1"), endpoint("10.0.0.2", "iris-abc-2", ready=False),
            endpoint("10.0.0.3", "iris-abc-3", ready=None), endpoint("10.0.0.4", "other-abc-1"),
        ]},
        {"ports": [{"name": "grpc", "port": 8001}], "endpoints": [endpoint("10.0.0.5", "iris-abc-5")]},
    ]}
    assert ready_addresses(slices, "iris") == ["http://10.0.0.1:8000", "http://10.0.0.3:8000"]
    assert ready_addresses({}, "iris") == []


def test_the_compare_spec_comes_from_the_environment_and_a_bad_one_names_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODELSHIP_COMPARE", '{"relative": 0.01, "outputs": [{"name": "probs", "mode": "Argmax"}]}')
    spec = compare_spec(None)
    assert spec.relative == 0.01 and spec.output("probs").mode == "Argmax"
    monkeypatch.delenv("MODELSHIP_COMPARE")
    assert compare_spec(None) == CompareSpec()
    with pytest.raises(SystemExit, match=r"outputs\.0\.mode: Input should be 'Values', 'Argmax' or 'TopK'"):
        compare_spec('{"outputs": [{"name": "probs", "mode": "argmax"}]}')


def test_modelship_compare_is_a_command_of_the_cli() -> None:
    args = cli_parser().parse_args(["compare", "--namespace", "ml", "--deployment", "iris", "--sample-percent", "10"])
    assert (args.command, args.namespace, args.deployment, args.sample_percent, args.port) == (
        "compare", "ml", "iris", 10.0, 8000)


class HangingApi:
    """Answers the first EndpointSlice list, then hangs like an overloaded API server."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()

    async def request(self, method: str, path: str, **_: object) -> object:
        self.calls += 1
        if self.calls > 1:
            await self.release.wait()
        return {"items": [{"ports": [{"name": "http", "port": 8000}], "endpoints": [
            {"addresses": ["10.0.0.1"], "conditions": {"ready": True},
             "targetRef": {"kind": "Pod", "name": "iris-abc-1"}}]}]}


async def test_a_slow_api_server_never_holds_comparisons_back() -> None:
    api, now = HangingApi(), [0.0]
    upstreams = EndpointSliceUpstreams(api, "ml", "iris", clock=lambda: now[0])  # type: ignore[arg-type]
    assert await upstreams.pick("stable") == "http://10.0.0.1:8000"  # the first read is waited for
    now[0] = 10.0  # stale: a refresh starts and hangs
    started = asyncio.get_running_loop().time()
    assert await upstreams.pick("stable") == "http://10.0.0.1:8000"
    await asyncio.sleep(0.01)  # the refresh is now hanging in the API call
    assert await upstreams.pick("stable") == "http://10.0.0.1:8000"
    assert asyncio.get_running_loop().time() - started < 0.1, "comparisons never wait for a refresh"
    assert api.calls == 2, "one refresh in flight at a time"
    api.release.set()


class SliceByService:
    """Answers each Service's EndpointSlices with its own pod, and records which Services were read."""

    def __init__(self) -> None:
        self.read: list[str] = []

    async def request(self, method: str, path: str, query: list[tuple[str, str]], **_: object) -> object:
        service = dict(query)["labelSelector"].split("=", 1)[1]
        self.read.append(service)
        address = {"iris-stable": "10.0.0.1", "iris-canary": "10.0.0.2"}[service]
        return {"items": [{"ports": [{"name": "http", "port": 8000}], "endpoints": [
            {"addresses": [address], "conditions": {"ready": True},
             "targetRef": {"kind": "Pod", "name": f"iris-{service}-1"}}]}]}


async def test_after_promotion_the_previous_revision_behind_the_canary_service_is_the_baseline() -> None:
    """In the post-promotion window the judged side is the new stable (`-stable`), the baseline the previous
    revision (`-canary`): summaries and the shift then read the right way round."""
    api = SliceByService()
    upstreams = EndpointSliceUpstreams(api, "ml", "iris", after_promotion=True)  # type: ignore[arg-type]
    assert await upstreams.pick("canary") == "http://10.0.0.1:8000"
    assert await upstreams.pick("stable") == "http://10.0.0.2:8000"
    usual = EndpointSliceUpstreams(SliceByService(), "ml", "iris")  # type: ignore[arg-type]
    assert await usual.pick("canary") == "http://10.0.0.2:8000"
