"""Who a dashboard action runs as: the local viewer's kubeconfig, nobody (read-only), or the proxy's viewer.

In the cluster the dashboard's own ServiceAccount only reads. With `impersonate`, an authenticating proxy in front
of it (oauth2-proxy and the like) names the viewer in trusted headers, and the one write an action makes (the
request annotation) is sent with Kubernetes impersonation: `Impersonate-User` and one `Impersonate-Group` per
group. RBAC and the modelship-requester admission policy then judge the viewer, not the dashboard, and
`modelship.dev/requested-by` and history record the viewer. A request without a viewer is refused, never run as the
ServiceAccount. The kubernetes client turns header parameters into a dict (one value per name), so that write goes
through aiohttp here, with the same host, CA and token the client's configuration loaded.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import aiohttp
from kubernetes.client.exceptions import ApiException

from modelship.adapters.transport import client_configuration, ssl_context
from modelship.domain.api import GROUP, PLURAL, VERSION
from modelship.plugin.cluster import ClusterApi
from modelship.plugin.errors import PluginError
from modelship.plugin.kube import FIELD_MANAGER, translate

Mode = Literal["local", "read-only", "impersonate"]
WRITE_TIMEOUT_S = 30.0
ACTION_HEADER = "X-Modelship-Dashboard"
"""Sent by the page with every action: a cross-site form or `no-cors` fetch cannot set it, so another site open in
the viewer's browser cannot make it click (the proxy's cookie would otherwise sign such a request in)."""
READ_ONLY = ("this dashboard is read-only: it runs in the cluster as its own ServiceAccount, which may only read "
             "ModelDeployments. Act with kubectl modelship (as yourself), or ask for this dashboard behind an "
             "authenticating proxy with actions as the viewer (chart value webDashboard.actions=impersonate)")


@dataclass(frozen=True)
class Viewer:
    """The person behind a request, as the authenticating proxy named them."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Acting:
    """How actions run; `viewer` reads the proxy's headers (impersonate mode only: nothing else sets them)."""

    mode: Mode = "local"
    user_header: str = "X-Forwarded-User"
    groups_header: str = "X-Forwarded-Groups"
    writer: Impersonator | None = None

    def __post_init__(self) -> None:
        if self.mode == "impersonate" and self.writer is None:
            raise ValueError("impersonate mode needs an Impersonator: without one it could only act as itself")

    def viewer(self, headers: Mapping[str, str]) -> Viewer | None:
        if self.mode != "impersonate":
            return None
        name = headers.get(self.user_header, "").strip()
        groups = tuple(g.strip() for g in headers.get(self.groups_header, "").split(",") if g.strip())
        return Viewer(name, groups) if name else None

    def refusal(self, headers: Mapping[str, str]) -> str:
        """Why no action may run for this request ('' when one may)."""
        if self.mode == "read-only":
            return READ_ONLY
        if self.mode == "local":
            return ""
        viewer = self.viewer(headers)
        if viewer is None:
            return (f"no signed-in viewer: the request reached the dashboard without the {self.user_header} header "
                    "that its authenticating proxy sets, and the dashboard never acts as its own ServiceAccount; "
                    "nothing was done")
        system = [n for n in (viewer.name, *viewer.groups) if n.startswith("system:")]
        if system:
            return (f"the dashboard does not act as {', '.join(system)}: the proxy names people and their groups, "
                    "never the cluster's system identities; nothing was done")
        return ""

    def actor(self, api: ClusterApi, headers: Mapping[str, str], loop: asyncio.AbstractEventLoop) -> ClusterApi:
        """The ClusterApi an action runs through, once `refusal` said ''; never the ServiceAccount's for a write."""
        if self.mode == "local":
            return api
        viewer = self.viewer(headers)
        if viewer is None or self.writer is None or self.refusal(headers):
            raise PluginError(self.refusal(headers) or "forbidden: no viewer to act as")
        return ImpersonatedApi(api, self.writer, viewer, loop)


