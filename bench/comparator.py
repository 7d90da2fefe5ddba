"""The shadow comparator's cost: what mirroring to it does to live latency, and how many pairs it compares.

Real parts: two real tritonservers on loopback (the stack's launcher, the fault-injecting fraud scorer: stable
version 1, canary version 2) and the real `modelship compare` process (`--stable/--canary` fixed upstreams,
the same code that reads EndpointSlices in a cluster). The bench plays the proxy: it sends live requests to
stable at a fixed rate and, in the mirrored phase, copies each one to the comparator without waiting for it
(as Envoy's or Traefik's mirror does).

Phases: live only; live + 100% mirrored to the comparator; the comparator flooded (mirrors as fast as they can be
sent) to find its capacity and whether it drops rather than queues. Printed and saved to .stack/bench/.

    python -m bench.comparator [--rate 40] [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from bench.common import summary_ms, table, write_results
from bench.measure import ProcessSampler, parse_counter, stop_process
from e2e.stack import free_port, triton

MODEL = "fraud_scorer"


def request_body(rng: np.random.Generator) -> bytes:
    values = rng.random(4).astype(float).round(6).tolist()
    return (f'{{"inputs":[{{"name":"x","datatype":"FP32","shape":[1,4],"data":{values}}}]}}').encode()


async def live(session: aiohttp.ClientSession, stable: str, mirror: str | None, rate: float,
               seconds: float) -> list[float]:
    """Open loop at `rate`/s: each live request timed; its copy to the comparator is fire-and-forget."""
    rng = np.random.default_rng(3)
    latencies: list[float] = []
    pending: set[asyncio.Task[Any]] = set()

    async def one(body: bytes) -> None:
        started = time.monotonic()
        async with session.post(f"{stable}/v2/models/{MODEL}/infer", data=body) as answer:
            await answer.read()
        latencies.append(time.monotonic() - started)

    async def copy(body: bytes) -> None:
        try:
            async with session.post(f"{mirror}/v2/models/{MODEL}/infer", data=body) as answer:
                await answer.read()
        except aiohttp.ClientError:
            pass

    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + sent / rate
        if due > now:
            await asyncio.sleep(due - now)
            continue
        body = request_body(rng)
        for job in (one(body), copy(body)) if mirror else (one(body),):
            task = asyncio.create_task(job)
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent += 1
    await asyncio.gather(*pending, return_exceptions=True)
    return latencies


async def flood(session: aiohttp.ClientSession, mirror: str, seconds: float, senders: int = 16) -> int:
    rng = np.random.default_rng(5)
    sent = 0
    stop = time.monotonic() + seconds

    async def sender() -> None:
        nonlocal sent
        while time.monotonic() < stop:
            async with session.post(f"{mirror}/v2/models/{MODEL}/infer", data=request_body(rng)) as answer:
                await answer.read()
            sent += 1

    await asyncio.gather(*(sender() for _ in range(senders)))
    return sent


def counters(metrics_url: str) -> dict[str, float]:
    import urllib.request  # noqa: PLC0415

    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    out = {f"requests_{k}": float(v) for k, v in parse_counter(text, "modelship_comparator_requests", ["outcome"])
           .items()}
    for name in ("compared", "agreed"):
        out[name] = float(sum(parse_counter(text, f"modelship_comparator_{name}", []).values()))
    return out


async def phases(stable: str, canary: str, rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    port, metrics_port = free_port(), free_port()
    comparator = subprocess.Popen(
        [sys.executable, "-m", "modelship", "compare", "--namespace", "bench", "--deployment", "bench",
         "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(metrics_port),
         "--stable", stable, "--canary", canary, "--window-s", "60"],
        stdout=open(workdir / "comparator.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        env={**os.environ, "MODELSHIP_COMPARE": '{"absolute": 0.02}'},
    )
    mirror, metrics_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while not triton.http_ok(f"{mirror}/healthz"):
            if time.monotonic() > deadline or comparator.poll() is not None:
                raise RuntimeError((workdir / "comparator.log").read_text())
            await asyncio.sleep(0.1)
        sampler = ProcessSampler(comparator.pid)
        sampler.start()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:
            await live(session, stable, None, rate, 2)  # warm both servers and the connections
            alone = summary_ms(await live(session, stable, None, rate, seconds))
            before, cpu0, t0 = counters(metrics_url), sampler.cpu_seconds(), time.monotonic()
            mirrored = summary_ms(await live(session, stable, mirror, rate, seconds))
            await asyncio.sleep(2)  # the queue drains
            during, cpu1, t1 = counters(metrics_url), sampler.cpu_seconds(), time.monotonic()
            sent = await flood(session, mirror, seconds)
            await asyncio.sleep(6)  # in-flight comparisons finish or time out
            flooded, cpu2, t2 = counters(metrics_url), sampler.cpu_seconds(), time.monotonic()
        compared_live = during["compared"] - before["compared"]
        compared_flood = flooded["compared"] - during["compared"]
        return {
            "rate_per_s": rate, "seconds": seconds,
            "live_p50_ms_alone": alone["p50_ms"], "live_p99_ms_alone": alone["p99_ms"],
            "live_p50_ms_mirrored": mirrored["p50_ms"], "live_p99_ms_mirrored": mirrored["p99_ms"],
            "compared_share_at_rate": compared_live / (rate * seconds),
            "agreement_at_rate": (during["agreed"] - before["agreed"]) / max(1.0, compared_live),
            "dropped_at_rate": during.get("requests_dropped", 0) - before.get("requests_dropped", 0),
            "flood_mirrors_sent": sent,
            "flood_compared_per_s": compared_flood / (t2 - t1),
            "flood_dropped": flooded.get("requests_dropped", 0) - during.get("requests_dropped", 0),
            "cpu_seconds_per_1000_pairs": 1000 * (cpu2 - cpu0) / max(1.0, compared_live + compared_flood),
            "pairs_per_core_second": (compared_live + compared_flood) / max(1e-9, cpu2 - cpu0),
            "comparator_cpu_cores_at_rate": (cpu1 - cpu0) / (t1 - t0),
            "comparator_rss_mib": sampler.rss_mib(), "comparator_rss_mib_max": sampler.max_sampled_mib(),
        }
    finally:
        stop_process(comparator, timeout=10)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.comparator", description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=40.0, help="live requests per second (default 40)")
    parser.add_argument("--seconds", type=float, default=None, help="per phase (default 20, quick 8)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    seconds = args.seconds or (8.0 if args.quick else 20.0)
    with tempfile.TemporaryDirectory(prefix="bench-comparator-") as tmp:
        workdir = Path(tmp)
        servers = {role: triton.start_triton(triton.REPOS_DIR / "main", workdir / role, model=MODEL, version=v)
                   for role, v in (("stable", 1), ("canary", 2))}
        try:
            for server in servers.values():
                server.wait_ready()
            urls = {role: f"http://{s.address}:{s.http_port}" for role, s in servers.items()}
            figures = asyncio.run(phases(urls["stable"], urls["canary"], args.rate, seconds, workdir))
        finally:
            for server in servers.values():
                server.stop()
    print(table(figures.items(), "shadow comparator: real Triton x2 on loopback, real `modelship compare`"))
    print(f"saved {write_results('comparator', figures)}")
    return figures


if __name__ == "__main__":
    main()
