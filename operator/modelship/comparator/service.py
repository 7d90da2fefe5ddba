"""The comparator service: takes mirrored KServe v2 requests, asks stable and canary, judges the two answers.

A mirror is fire-and-forget, so the service answers at once (an empty answer: no outputs, never canary's) and
does the work behind a bounded queue:
when the queue is full the request is dropped and counted, never waited for. At most `concurrency` requests are
compared at a time, each upstream call times out, and an answer is only ever judged, never returned to anyone.
Only pods of its own ModelDeployment are called (`Upstreams` resolves them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from modelship.comparator.judge import PairVerdict, judge_pair, top_classes
from modelship.comparator.metrics import ComparatorMetrics, Outcome
from modelship.comparator.tensors import HEADER_LENGTH, Tensor, TensorError, decode_response
from modelship.comparator.upstreams import Upstreams
from modelship.comparator.window import Window
from modelship.domain.compare_spec import CompareSpec, OutputMode

log = logging.getLogger("modelship.comparator")

FORWARDED_HEADERS = ("Content-Type", HEADER_LENGTH)


@dataclass(frozen=True)
class Limits:
    queue_size: int = 64
    concurrency: int = 8
    timeout_s: float = 5.0


@dataclass(frozen=True)
class Mirrored:
    path: str
    headers: dict[str, str]
    body: bytes


class UpstreamFailure(Exception):
    def __init__(self, role: str, reason: str, detail: str) -> None:
        super().__init__(f"{role}: {detail}")
        self.role = role
        self.reason = reason


class Comparator:
    def __init__(
        self, spec: CompareSpec, upstreams: Upstreams, window: Window, *, sample_percent: float | None = None,
        limits: Limits = Limits(), metrics: ComparatorMetrics | None = None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.spec = spec
        self.upstreams = upstreams
        self.window = window
        self.sample_percent = spec.sample_percent if sample_percent is None else sample_percent
        self.limits = limits
        self.metrics = metrics or ComparatorMetrics(window)
        self._chance = chance
        self._queue: asyncio.Queue[Mirrored] = asyncio.Queue(maxsize=limits.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    # --- receiving ------------------------------------------------------------------------------------------

    def offer(self, mirrored: Mirrored) -> str:
        """Take one mirrored request without waiting: queued, unsampled or dropped (the outcome)."""
        if self._chance() * 100.0 >= self.sample_percent:
            self.metrics.requests.labels(Outcome.UNSAMPLED).inc()
            return Outcome.UNSAMPLED
        try:
            self._queue.put_nowait(mirrored)
        except asyncio.QueueFull:
            self.metrics.requests.labels(Outcome.DROPPED).inc()
            return Outcome.DROPPED
        self.metrics.queue_depth.set(self._queue.qsize())
        return "queued"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
        outcome = self.offer(Mirrored(request.path_qs, headers, body))
        # A well-formed, empty KServe answer (clients that parse it see no outputs): never anyone's answer.
        return web.json_response({"model_name": request.match_info["model"], "outputs": [],
                                  "parameters": {"modelship_comparator": outcome}})

    # --- comparing ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.limits.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, trust_env=False)
        self._workers = [asyncio.create_task(self._work()) for _ in range(self.limits.concurrency)]

    async def stop(self) -> None:
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _work(self) -> None:
        while True:
            mirrored = await self._queue.get()
            self.metrics.queue_depth.set(self._queue.qsize())
            try:
                await self.compare(mirrored)
            except Exception:  # a bug in one comparison must not stop the worker
                log.exception("comparing %s failed", mirrored.path)
            finally:
                self._queue.task_done()

    async def compare(self, mirrored: Mirrored) -> PairVerdict | None:
        try:
            stable, canary = await asyncio.gather(
                self._ask("stable", mirrored), self._ask("canary", mirrored)
            )
        except UpstreamFailure as failure:
            self.metrics.upstream_failures.labels(failure.role, failure.reason).inc()
            self.metrics.requests.labels(Outcome.UPSTREAM_FAILED).inc()
            log.debug("not compared: %s", failure)
            return None
        return self.record(stable, canary)

    async def _ask(self, role: str, mirrored: Mirrored) -> dict[str, Tensor]:
        base = await self.upstreams.pick(role)
        if base is None:
            raise UpstreamFailure(role, "no_endpoint", "no ready pod")
        assert self._session is not None, "start() the comparator first"
        try:
            async with self._session.post(base + mirrored.path, data=mirrored.body, headers=mirrored.headers) as answer:
                payload = await answer.read()
                status, header_length = answer.status, answer.headers.get(HEADER_LENGTH)
        except TimeoutError:
            raise UpstreamFailure(role, "timeout", f"no answer within {self.limits.timeout_s} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamFailure(role, "connect", str(exc)) from None
        if status != 200:
            raise UpstreamFailure(role, "status", f"HTTP {status}")
        try:
            return decode_response(payload, int(header_length) if header_length else None)
        except (TensorError, ValueError) as exc:
            raise UpstreamFailure(role, "decode", str(exc)) from None

    def record(self, stable: dict[str, Tensor], canary: dict[str, Tensor]) -> PairVerdict:
        """Judge one pair, count it, and keep both sides' values for the shift."""
        verdict = judge_pair(self.spec, stable, canary)
        self.metrics.requests.labels(Outcome.COMPARED).inc()
        self.metrics.compared.inc()
        if verdict.agreed:
            self.metrics.agreed.inc()
        for output in verdict.outputs:
            if not output.agreed:
                self.metrics.disagreements.labels(self.metrics.labels(output.name), output.reason).inc()
        for side, tensors in (("stable", stable), ("canary", canary)):
            for output in verdict.outputs:
                tensor = tensors.get(output.name)
                if tensor is not None:
                    self._keep(side, tensor)
        return verdict

    def _keep(self, side: str, tensor: Tensor) -> None:
        if not tensor.is_numeric:
            self.window.add(tensor.name, side, "classes", tensor.values)
            return
        scores = tensor.as_float()
        if self.spec.output(tensor.name).mode != OutputMode.VALUES and scores.size:
            rows = scores.reshape(-1, tensor.shape[-1] if tensor.shape else 1)
            self.window.add(tensor.name, side, "classes", top_classes(tensor, 1).reshape(-1))
            self.window.add(tensor.name, side, "values", rows.max(axis=1))
            return
        self.window.add(tensor.name, side, "values", np.asarray(scores))

    # --- serving --------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        """Mirrored inference on the KServe v2 paths; health for probes. Metrics are served on their own port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v2/models/{model}/infer", self._receive)
        app.router.add_post("/v2/models/{model}/versions/{version}/infer", self._receive)
        app.router.add_get("/v2/health/ready", _ok)
        app.router.add_get("/v2/health/live", _ok)
        app.router.add_get("/healthz", _ok)
        return app

    def metrics_app(self) -> web.Application:
        app = web.Application()

        async def metrics(_: web.Request) -> web.Response:
            body = generate_latest(self.metrics.registry)
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", _ok)
        return app


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ready": True})
