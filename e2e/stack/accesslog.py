"""Which pod the gateway sent a request to, read from Traefik's JSON access log.

Why: through a real gateway the sender no longer picks the backend, yet scenarios judge traffic per revision
(stable errors, canary failures, who served last). An answer names its model version, but a refused connection
or a 502 names nothing; the gateway's access log does: every line carries the request id header the generator
set (``request_X-Modelship-Request``) and the upstream it chose (``ServiceAddr``, the pod's ``ip:port``).
The generator maps that address to the Service whose ready endpoints hold it (``RouteReader``'s plan).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from pathlib import Path

REQUEST_ID = "X-Modelship-Request"
"""The header the generator sets on every request through the gateway (Traefik's access log keeps it)."""
ID_FIELD = f"request_{REQUEST_ID}"
KEEP = 200_000


class AccessLog:
    """Tails one access log from its current end; ``upstream(id)`` waits briefly for the request's line."""

    def __init__(self, path: Path, poll_s: float = 0.02) -> None:
        self.path, self.poll_s = path, poll_s
        self._upstreams: OrderedDict[str, str] = OrderedDict()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._offset = path.stat().st_size if path.exists() else 0
        self._thread = threading.Thread(target=self._run, name="gateway-access-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def upstream(self, request_id: str, timeout: float = 3.0) -> str | None:
        """The ``ip:port`` the gateway sent ``request_id`` to ("" when it chose none), None if no line came."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while request_id not in self._upstreams:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._upstreams[request_id]

    def _run(self) -> None:
        partial = b""
        while not self._stop.is_set():
            try:
                with self.path.open("rb") as log:
                    if log.seek(0, 2) < self._offset:  # truncated (a new gateway start): read it from the top
                        self._offset = 0
                    log.seek(self._offset)
                    chunk = log.read()
            except OSError:
                chunk = b""
            if chunk:
                self._offset += len(chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                self._record(lines)
            self._stop.wait(self.poll_s)

    def _record(self, lines: list[bytes]) -> None:
        found: list[tuple[str, str]] = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            request_id = entry.get(ID_FIELD)
            if request_id:
                found.append((str(request_id), str(entry.get("ServiceAddr") or "")))
        if not found:
            return
        with self._cond:
            for request_id, address in found:
                self._upstreams[request_id] = address
            while len(self._upstreams) > KEEP:
                self._upstreams.popitem(last=False)
            self._cond.notify_all()
