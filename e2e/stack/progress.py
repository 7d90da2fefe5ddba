"""One concise line per slow component on a cold machine; the full output in a log file.

Why: a cold `make cluster-up` compiles six Kubernetes binaries and Prometheus from the Go module proxy (~9 min on
2 cores); printing Go's output buried the terminal in hundreds of `go: downloading` lines. Each step now prints
what it builds, how long it took and how long it typically takes, and on failure where the whole log is and its
last lines. Typical times: cold builds on the 2-core CI machine (`.stack/timings.json` keeps every run's).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

TYPICAL_S = {
    "etcd": 45, "kwok": 80, "kube-apiserver": 170, "kube-controller-manager": 55, "kube-scheduler": 10,
    "kubectl": 25, "prometheus": 150, "helm": 120, "rollouts-controller": 480, "traefik": 300,
}  # fmt: skip
"""Seconds each component took to build cold on the 2-core CI machine (2026-12-02)."""
TAIL_LINES = 15


def log_dir() -> Path:
    cache = Path(os.environ.get("MODELSHIP_CACHE", Path.home() / ".cache" / "modelship"))
    return cache / "logs"


def clock(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


class StepFailed(RuntimeError):
    """A step's command failed; the message says where its log is."""


def run_step(what: str, command: Sequence[str], *, key: str | None = None, cwd: Path | None = None,
             env: dict[str, str] | None = None) -> float:
    """Run `command` with its output in `<cache>/logs/<key>.log`; one line when it ends; seconds it took."""
    name = key or what
    log = log_dir() / f"build-{name.replace(' ', '-')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    hint = _hint(name, log.with_suffix(".seconds"))
    # The "building ..." line that the end line overwrites: only in the foreground (background builds, the data
    # plane's beside the control plane's, print their end line only).
    interactive = sys.stdout.isatty() and threading.current_thread() is threading.main_thread()
    if interactive:
        print(f"  {what:<34} ...{hint}", end="", flush=True)
    started = time.monotonic()
    with log.open("w") as out:
        code = subprocess.run(list(command), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              cwd=cwd, env=env, check=False).returncode
    elapsed = time.monotonic() - started
    if interactive:
        print("\r", end="")
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-TAIL_LINES:])
        print(f"  {what:<34} FAILED after {clock(elapsed)} (exit {code}); full log: {log}", flush=True)
        raise StepFailed(f"{what} failed (exit {code}); full log: {log}; last lines:\n{tail}")
    print(f"  {what:<34} {clock(elapsed):>8}{hint}; log: {log}", flush=True)
    log.with_suffix(".seconds").write_text(f"{elapsed:.1f}\n")
    return elapsed


def _hint(name: str, last_file: Path) -> str:
    """The typical time, else how long it took the last time on this machine, else nothing."""
    typical = TYPICAL_S.get(name)
    if typical:
        return f" (typically {clock(typical)})"
    try:
        return f" (last time {clock(float(last_file.read_text()))})"
    except (OSError, ValueError):
        return ""


def main(argv: Sequence[str] | None = None) -> int:
    """`python3 e2e/stack/progress.py KEY WHAT -- COMMAND...`: the Makefile's and scripts' slow steps."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 4 or args[2] != "--":
        print("usage: progress.py KEY WHAT -- COMMAND...", file=sys.stderr)
        return 2
    try:
        run_step(args[1], args[3:], key=args[0])
    except StepFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
