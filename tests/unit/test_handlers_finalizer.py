"""No finalizer on ModelDeployments: deletion must never wait for an operator that may not be running."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
from modelship import handlers
from modelship.domain.api import GROUP, PLURAL, VERSION


def _cause(registry: kopf.OperatorRegistry) -> Any:
    from kopf._cogs.structs import bodies, references  # noqa: PLC0415
    from kopf._core.intents import causes  # noqa: PLC0415

    resource = references.Resource(group=GROUP, version=VERSION, plural=PLURAL, namespaced=True)
    body = bodies.Body({"metadata": {"name": "m", "namespace": "ns", "uid": "u"}, "spec": {}})
    loose: Any = None  # fields requires_finalizer never reads
    return causes.SpawningCause(resource=resource, indices=loose, logger=loose, patch=loose, memo=loose, body=body,
                                reset=False)


def test_the_timer_does_not_require_a_finalizer() -> None:
    registry = kopf.get_default_registry()
    timers = [h for h in registry._spawning._handlers if h.fn is handlers.on_tick]
    assert len(timers) == 1
    assert timers[0].requires_finalizer is False
    assert not registry._spawning.requires_finalizer(cause=_cause(registry))
    assert handlers.release_timers_from_finalizer() == 0  # idempotent


def test_a_fresh_timer_would_require_one_and_is_released() -> None:
    registry = kopf.OperatorRegistry()
    kopf.timer(GROUP, VERSION, PLURAL, interval=1, registry=registry)(handlers.on_tick)
    assert registry._spawning.requires_finalizer(cause=_cause(registry))  # kopf's default
    assert handlers.release_timers_from_finalizer(registry) == 1
    assert not registry._spawning.requires_finalizer(cause=_cause(registry))


def test_deleted_event_forgets_the_object() -> None:
    forgotten: list[Any] = []

    class Memo:
        class reconciler:
            forget = staticmethod(forgotten.append)

    on_event: Any = handlers.on_event
    body = {"metadata": {"name": "m", "namespace": "ns", "uid": "u"}}
    asyncio.run(on_event(event={"type": "MODIFIED", "object": body}, body=body, memo=Memo()))
    assert forgotten == []
    asyncio.run(on_event(event={"type": "DELETED", "object": body}, body=body, memo=Memo()))
    assert forgotten == [body]
