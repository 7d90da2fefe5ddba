"""The few API calls the plugin makes, as a Protocol: the real client is in `kube.py`, tests pass a fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol


class ClusterApi(Protocol):
    """ModelDeployment access in the caller's identity; methods raise PluginError on expected failures."""

    @property
    def default_namespace(self) -> str:
        """The kubeconfig context's namespace (or 'default')."""
        ...

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        """One ModelDeployment; PluginError when it does not exist."""
        ...

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """ModelDeployments in a namespace, or in all namespaces when None."""
        ...

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        """Merge-patch metadata.annotations only (never spec), field manager `kubectl-modelship`."""
        ...

    def whoami(self) -> str:
        """The caller's user name as the API server sees it (SelfSubjectReview), else the kubeconfig user."""
        ...

    def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the object now and after every change, until timeout_s (None: forever)."""
        ...

    def watch_collection(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """("RELIST", {}), ("ADDED", obj) per object listed, then watch events; lists again when the stream ends."""
        ...
