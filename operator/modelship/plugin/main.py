"""Entry point of `kubectl-modelship` (kubectl finds it on PATH as `kubectl modelship`).

Exit codes: 0 ok, 1 error (not found, forbidden, unreachable, request refused), 2 usage,
3 request delivered but not confirmed by the operator in time.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from modelship.plugin import render
from modelship.plugin.cluster import ClusterApi
from modelship.plugin.commands import DEFAULT_WAIT_S, Action, send
from modelship.plugin.errors import EXIT_ERROR, PluginError
from modelship.plugin.escape import CLEAR, SafeApi, escape, safe_output
from modelship.plugin.kube import KubeApi

ApiFactory = Callable[[argparse.Namespace], ClusterApi]
TICK_S = 1.0


def _kube_flags(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: flags given before and after the subcommand both work, and neither erases the other.
    parser.add_argument("--kubeconfig", default=argparse.SUPPRESS, help="path to the kubeconfig file")
    parser.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context to use")
    parser.add_argument(
        "-n", "--namespace", default=argparse.SUPPRESS, help="namespace (default: the context's namespace)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl modelship",
        description="Watch and steer ModelDeployment rollouts. Commands go through the modelship.dev/request "
        "annotation; spec is never modified.",
        epilog="exit codes: 0 ok, 1 error, 2 usage, 3 request not confirmed by the operator in time",
    )
    _kube_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text.replace("%%", "%"))
        _kube_flags(p)
        return p

    p = command("status", "show a rollout: phase, stage, step, revisions, weights, SLO checks, conditions")
    p.add_argument("name")
    p.add_argument("-w", "--watch", action="store_true", help="refresh on every change until Ctrl-C")
    p = command("get", "list ModelDeployments")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="list in all namespaces")
    p = command("history", "show the audit trail of rollouts and manual actions")
    p.add_argument("name")
    p = command("revisions", "list every revision that served as stable: when, who promoted it, how it ended")
    p.add_argument("name")
    p = command("dashboard", "serve a live web dashboard on loopback that sees and acts as you (your kubeconfig)")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace you can list")
    p.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1: only you)")
    p.add_argument("--port", type=int, default=3100, help="port (default 3100)")
    p.add_argument("--prometheus-url", default=os.environ.get("PROMETHEUS_URL"),
                   help="Prometheus scraping the operator: timelines start with its last 6 hours "
                        "(default: $PROMETHEUS_URL)")
    for name, help_text in [
        ("promote", "approve the current approval step (--full: promote the canary to 100%% now)"),
        ("abort", "roll back to the stable revision now"),
        ("pause", "hold the rollout at its current step"),
        ("resume", "continue a paused rollout"),
        ("retry", "start the rollout again after RolledBack or Failed"),
        ("undo", "put all traffic back on the revision that served before (at once while it is warm, after "
                 "redeploying and validating it otherwise); spec is not changed"),
    ]:
        p = command(name, help_text)
        p.add_argument("name")
        if name == "undo":
            p.add_argument("--to-version", help="go back to this version (one listed by `revisions`)")
        if name == "promote":
            p.add_argument("--full", action="store_true", help="skip the remaining steps and promote to 100%%")
        p.add_argument(
            "--wait",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="wait for the operator to confirm the request (default: on)",
        )
        p.add_argument("--timeout", type=float, default=DEFAULT_WAIT_S, help="seconds to wait (default 30)")
        p.add_argument("--force", action="store_true", help="send even if the current state makes it a no-op")
    return parser


def default_api(args: argparse.Namespace) -> ClusterApi:
    return KubeApi(getattr(args, "kubeconfig", None), getattr(args, "context", None))


def watch_status(api: ClusterApi, namespace: str, name: str, out: Callable[[str], None]) -> None:
    """Re-render on each change (watch API) and every second (so time-in-step keeps ticking) until Ctrl-C."""
    updates: queue.Queue[dict[str, Any] | PluginError] = queue.Queue()

    def pump() -> None:
        try:
            for obj in api.watch(namespace, name):
                updates.put(obj)
        except PluginError as exc:
            updates.put(exc)

    threading.Thread(target=pump, daemon=True).start()
    current: dict[str, Any] | None = None
    while True:
        try:
            item = updates.get(timeout=TICK_S)
        except queue.Empty:
            item = None
        if isinstance(item, PluginError):
            raise item
        if item is not None:
            current = item
        if current is not None:
            now = datetime.now(UTC)
            out(
                f"{CLEAR}Watching (refresh on change) at {now:%H:%M:%S}Z, Ctrl-C to stop\n\n"
                + render.render_status(current, now)
            )


def run(args: argparse.Namespace, api: ClusterApi, out: Callable[[str], None]) -> int:
    namespace = getattr(args, "namespace", None) or api.default_namespace
    now = datetime.now(UTC)
    if args.command == "get":
        items = api.list(None if args.all_namespaces else namespace)
        if not items:
            out("No ModelDeployments found" + ("." if args.all_namespaces else f" in namespace {namespace}."))
            return 0
        out(render.render_list(items, now, all_namespaces=args.all_namespaces))
        return 0
    if args.command == "status":
        if args.watch:
            watch_status(api, namespace, args.name, out)
        out(render.render_status(api.get(namespace, args.name), now))
        return 0
    if args.command == "history":
        out(render.render_history(api.get(namespace, args.name)))
        return 0
    if args.command == "revisions":
        out(render.render_revisions(api.get(namespace, args.name)))
        return 0
    if args.command == "dashboard":
        from modelship.dashboard.server import serve  # noqa: PLC0415 (aiohttp only for this command)

        return serve(api, None if args.all_namespaces else namespace, args.address, args.port, out,
                     args.prometheus_url)
    action: Action = "promote-full" if args.command == "promote" and args.full else args.command
    return send(api, namespace, args.name, action, force=args.force, to_version=getattr(args, "to_version", None),
                wait=args.wait, timeout_s=args.timeout, out=out)


def main(argv: Sequence[str] | None = None, api_factory: ApiFactory = default_api) -> int:
    """Everything read from the cluster is escaped before rendering (SafeApi) and again before printing."""
    args = build_parser().parse_args(argv)
    try:
        return run(args, SafeApi(api_factory(args)), safe_output(lambda line: print(line, flush=True)))
    except PluginError as exc:
        print(f"error: {escape(exc.message, keep_newlines=True)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
