"""`make demo` (`python -m e2e.demo`): three versions of a fraud model rolled out live, in about two minutes.

What it does, on the local stack (`e2e/stack`: real API server, kwok GPU nodes, real Triton, real Prometheus):
1. brings the stack up, or reuses a running one (never tears it down: `make cluster-down` stops it);
2. installs the CRD, starts the operator (`modelship run --namespace demo`) in the background;
3. applies v1 of ModelDeployment `demo/fraud-scorer` (Gateway API route, shadow 100% for 8s, canary 20% then
   50%, 8s each, SLO checks every 4s) and starts steady traffic along the live route;
4. applies v2 (healthy) and shows a live table: stage, weights, every SLO value against its bound, where the
   requests went -- Validating -> Shadow -> Canary 1/2 -> Canary 2/2 -> Promoted;
5. applies v3 = Triton version 91, which answers 300 ms slower: the shadow analysis catches it on mirrored
   requests (no user request ever reaches it), the operator rolls back on its own and the reason is printed;
6. applies v4 = Triton version 93, silently wrong (no errors, normal latency, every score pushed towards 1)
   with output comparison on: the comparator answers each mirrored request with both versions, outputShift
   breaches in Shadow and the operator rolls back, printing how the answers moved;
7. the whole time, a webhook receiver on loopback plays the team's on-call hook: the operator's signed
   notifications for the promotion and each rollback (with their evidence) are printed as they arrive;
8. prints the commands to explore what happened (the live web dashboard among them).

The traffic generator stops at the end. The operator stops too, unless `--keep-operator` (or
MODELSHIP_DEMO_KEEP_OPERATOR=1): then it keeps running (pid in .stack/demo-operator.pid, log in
.stack/logs/demo-operator.log) so `kubectl modelship retry|promote|abort` act on the demo; stop it with
`python -m e2e.demo --stop-operator`.

Existing cluster (MODELSHIP_DEMO_EXISTING_CLUSTER=1, KUBECONFIG set; e.g. kind with the Gateway API CRDs): no
local stack is started; the CRD, namespace and operator are set up the same way. Only the control-plane half
of the demo works there unchanged: pods run the real `image`, so the model repository must hold fraud_scorer
versions 1, 2 and 91 where those pods can read it (copy `e2e/models/repos/main` to a bucket and set
MODELSHIP_DEMO_REPOSITORY=s3://...; the versions use Triton's Python backend), GPUs default to 0
(MODELSHIP_DEMO_GPUS), the Gateway is MODELSHIP_DEMO_GATEWAY (default inference-gw), and the operator needs
MODELSHIP_PROMETHEUS_URL plus Prometheus scraping the pods' `metrics` port with the pod labels. The demo's
traffic generator only reaches loopback and MODELSHIP_POD_CIDR, and the operator must reach pod IPs for
validation: both hold on Linux hosts that route to the pod network; otherwise run the operator in-cluster
(Helm chart) and send traffic through your Gateway. Without traffic every check is Inconclusive and the
rollout is rolled back at its progressDeadline -- which is itself the documented safe behaviour.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from e2e.manifests import model_deployment
from e2e.stack import REPO, STACK_DIR, free_port
from e2e.webhook import Receiver, signed

NAMESPACE = "demo"
NAME = "fraud-scorer"
PID_FILE = STACK_DIR / "demo-operator.pid"
OPERATOR_LOG = STACK_DIR / "logs" / "demo-operator.log"
MANIFEST_DIR = STACK_DIR / "demo"
STEPS = [{"weight": 20, "duration": "8s"}, {"weight": 50, "duration": "8s"}]
SHADOW = {"mirrorPercent": 100, "duration": "8s"}
HOOK_KEY = "demo-hmac-key"  # in Secret modelship-notifications, as a team would share it with its receiver
SUBSCRIPTION = {"name": "on-call", "events": ["Promoted", "RolledBack"],
                "webhook": {"url": {"key": "url"}, "signingKey": {"key": "hmac"}}}
BOLD, RED, GREEN, YELLOW, DIM, RESET = "\x1b[1m", "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[2m", "\x1b[0m"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


class Cluster:
    """kubectl and an API client against the stack, or against the user's cluster."""

    def __init__(self, existing: bool) -> None:
        self.existing = existing
        if existing:
            if not os.environ.get("KUBECONFIG"):
                raise SystemExit("MODELSHIP_DEMO_EXISTING_CLUSTER=1 needs KUBECONFIG")
            self.kubeconfig = Path(os.environ["KUBECONFIG"].split(os.pathsep)[0])
            self.kubectl = shutil.which("kubectl") or "kubectl"
            self.env: dict[str, str] = {}
        else:
            from e2e.stack import orchestrator  # noqa: PLC0415

            state, started = orchestrator.up()
            ctx = orchestrator.context(state)
            say(f"local stack {'started' if started else 'reused'} at {ctx.server}")
            self.kubeconfig, self.kubectl, self.env = ctx.kubeconfig, str(ctx.kubectl), dict(ctx.env)
        from kubernetes import client, config  # noqa: PLC0415

        api = config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)

    def run(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        proc = subprocess.run([self.kubectl, f"--kubeconfig={self.kubeconfig}", *args], input=stdin,
                              capture_output=True, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def apply(self, manifest: dict[str, Any]) -> None:
        self.run("apply", "--server-side", "--field-manager=modelship-demo", "-f", "-", stdin=yaml.safe_dump(manifest))

    def answers(self) -> dict[str, dict[str, float]]:
        """The comparator's summaries of both sides' answers (side -> stat -> value), from the stack's Prometheus;
        empty when no comparator runs (or on an existing cluster without PROMETHEUS_URL)."""
        url = self.env.get("PROMETHEUS_URL") or os.environ.get("PROMETHEUS_URL")
        if not url:
            return {}
        query = urllib.parse.urlencode({"query": f'max by (side, stat) (modelship_comparator_output_summary'
                                                 f'{{namespace="{NAMESPACE}"}})'})
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query?{query}", timeout=2) as response:
                result = json.loads(response.read())["data"]["result"]
        except (OSError, ValueError, KeyError):
            return {}
        out: dict[str, dict[str, float]] = {}
        for series in result:
            out.setdefault(series["metric"]["side"], {})[series["metric"]["stat"]] = float(series["value"][1])
        return out

    def mdep(self) -> dict[str, Any] | None:
        try:
            obj: Any = self.custom.get_namespaced_custom_object("modelship.dev", "v1alpha1", NAMESPACE,
                                                                "modeldeployments", NAME)
        except Exception:
            return None
        return dict(obj)


T0 = time.monotonic()


def say(text: str) -> None:
    print(f"{DIM}[{time.monotonic() - T0:6.1f}s]{RESET} {text}", flush=True)


# --- operator ----------------------------------------------------------------------------------------------


def _our_operator(pid: int) -> bool:
    """True only for a `modelship run --namespace demo` process (a stale pid file must not kill anything else)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"modelship" in cmd and b"run" in cmd and NAMESPACE.encode() in cmd


def stop_operator() -> bool:
    try:
        pid = int(PID_FILE.read_text())
    except (OSError, ValueError):
        return False
    PID_FILE.unlink(missing_ok=True)
    if not _our_operator(pid):
        return False
    os.killpg(pid, signal.SIGTERM)
    for _ in range(50):
        if not _our_operator(pid):
            break
        time.sleep(0.2)
    return True


def start_operator(cluster: Cluster) -> subprocess.Popen[bytes]:
    if stop_operator():
        say("stopped the operator a previous demo left running")
    env = {**os.environ, **cluster.env, "KUBECONFIG": str(cluster.kubeconfig)}
    env.setdefault("MODELSHIP_METRICS_PORT", "0")
    OPERATOR_LOG.parent.mkdir(parents=True, exist_ok=True)
    log = OPERATOR_LOG.open("ab")
    cmd = [sys.executable, "-m", "modelship", "run", "--namespace", NAMESPACE,
           f"--liveness=http://127.0.0.1:{free_port()}/healthz"]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
    PID_FILE.write_text(str(proc.pid))
    say(f"operator started: modelship run --namespace {NAMESPACE} (pid {proc.pid}, log {_rel(OPERATOR_LOG)})")
    return proc


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# --- manifests ---------------------------------------------------------------------------------------------


def manifest(version: str, existing: bool, compare: bool = False) -> dict[str, Any]:
    doc = model_deployment(
        NAME, NAMESPACE, version, shadow=dict(SHADOW), steps=copy.deepcopy(STEPS),
        gpus=int(os.environ.get("MODELSHIP_DEMO_GPUS", "0" if existing else "1")),
        progress_deadline="60s", scale_down_delay="3s",
        slo={"errorRate": {"max": 0.02}, "latencyP99Ms": {"max": 250, "maxRatioToStable": 3.0}},
    )
    spec = doc["spec"]
    spec["notifications"] = [copy.deepcopy(SUBSCRIPTION)]
    if existing:  # your cluster's Gateway in the demo's namespace, which mirrors (RequestMirror) itself
        gateway = os.environ.get("MODELSHIP_DEMO_GATEWAY", "inference-gw")
        spec["traffic"]["gatewayAPI"] = {"parentRefs": [{"name": gateway}]}
    spec["serving"].pop("env", None)
    if compare:  # the platform default: compare answers in Shadow, outputShift max 0.25
        spec["rollout"]["shadow"].pop("compare")
        # absolute latency only: the comparator's bursts queue on the one-instance demo model, and a ratio to
        # stable would blur the point (this version's server is as fast as stable's)
        spec["slo"]["latencyP99Ms"].pop("maxRatioToStable")
    if existing or os.environ.get("MODELSHIP_DEMO_REPOSITORY"):
        spec["model"]["repository"] = os.environ.get("MODELSHIP_DEMO_REPOSITORY", "s3://models/triton")
    doc["metadata"]["labels"] = {"app.kubernetes.io/part-of": "modelship-demo"}
    return doc


def apply_version(cluster: Cluster, version: str, why: str, compare: bool = False) -> None:
    doc = manifest(version, cluster.existing, compare)
    MANIFEST_DIR.mkdir(parents=True, exist_ok=True)
    path = MANIFEST_DIR / f"{NAME}-v{version}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    cluster.apply(doc)
    say(f"{BOLD}kubectl apply --server-side -f {_rel(path)}{RESET}   # version {version}: {why}")


# --- live view ---------------------------------------------------------------------------------------------


def _bound(metric: dict[str, Any]) -> str:
    parts = []
    if metric.get("min") is not None:
        parts.append(f">= {metric['min']:g}")
    if metric.get("max") is not None:
        parts.append(f"<= {metric['max']:g}")
    if metric.get("maxRatioToStable") is not None:
        parts.append(f"<= {metric['maxRatioToStable']:g}x stable")
    return ", ".join(parts)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def _color(verdict: str) -> str:
    return {"Pass": GREEN, "Fail": RED}.get(verdict, YELLOW) + verdict + RESET


def render(obj: dict[str, Any], traffic: dict[str, dict[str, int]],
           answers: dict[str, dict[str, float]] | None = None) -> list[str]:
    """The `kubectl get mdep` row plus weights, the last analysis (value vs bound per SLO), the answers of both
    versions side by side while the comparator runs, and the traffic."""
    spec, st = obj["spec"], obj.get("status") or {}
    steps = spec["rollout"]["canary"]["steps"]
    stage = st.get("stage") or "-"
    step = f"{st['step'] + 1}/{len(steps)}" if stage == "Canary" and st.get("step") is not None else "-"
    phase = st.get("phase", "Pending")
    phase_c = {"Healthy": GREEN, "RolledBack": RED, "Failed": RED, "Invalid": RED}.get(phase, YELLOW) + phase + RESET
    header = f"{'NAME':14}{'MODEL':14}{'DESIRED':9}{'STABLE':8}{'STAGE':12}{'STEP':6}{'WEIGHT':8}{'MIRROR':8}PHASE"
    row = (f"{NAME:14}{spec['model']['name']:14}{spec['model']['version']:9}"
           f"{(st.get('stableRevision') or {}).get('version', '-'):8}{stage:12}{step:6}"
           f"{str(st.get('canaryWeight', 0)) + '%':8}{str(st.get('mirrorPercent', 0)) + '%':8}{phase_c}")
    lines = [BOLD + header + RESET, row, f"  {DIM}{st.get('message', '')[:150]}{RESET}"]
    analysis = st.get("lastAnalysis")
    if analysis:
        when = str(analysis.get("time", ""))[11:19]
        lines.append(f"  last analysis {when}: {_color(analysis.get('verdict', '?'))}"
                     f" ({_num(analysis.get('requests'))} canary requests in the window)")
        for m in analysis.get("metrics") or []:
            stable = f"stable {_num(m.get('stableValue'))}" if m.get("stableValue") is not None else ""
            lines.append(f"    {m['name']:14} {_num(m.get('value')):>10}  {_bound(m):28} {_color(m['verdict']):<16}"
                         f" {DIM}{stable}{RESET}")
    if answers and st.get("stage") == "Shadow":
        lines.append("  answers (comparator)   " + "   ".join(
            f"{side} p5 {_num(answers[side].get('p5'))} p50 {_num(answers[side].get('p50'))} "
            f"p95 {_num(answers[side].get('p95'))} mean {_num(answers[side].get('mean'))}"
            for side in ("stable", "canary") if side in answers))
    if traffic:
        parts = [f"{name} {c.get('ok', 0)} ok" + (f" {RED}{c['error'] + c['failed']} failed{RESET}"
                                                   if c.get("error", 0) + c.get("failed", 0) else "")
                 for name, c in sorted(traffic.items())]
        lines.append("  traffic, last 5s: " + "; ".join(parts))
    return lines


class Live:
    """A refreshing block under a scrolling log; plain printing when stdout is not a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
        self.shown = 0
        self.last_key: Any = None
        self.story: Any = None  # (phase, stage, step) last logged, across versions
        self.stages: list[str] = []  # every stage logged, in order
        self.answers: dict[str, dict[str, float]] = {}  # the last answers the comparator summarised

    def show(self, lines: list[str], key: Any) -> None:
        if self.tty:
            self.clear()
            print("\n".join(lines), flush=True)
            self.shown = len(lines)
        elif key != self.last_key:  # a log: print the table when something that matters changed
            print("\n".join(lines), flush=True)
        self.last_key = key

    def clear(self) -> None:
        if self.tty and self.shown:
            sys.stdout.write(f"\x1b[{self.shown}F\x1b[J")
            self.shown = 0

    def log(self, text: str) -> None:
        self.clear()
        say(text)


class Traffic:
    """The stack's traffic generator, reporting per-backend counts over the last few seconds."""

    def __init__(self, cluster: Cluster) -> None:
        self.gen: Any = None
        self.window: list[tuple[float, dict[str, dict[str, int]]]] = []
        if cluster.existing and not _flag("MODELSHIP_DEMO_TRAFFIC"):
            say("existing cluster: no demo traffic (MODELSHIP_DEMO_TRAFFIC=1 sends it from here)")
            return
        from e2e.stack.traffic import from_kubeconfig  # noqa: PLC0415

        self.gen = from_kubeconfig(cluster.kubeconfig, NAMESPACE, NAME, stack_env=cluster.env, rps=25,
                                   duration=900).start()
        through = f"through the Traefik gateway at {self.gen.gateway}" if self.gen.gateway else "along the route"
        say(f"traffic: 25 requests/s {through} (python -m e2e.stack.traffic)")

    def totals(self) -> dict[str, dict[str, int]]:
        if self.gen is None:
            return {}
        return {k: {f: int(v.get(f, 0)) for f in ("ok", "error", "failed")}
                for k, v in self.gen.summary()["backends"].items()}

    def recent(self) -> dict[str, dict[str, int]]:
        now, totals = time.monotonic(), self.totals()
        self.window.append((now, totals))
        while len(self.window) > 1 and self.window[0][0] < now - 5:
            self.window.pop(0)
        old = self.window[0][1]
        out = {}
        for name, c in totals.items():
            delta = {f: c[f] - old.get(name, {}).get(f, 0) for f in c}
            if any(delta.values()):
                out[name] = delta
        return out

    def served(self, timeout: float) -> None:
        """Wait until Triton answers along the route (kwok marks pods Ready before their server listens)."""
        deadline = time.monotonic() + timeout
        while self.gen is not None and time.monotonic() < deadline:
            if sum(c["ok"] for c in self.totals().values()) >= 20:
                return
            time.sleep(0.5)

    def stop(self) -> None:
        if self.gen is not None:
            self.gen.stop()


def watch(cluster: Cluster, live: Live, traffic: Traffic, done: Callable[[dict[str, Any]], bool],
          timeout: float) -> dict[str, Any]:
    """Refresh the table until `done(status)`; log every stage or phase change as it happens."""
    deadline, obj = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        obj = cluster.mdep()
        if obj is not None:
            st = obj.get("status") or {}
            story = (st.get("phase"), st.get("stage"), st.get("step"))
            if story != live.story and st.get("phase"):
                step = f" step {st['step'] + 1}" if st.get("stage") == "Canary" and st.get("step") is not None else ""
                live.log(f"phase {st.get('phase')}, stage {st.get('stage')}{step}: weight {st.get('canaryWeight', 0)}%,"
                         f" mirror {st.get('mirrorPercent', 0)}%")
                live.story = story
                live.stages.append(str(st.get("stage")))
            key = (story, (st.get("lastAnalysis") or {}).get("time"), st.get("canaryWeight"))
            answers = cluster.answers() if st.get("stage") == "Shadow" else live.answers
            live.answers = answers or live.answers
            live.show(render(obj, traffic.recent(), answers), key)
            if done(st) and obj["metadata"].get("generation") == st.get("observedGeneration"):
                live.clear()
                live.show(render(obj, traffic.recent(), answers), ("final", key))
                live.shown = 0
                return obj
        time.sleep(0.5)
    live.clear()
    tail = OPERATOR_LOG.read_text(errors="replace").splitlines()[-30:] if OPERATOR_LOG.exists() else []
    raise SystemExit(f"timed out after {timeout:.0f}s; last status: {json.dumps((obj or {}).get('status'))[:800]}\n"
                     + "\n".join(tail))


# --- the story ---------------------------------------------------------------------------------------------


def install_crd(cluster: Cluster) -> None:
    cluster.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "modeldeployments.yaml"))
    cluster.run("apply", "--server-side", "--force-conflicts", "-f",
                str(REPO / "crds" / "comparator-clusterrole.yaml"))  # what output comparison binds
    cluster.run("wait", "--for=condition=Established", "crd/modeldeployments.modelship.dev", "--timeout=60s")
    say("CRD modeldeployments.modelship.dev installed (kubectl apply --server-side -f crds/)")


