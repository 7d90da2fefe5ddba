"""An in-memory Lease API with the API server's optimistic concurrency, and a clock the test drives.

`FakeLeaseServer.api(who)` is what `LeaderElector(api=...)` takes in place of `CoordinationV1Api`: the three
calls the stock LeaseLock makes (read, create, replace), each recorded as (who, verb). A replace whose
resourceVersion is not the stored one is a 409 Conflict, as on a real API server.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client import V1Lease, V1ObjectMeta
from kubernetes.client.exceptions import ApiException


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _error(status: int, reason: str) -> ApiException:
    exc = ApiException(status=status, reason=reason)
    exc.body = json.dumps({"kind": "Status", "code": status, "reason": reason})
    return exc


@dataclass
class FakeLeaseServer:
    leases: dict[tuple[str, str], V1Lease] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    down: set[str] = field(default_factory=set)
    """Callers whose requests fail (a partition, a paused process's expired connection)."""
    version: int = 0

    def api(self, who: str) -> FakeCoordinationApi:
        return FakeCoordinationApi(self, who)

    def holder(self, name: str = "modelship", namespace: str = "default") -> str | None:
        lease = self.leases.get((namespace, name))
        return None if lease is None else lease.spec.holder_identity

    def verbs(self, who: str) -> list[str]:
        return [verb for caller, verb in self.calls if caller == who]

    def _store(self, namespace: str, name: str, spec: Any) -> V1Lease:
        self.version += 1
        lease = V1Lease(
            metadata=V1ObjectMeta(name=name, namespace=namespace, resource_version=str(self.version)),
            spec=copy.deepcopy(spec),
        )
        self.leases[(namespace, name)] = lease
        return copy.deepcopy(lease)

    def overwrite(self, holder: str, name: str = "modelship", namespace: str = "default") -> None:
        """Someone else writes the Lease (another operator, kubectl)."""
        spec = copy.deepcopy(self.leases[(namespace, name)].spec)
        spec.holder_identity = holder
        self._store(namespace, name, spec)


@dataclass
class FakeCoordinationApi:
    server: FakeLeaseServer
    who: str

    def _call(self, verb: str) -> None:
        self.server.calls.append((self.who, verb))
        if self.who in self.server.down:
            raise _error(503, "Service Unavailable")

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> V1Lease:
        self._call("get")
        lease = self.server.leases.get((namespace, name))
        if lease is None:
            raise _error(404, "Not Found")
        return copy.deepcopy(lease)

    def create_namespaced_lease(self, namespace: str, body: V1Lease, **_: Any) -> V1Lease:
        self._call("create")
        name = body.metadata["name"] if isinstance(body.metadata, dict) else body.metadata.name
        if (namespace, name) in self.server.leases:
            raise _error(409, "AlreadyExists")
        return self.server._store(namespace, name, body.spec)

    def replace_namespaced_lease(self, name: str, namespace: str, body: V1Lease, **_: Any) -> V1Lease:
        self._call("update")
        stored = self.server.leases.get((namespace, name))
        if stored is None:
            raise _error(404, "Not Found")
        if body.metadata.resource_version != stored.metadata.resource_version:
            raise _error(409, "Conflict")
        return self.server._store(namespace, name, body.spec)
