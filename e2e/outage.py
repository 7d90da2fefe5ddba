"""A TCP link to a shared service that one scenario can cut: the operator under test talks to Prometheus
through it, so an outage the scenario starts stays an outage for that operator even if someone sharing the
stack restarts Prometheus meanwhile (`e2e.stack up` repairs a stopped data plane)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from urllib.parse import urlsplit


class Link:
    """Forwards 127.0.0.1:<port> to `target_url`; `cut()` refuses and drops connections, `restore()` undoes it."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._server = self._listen(0)
        self.port = self._server.getsockname()[1]
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._serve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self, port: int) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(64)
        return s

    def _serve(self) -> None:
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # cut
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns.update((client, upstream))
        try:
            while True:
                ready, _, _ = select.select([client, upstream], [], [], 1.0)
                for src in ready:
                    data = src.recv(65536)
                    if not data:
                        return
                    (upstream if src is client else client).sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._conns.difference_update((client, upstream))
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        """Connections are refused from now on (as when the service is down); open ones are dropped."""
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
                s.close()

    def restore(self) -> None:
        self._server = self._listen(self.port)
        self._serve()

    def close(self) -> None:
        self.cut()
