"""A webhook receiver on loopback for the operator's notifications (the e2e scenario and `make demo` use it).

It records every POST (headers, body, time) and can play a receiver that is down: the first `down_for` requests
have their connection dropped unanswered, so the operator's retry is visible. `signed` checks the HMAC-SHA256
signature the operator puts in `X-Modelship-Signature`, as a receiver must before trusting a body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at: float
    answered: bool

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook endpoint on loopback; the first `down_for` requests get their connection dropped unanswered."""

    down_for: int = 0
    seen: list[Delivery] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answered = len(receiver.seen) >= receiver.down_for
                receiver.seen.append(Delivery(dict(self.headers), body, time.time(), answered))
                if not answered:  # a receiver that crashed mid-request
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/modelship"

    def delivered(self, event: str) -> list[Delivery]:
        return [d for d in self.seen if d.answered and d.headers.get("X-Modelship-Event") == event]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()


def signed(delivery: Delivery, key: str) -> bool:
    """Whether the body carries a valid HMAC-SHA256 signature made with `key`."""
    expected = "sha256=" + hmac.new(key.encode(), delivery.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, delivery.headers.get("X-Modelship-Signature", ""))
