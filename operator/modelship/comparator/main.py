"""`modelship compare`: run the comparator for one ModelDeployment (the operator starts it during Shadow).

    modelship compare --namespace NS --deployment NAME [--port 8000] [--metrics-port 8002]
                      [--sample-percent P] [--window-s S] [--queue 64] [--concurrency 8] [--timeout-s 5]

The comparison itself (`spec.rollout.shadow.compare`) comes as JSON in $MODELSHIP_COMPARE (or --spec); upstream
pods are found from the EndpointSlices of `<NAME>-stable` and `<NAME>-canary` with the pod's service account
(or --kubeconfig), or are two fixed servers (--stable URL --canary URL).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from modelship.adapters.transport import AsyncTransport
from modelship.comparator.service import Comparator, Limits
from modelship.comparator.upstreams import EndpointSliceUpstreams, StaticUpstreams, Upstreams
from modelship.comparator.window import Window
from modelship.domain.compare_spec import CompareSpec

ENV_SPEC = "MODELSHIP_COMPARE"
DEFAULT_PORT, DEFAULT_METRICS_PORT = 8000, 8002
DEFAULT_WINDOW_S = 60.0

log = logging.getLogger("modelship.comparator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", required=True, help="namespace of the ModelDeployment")
    parser.add_argument("--deployment", required=True, metavar="NAME", help="the ModelDeployment compared")
    parser.add_argument("--spec", default=None, help=f"compare spec as JSON (default: ${ENV_SPEC}, else defaults)")
    parser.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="mirrored KServe v2 HTTP (default 8000)")
    parser.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT, help="Prometheus (default 8002)")
    parser.add_argument("--sample-percent", type=float, default=None, help="override compare.samplePercent")
    parser.add_argument("--window-s", type=float, default=DEFAULT_WINDOW_S,
                        help="seconds of answers the shift is computed over (the analysis interval)")
    parser.add_argument("--queue", type=int, default=Limits.queue_size, help="queued mirrors before dropping")
    parser.add_argument("--concurrency", type=int, default=Limits.concurrency, help="comparisons in flight")
    parser.add_argument("--timeout-s", type=float, default=Limits.timeout_s, help="per upstream call")
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig (default: in-cluster service account)")
    parser.add_argument("--stable", metavar="URL", help="fixed stable upstream (with --canary: no Kubernetes)")
    parser.add_argument("--canary", metavar="URL", help="fixed canary upstream, e.g. http://10.0.0.7:8000")
    parser.add_argument("--after-promotion", action="store_true",
                        help="post-promotion window: judge <NAME>-stable against the previous revision behind "
                        "<NAME>-canary")
    parser.add_argument("-v", "--verbose", action="store_true")


def compare_spec(argument: str | None) -> CompareSpec:
    """The compare spec from --spec or $MODELSHIP_COMPARE; a bad one stops the comparator with the field named."""
    text = argument if argument is not None else os.environ.get(ENV_SPEC, "")
    try:
        return CompareSpec.model_validate_json(text) if text.strip() else CompareSpec()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(spec)'}: {error['msg']}" for error in exc.errors()
        )
        raise SystemExit(f"modelship compare: invalid compare spec ({problems})") from None


async def serve(args: argparse.Namespace) -> None:
    spec = compare_spec(args.spec)
    transport: AsyncTransport | None = None
    upstreams: Upstreams
    if args.stable and args.canary:  # two servers outside Kubernetes (a bench, a laptop)
        upstreams = StaticUpstreams({"stable": [args.stable], "canary": [args.canary]})
    else:
        transport = AsyncTransport.from_kubeconfig(args.kubeconfig, timeout_s=5.0)  # the last pods stay in use
        upstreams = EndpointSliceUpstreams(transport, args.namespace, args.deployment,
                                           after_promotion=args.after_promotion)
    comparator = Comparator(
        spec, upstreams, Window(args.window_s), sample_percent=args.sample_percent,
        limits=Limits(args.queue, args.concurrency, args.timeout_s),
    )
    await comparator.start()
    runners = [
        web.AppRunner(comparator.app(), access_log=None),
        web.AppRunner(comparator.metrics_app(), access_log=None),
    ]
    for runner, port in zip(runners, (args.port, args.metrics_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, args.host, port).start()
    log.info(
        "comparing %s/%s: mirrors on :%d, metrics on :%d, %.0f%% sampled", args.namespace, args.deployment,
        args.port, args.metrics_port, comparator.sample_percent,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for runner in runners:
            await runner.cleanup()
        await comparator.stop()
        if transport is not None:
            await transport.close()


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    asyncio.run(serve(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="modelship compare", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
