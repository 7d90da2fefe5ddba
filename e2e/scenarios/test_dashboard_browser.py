"""The dashboard in a real browser against the local stack (issue 12 items 1 and 5).

`kubectl modelship dashboard` runs as an SRE runs it (the installed console script, the stack's kubeconfig);
Debian's Chromium, driven by Playwright, lists the fleet, passes an approval gate with the promote button (history
records the viewer), shows a rollback on the timeline with its bound, and shows an RBAC refusal for a viewer who
may only read. The screenshots in docs/ are taken here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.harness import Kubectl, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.scenarios.test_control import healthy, whoami
from e2e.stack import REPO, StackContext
from e2e.stack.traffic import TrafficGenerator
from e2e.stack.triton import free_port

pytestmark = pytest.mark.e2e

NAME = "fraud"
CHROMIUM = Path("/usr/bin/chromium")
STEPS: list[dict[str, Any]] = [{"weight": 25, "duration": "6s"}, {"approval": {}}]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "docs" / "images"


@contextmanager
def dashboard(kubeconfig: Path, *scope: str) -> Iterator[str]:
    """`kubectl modelship dashboard` with this kubeconfig and scope (default -A), on a free loopback port; its URL."""
    with serving([str(REPO / ".venv" / "bin" / "kubectl-modelship"), "--kubeconfig", str(kubeconfig), "dashboard",
                  *(scope or ("-A",))]) as url:
        yield url


@contextmanager
def serving(command: list[str]) -> Iterator[str]:
    """A dashboard command, given `--port` on a free loopback port, until the block ends; its URL."""
    port = free_port()
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for("the dashboard listening", lambda: _listening(port), timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: make deps installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


def read_only_kubeconfig(kubectl: Kubectl, stack: StackContext, ns: str, into: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may get, list and watch ModelDeployments in `ns`, nothing else."""
    kubectl.run("create", "serviceaccount", "viewer", "-n", ns)
    kubectl.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "modelship-viewer", "namespace": ns},
                   "rules": [{"apiGroups": ["modelship.dev"], "resources": ["modeldeployments"],
                              "verbs": ["get", "list", "watch"]}]})  # fmt: skip
    kubectl.run("create", "rolebinding", "modelship-viewer", "-n", ns, "--role=modelship-viewer",
                f"--serviceaccount={ns}:viewer")
    token = kubectl.run("create", "token", "viewer", "-n", ns, "--duration=1h").stdout.strip()
    config = json.loads(kubectl.run("config", "view", "--raw", "-o", "json").stdout)
    cluster = config["clusters"][0]
    into.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": "viewer", "user": {"token": token}}],
        "contexts": [{"name": "viewer", "context": {"cluster": cluster["name"], "user": "viewer", "namespace": ns}}],
        "current-context": "viewer",
    }))  # fmt: skip
    return into


def test_the_dashboard_lists_promotes_shows_a_rollback_and_an_rbac_refusal(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext, browser: Any, tmp_path: Path,
) -> None:
    """Given v1 Healthy and v2 rolling out to an approval gate, and the dashboard serving the stack's identity,
    when the viewer opens the fleet page, then the rollout is listed with its phase and weight, live;
    when they open it and click promote, then the gate passes, v2 is promoted and history records the viewer;
    when version 90 (half its answers fail) then rolls out and back, then the timeline shows the errorRate
    check above its bound and the evidence says Fail;
    and a viewer who may only read sees abort refused in the API server's own words."""
    ns = namespace
    operator(ns)
    me = whoami(kubectl)
    with printed_figures("dashboard in Chromium") as fig:
        kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS))
        healthy(kubectl, ns, "1")
        traffic(ns, NAME)
        viewed(kubectl, ns, stack, browser, me, fig)
        refused(kubectl, ns, stack, browser, tmp_path, fig)


