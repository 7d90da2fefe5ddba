"""`make demo` without a cluster: its manifests are valid and its live table shows what drove each decision."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from modelship.domain.validation import check_manifest

from e2e import demo
from e2e.webhook import Delivery, Receiver

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.mark.parametrize("version", ["1", "2", "91"])
def test_demo_manifests_are_valid(version: str) -> None:
    doc = demo.manifest(version, existing=False)
    assert check_manifest(doc) == []
    assert doc["metadata"] == {"name": "fraud-scorer", "namespace": "demo",
                               "labels": {"app.kubernetes.io/part-of": "modelship-demo"}}
    assert doc["spec"]["rollout"]["shadow"]["mirrorPercent"] == 100
    assert [s["weight"] for s in doc["spec"]["rollout"]["canary"]["steps"]] == [20, 50]


def test_existing_cluster_manifest_uses_the_users_repository_and_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_DEMO_REPOSITORY", "s3://bucket/models")
    doc = demo.manifest("2", existing=True)
    assert doc["spec"]["model"]["repository"] == "s3://bucket/models"
    assert doc["spec"]["serving"]["resources"]["gpus"] == 0
    assert check_manifest(doc) == []


def test_render_shows_weights_and_each_slo_against_its_bound() -> None:
    obj = demo.manifest("91", existing=False)
    obj["status"] = {
        "phase": "Progressing", "stage": "Canary", "step": 1, "canaryWeight": 50, "mirrorPercent": 0,
        "stableRevision": {"version": "2", "hash": "abc"}, "message": "step 2/2: 50% for 8s",
        "lastAnalysis": {"time": "2026-01-01T10:00:04Z", "verdict": "Fail", "requests": 48, "metrics": [
            {"name": "errorRate", "value": 0.0, "max": 0.02, "verdict": "Pass"},
            {"name": "latencyP99Ms", "value": 312.5, "stableValue": 8.1, "max": 250, "maxRatioToStable": 3,
             "verdict": "Fail"},
        ]},
    }
    lines = [ANSI.sub("", line) for line in demo.render(obj, {"fraud-scorer-canary": {"ok": 60, "error": 0,
                                                                                        "failed": 2}})]
    assert lines[1].split() == ["fraud-scorer", "fraud_scorer", "91", "2", "Canary", "2/2", "50%", "0%",
                                "Progressing"]
    text = "\n".join(lines)
    assert "last analysis 10:00:04: Fail (48 canary requests in the window)" in text
    assert re.search(r"latencyP99Ms\s+312.5\s+<= 250, <= 3x stable\s+Fail\s+stable 8.1", text)
    assert re.search(r"errorRate\s+0\s+<= 0.02\s+Pass", text)
    assert "fraud-scorer-canary 60 ok 2 failed" in text


def test_the_silently_wrong_act_compares_answers_by_default_and_the_others_do_not() -> None:
    wrong = demo.manifest("93", existing=False, compare=True)
    assert check_manifest(wrong) == []
    assert "compare" not in wrong["spec"]["rollout"]["shadow"], "act 4 relies on the default: compare on"
    assert demo.manifest("2", existing=False)["spec"]["rollout"]["shadow"]["compare"] == {"enabled": False}


def test_render_shows_both_versions_answers_side_by_side_in_shadow() -> None:
    obj = demo.manifest("93", existing=False, compare=True)
    obj["status"] = {"phase": "Progressing", "stage": "Shadow", "canaryWeight": 0, "mirrorPercent": 100}
    answers = {"stable": {"p5": 0.55, "p50": 0.62, "p95": 0.7, "mean": 0.62},
               "canary": {"p5": 0.93, "p50": 0.95, "p95": 0.97, "mean": 0.95}}
    text = "\n".join(ANSI.sub("", line) for line in demo.render(obj, {}, answers))
    assert "answers (comparator)   stable p5 0.55 p50 0.62 p95 0.7 mean 0.62   canary p5 0.93 p50 0.95" in text
    obj["status"]["stage"] = "Canary"
    assert "answers" not in "\n".join(demo.render(obj, {}, answers))


def test_the_demo_prints_the_signed_webhook_of_a_rollback_with_its_evidence(capsys: pytest.CaptureFixture[str]) -> None:
    body = json.dumps({"event": "RolledBack", "message": "rolled back version 91: latencyP99Ms 412 > max 250",
                       "history": {"event": "RolledBack", "version": "91"},
                       "evidence": {"metrics": [{"name": "latencyP99Ms", "verdict": "Fail"}]}}).encode()
    signature = "sha256=" + hmac.new(demo.HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    receiver = Receiver(seen=[Delivery({"X-Modelship-Event": "RolledBack", "X-Modelship-Signature": signature,
                                        "X-Modelship-Delivery": "d-1"}, body, 0.0, True)])
    demo.notified(receiver, "RolledBack", "91", timeout=1)
    out = capsys.readouterr().out
    assert "RolledBack" in out and "signature verified" in out and "latencyP99Ms Fail" in out
    demo.notified(receiver, "RolledBack", "93", timeout=0.3)
    assert "no RolledBack webhook within" in capsys.readouterr().out
