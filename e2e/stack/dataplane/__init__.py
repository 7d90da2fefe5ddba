"""Data plane of the local stack: pod network namespace, pod runner (real Triton per pod), Prometheus.

Why a hook: the control plane (``e2e.stack``) calls ``up(ctx)`` once the API server, nodes and CRDs
are ready and ``down(ctx)`` before it stops. Everything started here is detached with pid files in
``<stack>/dataplane/`` so ``down`` works even from another process. Least privilege: Prometheus and
the pod runner get ServiceAccount tokens (TokenRequest) bound to a read-only pod role instead of the
admin token; if the API server cannot mint tokens we fall back to the admin token and say so.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e.stack.dataplane import gateway
from e2e.stack.dataplane.netns import DEFAULT_CIDR, DEFAULT_NETNS, PodNetwork
from e2e.stack.prometheus import (
    Prometheus,
    build_upstream,
    find_binary,
    scrape_config,
    supports_kubernetes_sd,
    upstream_path,
)

if TYPE_CHECKING:
    from e2e.stack import StackContext

log = logging.getLogger("modelship.dataplane")
SA_NAMESPACE = "modelship-stack"
ROLE_PREFIX = "modelship-stack:"
POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
# The runner is the Modelship pods' kubelet: it writes their status and removes them once terminated.
POD_RUNNER = [
    *POD_READER,
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]
POD_STAGES = Path(__file__).with_name("kwok-stages.yaml")  # kwok's pod stages while the runner is the kubelet
"""The pod runner is the stack's kubelet: it reads pods and mints each comparator pod's ServiceAccount token."""


_background_builds: list[threading.Thread] = []


def cached_builds() -> dict[str, Path]:
    """The data plane's own Go builds and where they are cached (the control plane's are ``e2e.stack.BINARIES``)."""
    return {"prometheus": upstream_path(), "traefik": gateway.binary()}


def start_builds() -> None:
    """On a cold machine, build Prometheus and Traefik in the background while the control plane's binaries build.

    Why: the Go builds are partly single-threaded (downloads, the link) so two at once finish sooner on 2 cores
    than one after the other. ``up`` waits for this thread, then builds in the foreground whatever is still
    missing, which is where a failure is reported.
    """
    wanted = [gateway.build] if gateway.enabled() and not gateway.binary().exists() else []
    if os.environ.get("MODELSHIP_PROMETHEUS", "upstream") != "debian" and not upstream_path().exists():
        wanted.insert(0, build_upstream)

    def build() -> None:
        for step in wanted:
            with contextlib.suppress(Exception):  # reported by the foreground build in up()
                step()

    if wanted:
        _background_builds.append(threading.Thread(target=build, name="dataplane-builds", daemon=True))
        _background_builds[-1].start()


def dataplane_dir(stack_dir: Path) -> Path:
    return stack_dir / "dataplane"


def prometheus(stack_dir: Path) -> Prometheus:
    """The stack's Prometheus (tests stop and start it to simulate an outage)."""
    return Prometheus(dataplane_dir(stack_dir) / "prometheus")


def fault_file(stack_dir: Path) -> Path:
    """The live fault file every pod's Triton watches (``MODELSHIP_FAULT_FILE``)."""
    return dataplane_dir(stack_dir) / "faults.json"


