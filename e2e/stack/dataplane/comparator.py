"""Comparator pods on the local stack: `modelship compare` run as a real process at its pod IP, like Triton.

What a kubelet would do for such a pod, the pod runner does here:
- a service-account token for the pod's ServiceAccount, bound to the pod (TokenRequest, as the kubelet's
  projected token), written into a per-pod kubeconfig: the comparator reads EndpointSlices with exactly the
  rights the operator's RoleBinding gave it;
- a way to the API server from inside the pod network: the API server listens on 127.0.0.1 on the host only,
  so `ApiRelay` forwards TCP from the host end of the veth (10.77.255.254, reachable from pods only) to it;
  TLS stays end to end (`tls-server-name: 127.0.0.1`, a name the API server's certificate carries).
The comparator finds its upstreams from EndpointSlices (kube-controller-manager fills them from the role
Services' selectors and the pods' readiness), as it would in a real cluster: the stack has no Service routing.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

log = logging.getLogger("modelship.podrunner")

COMMAND = ("modelship", "compare")
TOKEN_SECONDS = 3600


def is_comparator(container_command: list[str]) -> bool:
    return tuple(container_command[:2]) == COMMAND


class ApiRelay:
    """TCP relay host-veth-IP:port -> the API server (bytes only: TLS is between the comparator and the server)."""

    def __init__(self, listen_ip: str, server_url: str) -> None:
        parsed = urlparse(server_url)
        self.target = (parsed.hostname or "127.0.0.1", parsed.port or 443)
        self.listener = socket.create_server((listen_ip, 0))
        self.address = self.listener.getsockname()
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="api-relay", daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://{self.address[0]}:{self.address[1]}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError as exc:
            log.warning("api relay: cannot reach %s:%d: %s", *self.target, exc)
            client.close()
            return
        upstream.settimeout(None)
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def pod_token(core: Any, namespace: str, service_account: str, pod_name: str, pod_uid: str) -> str:
    """A token of the pod's ServiceAccount bound to the pod, as the kubelet mounts it."""
    request = {
        "spec": {
            "audiences": [],
            "expirationSeconds": TOKEN_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid},
        }
    }
    return str(core.create_namespaced_service_account_token(service_account, namespace, request).status.token)


def write_kubeconfig(path: Path, server: str, ca_file: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "stack", "cluster": {
            "server": server, "certificate-authority": ca_file, "tls-server-name": "127.0.0.1"}}],
        "users": [{"name": "pod", "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "stack", "user": "pod"}}],
        "current-context": "pod",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def command(args: list[str], ip: str, kubeconfig: Path, netns: str | None) -> list[str]:
    """`python -m modelship compare <the pod's args> --host <pod IP> --kubeconfig K`, inside the pod network."""
    cmd = [sys.executable, "-m", "modelship", *COMMAND[1:], *args, "--host", ip, "--kubeconfig", str(kubeconfig)]
    return ["ip", "netns", "exec", netns, *cmd] if netns else cmd
