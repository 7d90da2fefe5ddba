"""Chart files that must agree with the code, checked without helm or a cluster.

- The chart ships the CRD that ``modelship crds`` generates, byte for byte, and the same file as
  ``crds/modeldeployments.yaml`` (``make generate`` writes both).
- Every operator metric the dashboard and the alerts query exists in the operator's registry
  (prometheus_client's exposition names: counters get ``_total``, histograms ``_bucket``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from modelship.adapters.comparator_objects import cluster_role
from modelship.adapters.telemetry import Telemetry
from modelship.domain.status import AnalysisRecord, MetricResult, Verdict
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelship"
CHART_CRD = CHART / "crds" / "modeldeployments.yaml"
REPO_CRD = REPO / "crds" / "modeldeployments.yaml"
FIX = "run `make generate` (it copies crds/modeldeployments.yaml into charts/modelship/crds/)"


def test_chart_crd_is_the_generated_crd() -> None:
    generated = subprocess.run(
        [str(Path(sys.executable).parent / "modelship"), "crds"], capture_output=True, text=True, check=True
    ).stdout
    assert CHART_CRD.read_text() == generated, f"charts/modelship/crds/modeldeployments.yaml is stale: {FIX}"


def test_chart_crd_is_identical_to_the_repo_crd() -> None:
    assert REPO_CRD.exists(), f"crds/modeldeployments.yaml is missing: {FIX}"
    assert CHART_CRD.read_bytes() == REPO_CRD.read_bytes(), f"the chart's CRD differs from crds/: {FIX}"


def exposed_names() -> set[str]:
    """Sample names the operator exposes on /metrics."""
    registry = CollectorRegistry()
    telemetry = Telemetry(registry)
    telemetry.observe_phase("ns", "n", "Progressing", 5)
    check = AnalysisRecord(time=datetime(2026, 11, 23, tzinfo=UTC), verdict=Verdict.PASS, metrics=[
        MetricResult(name="errorRate", value=0.1, max=0.2, verdict=Verdict.PASS)])
    telemetry.record_decision("ns", "n", check, "SLOBreach", promoted=True)
    telemetry.count_reconcile_error("ns", "n")
    telemetry.reconcile_seconds.observe(0.1)
    telemetry.observe_queue(depth=1, oldest_age_seconds=2.0, in_flight=1)
    telemetry.observe_leader(True)
    telemetry.count_api_request("patch", written=True)
    telemetry.observe_throttle(0.1)
    telemetry.count_notification("RolledBack", "webhook", "delivered")
    return {s.name for family in registry.collect() for s in family.samples}


def queried_names(text: str) -> set[str]:
    return set(re.findall(r"\b(modelship_[a-z_]+)", text))


def dashboard() -> dict:  # type: ignore[type-arg]
    return json.loads((CHART / "dashboards" / "modelship.json").read_text())


def test_dashboard_queries_only_real_metrics() -> None:
    exprs = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    exprs += [v.get("definition", "") for v in dashboard()["templating"]["list"]]
    used = queried_names("\n".join(exprs))
    assert used, "the dashboard queries no operator metric"
    assert used <= exposed_names(), f"unknown metrics: {sorted(used - exposed_names())}"


@pytest.mark.parametrize(
    "metric",
    [
        "modelship_rollouts",
        "modelship_canary_weight",
        "modelship_slo_value",
        "modelship_slo_bound",
        "modelship_rollbacks_total",
        "modelship_reconcile_duration_seconds_bucket",
        "modelship_queue_depth",
        "modelship_queue_oldest_age_seconds",
        "modelship_reconciles_in_flight",
        "modelship_leader",
        "modelship_api_requests_total",
        "modelship_api_throttled_seconds_total",
        "modelship_notifications_total",
    ],
)
def test_dashboard_has_a_panel_for(metric: str) -> None:
    assert any(metric in t["expr"] for p in dashboard()["panels"] for t in p["targets"])


def test_dashboard_panels_are_unique_and_use_the_datasource_variable() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)


SCHEMA_VERSIONS = range(36, 42)
"""36: the first dashboard schema Grafana defines as a kind (the foundation SDK's default); 41: Grafana 12's latest."""
UNDECLARED = {"definition"}
"""A query variable's editor text: Grafana writes and reads it, its schema does not declare it."""


def _dropped(ours: object, theirs: object, path: str = "") -> list[str]:
    """Paths in `ours` that a decode/encode through Grafana's models lost (unknown or mistyped fields)."""
    if isinstance(ours, dict):
        if not isinstance(theirs, dict):
            return [path]
        return [lost for key, value in ours.items() for lost in (
            [f"{path}.{key}"] if key not in theirs else _dropped(value, theirs[key], f"{path}.{key}"))]
    if isinstance(ours, list):
        if not isinstance(theirs, list) or len(theirs) != len(ours):
            return [path]
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [lost for i, (a, b) in pairs for lost in _dropped(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [path]


def test_dashboard_passes_grafanas_own_schema() -> None:
    """Given the dashboard JSON, when Grafana's foundation SDK (models generated from Grafana's dashboard schema)
    decodes and re-encodes it, then nothing is lost but the one field the schema leaves undeclared, and its
    schemaVersion is one Grafana migrates from without guessing."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder  # noqa: PLC0415
    from grafana_foundation_sdk.models.dashboard import Dashboard  # noqa: PLC0415

    ours = dashboard()
    theirs = json.loads(json.dumps(Dashboard.from_json(ours), cls=JSONEncoder))
    lost = [path for path in _dropped(ours, theirs) if path.rsplit(".", 1)[-1] not in UNDECLARED]
    assert not lost, f"fields Grafana's schema does not know: {lost}"
    assert ours["schemaVersion"] in SCHEMA_VERSIONS
    assert {panel["type"] for panel in ours["panels"]} <= {"timeseries", "bargauge", "stat", "table"}


def test_alerts_query_only_real_metrics() -> None:
    rules = (CHART / "templates" / "prometheusrule.yaml").read_text()
    exprs = "\n".join(re.findall(r"expr: (.*)", rules))
    used = queried_names(exprs)
    assert used == {
        "modelship_rollbacks_total",
        "modelship_deployment_phase",
        "modelship_analysis_total",
        "modelship_reconcile_errors_total",
        "modelship_queue_oldest_age_seconds",
        "modelship_leader",
    }
    assert used <= exposed_names()
    for alert in (
        "ModelshipRollbackHappened",
        "ModelshipRolloutStuck",
        "ModelshipAnalysisErroring",
        "ModelshipReconcileErrors",
        "ModelshipReconcileBacklog",
        "ModelshipNoLeader",
    ):
        assert f"alert: {alert}" in rules


def test_the_chart_and_crds_ship_the_comparator_cluster_role_the_operator_binds() -> None:
    text = (CHART / "templates" / "comparator-clusterrole.yaml").read_text()
    body = "\n".join(line for line in text.splitlines() if "{{" not in line)
    assert yaml.safe_load(body)["rules"] == cluster_role()["rules"]
    assert "name: {{ include \"modelship.fullname\" . }}-comparator" in text, "one per release"
    assert yaml.safe_load((REPO / "crds" / "comparator-clusterrole.yaml").read_text()) == cluster_role()
