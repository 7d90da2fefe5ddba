"""Bounded Prometheus answers: a query can cost the shared operator only so many bytes and so much time.

Why: custom SLO queries come from tenants. One query matching every series of a namespace made the operator
decode a 558 MiB answer before refusing it for having more than one series, for every analysis round. Three
bounds together keep one query's cost small whatever it selects:
- the request asks Prometheus for at most `max_series` series (`limit`, honoured by Prometheus 3.x, ignored by
  older versions) and to give up after `timeout` (Prometheus' own evaluation timeout, below the client's);
- the HTTP body is read in chunks and dropped, connection and all, past `max_bytes` (counted after gzip
  decoding, so a compressed answer cannot expand past the bound) or past the read deadline, so a body that
  drips in cannot hold a worker longer than the client timeout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response


class AnswerTooLarge(Exception):
    """Prometheus' answer to one query exceeded the byte bound: the query selects too many series."""


class _CappedBody:
    """A response body that raises once more than `max_bytes` were read or the deadline passed.

    It has no `stream` attribute on purpose: requests then reads it through `read`, chunk by chunk.
    """

    def __init__(self, raw: Any, max_bytes: int, deadline: float) -> None:
        self._raw = raw
        self._max_bytes = max_bytes
        self._deadline = deadline
        self._read = 0

    def read(self, amount: int | None = None, *_args: Any, **_kwargs: Any) -> bytes:
        if time.monotonic() > self._deadline:
            self.close()
            raise requests.Timeout("Prometheus' answer did not arrive within the timeout")
        step = self._max_bytes + 1 - self._read if amount is None else min(amount, self._max_bytes + 1 - self._read)
        chunk: bytes = self._raw.read(max(1, step), decode_content=True)
        self._read += len(chunk)
        if self._read > self._max_bytes:
            self.close()
            raise AnswerTooLarge(f"answer larger than {self._max_bytes} bytes")
        return chunk

    def close(self) -> None:
        self._raw.close()

    def release_conn(self) -> None:
        release = getattr(self._raw, "release_conn", None)
        if release is not None:
            release()


class BoundedAdapter(HTTPAdapter):
    """HTTPAdapter whose responses refuse bodies over `max_bytes` or slower than `read_timeout_s` in total."""

    def __init__(self, max_bytes: int, read_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        deadline = time.monotonic() + self.read_timeout_s
        response = super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)
        response.raw = _CappedBody(response.raw, self.max_bytes, deadline)
        return response


def prometheus_timeout(client_timeout_s: float) -> str:
    """Prometheus' evaluation timeout: 80% of the client's, so Prometheus' own answer arrives first."""
    return f"{max(100, int(client_timeout_s * 800))}ms"
