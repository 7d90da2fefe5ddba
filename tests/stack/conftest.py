"""Fixtures of the stack's own tests."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def stack_ns(stack: Any) -> Iterator[tuple[Any, str]]:
    """The running stack and a namespace of this test's own (deleted afterwards)."""
    from kubernetes import client  # noqa: PLC0415

    core = client.CoreV1Api(stack.api_client())
    ns = f"dp-{os.getpid()}-{int(time.time() * 1000) % 10_000_000}"
    core.create_namespace({"metadata": {"name": ns}})
    yield stack, ns
    core.delete_namespace(ns)
