"""The local stack's orchestrator behind ``python -m e2e.stack up|down|status|env`` and the ``stack`` fixture.

``up`` is idempotent (a healthy running stack is left alone), ``down`` leaves no process behind.
State lives in ``.stack/`` (git-ignored): ``state.json`` (pids, ports), ``kubeconfig``, ``env``
(shell exports), ``timings.json``, ``logs/``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from e2e.stack import BINARIES, HERE, REPO, STACK_DIR, StackContext, binary_path, controlplane, crds, nodes
from e2e.stack.controlplane import StackError
from e2e.stack.progress import StepFailed, run_step

STATE = STACK_DIR / "state.json"
ENV_FILE = STACK_DIR / "env"
TIMINGS = STACK_DIR / "timings.json"


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise up/down between concurrent callers (make, pytest sessions)."""
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    with (STACK_DIR / "lock").open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _dataplane() -> ModuleType | None:
    """The data-plane hook module, if the data plane is present (it is optional)."""
    if os.environ.get("MODELSHIP_STACK_DATAPLANE", "1") == "0":  # control plane alone (tests of `down`)
        return None
    if importlib.util.find_spec("e2e.stack.dataplane") is None:
        return None
    mod = importlib.import_module("e2e.stack.dataplane")
    return mod if hasattr(mod, "up") and hasattr(mod, "down") else None


def _save(state: dict[str, Any]) -> None:
    """Write state.json atomically and owner-only (it holds the stack's tokens)."""
    tmp = STATE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)
    tmp.replace(STATE)


