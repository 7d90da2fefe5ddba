"""The asyncio HTTP transport to the API server, behind a client-side token-bucket rate limit.

Why not the blocking `kubernetes` client: it needs a thread per call in flight, and a fleet-sized backlog
queued behind a thread pool. One shared aiohttp session multiplexes every call on the event loop; the
`kubernetes.config` loaders still supply host, TLS and credentials (kubeconfig or in-cluster service
account, token refresh included). Request bodies and headers are never logged: they carry credentials.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from modelship.adapters.kube import APPLY_CONTENT_TYPE, KubeError, Query

REQUEST_TIMEOUT_S = 30.0
WATCH_READ_TIMEOUT_S = 330.0
"""Longest silence on a watch connection before it counts as dead: past the server's own watch timeout."""
POOL_SIZE = 32
"""Pooled HTTP connections to the API server; requests beyond it wait for a free connection."""


class RateLimiter:
    """Token bucket: `qps` tokens a second, at most `burst` saved up; qps <= 0 means unlimited.

    Each caller reserves its token at once (no lock, so any event loop may use it) and sleeps until the
    bucket would have refilled it, so waiters are served in arrival order at the steady rate.
    """

    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"burst={burst}: the rate limit needs a burst of at least 1 (MODELSHIP_API_BURST)")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self.waited_seconds = 0.0
        """Total time callers were held back: throttling that telemetry can expose."""

    async def acquire(self) -> None:
        if self.qps <= 0:
            return
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._updated) * self.qps) - 1
        self._updated = now
        if self._tokens >= 0:
            return
        delay = -self._tokens / self.qps
        self.waited_seconds += delay
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            self._tokens += 1  # the reserved token was never used: give it back
            raise


