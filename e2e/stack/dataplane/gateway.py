"""Traefik v3, the stack's Gateway API implementation: live traffic goes through it, so route weights are enforced.

Why: a generator that reads the HTTPRoute and splits by itself proves nothing about what users get; Traefik
reads the operator's HTTPRoutes, writes their status and does the weighted split. It is built once from the
wrapper module ``gomod/traefik`` (``e2e/stack/build-traefik.sh``, cached) and started by default
(``MODELSHIP_STACK_GATEWAY=none`` leaves it out). It creates GatewayClass ``traefik`` and Gateway
``gateways/inference-gw`` whose one HTTP listener is Traefik's loopback entry point, accepting routes from all
namespaces. Its JSON access log keeps the request id header the generator sends, and the upstream address each
request went to, so failures are attributed to a revision too (``e2e/stack/accesslog.py``).

The gap: Traefik 3.6's Gateway provider has no HTTPRouteRequestMirror (its GatewayClass does not list the
feature); a rule with a RequestMirror filter answers 500 to every request. Routes through it use
``mirror: External`` (no filter; the copy is described on an annotation) and the generator makes that copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from e2e.stack import load_versions
from e2e.stack.accesslog import REQUEST_ID
from e2e.stack.triton import free_port, http_ok

VERSION = load_versions()["TRAEFIK_VERSION"]  # gomod/traefik pins the same release (build-traefik.sh checks)
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


ACCESS_LOG = "access.log"


def enabled() -> bool:
    """On by default; ``MODELSHIP_STACK_GATEWAY=none`` runs the stack without a gateway."""
    return os.environ.get("MODELSHIP_STACK_GATEWAY", "traefik") != "none"


def build() -> Path:
    """The cached binary, built once by ``build-traefik.sh`` (one progress line; Go's output in its log)."""
    from e2e.stack.controlplane import StackError  # noqa: PLC0415
    from e2e.stack.progress import StepFailed, run_step  # noqa: PLC0415

    if not binary().exists():
        script = Path(__file__).resolve().parents[1] / "build-traefik.sh"
        try:
            run_step(f"traefik {VERSION}", ["bash", str(script)], key="traefik")
        except StepFailed as exc:
            raise StackError(str(exc)) from exc
    return binary()


def ensure_gateway(api_client: Any, port: int, namespace: str = GATEWAY_NAMESPACE, name: str = GATEWAY_NAME) -> None:
    """GatewayClass + Gateway whose listener port is Traefik's entry point port (that is how Traefik maps them)."""
    from kubernetes import client  # noqa: PLC0415
    from kubernetes.client.rest import ApiException  # noqa: PLC0415

    core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    group, version = "gateway.networking.k8s.io", "v1"
    try:
        core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    gwc = {"apiVersion": f"{group}/{version}", "kind": "GatewayClass", "metadata": {"name": GATEWAY_CLASS},
           "spec": {"controllerName": CONTROLLER}}  # fmt: skip
    gw = {
        "apiVersion": f"{group}/{version}", "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [{
            "name": "web", "protocol": "HTTP", "port": port, "allowedRoutes": {"namespaces": {"from": "All"}}}]},
    }  # fmt: skip
    for body, plural, ns in ((gwc, "gatewayclasses", None), (gw, "gateways", namespace)):
        name = body["metadata"]["name"]
        if ns is None:
            custom.patch_cluster_custom_object(group, version, plural, name, body, field_manager="modelship-stack",
                                               _content_type="application/apply-patch+yaml", force=True)  # fmt: skip
        else:
            custom.patch_namespaced_custom_object(group, version, ns, plural, name, body,
                                                  field_manager="modelship-stack",
                                                  _content_type="application/apply-patch+yaml", force=True)  # fmt: skip


def ensure_crds(api_client: Any) -> None:
    """Traefik 3.6 watches BackendTLSPolicy (standard channel since Gateway API v1.4); install its CRD if missing."""
    import yaml  # noqa: PLC0415
    from kubernetes import client  # noqa: PLC0415
    from kubernetes.client.rest import ApiException  # noqa: PLC0415

    version = load_versions()["GATEWAY_API_VERSION"]
    go = shutil.which("go") or "/usr/local/go/bin/go"
    out = subprocess.run([go, "mod", "download", "-json", f"sigs.k8s.io/gateway-api@{version}"],
                         capture_output=True, text=True, check=True, cwd="/")  # fmt: skip
    standard = Path(json.loads(out.stdout)["Dir"]) / "config" / "crd" / "standard"
    crd_file = standard / "gateway.networking.k8s.io_backendtlspolicies.yaml"
    ext = client.ApiextensionsV1Api(api_client)
    try:
        ext.create_custom_resource_definition(yaml.safe_load(crd_file.read_text()))
    except ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition("backendtlspolicies.gateway.networking.k8s.io")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return
        time.sleep(0.2)
    raise TimeoutError("BackendTLSPolicy CRD not established")


def start(workdir: Path, server: str, ca_file: Path, token_file: Path, log_file: Path) -> dict[str, Any]:
    """Start Traefik detached on a free loopback port; return pid, port and seconds to /ping."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, ping_port = free_port(), free_port()
    # Traefik reads static config from ONE source (file, flags or env): a 0600 file keeps the token out of ps
    config = {
        "entryPoints": {"web": {"address": f"127.0.0.1:{port}"}, "traefik": {"address": f"127.0.0.1:{ping_port}"}},
        "ping": {},
        "api": {"insecure": True},  # read-only dashboard API on the loopback `traefik` entry point: what it applied
        "providers": {"kubernetesGateway": {
            "endpoint": server, "token": token_file.read_text().strip(), "certAuthFilePath": str(ca_file),
            "throttleDuration": "1s"}},
        "log": {"level": "INFO", "noColor": True},
        "accessLog": {"filePath": str(workdir / ACCESS_LOG), "format": "json", "fields": {
            "defaultMode": "keep", "headers": {"defaultMode": "drop", "names": {REQUEST_ID: "keep"}}}},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }  # fmt: skip
    (workdir / ACCESS_LOG).write_text("")  # one log per start: the generator tails it from its end
    config_file = workdir / "traefik.yml"
    config_file.touch(mode=0o600)
    config_file.write_text(json.dumps(config))
    cmd = [str(binary()), f"--configFile={config_file}"]
    t0 = time.monotonic()
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=workdir, start_new_session=True)  # fmt: skip
    (workdir / "traefik.pid").write_text(str(proc.pid))
    deadline = t0 + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"traefik exited rc={proc.returncode}, see {log_file}")
        if http_ok(f"http://127.0.0.1:{ping_port}/ping"):
            return {"traefik_pid": proc.pid, "gateway_port": port, "access_log": str(workdir / ACCESS_LOG),
                    "gateway_api": f"http://127.0.0.1:{ping_port}/api",
                    "traefik_start_s": round(time.monotonic() - t0, 3)}
        time.sleep(0.1)
    raise TimeoutError(f"traefik did not answer /ping within 60s, see {log_file}")
