"""Writes to ModelDeployments themselves: the status subresource and our finalizer, both conditional on the
resourceVersion the decision was made from (a decision made on a stale object, e.g. by a replica that lost its
lease, is refused with 409 instead of overwriting a newer status)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelship.adapters.kube import Kube, Obj
from modelship.domain.api import GROUP, PLURAL, VERSION


def _path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"
    return f"{path}/{subresource}" if subresource else path


class ModelDeploymentWrites:
    """The controller's ModelDeployments port over the API server."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def patch_status(
        self, namespace: str, name: str, resource_version: str, patch: Mapping[str, Any]
    ) -> Obj:
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(patch)}
        return await self.kube.merge_patch(_path(namespace, name, "status"), body)

    async def set_finalizers(self, namespace: str, name: str, resource_version: str, finalizers: list[str]) -> Obj:
        body = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        return await self.kube.merge_patch(_path(namespace, name), body)

    async def read(self, namespace: str, name: str) -> Obj | None:
        return await self.kube.read(_path(namespace, name))