def verb_of(method: str, content_type: str | None) -> str:
    """The request's verb as operator metrics name it (a server-side apply is `apply`)."""
    if method == "PATCH" and content_type == APPLY_CONTENT_TYPE:
        return "apply"
    return {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _error_from_body(status: int, reason: str, data: bytes) -> KubeError:
    """The API server's Status message names the field and the problem; keep it, drop the rest."""
    try:
        payload = json.loads(data)
        message = str(payload.get("message", "")) if isinstance(payload, dict) else ""
        reason = str(payload.get("reason", reason)) if isinstance(payload, dict) else reason
    except ValueError:
        message = ""
    return KubeError(status, reason, message)


def ssl_context(configuration: Any) -> ssl.SSLContext:
    """Verification and client certificate as a `kubernetes.client.Configuration` describes them."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    return context


def client_configuration(kubeconfig: str | None = None) -> Any:
    """A `kubernetes.client.Configuration`: the in-cluster service account in a pod, else the kubeconfig (path or
    $KUBECONFIG). Returned as Any: the client's own annotations are incomplete under mypy --strict."""
    client: Any = importlib.import_module("kubernetes.client")
    config: Any = importlib.import_module("kubernetes.config")
    configuration = client.Configuration()
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return configuration


CREDENTIAL_TTL_S = 60.0
"""How long a bearer token read from the loaded configuration is reused. The kubeconfig loader's refresh hook
re-reads the whole kubeconfig (and the environment's proxies) on every call: at fleet scale that was ~11% of the
operator's CPU. Exec-plugin and service-account tokens live for many minutes; a 401 forces a fresh read."""


class CachedCredential:
    """The Authorization header from `source`, read again only after `ttl` seconds or after a 401."""

    def __init__(self, source: Callable[[], str | None], ttl: float = CREDENTIAL_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._ttl = ttl
        self._clock = clock
        self._value: str | None = None
        self._read_at: float | None = None

    def __call__(self) -> str | None:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._ttl:
            self._value, self._read_at = self._source(), now
        return self._value

    def invalidate(self) -> None:
        self._read_at = None


class AsyncTransport:
    """`Transport` over one aiohttp session; returns the decoded JSON body or raises KubeError."""

    def __init__(
        self, host: str, *, limiter: RateLimiter | None = None, authorization: Callable[[], str | None] = lambda: None,
        ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None, proxy: str | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S, pool_size: int = POOL_SIZE, fence: Callable[[], None] | None = None,
    ) -> None:
        """`fence` is checked for every write once the rate limiter lets it go, right before it is sent: a
        write may wait seconds behind a backlog, longer than the margin between our renew deadline and the
        Lease's expiry, and must not reach the API server after another replica has taken over."""
        self.host = host.rstrip("/")
        self._fence = fence
        self.limiter = limiter or RateLimiter(0, 0)
        self._authorization = authorization if isinstance(authorization, CachedCredential) else CachedCredential(
            authorization)
        self._ssl = ssl_context
        self._server_hostname = server_hostname
        self._proxy = proxy
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._pool_size = pool_size
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.observer: Callable[[str, bool, float], None] | None = None
        """Told (verb, whether it writes, seconds it waited for the rate limiter) of every request sent."""

    @classmethod
    def from_configuration(
        cls, configuration: Any, limiter: RateLimiter | None = None, fence: Callable[[], None] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> AsyncTransport:
        """From a loaded `kubernetes.client.Configuration`: its token is read per request (refresh hooks run)."""
        https = str(configuration.host).startswith("https")
        return cls(
            configuration.host, limiter=limiter,
            authorization=lambda: configuration.get_api_key_with_prefix("BearerToken", alias="authorization"),
            ssl_context=ssl_context(configuration) if https else None,
            server_hostname=getattr(configuration, "tls_server_name", None) or None,
            proxy=configuration.proxy or None, fence=fence, timeout_s=timeout_s,
        )

    @classmethod
    def from_kubeconfig(
        cls, kubeconfig: str | None = None, qps: float = 0.0, burst: int = 1, fence: Callable[[], None] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> AsyncTransport:
        """In-cluster service account when running in a pod, else the kubeconfig (path or $KUBECONFIG)."""
        return cls.from_configuration(client_configuration(kubeconfig), RateLimiter(qps, burst), fence, timeout_s)

    def _client(self, watching: bool = False) -> aiohttp.ClientSession:
        """The shared session, made on first use inside the loop that will run it (one per loop). Watches hold
        their connection for minutes: they get a session of their own, so they never take the pool's."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._sessions.clear()
            self._loop = loop
        session = self._sessions.get(watching)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(limit=0 if watching else self._pool_size,
                                             ssl=self._ssl if self._ssl else True)
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False)
            self._sessions[watching] = session
        return session

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = self._authorization()
        if token:
            headers["Authorization"] = token
        return headers

    def _refused(self, status: int, reason: str, payload: bytes) -> KubeError:
        if status == 401:  # the token expired or was rotated: read it again for the next request
            self._authorization.invalidate()
        return _error_from_body(status, reason, payload)

    async def request(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        headers = self._headers()
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type or "application/json"
        queued = time.monotonic()
        await self.limiter.acquire()
        if self._fence is not None and method != "GET":
            self._fence()
        if self.observer is not None:
            self.observer(verb_of(method, content_type), method != "GET", time.monotonic() - queued)
        try:
            async with self._client().request(
                method, self.host + path, params=query or None, data=data, headers=headers, proxy=self._proxy,
                server_hostname=self._server_hostname,
            ) as response:
                payload = await response.read()
                status, reason = response.status, response.reason or "error"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from None
        if status >= 400:
            raise self._refused(status, reason, payload)
        try:
            return json.loads(payload) if payload else None
        except ValueError:
            raise KubeError(0, "InvalidResponse", f"{method} {path}: answer is not JSON") from None

    async def stream(self, path: str, *, query: Query | None = None) -> AsyncIterator[Any]:
        """GET a watch: one decoded JSON object per line of the chunked answer, as they arrive. No total
        timeout (the server ends a watch itself); a connection silent for `WATCH_READ_TIMEOUT_S` (longer than
        the server's own timeout, bookmarks included) is dead and raises KubeError(0)."""
        headers = self._headers()
        await self.limiter.acquire()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT_S, sock_read=WATCH_READ_TIMEOUT_S)
        try:
            async with self._client(watching=True).get(
                self.host + path, params=query or None, headers=headers, proxy=self._proxy,
                server_hostname=self._server_hostname, timeout=timeout,
            ) as response:
                if response.status >= 400:
                    raise self._refused(response.status, response.reason or "error", await response.read())
                buffered = b""
                # chunks, not readline(): aiohttp refuses a line longer than its buffer, and one object can be
                async for chunk in response.content.iter_any():
                    buffered += chunk
                    *lines, buffered = buffered.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise KubeError(0, type(exc).__name__, str(exc)) from None
        except ValueError:
            raise KubeError(0, "InvalidResponse", f"watch {path}: an event is not JSON") from None

    async def close(self) -> None:
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        self._sessions.clear()
