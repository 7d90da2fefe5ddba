"""Session fixtures shared by ``tests/`` and ``e2e/``.

``stack``: the real local stack (``e2e/stack``). A running, healthy stack (``make cluster-up``) is
reused and left running; otherwise one is brought up for this session and brought down at its end.
Only when it truly cannot start (no Go toolchain to build the binaries, no openssl) is the test skipped.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.stack import BINARIES, StackContext, binary_path, orchestrator


def _cannot_start() -> str | None:
    """Why the stack cannot be started here, or None."""
    if shutil.which("openssl") is None:
        return "openssl is missing (needed for the stack's certificates)"
    missing = [b for b in BINARIES if not binary_path(b).exists()]
    has_go = shutil.which("go") or Path("/usr/local/go/bin/go").exists()
    if missing and not has_go:
        return f"stack binaries {missing} are not cached and there is no Go toolchain to build them"
    return None


@pytest.fixture(scope="session")
def stack() -> Iterator[StackContext]:
    """The local stack's context: ``kubeconfig``, ``kubectl``, ``server``, ``env``, ``api_client()``."""
    if not orchestrator.control_plane_healthy(orchestrator.load_state()):
        reason = _cannot_start()
        if reason:
            pytest.skip(f"local stack unavailable: {reason}")
    # No-op on a healthy stack (a flapping data plane is repaired in place, never torn down).
    state, started = orchestrator.up()
    try:
        yield orchestrator.context(state)
    finally:
        if started:  # only the session that started the stack stops it
            orchestrator.down()
