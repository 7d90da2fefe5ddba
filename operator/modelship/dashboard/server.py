"""`kubectl modelship dashboard`: a web UI on loopback, acting with the viewer's own kubeconfig identity.

Why aiohttp: the operator already depends on it (no new server stack to audit), it serves static files, JSON and
server-sent events from one small app, and its test client drives the whole app in unit tests. The front end is
plain HTML, CSS and JavaScript under `static/` (no build step: the assets in the repo are the assets served) and
draws its charts as inline SVG.

Security model: locally it binds 127.0.0.1 by default and uses the caller's kubeconfig, exactly as kubectl would,
so the page can see and do no more than its viewer. In the cluster (`modelship dashboard`, the chart's
webDashboard) it reads as its own ServiceAccount and acts either never (read-only) or as the viewer its
authenticating proxy names (impersonation): see `acting.py`. Actions write the same request annotation as the
plugin, only when the page's own header is present (no cross-site clicks); a refusal by the API server (RBAC, the
requester admission policy) is shown as the API server worded it.
Live updates: one list+watch of ModelDeployments feeds every open page through server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from modelship.dashboard.acting import ACTION_HEADER, Acting
from modelship.dashboard.views import ACTIONS, Timeline, fleet_row, key_of, rollout_view
from modelship.plugin.cluster import ClusterApi
from modelship.plugin.commands import send
from modelship.plugin.errors import PluginError

log = logging.getLogger("modelship.dashboard")
STATIC = Path(__file__).parent / "static"
Key = tuple[str, str]


class Fleet:
    """The ModelDeployments the viewer can see, kept by a list+watch thread; subscribers get each change."""

    def __init__(self, api: ClusterApi, namespace: str | list[str] | None, now: Callable[[], datetime]) -> None:
        """`namespace`: one, several (a list+watch each, as a namespaced install may read no other), or all."""
        self.api = api
        self.namespaces: list[str | None] = list(namespace) if isinstance(namespace, list) else [namespace]
        self.now = now
        self.objects: dict[Key, dict[str, Any]] = {}
        self.timeline = Timeline()
        self.synced = threading.Event()
        self.error = ""
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop, *, watch: bool = True) -> None:
        """Publish changes into `loop`; `watch=False` when a test feeds `apply` itself."""
        self._loop = loop
        for namespace in self.namespaces if watch else []:
            threading.Thread(target=self._follow, args=(namespace,), daemon=True, name="dashboard-watch").start()

    def _follow(self, namespace: str | None) -> None:
        while True:
            try:
                for kind, obj in self.api.watch_collection(namespace):
                    self.apply(kind, obj, namespace)
            except PluginError as exc:  # e.g. RBAC: shown on the page, tried again
                self.error = str(exc)
                log.warning("watching ModelDeployments failed: %s", exc)
                threading.Event().wait(5)

    def apply(self, kind: str, obj: dict[str, Any], namespace: str | None = None) -> None:
        """One watch event (from the watch thread of `namespace`, None: all; or from a test)."""
        if kind == "RELIST":
            for key in [k for k in self.objects if namespace in (None, k[0])]:
                del self.objects[key]
            return
        key = key_of(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.timeline.forget(key)
        else:
            self.objects[key] = obj
            self.timeline.observe(obj, self.now())
        self.error = ""
        self.synced.set()
        self._publish({"kind": kind, "row": fleet_row(obj, self.now())})

    def _publish(self, message: dict[str, Any]) -> None:
        if self._loop is None:
            return
        for queue in list(self._subscribers):
            self._loop.call_soon_threadsafe(queue.put_nowait, message)

    @contextlib.contextmanager
    def subscription(self) -> Any:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)


def app(api: ClusterApi, namespace: str | list[str] | None, *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC), fleet: Fleet | None = None,
        prometheus_url: str | None = None, acting: Acting | None = None) -> web.Application:
    """The whole dashboard; `fleet` is started with the app unless a test passes one it feeds itself. With
    `prometheus_url`, a rollout's timeline starts with the operator's series of the last hours. `acting` says as
    whom actions run (default: the local viewer's kubeconfig, `api` itself)."""
    followed = fleet or Fleet(api, namespace, now)
    acts = acting or Acting()
    routes = web.RouteTableDef()
    seeded: set[Key] = set()
    known: dict[str, str] = {}

    async def viewer(request: web.Request) -> str:
        """Who the API server says the local viewer is (asked once), or whom the proxy names."""
        if acts.mode != "local":
            named = acts.viewer(request.headers)
            return named.name if named else ""
        if "name" not in known:
            try:
                known["name"] = await asyncio.to_thread(api.whoami)
            except PluginError:
                return ""
        return known["name"]

    @routes.get("/healthz")
    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    @routes.get("/")
    @routes.get("/rollouts/{namespace}/{name}")
    async def page(_: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    @routes.get("/api/fleet")
    async def fleet_page(request: web.Request) -> web.Response:
        wanted = request.query.get("namespace") or None
        rows = [fleet_row(obj, now()) for key, obj in sorted(followed.objects.items())
                if wanted in (None, key[0])]  # fmt: skip
        return web.json_response({"rows": rows, "error": followed.error, "viewer": await viewer(request),
                                  "refusal": acts.refusal(request.headers)})

    @routes.get("/api/rollouts/{namespace}/{name}")
    async def rollout(request: web.Request) -> web.Response:
        key = (request.match_info["namespace"], request.match_info["name"])
        obj = followed.objects.get(key)
        if obj is None:
            return web.json_response({"error": f"modeldeployment {key[0]}/{key[1]} not found"}, status=404)
        if prometheus_url and key not in seeded:
            seeded.add(key)
            try:
                earlier = await history_from_prometheus(prometheus_url, key, now())
            except (aiohttp.ClientError, TimeoutError, ValueError, KeyError) as exc:
                log.warning("no earlier timeline from %s: %s", prometheus_url, exc)
            else:
                followed.timeline.seed(key, earlier)
        view, refusal = rollout_view(obj, now()), acts.refusal(request.headers)
        if refusal:  # every button disabled, the reason as its tooltip
            view["actions"] = dict.fromkeys(view["actions"], refusal)
        return web.json_response({**view, "timeline": followed.timeline.points(key), "viewer": await viewer(request),
                                  "refusal": refusal})

    @routes.post("/api/rollouts/{namespace}/{name}/{action}")
    async def act(request: web.Request) -> web.Response:
        namespace, name, action = (request.match_info[k] for k in ("namespace", "name", "action"))
        if action not in ACTIONS:
            return web.json_response({"error": f"unknown action {action!r}"}, status=400)
        if ACTION_HEADER not in request.headers:
            return web.json_response({"error": f"refused: actions come from the dashboard's own page, which sends "
                                                f"the {ACTION_HEADER} header; nothing was done"}, status=403)
        refusal = acts.refusal(request.headers)
        if refusal:
            return web.json_response({"error": refusal}, status=403)
        if acts.mode != "local" and (namespace, name) not in followed.objects:  # only what this install serves
            return web.json_response({"error": f"modeldeployment {namespace}/{name} not found"}, status=404)
        actor = acts.actor(api, request.headers, asyncio.get_running_loop())
        said: list[str] = []
        try:
            await asyncio.to_thread(send, actor, namespace, name, action, wait=False, out=said.append)
        except PluginError as refused:
            forbidden = "forbidden" in str(refused).lower() or "denied" in str(refused).lower()
            return web.json_response({"error": str(refused)}, status=403 if forbidden else 409)
        return web.json_response({"message": "\n".join(said)})

    closing = asyncio.Event()  # set at shutdown: open event streams end instead of holding it up

    @routes.get("/api/events")
    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        with followed.subscription() as queue, contextlib.suppress(ConnectionResetError):
            await response.write(b": connected\n\n")
            quiet = 0
            while not closing.is_set():
                try:
                    message = await asyncio.wait_for(queue.get(), timeout=1)
                except TimeoutError:
                    quiet += 1
                    if quiet % 15 == 0:  # proxies close silent streams
                        await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"data: {json.dumps(message)}\n\n".encode())
        return response

    application = web.Application()
    application.add_routes(routes)
    application.router.add_static("/static/", STATIC)

    async def follow(_: web.Application) -> AsyncIterator[None]:
        followed.start(asyncio.get_running_loop(), watch=fleet is None)
        yield

    async def close_streams(_: web.Application) -> None:
        closing.set()

    application.cleanup_ctx.append(follow)
    application.on_shutdown.append(close_streams)
    return application


HISTORY = timedelta(hours=6)
HISTORY_STEP_S = 30  # 720 points over 6 hours: the timeline's bound


async def history_from_prometheus(url: str, key: Key, now: datetime) -> list[dict[str, Any]]:
    """The operator's series for one object (canary weight, each SLO's value and upper bound) as timeline points,
    one per step, oldest first. The series exist where the operator is scraped (the chart's ServiceMonitor)."""
    namespace, name = key
    selector = f'{{namespace="{namespace}", name="{name}"}}'
    params = {"start": f"{(now - HISTORY).timestamp():.0f}", "end": f"{now.timestamp():.0f}",
              "step": str(HISTORY_STEP_S)}
    points: dict[float, dict[str, Any]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for metric in ("modelship_canary_weight", "modelship_slo_value", "modelship_slo_bound"):
            async with session.get(f"{url.rstrip('/')}/api/v1/query_range",
                                   params={**params, "query": metric + selector}) as response:
                body = await response.json()
            for series in body["data"]["result"]:
                slo = series["metric"].get("slo")
                for stamp, value in series["values"]:
                    point = points.setdefault(float(stamp), {"time": datetime.fromtimestamp(float(stamp), UTC)
                                                             .isoformat(), "canaryWeight": 0, "mirrorPercent": 0})
                    if metric == "modelship_canary_weight":
                        point["canaryWeight"] = float(value)
                    else:
                        entry = point.setdefault("slos", {}).setdefault(slo, {"value": None, "max": None})
                        entry["value" if metric == "modelship_slo_value" else "max"] = float(value)
    return [points[stamp] for stamp in sorted(points)]


def serve(api: ClusterApi, namespace: str | None, address: str, port: int, out: Callable[[str], None],
          prometheus_url: str | None = None) -> int:
    """Run until Ctrl-C."""
    out(f"Modelship dashboard on http://{address}:{port}/ as your kubeconfig identity "
        f"({'namespace ' + namespace if namespace else 'all namespaces'}); Ctrl-C stops it")
    web.run_app(app(api, namespace, prometheus_url=prometheus_url), host=address, port=port, print=None)
    return 0