def fresh_namespace(cluster: Cluster) -> None:
    """Namespace `demo` without a previous demo's ModelDeployment (deleted; garbage collection takes the rest)."""
    for _ in range(240):
        phase = cluster.run("get", "namespace", NAMESPACE, "-o", "jsonpath={.status.phase}", check=False).strip()
        if phase != "Terminating":
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"namespace {NAMESPACE} is stuck Terminating: kubectl describe namespace {NAMESPACE}")
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    if cluster.mdep() is not None:
        say(f"removing {NAMESPACE}/{NAME} left by a previous demo (garbage collection takes its children)")
        cluster.run("delete", "modeldeployment", NAME, "-n", NAMESPACE, "--wait=true", "--timeout=60s")
        for _ in range(120):
            if not cluster.run("get", "deploy,svc,pods", "-n", NAMESPACE, "-l", f"modelship.dev/deployment={NAME}",
                               "-o", "name", check=False).strip():
                break
            time.sleep(0.5)


def notified(receiver: Receiver, event: str, version: str, timeout: float = 30) -> None:
    """Print the webhook the operator sent for `event` about `version` (it never holds the rollout up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in receiver.delivered(event):
            body = delivery.event
            if version in ((body.get("history") or {}).get("version"), (body.get("stable") or {}).get("version")):
                checks = [f"{m['name']} {m.get('verdict')}" for m in (body.get("evidence") or {}).get("metrics") or []]
                verified = "signature verified" if signed(delivery, HOOK_KEY) else f"{RED}BAD SIGNATURE{RESET}"
                print(f"  webhook {BOLD}{event}{RESET} received ({verified}, delivery "
                      f"{delivery.headers.get('X-Modelship-Delivery', '?')[:12]}): {body.get('message', '')[:160]}")
                if checks:
                    print(f"    evidence attached: {', '.join(checks)}")
                return
        time.sleep(0.2)
    print(f"  {YELLOW}no {event} webhook within {timeout:.0f}s{RESET} (see {_rel(OPERATOR_LOG)})")


def story(cluster: Cluster, keep_operator: bool) -> int:
    install_crd(cluster)
    operator = start_operator(cluster)
    fresh_namespace(cluster)
    receiver = Receiver().start()
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "modelship-notifications",
                   "namespace": NAMESPACE}, "stringData": {"url": receiver.url, "hmac": HOOK_KEY}})
    say(f"a webhook receiver on {receiver.url} stands for the team's hook (Promoted, RolledBack; HMAC-signed)")
    live, traffic = Live(), None
    try:
        apply_version(cluster, "1", "the first version, deployed directly as stable")
        traffic_obj = Traffic(cluster)
        traffic = traffic_obj
        watch(cluster, live, traffic_obj, lambda s: s.get("phase") == "Healthy", timeout=120)
        traffic_obj.served(timeout=60)
        say(f"{GREEN}v1 is serving{RESET}\n")

        t = time.monotonic()
        apply_version(cluster, "2", "a healthy new version: validation, shadow, canary 20% -> 50%, promotion")
        watch(cluster, live, traffic_obj, lambda s: s.get("phase") == "Healthy"
              and (s.get("stableRevision") or {}).get("version") == "2", timeout=180)
        say(f"{GREEN}v2 promoted in {time.monotonic() - t:.0f}s: 100% of traffic on version 2{RESET}")
        notified(receiver, "Promoted", "2")
        print()

        t = time.monotonic()
        before = traffic_obj.totals()
        apply_version(cluster, "91", "a faulty version: Triton answers 300 ms slower")
        caught_from = len(live.stages)
        obj = watch(cluster, live, traffic_obj, lambda s: s.get("phase") == "RolledBack", timeout=180)
        st = obj["status"]
        judged = [s for s in live.stages[caught_from:] if s in ("Shadow", "Canary")]
        degraded: dict[str, Any] = next((c for c in st.get("conditions") or [] if c["type"] == "Degraded"), {})
        where = f" in the {judged[-1]} stage" if judged else ""
        say(f"{RED}v91 rolled back automatically after {time.monotonic() - t:.0f}s{RESET}{where}: "
            f"{degraded.get('reason', '')}")
        print(f"  reason: {degraded.get('message') or st.get('message')}")
        print(f"  spec still says version {obj['spec']['model']['version']} (GitOps owns spec); "
              f"status: {st['phase']}, stable version {(st.get('stableRevision') or {}).get('version')}")
        after = traffic_obj.totals()
        live_failed = sum(c["error"] + c["failed"] - before.get(k, {}).get("error", 0)
                          - before.get(k, {}).get("failed", 0) for k, c in after.items() if not k.startswith("mirror:"))
        if traffic_obj.gen is not None:
            print(f"  user requests that failed while v91 was rolled out and back: {live_failed}")
        events = cluster.run("get", "events", "-n", NAMESPACE, "--sort-by=.lastTimestamp", "--field-selector",
                             f"involvedObject.uid={obj['metadata']['uid']},type=Warning", "-o",
                             "custom-columns=REASON:.reason,MESSAGE:.message", check=False)
        if events.strip():
            print("  Warning events:\n" + "\n".join("    " + line[:200] for line in events.strip().splitlines()))
        notified(receiver, "RolledBack", "91")
        print()
        silently_wrong(cluster, live, traffic_obj)
        notified(receiver, "RolledBack", "93")
    finally:
        receiver.stop()
        live.clear()
        if traffic is not None:
            traffic.stop()
        if not keep_operator:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
            PID_FILE.unlink(missing_ok=True)
    print(explore(cluster, keep_operator, operator.pid))
    return 0


def silently_wrong(cluster: Cluster, live: Live, traffic: Traffic) -> None:
    """Act 4: a version whose server is perfect and whose answers are wrong; only output comparison sees it."""
    t = time.monotonic()
    why = "silently wrong: no errors, normal latency, every score pushed towards 1"
    apply_version(cluster, "93", why, compare=True)
    obj = watch(cluster, live, traffic, lambda s: any(
        h.get("event") == "RolledBack" and h.get("version") == "93" for h in s.get("history") or []), timeout=180)
    analysis = obj["status"].get("lastAnalysis") or {}
    shift: dict[str, Any] = next((m for m in analysis.get("metrics") or [] if m["name"] == "outputShift"), {})
    served = {m["name"]: m["verdict"] for m in analysis.get("metrics") or [] if m["name"] != "outputShift"}
    say(f"{RED}v93 rolled back automatically after {time.monotonic() - t:.0f}s in the Shadow stage{RESET}: "
        "its answers gave it away, not its server")
    print(f"  evidence: {shift.get('message', analysis.get('message', ''))}")
    print(f"  Triton's own metrics in the same check: {served} (what a latency/error-only rollout would see)")
    for side, stats in sorted(live.answers.items(), reverse=True):
        print(f"  {side:6} answers: p5 {_num(stats.get('p5'))}  p50 {_num(stats.get('p50'))}  "
              f"p95 {_num(stats.get('p95'))}  mean {_num(stats.get('mean'))}")


def explore(cluster: Cluster, keep_operator: bool, pid: int) -> str:
    env = "export KUBECONFIG=" + str(cluster.kubeconfig) if cluster.existing else "source .stack/env"
    stop = (f"the operator keeps running (pid {pid}, log {_rel(OPERATOR_LOG)}): stop it with "
            "`python -m e2e.demo --stop-operator`") if keep_operator else (
        "the operator and traffic were stopped; `python -m e2e.demo --keep-operator` leaves the operator running")
    lines = [
        (env, ""),
        (f"kubectl get mdep -n {NAMESPACE}", ""),
        (f"kubectl describe mdep {NAME} -n {NAMESPACE}", "Events carry the metric values behind each decision"),
        (f"kubectl modelship status {NAME} -n {NAMESPACE}", ""),
        (f"kubectl modelship history {NAME} -n {NAMESPACE}", "every rollout, step, check and rollback"),
        (f"kubectl modelship dashboard -n {NAMESPACE}", "the live web dashboard (http://127.0.0.1:3100)"),
        (f"kubectl get httproute,deploy,svc,pods -n {NAMESPACE} -l modelship.dev/deployment={NAME}", ""),
        (f"ls {_rel(MANIFEST_DIR)}/", "the three manifests applied"),
    ]
    if not cluster.existing:
        lines.append(("make cluster-down", "stop the local stack when done"))
    width = max(len(cmd) for cmd, why in lines if why) + 2
    body = "\n".join(f"  {cmd:{width}}# {why}" if why else f"  {cmd}" for cmd, why in lines)
    return f"\n{BOLD}Explore:{RESET}\n{body}\n{DIM}{stop}{RESET}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--keep-operator", action="store_true", default=_flag("MODELSHIP_DEMO_KEEP_OPERATOR"),
                        help="leave the operator running afterwards (MODELSHIP_DEMO_KEEP_OPERATOR=1)")
    parser.add_argument("--stop-operator", action="store_true", help="stop an operator a previous demo left running")
    args = parser.parse_args(argv)
    if args.stop_operator:
        print("stopped" if stop_operator() else "no demo operator running")
        return 0
    existing = _flag("MODELSHIP_DEMO_EXISTING_CLUSTER")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (traffic, operator) on TERM too
    say(f"Modelship demo, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{'existing cluster ' + os.environ.get('KUBECONFIG', '') if existing else 'local stack'}")
    cluster = Cluster(existing)
    rc = story(cluster, args.keep_operator)
    say(f"demo finished in {time.monotonic() - T0:.0f}s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
