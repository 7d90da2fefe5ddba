"""Istio hosts and gateways stay inside the object's own namespace unless the operator allows more.

A tenant must not claim another team's host (`payments.example.com`) on a shared gateway, nor attach its
route to another namespace's gateway, just by writing it in spec.traffic.istio.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.reconciler import Reconciler
from modelship.controller.settings import Settings
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.route_scope import RouteScope

from tests.unit.test_reconciler import SPEC, FakeCluster, FakeRouters, NoMetrics, PassingChecks, body


def _spec(istio: dict[str, Any]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({**SPEC, "traffic": {"istio": istio}})


@pytest.mark.parametrize("hosts", [[], ["fraud"], ["fraud.ml.svc.cluster.local"], ["*.ml.svc.cluster.local"]])
def test_hosts_in_the_own_namespace_are_allowed_by_default(hosts: list[str]) -> None:
    assert RouteScope().problems(_spec({"hosts": hosts}), "ml") == []


@pytest.mark.parametrize("host", ["payments.example.com", "*.example.com", "api.billing.svc.cluster.local",
                                  "fraud.ml.svc.cluster.local.evil.com", "*.svc.cluster.local"])
def test_hosts_outside_the_namespace_are_refused_naming_the_field_and_the_fix(host: str) -> None:
    (problem,) = RouteScope().problems(_spec({"hosts": ["fraud", host]}), "ml")
    assert problem.startswith(f"spec.traffic.istio.hosts[1]: '{host}'")
    assert "MODELSHIP_ISTIO_ALLOWED_HOSTS" in problem and "istio.allowedHosts" in problem


@pytest.mark.parametrize("gateway", ["mesh", "public-gw", "ml/public-gw"])
def test_gateways_in_the_own_namespace_and_the_mesh_are_allowed(gateway: str) -> None:
    assert RouteScope().problems(_spec({"gateways": [gateway]}), "ml") == []


def test_a_gateway_in_another_namespace_needs_the_allow_list() -> None:
    spec = _spec({"gateways": ["istio-system/shared-gw"]})
    (problem,) = RouteScope().problems(spec, "ml")
    assert problem.startswith("spec.traffic.istio.gateways[0]: 'istio-system/shared-gw'")
    assert "istio.allowedGateways" in problem
    assert RouteScope(allowed_gateways=("istio-system/*",)).problems(spec, "ml") == []


def test_the_allow_list_may_scope_hosts_per_namespace() -> None:
    """`{namespace}` in a pattern is the object's namespace: one rule gives each team its own subdomain."""
    scope = RouteScope(allowed_hosts=("*.{namespace}.models.example.com",))
    assert scope.problems(_spec({"hosts": ["fraud.ml.models.example.com"]}), "ml") == []
    assert scope.problems(_spec({"hosts": ["fraud.billing.models.example.com"]}), "ml")


@given(st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?){0,4}", fullmatch=True),
       st.sampled_from(["ml", "billing"]))
def test_a_host_allowed_in_one_namespace_is_never_allowed_in_another_by_default(host: str, namespace: str) -> None:
    """Invariant: by default no host is allowed for two different namespaces unless it is a short name."""
    spec = _spec({"hosts": [host]})
    here, there = RouteScope().problems(spec, namespace), RouteScope().problems(spec, "other")
    assert "." not in host or bool(here) or bool(there)


def test_settings_read_the_allow_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_ISTIO_ALLOWED_HOSTS", "*.example.com, api.example.org")
    monkeypatch.setenv("MODELSHIP_ISTIO_ALLOWED_GATEWAYS", "istio-system/public")
    settings = Settings.from_env()
    assert settings.route_scope == RouteScope(("*.example.com", "api.example.org"), ("istio-system/public",))


async def test_a_foreign_host_marks_the_object_invalid_and_nothing_is_routed() -> None:
    """Given an istio spec claiming payments.example.com, when reconciled, then status is Invalid naming the
    field and the fix, and no route is applied."""
    from datetime import UTC, datetime  # noqa: PLC0415

    cluster, routers = FakeCluster(), FakeRouters()
    rec = Reconciler(cluster, routers, NoMetrics(), PassingChecks(),
                     ManualClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)), Telemetry())
    raw = {**SPEC, "traffic": {"istio": {"hosts": ["payments.example.com"]}}}
    result = await rec.reconcile(body(raw))
    assert result.status["phase"] == "Invalid"
    assert "spec.traffic.istio.hosts[0]" in result.status["message"]
    assert not routers.log