def viewed(kubectl: Kubectl, ns: str, stack: StackContext, browser: Any, me: str, fig: dict[str, Any]) -> None:
    """The fleet page, the promote button at a gate, and a rollback on the timeline."""
    with dashboard(stack.kubeconfig, "-n", ns) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/?namespace={ns}")
        row = page.locator(f'tr[data-key="{ns}/{NAME}"]')
        row.wait_for(timeout=15_000)
        assert "Healthy" in row.inner_text()

        # When: v2 reaches the gate, the fleet page shows it without a reload.
        kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS))
        t = time.time()
        page.wait_for_function(f"document.querySelector('tr[data-key=\"{ns}/{NAME}\"]')?.innerText"
                               ".includes('awaiting approval')", timeout=60_000)
        fig["gate_visible_on_fleet_page_s"] = round(time.time() - t, 1)
        assert "25%" in page.locator(f'tr[data-key="{ns}/{NAME}"]').inner_text()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "dashboard-fleet.png"))

        # When: the viewer opens the rollout and clicks promote.
        page.click(f'a[href="/rollouts/{ns}/{NAME}"]')
        page.wait_for_selector('button[data-action="promote"]:not([disabled])', timeout=15_000)
        page.click('button[data-action="promote"]')
        page.wait_for_selector("#notice", timeout=15_000)
        assert f"as {me}" in page.inner_text("#notice")
        done = healthy(kubectl, ns, "2", timeout=60)
        approved = [h for h in done["history"] if h["event"] == "Approved" and h["version"] == "2"]
        assert len(approved) == 1 and approved[0]["by"] == me, approved
        page.wait_for_function(f"document.body.innerText.includes('{me}')", timeout=15_000)

        # When: version 90 rolls out and is rolled back on its error rate.
        kubectl.apply(model_deployment(NAME, ns, "90", steps=[{"weight": 25, "duration": "60s"}], samples=False,
                                       slo={"errorRate": {"max": 0.05}}))
        status_when(kubectl, ns, "v90 rolled back", lambda s: s.get("phase") == "RolledBack", timeout=90)
        page.wait_for_selector('[data-chart="errorRate"]', timeout=20_000)
        chart = page.locator('[data-chart="errorRate"]').inner_text()
        assert "max" in chart, chart  # the bound is drawn beside the values
        page.wait_for_function("document.body.innerText.includes('RolledBack')", timeout=15_000)
        evidence = page.locator("section", has_text="Evidence of the last check").inner_text()
        assert "errorRate" in evidence and "Fail" in evidence, evidence
        page.screenshot(path=str(SHOTS / "dashboard-rollout.png"), full_page=True)
        fig["screenshots"] = [str(SHOTS / "dashboard-fleet.png"), str(SHOTS / "dashboard-rollout.png")]



def refused(kubectl: Kubectl, ns: str, stack: StackContext, browser: Any, tmp_path: Path, fig: dict[str, Any]) -> None:
    """A viewer who may only read: the page shows the API server's refusal, and nothing happens."""
    kubectl.apply(model_deployment(NAME, ns, "3", steps=STEPS))
    status_when(kubectl, ns, "v3 at its gate", lambda s: bool(s.get("awaitingApproval")), timeout=90)
    viewer = read_only_kubeconfig(kubectl, stack, ns, tmp_path / "viewer.kubeconfig")
    with dashboard(viewer, "-n", ns) as url:
        page = browser.new_page()
        page.goto(f"{url}/rollouts/{ns}/{NAME}")
        page.wait_for_selector('button[data-action="abort"]:not([disabled])', timeout=15_000)
        page.click('button[data-action="abort"]')
        page.wait_for_selector("#notice.error", timeout=15_000)
        refusal = page.inner_text("#notice")
        assert "forbidden" in refusal and f"system:serviceaccount:{ns}:viewer" in refusal, refusal
        assert kubectl.status(NAME, ns)["canaryRevision"]["version"] == "3"  # nothing happened
        fig["rbac_refusal"] = refusal.splitlines()[0]