class Impersonator:
    """The dashboard's one write, as the viewer: a merge patch of a ModelDeployment's annotations."""

    def __init__(self, host: str, authorization: Callable[[], str | None], context: ssl.SSLContext | None = None,
                 server_hostname: str | None = None) -> None:
        self.host = host.rstrip("/")
        self._authorization = authorization
        self._ssl = context
        self._server_hostname = server_hostname

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None) -> Impersonator:
        """The in-cluster ServiceAccount (token re-read as it rotates) in a pod, else the kubeconfig."""
        configuration = client_configuration(kubeconfig)
        return cls(str(configuration.host),
                   lambda: configuration.get_api_key_with_prefix("BearerToken", alias="authorization"),
                   ssl_context(configuration) if str(configuration.host).startswith("https") else None,
                   getattr(configuration, "tls_server_name", None) or None)

    def headers(self, viewer: Viewer) -> list[tuple[str, str]]:
        """Repeated names are kept: one Impersonate-Group per group, as the API server reads them."""
        headers = [("Accept", "application/json"), ("Content-Type", "application/merge-patch+json")]
        token = self._authorization()
        if token:
            headers.append(("Authorization", token))
        return [*headers, ("Impersonate-User", viewer.name), *(("Impersonate-Group", g) for g in viewer.groups)]

    async def patch_annotations(self, viewer: Viewer, namespace: str, name: str,
                                annotations: dict[str, str]) -> dict[str, Any]:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace, safe='')}/{PLURAL}/{quote(name, safe='')}"
        body = json.dumps({"metadata": {"annotations": annotations}}).encode()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WRITE_TIMEOUT_S),
                                             trust_env=False) as session, session.patch(
                    self.host + path, params={"fieldManager": FIELD_MANAGER}, data=body,
                    headers=self.headers(viewer),
                    ssl=self._ssl if self._ssl is not None else True, server_hostname=self._server_hostname,
            ) as response:
                payload, status, reason = await response.read(), response.status, response.reason or ""
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PluginError(f"cannot reach the API server at {self.host} ({exc or type(exc).__name__})") from None
        if status >= 400:
            raise refused(status, reason, payload, viewer, namespace, name, self.host)
        result: dict[str, Any] = json.loads(payload)
        return result


def refused(status: int, reason: str, payload: bytes, viewer: Viewer, namespace: str, name: str,
            host: str) -> PluginError:
    """The API server's refusal in its own words; impersonation itself refused is told apart from RBAC on the
    ModelDeployment, since the fix is in the dashboard's grant, not the viewer's."""
    try:
        message = str(json.loads(payload).get("message") or "")
    except (ValueError, AttributeError):
        message = payload.decode(errors="replace")[:500]
    if status == 403 and "cannot impersonate" in message:
        return PluginError(f"forbidden: this dashboard may not act as {viewer.name}: {message}. Its ServiceAccount "
                           "needs the verb impersonate on that user and each of its groups (chart values "
                           "webDashboard.impersonate.users and .groups)")
    exc = ApiException(status=status, reason=reason)
    exc.body = payload.decode(errors="replace")
    return translate(exc, "patch", namespace, name, host)


class ImpersonatedApi:
    """A ClusterApi for one action: reads through the dashboard's own client, the write as the viewer.

    `send` runs in a worker thread (it is the plugin's blocking code); the write is scheduled on the app's
    event loop and waited for."""

    def __init__(self, reader: ClusterApi, writer: Impersonator, viewer: Viewer,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._reader, self._writer, self._viewer, self._loop = reader, writer, viewer, loop

    @property
    def default_namespace(self) -> str:
        return self._reader.default_namespace

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._reader.get(namespace, name)

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        return self._reader.list(namespace)

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        write = self._writer.patch_annotations(self._viewer, namespace, name, annotations)
        return asyncio.run_coroutine_threadsafe(write, self._loop).result(WRITE_TIMEOUT_S + 5)

    def whoami(self) -> str:
        return self._viewer.name

    def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        return self._reader.watch(namespace, name, timeout_s)

    def watch_collection(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        return self._reader.watch_collection(namespace)