def load_state() -> dict[str, Any] | None:
    """The running stack's state, or None."""
    try:
        return dict(json.loads(STATE.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def context(state: dict[str, Any]) -> StackContext:
    """Rebuild the hook context from saved state."""
    return StackContext(
        repo=REPO,
        stack_dir=STACK_DIR,
        kubeconfig=Path(state["kubeconfig"]),
        kubectl=binary_path("kubectl"),
        server=state["server"],
        ca_file=Path(state["ca"]),
        admin_token=state["tokens"]["admin"],
        tokens=dict(state["tokens"]),
        env=dict(state.get("env", {})),
        state=dict(state.get("dataplane", {})),
    )


def control_plane_healthy(state: dict[str, Any] | None) -> bool:
    """A completed ``up`` whose control-plane processes are alive and whose API server is ready."""
    return bool(state and state.get("complete") and controlplane.healthy(state))


def healthy(state: dict[str, Any] | None) -> bool:
    """Control plane alive and ready, nodes registered, and the data plane (if any) healthy."""
    if not control_plane_healthy(state):
        return False
    assert state is not None
    dp = _dataplane() if state.get("dataplane_enabled") else None
    if dp is not None and hasattr(dp, "healthy"):
        return bool(dp.healthy(context(state)))
    return True


def ensure_binaries() -> dict[str, float]:
    """Build missing binaries with build.sh; return the seconds each fresh build took."""
    missing = [b for b in BINARIES if not binary_path(b).exists()]
    if missing:
        print(f"building {len(missing)} stack binaries from the Go module proxy, once (cached in "
              f"{binary_path(missing[0]).parent.parent}):", flush=True)
    for name in missing:
        try:
            run_step(f"{name} {binary_path(name).parent.name.removeprefix(name + '-')}",
                     ["bash", str(HERE / "build.sh"), name], key=name)
        except StepFailed as exc:
            raise StackError(str(exc)) from exc
    return {b: float((binary_path(b).parent / "build-seconds").read_text()) for b in missing}


def _build_seconds(binary: Path) -> float | None:
    try:
        return float((binary.parent / "build-seconds").read_text())
    except (OSError, ValueError):
        return None


def _write_env(ctx: StackContext) -> dict[str, str]:
    env = {
        "KUBECONFIG": str(ctx.kubeconfig),
        "MODELSHIP_STACK_DIR": str(ctx.stack_dir),
        "KUBECTL": str(ctx.kubectl),
        "MODELSHIP_STACK_SERVER": ctx.server,
        **ctx.env,
    }
    # The stack's kubectl (and the venv, for the kubectl-modelship plugin) first on PATH when sourced.
    dirs = [str(ctx.kubectl.parent)] + ([str(REPO / ".venv" / "bin")] if (REPO / ".venv" / "bin").is_dir() else [])
    lines = [f"export {k}={shlex.quote(v)}\n" for k, v in env.items()]
    ENV_FILE.write_text("".join(lines) + f'export PATH={shlex.quote(":".join(dirs))}:"$PATH"\n')
    return env


def _wait_default_sa(ctx: StackContext, timeout: float = 60.0) -> None:
    """Pods are rejected until the controller manager has created the namespace's default ServiceAccount."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ctx.run_kubectl(
            "get", "serviceaccount", "default", "-n", "default", "--ignore-not-found", "-o", "name"
        ).strip():
            return
        time.sleep(0.5)
    raise StackError("the controller manager did not create the default ServiceAccount")


def _rss(state: dict[str, Any]) -> dict[str, float]:
    rss = {n: controlplane.rss_mib(int(p["pid"])) for n, p in state["processes"].items()}
    for key, pid in state.get("dataplane", {}).items():  # the data plane saves `<name>_pid` keys
        if key.endswith("_pid") and pid:
            rss[f"dataplane/{key.removesuffix('_pid')}"] = controlplane.rss_mib(int(pid))
    return rss


def _repair_dataplane(state: dict[str, Any]) -> None:
    """Re-run the (idempotent) data-plane hook on a healthy control plane instead of restarting it all.

    Why: tests stop Prometheus on purpose; a concurrent session must not tear the cluster down for that.
    """
    dp = _dataplane()
    if dp is None:
        return
    ctx = context(state)
    dp.up(ctx)
    state["dataplane"] = ctx.state
    state["env"] = _write_env(ctx)
    _save(state)


def up() -> tuple[dict[str, Any], bool]:
    """Bring the stack up unless a healthy one already runs; return its state and whether we started it."""
    with _locked():
        state = load_state()
        if control_plane_healthy(state):
            assert state is not None
            if not healthy(state):
                print("control plane healthy, data plane not: restarting the data plane", flush=True)
                _repair_dataplane(state)
            print(f"stack already up at {state['server']}")
            return state, False
        if state or STACK_DIR.joinpath("pki").exists():
            _down_locked(quiet=True)  # half-dead leftovers: clean before starting over
        dp = _dataplane()
        cached_before = {n for n, path in dp.cached_builds().items() if path.exists()} if dp is not None else set()
        if dp is not None:
            dp.start_builds()  # Prometheus and Traefik build beside the control plane's binaries
        built = ensure_binaries()
        t0 = time.monotonic()
        state = controlplane.start(STACK_DIR, pod_stages=dp.POD_STAGES if dp is not None else None)
        _save(state)  # written early so `down` can always clean up
        ctx = context(state)
        try:
            nodes.ensure_nodes(ctx)
            crd_files, warnings = crds.install(ctx)
            state["crds"], state["warnings"] = [str(p) for p in crd_files], warnings
            for w in warnings:
                print(f"WARNING: {w}", file=sys.stderr, flush=True)
            _wait_default_sa(ctx)
            state["dataplane_enabled"] = dp is not None
            _save(state)
            if dp is not None:
                dp.up(ctx)
                state["dataplane"] = ctx.state
            env = _write_env(ctx)
            state["env"] = env
            state["complete"] = True
            _save(state)
        except BaseException:
            _down_locked(quiet=True)
            raise
        warm = round(time.monotonic() - t0, 1)
        timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
        timings["cold_build_seconds"] = {
            b: float(p.read_text()) for b in BINARIES if (p := binary_path(b).parent / "build-seconds").exists()
        }
        if dp is not None:  # the data plane's builds, done in the background and finished by dp.up
            built.update({n: float(b) for n, path in dp.cached_builds().items() if n not in cached_before
                          and path.exists() and (b := _build_seconds(path)) is not None})
        timings["built_this_run"] = built  # {} on a warm start (.ci/run prints which)
        if state.get("dataplane", {}).get("timings"):
            timings["dataplane"] = state["dataplane"]["timings"]
        timings.update(warm_start_seconds=warm, rss_mib=_rss(state), measured_at=time.strftime("%FT%T%z"))
        TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")
        print(
            f"stack up in {warm}s at {state['server']}\n  source {ENV_FILE}\n"
            f"  {env['KUBECTL']} --kubeconfig {env['KUBECONFIG']} get nodes"
        )
        return state, True


def _stray_pids() -> list[int]:
    """Stack binaries still running from this stack dir (e.g. after state.json was lost)."""
    exes = {str(binary_path(b)) for b in BINARIES}
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                if os.readlink(d / "exe") in exes and Path(os.readlink(d / "cwd")) == STACK_DIR:
                    out.append(int(d.name))
    return out


def _down_locked(quiet: bool = False) -> None:
    state = load_state()
    if state:
        dp = _dataplane() if state.get("dataplane_enabled") else None
        if dp is not None:
            try:
                dp.down(context(state))
            except Exception as exc:  # the control plane must still go down
                print(f"warning: data plane down failed: {exc}", file=sys.stderr)
        controlplane.stop(state)
    for pid in _stray_pids():
        controlplane.kill_group(os.getpgid(pid))
    for name in ("state.json", "env", "kubeconfig"):
        (STACK_DIR / name).unlink(missing_ok=True)
    for name in ("pki", "etcd"):
        shutil.rmtree(STACK_DIR / name, ignore_errors=True)
    if not quiet:
        print("stack down" if state else "stack was not running")


def down() -> None:
    """Stop every process the stack started and remove its runtime state (logs and timings stay)."""
    with _locked():
        _down_locked()


def status() -> int:
    """Print health, endpoints and per-process RSS; exit 0 only if healthy."""
    state = load_state()
    if not state:
        print("stack: down")
        return 1
    ok = healthy(state)
    word = "healthy" if ok else ("UNHEALTHY" if state.get("complete") else "starting (or a failed start)")
    print(f"stack: {word} at {state['server']}")
    for w in state.get("warnings", []):
        print(f"  WARNING: {w}")
    for name, p in state["processes"].items():
        up_ = controlplane.alive(int(p["pid"]))
        print(
            f"  {name:<24} pid {p['pid']:<8} {'running' if up_ else 'DEAD':<8} "
            f"{controlplane.rss_mib(int(p['pid'])):>7.1f} MiB  {p['log']}"
        )
    print(f"  kubeconfig {state['kubeconfig']}\n  env        {ENV_FILE}")
    return 0 if ok else 1
