"""Lightweight stand-ins for Triton and Prometheus, so the fleet bench measures the operator and nothing else.

Why stand-ins are fair here: the operator's work per canary is the same HTTP calls whoever answers them
(TritonValidator's liveness, version readiness and model metadata on port 8000 of every canary pod IP;
one Prometheus instant query per SLO and role per check). A real Triton per pod (1,000-2,000 of them) and a
Prometheus scraping them would not fit on the bench machine, and their latency is not what is measured.

- `triton`: run inside the stack's pod network namespace (`ip netns exec modelship-pods ...`). Reads
  `+IP` / `-IP` lines on stdin and listens on IP:8000 for each (IP_FREEBIND: the socket may be bound before
  the pod runner gives the IP to the namespace). Answers the KServe v2 calls TritonValidator makes for any
  model and version. It never binds 0.0.0.0: a wildcard socket would keep a real Triton of another test
  from binding its pod IP.
- `prometheus`: on 127.0.0.1 of the host. Answers `/api/v1/query` with passing values for the operator's
  queries (`adapters/metrics/queries.py`): no failures, an error rate of 0, small latencies, and a request
  count well over `minRequests`. `GET /stats` returns how many queries it answered.

    python -m bench.standins triton [--port 8000] [--stats FILE]
    python -m bench.standins prometheus --port P [--requests 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import web

IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux: bind an address the host does not hold (yet)
TENSORS = {
    "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "OUTPUT0", "datatype": "FP32", "shape": [-1, 1]}],
}


# --- Triton ------------------------------------------------------------------------------------------------


def triton_app(counts: Counter[str]) -> web.Application:
    """Live, ready, every model version READY, one fixed signature (so Strict contracts match stable's)."""

    async def ok(request: web.Request) -> web.Response:
        counts["ready"] += 1
        return web.Response(status=200)

    async def metadata(request: web.Request) -> web.Response:
        counts["metadata"] += 1
        model, version = request.match_info["model"], request.match_info.get("version", "1")
        body = {"name": model, "versions": [version], "platform": "python", **TENSORS}
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/v2/health/live", ok)
    app.router.add_get("/v2/health/ready", ok)
    app.router.add_get("/v2/models/{model}/ready", ok)
    app.router.add_get("/v2/models/{model}/versions/{version}/ready", ok)
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_get("/v2/models/{model}/versions/{version}", metadata)
    return app


def bound_socket(ip: str, port: int) -> socket.socket:
    """A listening socket on ip:port that may be bound before the address exists on an interface."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    sock.bind((ip, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def serve_triton(port: int, stats: Path | None) -> None:
    counts: Counter[str] = Counter()
    runner = web.AppRunner(triton_app(counts), access_log=None)
    await runner.setup()
    sites: dict[str, web.SockSite] = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("ready", flush=True)
    while line := (await reader.readline()).decode().strip():
        op, ip = line[0], line[1:]
        if op == "+" and ip not in sites:
            try:
                site = web.SockSite(runner, bound_socket(ip, port))
                await site.start()
            except OSError as exc:
                print(f"cannot listen on {ip}:{port}: {exc}", file=sys.stderr, flush=True)
                continue
            sites[ip] = site
        elif op == "-" and ip in sites:
            await sites.pop(ip).stop()
        counts["listening_max"] = max(counts["listening_max"], len(sites))
    await runner.cleanup()
    if stats is not None:
        stats.write_text(json.dumps(dict(counts)))


# --- Prometheus --------------------------------------------------------------------------------------------


def answer(promql: str, requests: float) -> float:
    """A passing value for each shape of `queries.py`; anything else (custom SLOs) gets 1."""
    if "quantile=" in promql or "_duration_us" in promql:
        return 5.0  # ms: latency and queue bounds pass
    first = promql.lstrip("(")
    if first.startswith("sum(increase(nv_inference_request_failure"):
        return 0.0  # error rate: failures / requests
    if first.startswith("sum(increase(nv_inference_request_success"):
        return requests  # canary requests in the window: over minRequests
    return 1.0


def prometheus_app(requests: float, counts: Counter[str]) -> web.Application:
    async def query(request: web.Request) -> web.Response:
        form: Any = await request.post() if request.method == "POST" else request.query
        promql = str(form.get("query", ""))
        counts["queries"] += 1
        result = [{"metric": {}, "value": [time.time(), repr(answer(promql, requests))]}]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app = web.Application()
    app.router.add_route("*", "/api/v1/query", query)
    app.router.add_get("/stats", stats)
    return app


async def serve_prometheus(port: int, requests: float) -> None:
    runner = web.AppRunner(prometheus_app(requests, Counter()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# --- starting them from a bench ------------------------------------------------------------------------------


def spawn_ready(cmd: list[str], log_path: Path) -> subprocess.Popen[str]:
    """Start a stand-in and wait for its "ready" line; stdin stays open (the Triton stand-in reads pod IPs)."""
    repo = Path(__file__).resolve().parent.parent
    with log_path.open("a") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, cwd=repo,
                                env={**os.environ, "PYTHONPATH": str(repo)})
    if proc.stdout is None or proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"stand-in {cmd[-3:]} did not start; see {log_path}")
    return proc


class PrometheusStandIn:
    """The Prometheus stand-in on loopback, as both benches use it: its port (and so its URL) is fixed before it
    starts, because the operator's or controller's settings name it."""

    def __init__(self, log_path: Path) -> None:
        from e2e.stack import free_port  # noqa: PLC0415  (not needed by the stand-in processes themselves)

        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc = spawn_ready([sys.executable, "-m", "bench.standins", "prometheus", "--port", str(self.port)],
                                self.log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def queries(self) -> int:
        """Queries answered since it started."""
        from bench.measure import http_get  # noqa: PLC0415

        return int(json.loads(http_get(f"{self.url}/stats", timeout=5.0)).get("queries", 0))

    def stop(self) -> None:
        from bench.measure import stop_process  # noqa: PLC0415

        stop_process(self.proc, timeout=15)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standins", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="which", required=True)
    triton = sub.add_parser("triton", help="KServe v2 stand-in on pod IPs read from stdin (+IP / -IP)")
    triton.add_argument("--port", type=int, default=8000)
    triton.add_argument("--stats", type=Path)
    prom = sub.add_parser("prometheus", help="/api/v1/query stand-in with passing answers")
    prom.add_argument("--port", type=int, required=True)
    prom.add_argument("--requests", type=float, default=1000.0, help="canary requests per window")
    args = parser.parse_args(argv)
    if args.which == "triton":
        asyncio.run(serve_triton(args.port, args.stats))
    else:
        asyncio.run(serve_prometheus(args.port, args.requests))


if __name__ == "__main__":
    main()