def set_faults(stack_dir: Path, faults: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Replace the live faults atomically: a flat dict for everyone, or a list of rules with ``match``."""
    path = fault_file(stack_dir)
    body = {"rules": faults} if isinstance(faults, list) else faults
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def podrunner_status(stack_dir: Path) -> dict[str, Any]:
    """What the pod runner runs now (``status.json``): per pod ip, pid, ready time, rss."""
    path = dataplane_dir(stack_dir) / "podrunner" / "status.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {"pods": {}}


def _mint_tokens(ctx: StackContext, roles: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, Path]:
    """Per account: a ServiceAccount, a ClusterRole with exactly ``roles[name]``, and a TokenRequest token file."""
    from kubernetes import client, config  # noqa: PLC0415
    from kubernetes.client.rest import ApiException  # noqa: PLC0415

    api = config.new_client_from_config(config_file=str(ctx.kubeconfig))
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)

    def ensure(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except ApiException as exc:
            if exc.status != 409:
                raise

    ensure(core.create_namespace, {"metadata": {"name": SA_NAMESPACE}})
    files: dict[str, Path] = {}
    for name, rules in roles.items():
        role = f"{ROLE_PREFIX}{name}"
        ensure(rbac.create_cluster_role, {"metadata": {"name": role}, "rules": rules})
        rbac.patch_cluster_role(role, {"rules": rules})  # a role left by an older stack gets today's rules
        ensure(core.create_namespaced_service_account, SA_NAMESPACE, {"metadata": {"name": name}})
        ensure(rbac.create_cluster_role_binding, {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": SA_NAMESPACE}],
        })  # fmt: skip
        req = {"spec": {"audiences": [], "expirationSeconds": 7 * 24 * 3600}}
        token = core.create_namespaced_service_account_token(name, SA_NAMESPACE, req).status.token
        files[name] = out / f"{name}.token"
        files[name].write_text(token)
        files[name].chmod(0o600)
    return files


def _kubeconfig(path: Path, server: str, ca: Path, token_file: Path) -> Path:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }  # fmt: skip
    path.write_text(json.dumps(cfg))
    path.chmod(0o600)
    return path


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError):
        return None
    return None if state == "Z" else pid


def _stop_pid(pid_file: Path) -> None:
    """SIGTERM a detached process (the runner stops its Tritons first), SIGKILL its group after 30 s."""
    pid = _pid_alive(pid_file)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _pid_alive(pid_file) is not None:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


def _owner_file(network: PodNetwork) -> Path:
    return Path("/run/modelship") / f"{network.name}.owner"


def _owner(network: PodNetwork) -> str | None:
    """Stack dir whose data plane holds the pod network now (None: free, or its runner is dead)."""
    try:
        owner = Path(_owner_file(network).read_text().strip())
    except OSError:
        return None
    return str(owner) if _pid_alive(dataplane_dir(owner) / "podrunner.pid") is not None else None


def _claim(network: PodNetwork, stack_dir: Path) -> None:
    """One data plane per host: the pod CIDR (10.77.0.0/16) and kwok's pod IPs cannot be shared."""
    owner, me = _owner(network), str(stack_dir.resolve())
    if owner is not None and owner != me:
        raise RuntimeError(
            f"the pod network {network.cidr} (netns {network.name}) is in use by the stack at {owner}; "
            "bring that stack down first (python -m e2e.stack down with its MODELSHIP_STACK_DIR)"
        )
    _owner_file(network).parent.mkdir(parents=True, exist_ok=True)
    _owner_file(network).write_text(f"{me}\n")


def up(ctx: StackContext) -> None:
    """Start netns, pod runner and Prometheus; export PROMETHEUS_URL and friends through ``ctx.env``."""
    while _background_builds:
        _background_builds.pop().join()
    d = dataplane_dir(ctx.stack_dir)
    d.mkdir(parents=True, exist_ok=True)
    ctx.logs_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    network = PodNetwork(os.environ.get("MODELSHIP_PODS_NETNS", DEFAULT_NETNS), DEFAULT_CIDR)
    _claim(network, ctx.stack_dir)
    network.up()
    if not fault_file(ctx.stack_dir).exists():
        set_faults(ctx.stack_dir, {})
    try:
        roles = {"prometheus": POD_READER, "podrunner": POD_RUNNER}
        if gateway.enabled():
            roles["traefik"] = gateway.RBAC_RULES
        tokens = _mint_tokens(ctx, roles, d)
        auth = "serviceaccount"
    except Exception as exc:  # an API server without token signing: admin token, loudly
        log.warning("TokenRequest failed (%s); data plane falls back to the admin token", exc)
        admin = d / "admin.token"
        admin.write_text(ctx.admin_token)
        admin.chmod(0o600)
        tokens, auth = {"prometheus": admin, "podrunner": admin, "traefik": admin}, "admin"
    kubeconfig = _kubeconfig(d / "podrunner.kubeconfig", ctx.server, ctx.ca_file, tokens["podrunner"])

    pid_file = d / "podrunner.pid"
    _stop_pid(pid_file)  # a runner from an earlier stack holds stale credentials: start afresh
    _stop_pid(d / "traefik" / "traefik.pid")
    cmd = [
        sys.executable, "-m", "e2e.stack.dataplane.podrunner", f"--kubeconfig={kubeconfig}",
        f"--workdir={d / 'podrunner'}", f"--netns={network.name}", f"--cidr={network.cidr}",
        f"--fault-file={fault_file(ctx.stack_dir)}", f"--stack-ca={ctx.ca_file}",
        f"--prometheus-dir={prometheus(ctx.stack_dir).workdir}",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ctx.repo), PYTHONDONTWRITEBYTECODE="1")
    with open(ctx.logs_dir / "podrunner.log", "ab") as logf:
        proc = subprocess.Popen(
            cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=ctx.repo, env=env, start_new_session=True,
        )  # fmt: skip
    pid_file.write_text(str(proc.pid))

    (d / "podrunner").mkdir(exist_ok=True)
    prom = prometheus(ctx.stack_dir)
    prom.stop()  # a new control plane means new pods: start from an empty TSDB (stop/start keeps it)
    shutil.rmtree(prom.workdir / "data", ignore_errors=True)
    k8s_sd = supports_kubernetes_sd(find_binary())
    file_sd = None if k8s_sd else d / "podrunner" / "targets.json"
    operators_sd = prom.workdir / "operators.json"  # e2e.harness.scraped_operator writes it
    operators_sd.parent.mkdir(parents=True, exist_ok=True)  # a fresh stack: configure() has not made it yet
    operators_sd.write_text("[]")
    prom.configure(scrape_config(ctx.server, ctx.ca_file, tokens["prometheus"], file_sd=file_sd,
                                 operators_sd=operators_sd))
    timings["prometheus_start_s"] = round(prom.start(), 3)

    if gateway.enabled():
        gateway.build()
        gateway.ensure_crds(ctx.api_client())
        gw = gateway.start(d / "traefik", ctx.server, ctx.ca_file, tokens["traefik"], ctx.logs_dir / "traefik.log")
        gateway.ensure_gateway(ctx.api_client(), gw["gateway_port"])
        ctx.state.update(gw)
        ctx.env["MODELSHIP_GATEWAY_URL"] = f"127.0.0.1:{gw['gateway_port']}"
        ctx.env["MODELSHIP_GATEWAY_ACCESS_LOG"] = gw["access_log"]
    ctx.env.update(
        PROMETHEUS_URL=prom.url,
        MODELSHIP_FAULT_FILE=str(fault_file(ctx.stack_dir)),
        MODELSHIP_PODS_NETNS=network.name,
        MODELSHIP_POD_CIDR=network.cidr,
        MODELSHIP_PODRUNNER_STATUS=str(d / "podrunner" / "status.json"),
        MODELSHIP_OPERATOR_TARGETS=str(operators_sd),
    )
    ctx.state.update(
        netns=network.name, cidr=network.cidr, prometheus_url=prom.url, auth=auth,
        prometheus_discovery="kubernetes" if k8s_sd else "file",
        podrunner_pid=int(pid_file.read_text()), prometheus_pid=prom.pid(), timings=timings,
    )  # fmt: skip


def down(ctx: StackContext) -> None:
    """Stop the pod runner (it stops its Tritons), Prometheus, and remove the namespace."""
    _stop_pid(dataplane_dir(ctx.stack_dir) / "podrunner.pid")
    _stop_pid(dataplane_dir(ctx.stack_dir) / "traefik" / "traefik.pid")
    prometheus(ctx.stack_dir).stop()
    network = PodNetwork(str(ctx.state.get("netns", os.environ.get("MODELSHIP_PODS_NETNS", DEFAULT_NETNS))))
    owner = _owner(network)
    if owner is None or owner == str(ctx.stack_dir.resolve()):  # never tear down another stack's pod network
        network.down()
        _owner_file(network).unlink(missing_ok=True)


def healthy(ctx: StackContext) -> bool:
    """Pod runner alive, Prometheus answering, and the gateway alive where the stack runs one."""
    d = dataplane_dir(ctx.stack_dir)
    prom = prometheus(ctx.stack_dir)
    gateway_ok = not gateway.enabled() or _pid_alive(d / "traefik" / "traefik.pid") is not None
    return _pid_alive(d / "podrunner.pid") is not None and prom.running() and gateway_ok
