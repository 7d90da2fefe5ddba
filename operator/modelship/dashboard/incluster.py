"""`modelship dashboard`: the web dashboard as a service in the cluster (the chart's webDashboard), not on loopback.

It reads as its own identity (the pod's ServiceAccount, or --kubeconfig outside a pod) and acts as nobody
(`--actions read-only`, the default) or as the viewer an authenticating proxy names (`--actions impersonate`).
The kubectl plugin's `kubectl modelship dashboard` stays the way to run it as yourself.
"""

from __future__ import annotations

import argparse
import logging
import os

MODES = ["read-only", "impersonate"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                        help="show this namespace (repeatable); default: every namespace")
    parser.add_argument("--actions", choices=MODES, default="read-only",
                        help="read-only (default): every action is refused; impersonate: actions run as the viewer "
                             "named by the proxy's headers (Kubernetes impersonation)")
    parser.add_argument("--user-header", default="X-Forwarded-User",
                        help="header the authenticating proxy sets to the viewer's user name")
    parser.add_argument("--groups-header", default="X-Forwarded-Groups",
                        help="header the proxy sets to the viewer's groups, comma separated")
    parser.add_argument("--address", default="0.0.0.0",  # a pod's port: its Service and NetworkPolicy gate it
                        help="address to bind (default 0.0.0.0: the pod's)")
    parser.add_argument("--port", type=int, default=3100, help="port (default 3100)")
    parser.add_argument("--prometheus-url", default=os.environ.get("PROMETHEUS_URL") or None,
                        help="Prometheus scraping the operator: timelines start with its last 6 hours")
    parser.add_argument("--kubeconfig", default=None, help="outside a pod: the identity to read (and impersonate) as")


def run(args: argparse.Namespace) -> int:  # pragma: no cover - serves until stopped; exercised by e2e
    from aiohttp import web  # noqa: PLC0415 (only this command serves)

    from modelship.dashboard.acting import Acting, Impersonator  # noqa: PLC0415
    from modelship.dashboard.server import app  # noqa: PLC0415
    from modelship.plugin.escape import SafeApi  # noqa: PLC0415
    from modelship.plugin.kube import KubeApi  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = Impersonator.from_kubeconfig(args.kubeconfig) if args.actions == "impersonate" else None
    acting = Acting(args.actions, args.user_header, args.groups_header, writer)
    namespaces: list[str] | None = list(args.namespace) or None
    logging.getLogger("modelship.dashboard").info(
        "serving on %s:%d, %s, actions: %s", args.address, args.port,
        f"namespaces {', '.join(namespaces)}" if namespaces else "all namespaces",
        f"as the viewer in {args.user_header}/{args.groups_header}" if writer else "none (read-only)")
    api = SafeApi(KubeApi(args.kubeconfig))
    web.run_app(app(api, namespaces, prometheus_url=args.prometheus_url, acting=acting), host=args.address,
                port=args.port, print=None, access_log=None)
    return 0
