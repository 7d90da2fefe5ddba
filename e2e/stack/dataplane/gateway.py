"""Traefik v3 as a real Gateway API implementation for the stack (optional).

Why: the traffic generator honours HTTPRoute weights and mirrors itself, which is what canary analysis
needs; a real gateway additionally proves that the operator's HTTPRoutes are *accepted* by an
implementation (status conditions, parentRefs, backendRefs resolution). Enabled with
``MODELSHIP_STACK_GATEWAY=traefik`` when the binary is cached (built from the wrapper module
``gomod/traefik``); it creates GatewayClass ``traefik`` and Gateway ``gateways/inference-gw`` whose
single HTTP listener is Traefik's loopback entry point, accepting routes from all namespaces.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.stack.triton import free_port, http_ok

VERSION = "v3.6.12"  # gomod/traefik pins the same release
GATEWAY_NAMESPACE, GATEWAY_NAME, GATEWAY_CLASS = "gateways", "inference-gw", "traefik"
CONTROLLER = "traefik.io/gateway-controller"
RBAC_RULES = [
    {"apiGroups": [""], "resources": ["namespaces", "secrets", "configmaps", "services"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
    {"apiGroups": ["gateway.networking.k8s.io"],
     "resources": ["backendtlspolicies", "gatewayclasses", "gateways", "grpcroutes", "httproutes",
                   "referencegrants", "tcproutes", "tlsroutes"],
     "verbs": ["get", "list", "watch"]},
    {"apiGroups": ["gateway.networking.k8s.io"],
     "resources": ["backendtlspolicies/status", "gatewayclasses/status", "gateways/status", "grpcroutes/status",
                   "httproutes/status", "tcproutes/status", "tlsroutes/status"],
     "verbs": ["update"]},
]  # fmt: skip


def binary() -> Path:
    cache = Path(os.environ.get("MODELSHIP_CACHE", Path.home() / ".cache" / "modelship"))
    return cache / "bin" / f"traefik-{VERSION}" / "traefik"


def enabled() -> bool:
    return os.environ.get("MODELSHIP_STACK_GATEWAY", "") == "traefik" and binary().exists()


def ensure_gateway(api_client: Any, port: int) -> None:
    """GatewayClass + Gateway whose listener port is Traefik's entry point port (that is how Traefik maps them)."""
    from kubernetes import client  # noqa: PLC0415
    from kubernetes.client.rest import ApiException  # noqa: PLC0415

    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    group, version = "gateway.networking.k8s.io", "v1"
    try:
        core.create_namespace({"metadata": {"name": GATEWAY_NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    gwc = {"apiVersion": f"{group}/{version}", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
           "spec": {"controllerName": CONTROLLER}}  # fmt: skip
    gw = {
        "apiVersion": f"{group}/{version}", "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [{
            "name": "web", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "All"}}}]},
    }  # fmt: skip
    for body, plural, ns in ((gwc, "gatewayclasses", None), (gw, "gateways", GATEWAY_NAMESPACE)):
        name = body["metadata"]["name"]
        if ns is None:
            custom.patch_cluster_custom_object(group, version, plural, name, body, field_manager="modelship-stack",
                                               _content_type="application/apply-patch+yaml", force=True)  # fmt: skip
        else:
            custom.patch_namespaced_custom_object(group, version, ns, plural, name, body,
                                                  field_manager="modelship-stack",
                                                  _content_type="application/apply-patch+yaml", force=True)  # fmt: skip


def start(workdir: Path, server: str, ca_file: Path, token_file: Path, log_file: Path) -> dict[str, Any]:
    """Start Traefik detached on a free loopback port; return pid, port and seconds to /ping."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, ping_port = free_port(), free_port()
    cmd = [
        str(binary()),
        f"--entryPoints.web.address=127.0.0.1:{port}",
        f"--entryPoints.traefik.address=127.0.0.1:{ping_port}",
        "--ping=true",
        "--providers.kubernetesgateway=true",
        f"--providers.kubernetesgateway.endpoint={server}",
        f"--providers.kubernetesgateway.certauthfilepath={ca_file}",
        "--providers.kubernetesgateway.throttleduration=1s",
        "--log.level=INFO",
        "--global.checknewversion=false",
        "--global.sendanonymoususage=false",
    ]
    # the token goes through the environment, not argv: ps must not show credentials
    env = dict(os.environ, TRAEFIK_PROVIDERS_KUBERNETESGATEWAY_TOKEN=token_file.read_text().strip())
    t0 = time.monotonic()
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, start_new_session=True, env=env)  # fmt: skip
    (workdir / "traefik.pid").write_text(str(proc.pid))
    deadline = t0 + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"traefik exited rc={proc.returncode}, see {log_file}")
        if http_ok(f"http://127.0.0.1:{ping_port}/ping"):
            return {"traefik_pid": proc.pid, "gateway_port": port, "traefik_start_s": round(time.monotonic() - t0, 3)}
        time.sleep(0.1)
    raise TimeoutError(f"traefik did not answer /ping within 60s, see {log_file}")
