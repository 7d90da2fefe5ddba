"""AsyncTransport against the real local API server: kubeconfig TLS and token, SSA, 404 and 422 mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.transport import AsyncTransport

from e2e.stack import StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def kube(stack: StackContext) -> AsyncIterator[Kube]:
    transport = AsyncTransport.from_kubeconfig(str(stack.kubeconfig), qps=20, burst=5)
    yield Kube(transport)
    await transport.close()


def config_map(namespace: str, data: dict[str, str]) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace},
            "data": data}


async def test_reads_a_namespace_over_tls_with_the_kubeconfig_token(kube: Kube, namespace: str) -> None:
    found = await kube.read(f"/api/v1/namespaces/{namespace}")
    assert found is not None and found["metadata"]["name"] == namespace


async def test_server_side_apply_twice_is_owned_by_modelship_and_the_second_changes_nothing(
    kube: Kube, namespace: str
) -> None:
    first = await kube.apply(config_map(namespace, {"threshold": "0.9"}))
    second = await kube.apply(config_map(namespace, {"threshold": "0.9"}))
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert {m["manager"] for m in second["metadata"]["managedFields"]} == {"modelship"}
    assert (await kube.get("v1", "ConfigMap", namespace, "settings") or {})["data"] == {"threshold": "0.9"}


async def test_a_missing_object_is_none_and_a_404_error_on_write(kube: Kube, namespace: str) -> None:
    assert await kube.get("v1", "ConfigMap", namespace, "absent") is None
    with pytest.raises(KubeError) as err:
        await kube.create(config_map(f"{namespace}-absent", {}))
    assert err.value.status == 404 and err.value.not_found


async def test_an_invalid_object_is_a_422_naming_the_field(kube: Kube, namespace: str) -> None:
    with pytest.raises(KubeError) as err:
        await kube.apply(config_map(namespace, {"not a valid key!": "x"}))
    assert (err.value.status, err.value.reason) == (422, "Invalid")
    assert err.value.refused and "data[not a valid key!]" in err.value.message
