"""The ModelDeployment identity adapters need, as a read-only Protocol.

Adapters sit below the controller and may not import its `Owner` dataclass; any object with these
attributes (the controller's frozen `Owner` included) works.
"""

from __future__ import annotations

from typing import Any, Protocol

from modelship.domain.api import API_VERSION, KIND


class OwnerLike(Protocol):
    """Name, namespace and uid of the ModelDeployment that owns the child objects."""

    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def uid(self) -> str: ...


def owner_reference(owner: OwnerLike) -> dict[str, Any]:
    """Controller owner reference: deleting the ModelDeployment garbage-collects every child."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
