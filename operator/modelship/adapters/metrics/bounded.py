"""Prometheus' instant-query API over asyncio, with bounded answers: one query costs so many bytes and so much time.

Why asyncio and not prometheus-api-client: that client is blocking, so every query needed a thread. At 1,000
ModelDeployments with 100 rolling out, its thread pool (requests, urllib3) was 20% of the operator's CPU samples
during the rollout, competing with the event loop for the GIL while step decisions waited on it. The query API
is one GET (`/api/v1/query`); this client makes it on an aiohttp session, as the operator already does for the
API server and Triton.

Why bounds: custom SLO queries come from tenants. One query matching every series of a namespace made the
operator decode a 558 MiB answer before refusing it for having more than one series, for every analysis round.
Three bounds together keep one query's cost small whatever it selects:
- the request asks Prometheus for at most `max_series` series (`limit`, honoured by Prometheus 3.x, ignored by
  older versions) and to give up after `timeout` (Prometheus' own evaluation timeout, below the client's);
- the HTTP body is read in chunks and dropped, connection and all, past `max_bytes` (counted after gzip
  decoding, so a compressed answer cannot expand past the bound);
- the whole request, body included, has the client timeout, so a body that drips in cannot hold a round longer.
No retries: the next analysis round is the retry.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp

READ_CHUNK = 64 * 1024


class AnswerTooLarge(Exception):
    """Prometheus' answer to one query exceeded the byte bound: the query selects too many series."""


class PrometheusAnswered(Exception):
    """Prometheus (or something in its place) answered with an HTTP error; `body` is what it said, bounded."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body

    def payload(self) -> dict[str, Any]:
        """Prometheus' JSON error (`errorType`, `error`), or {} when the body is not one."""
        try:
            found = json.loads(self.body)
        except ValueError:
            return {}
        return found if isinstance(found, dict) else {}


class Unreachable(Exception):
    """No answer: the connection failed or the request ran out of time. `reason` says which, without URLs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def read_bounded(content: aiohttp.StreamReader, max_bytes: int) -> bytes:
    """The (decoded) body, refused once it grows past `max_bytes`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(READ_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > max_bytes:
            raise AnswerTooLarge(f"answer larger than {max_bytes} bytes")
        chunks.append(chunk)


class PrometheusClient:
    """`custom_query` over one aiohttp session per event loop: bearer or basic auth, CA or no verification."""

    def __init__(
        self, url: str, *, headers: dict[str, str] | None = None, basic_auth: tuple[str, str] | None = None,
        ssl_context: ssl.SSLContext | bool = True, timeout_s: float = 5.0, max_bytes: int = 256 * 1024,
    ) -> None:
        self.url = url.rstrip("/")
        self.headers = dict(headers or {})
        self.auth = aiohttp.BasicAuth(*basic_auth) if basic_auth else None
        self.ssl = ssl_context
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_bytes = max_bytes
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            self._sessions = {lp: s for lp, s in self._sessions.items() if not lp.is_closed()}
            session = aiohttp.ClientSession(timeout=self.timeout, trust_env=False,
                                            connector=aiohttp.TCPConnector(ssl=self.ssl))
            self._sessions[loop] = session
        return session

    async def custom_query(self, query: str, params: dict[str, str] | None = None) -> Any:
        """The `data.result` of an instant query; raises PrometheusAnswered, Unreachable or AnswerTooLarge."""
        try:
            async with self._session().get(
                f"{self.url}/api/v1/query", params={"query": query, **(params or {})}, headers=self.headers,
                auth=self.auth,
            ) as response:
                body = await read_bounded(response.content, self.max_bytes)
                if response.status != 200:
                    raise PrometheusAnswered(response.status, body)
        except aiohttp.ClientConnectorError:
            raise Unreachable("cannot connect to Prometheus: connection refused or unreachable") from None
        except aiohttp.ClientConnectionError as exc:  # e.g. a pooled connection the server closed
            raise Unreachable(f"cannot connect to Prometheus: {type(exc).__name__}") from None
        except TimeoutError:
            raise Unreachable("Prometheus timed out") from None
        except aiohttp.ClientError as exc:
            raise Unreachable(f"Prometheus request failed: {type(exc).__name__}") from None
        payload = json.loads(body)  # ValueError: not Prometheus (classified as an outage)
        return payload["data"]["result"]

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for loop, session in sessions.items():
            if loop is asyncio.get_running_loop() and not session.closed:
                await session.close()


def prometheus_timeout(client_timeout_s: float) -> str:
    """Prometheus' evaluation timeout: 80% of the client's, so Prometheus' own answer arrives first."""
    return f"{max(100, int(client_timeout_s * 800))}ms"
