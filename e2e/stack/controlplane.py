"""Start and stop the control-plane processes: etcd, kube-apiserver, controller manager, scheduler, kwok.

Everything listens on 127.0.0.1 with TLS on ports the kernel picks at start, so two stacks (or a
stray service) never clash. Each process runs in its own session (process group) so ``stop`` can
kill it with everything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from e2e.stack import STACK_DIR, binary_path, free_port
from e2e.stack.pki import make_pki, make_tokens, write_kubeconfig

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR_FALLBACK = "10.77.254.0/24"  # used by kwok only for pods on nodes without spec.podCIDR
KWOK_SELECTOR = "kwok.x-k8s.io/node=fake"
ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class StackError(RuntimeError):
    """The stack could not be started or is not healthy."""


def spawn(name: str, cmd: list[str], logs: Path, cwd: Path) -> dict[str, Any]:
    """Start ``cmd`` in a new session (own process group) with its output in ``logs/<name>.log``."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
        )
    return {"pid": proc.pid, "pgid": proc.pid, "cmd": cmd, "log": str(log)}


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a zombie child still answers ``kill 0``)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def _group_pids(pgid: int) -> list[int]:
    """Live pids of a process group (read from /proc, so no helper tools are needed)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                pids.append(int(d.name))
    return pids


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM the group, wait, then SIGKILL whatever is left; reap our own children."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 5.0)
        while time.monotonic() < deadline:
            alive(pgid)
            if not _group_pids(pgid):
                return
            time.sleep(0.1)


def rss_mib(pid: int) -> float:
    """Resident set size of one process in MiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def https_ok(url: str, ca: Path | None = None, cert: tuple[Path, Path] | None = None, token: str | None = None) -> bool:
    """GET ``url`` and report whether it answered 200 (CA-verified when ``ca`` is given)."""
    ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=3) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def wait_for(what: str, check: Any, timeout: float, procs: dict[str, Any]) -> None:
    """Poll ``check()`` until true; fail fast (with the log's tail) if a process died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, p in procs.items():
            if not alive(p["pid"]):
                tail = Path(p["log"]).read_text(errors="replace")[-3000:]
                raise StackError(f"{name} exited while waiting for {what}; log {p['log']}:\n{tail}")
        time.sleep(0.25)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def start(stack_dir: Path = STACK_DIR, pod_stages: Path | None = None) -> dict[str, Any]:
    """Start the whole control plane; return the state (pids, ports, paths, tokens) for state.json.

    `pod_stages`: kwok Stage documents replacing its built-in pod stages (the data plane's kubelet duties).

    On failure, everything started so far is stopped again before the error propagates.
    """
    pki, logs = stack_dir / "pki", stack_dir / "logs"
    make_pki(pki)
    tokens = make_tokens(pki)
    ports = {k: free_port() for k in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler")}
    server = f"https://127.0.0.1:{ports['apiserver']}"
    ca = pki / "ca.crt"
    state: dict[str, Any] = {
        "ports": ports,
        "server": server,
        "ca": str(ca),
        "tokens": tokens,
        "kubeconfig": str(stack_dir / "kubeconfig"),
        "processes": {},
    }
    kcfg = {
        u: pki / f"{n}.kubeconfig"
        for u, n in (
            ("system:kube-controller-manager", "kcm"),
            ("system:kube-scheduler", "scheduler"),
            ("kwok", "kwok"),
        )
    }
    write_kubeconfig(stack_dir / "kubeconfig", server, ca, tokens["admin"])
    for user, path in kcfg.items():
        write_kubeconfig(path, server, ca, tokens[user], user)
    procs: dict[str, Any] = state["processes"]
    b = {n: str(binary_path(n)) for n in ORDER}
    etcd_url = f"https://127.0.0.1:{ports['etcd']}"
    try:
        procs["etcd"] = spawn(
            "etcd",
            [
                b["etcd"],
                "--name=stack",
                f"--data-dir={stack_dir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcd-peer']}",
                f"--initial-cluster=stack=http://127.0.0.1:{ports['etcd-peer']}",
                f"--cert-file={pki / 'etcd.crt'}",
                f"--key-file={pki / 'etcd.key'}",
                f"--trusted-ca-file={ca}",
                "--client-cert-auth",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
                "--unsafe-no-fsync",  # a throwaway test store
            ],
            logs,
            stack_dir,
        )
        client = (pki / "apiserver-etcd-client.crt", pki / "apiserver-etcd-client.key")
        wait_for("etcd /health", lambda: https_ok(f"{etcd_url}/health", ca, client), 60, procs)
        procs["kube-apiserver"] = spawn(
            "kube-apiserver",
            [
                b["kube-apiserver"],
                f"--etcd-servers={etcd_url}",
                f"--etcd-cafile={ca}",
                f"--etcd-certfile={client[0]}",
                f"--etcd-keyfile={client[1]}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={ca}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--anonymous-auth=true",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={pki}",
                "--v=1",
            ],
            logs,
            stack_dir,
        )
        wait_for("kube-apiserver /readyz", lambda: https_ok(f"{server}/readyz", ca), 120, procs)
        common = [
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        ]
        kcm = str(kcfg["system:kube-controller-manager"])
        procs["kube-controller-manager"] = spawn(
            "kube-controller-manager",
            [
                b["kube-controller-manager"],
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                f"--secure-port={ports['controller-manager']}",
                f"--root-ca-file={ca}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--cluster-signing-cert-file={ca}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--allocate-node-cidrs=false",
                "--controllers=*",
                f"--cert-dir={pki / 'kcm'}",
                # a large cluster's settings (default 20/30): the fleet bench's 10,000 pods would otherwise queue
                # for minutes behind the ReplicaSet controller's client-side limit
                "--kube-api-qps=100",
                "--kube-api-burst=200",
                *common,
            ],
            logs,
            stack_dir,
        )
        sched = str(kcfg["system:kube-scheduler"])
        procs["kube-scheduler"] = spawn(
            "kube-scheduler",
            [
                b["kube-scheduler"],
                f"--kubeconfig={sched}",
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                f"--secure-port={ports['scheduler']}",
                f"--cert-dir={pki / 'scheduler'}",
                "--kube-api-qps=100",  # default 50/100; see kube-controller-manager above
                "--kube-api-burst=200",
                *common,
            ],
            logs,
            stack_dir,
        )
        procs["kwok"] = spawn(
            "kwok",
            [
                b["kwok"],
                f"--kubeconfig={kcfg['kwok']}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_SELECTOR}",
                f"--cidr={POD_CIDR_FALLBACK}",
                "--node-lease-duration-seconds=40",
                *([f"--config={pod_stages}"] if pod_stages is not None else []),
            ],
            logs,
            stack_dir,
        )
        for name, port in (
            ("kube-controller-manager", ports["controller-manager"]),
            ("kube-scheduler", ports["scheduler"]),
        ):
            wait_for(f"{name} /healthz", lambda p=port: https_ok(f"https://127.0.0.1:{p}/healthz"), 60, procs)
    except BaseException:
        stop(state)
        raise
    return state


def healthy(state: dict[str, Any]) -> bool:
    """All processes alive and the API server ready."""
    procs = state.get("processes", {})
    if not procs or not all(alive(p["pid"]) for p in procs.values()):
        return False
    return https_ok(f"{state['server']}/readyz", Path(state["ca"]))


def stop(state: dict[str, Any]) -> None:
    """Kill every process group the stack started, in reverse start order."""
    procs = state.get("processes", {})
    for name in reversed([n for n in ORDER if n in procs]):
        kill_group(int(procs[name]["pgid"]))
