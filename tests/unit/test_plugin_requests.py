"""Commands become a request annotation (never a spec edit), checked against state, confirmed via status."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from modelship.controller.requests import parse_request
from modelship.plugin import commands, kube, main
from modelship.plugin.errors import EXIT_NOT_CONFIRMED, PluginError
from plugin_fixtures import FakeApi, mdep

NOW = datetime(2024, 5, 1, 10, 20, 5, 123456, tzinfo=UTC)


def run(api: FakeApi, *argv: str) -> tuple[int, str, str]:
    """Run the CLI against the fake API; returns (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main.main(list(argv), api_factory=lambda _args: api)
    return code, out.getvalue(), err.getvalue()


def test_request_payload_matches_the_operator_parser() -> None:
    payload = commands.build_request("promote-full", NOW)
    assert set(payload) == {"id", "action", "at"}
    assert payload["at"] == "2024-05-01T10:20:05.123Z"
    parsed = parse_request(commands.request_annotations(payload, "alice"), policy_in_force=True)
    assert parsed is not None and parsed.problem is None
    assert parsed.action == "promote-full" and parsed.by == "alice" and parsed.verified and not parsed.force
    assert parsed.at == datetime(2024, 5, 1, 10, 20, 5, 123000, tzinfo=UTC)
    assert commands.build_request("abort", NOW)["id"] != commands.build_request("abort", NOW)["id"]
    forced = parse_request(commands.request_annotations(commands.build_request("promote", NOW, force=True), "a"))
    assert forced is not None and forced.force


def test_request_time_is_after_the_last_request_the_operator_acted_upon() -> None:
    later = "2024-05-01T10:25:00.000Z"
    assert commands.request_time(NOW, mdep(lastRequestAt=later)) == datetime(2024, 5, 1, 10, 25, 0, 1000, tzinfo=UTC)
    assert commands.request_time(NOW, mdep()) == NOW


def test_promote_patches_only_the_annotation_with_identity_and_waits_for_confirmation() -> None:
    obj = mdep(awaitingApproval=True, step=2)
    api = FakeApi(obj)
    spec_before = json.dumps(obj["spec"], sort_keys=True)
    code, out, err = run(api, "promote", "fraud-scorer", "-n", "ml")
    assert (code, err) == (0, "")
    [(ns, name, annotations)] = api.patches
    assert (ns, name, sorted(annotations)) == ("ml", "fraud-scorer", ["modelship.dev/request",
                                                                      "modelship.dev/requested-by"])
    request = json.loads(annotations["modelship.dev/request"])
    assert request["action"] == "promote" and annotations["modelship.dev/requested-by"] == "alice@example.com"
    assert "requested promote of modeldeployment ml/fraud-scorer as alice@example.com" in out
    assert "done: phase Progressing" in out and "Approved by alice@example.com" in out
    assert json.dumps(api.objects[("ml", "fraud-scorer")]["spec"], sort_keys=True) == spec_before


def test_promote_full_abort_pause_resume_retry_map_to_actions() -> None:
    cases: list[tuple[list[str], dict[str, Any], str]] = [
        (["promote", "--full"], {}, "promote-full"),
        (["abort"], {}, "abort"),
        (["pause"], {}, "pause"),
        (["resume"], {"phase": "Paused"}, "resume"),
        (["retry"], {"phase": "RolledBack", "canaryRevision": None}, "retry"),
    ]
    for argv, status, action in cases:
        api = FakeApi(mdep(**status))
        code, _, err = run(api, *argv, "fraud-scorer", "--no-wait")
        assert (code, err) == (0, ""), argv
        assert json.loads(api.patches[0][2]["modelship.dev/request"])["action"] == action


@pytest.mark.parametrize(
    ("argv", "status", "expected"),
    [
        (["promote"], {}, "not waiting for approval (Canary step 2/4 at 25%"),
        (
            ["promote"],
            {"phase": "Healthy", "canaryRevision": None},
            "has no canary rollout in progress (phase Healthy",
        ),
        (["promote", "--full"], {"phase": "Healthy", "canaryRevision": None}, "cannot promote-full"),
        (["abort"], {"phase": "RolledBack", "canaryRevision": None}, "cannot abort"),
        (["promote", "--full"], {"stage": "Promoting"}, "already promoting"),
        (["retry"], {"phase": "RolledBack"}, "cannot retry"),
        (["pause"], {"phase": "Paused"}, "already paused"),
        (["resume"], {}, "cannot resume: ml/fraud-scorer is not paused (phase Progressing)"),
        (
            ["retry"],
            {},
            "retry restarts a rollout after RolledBack or Failed, and ml/fraud-scorer is Progressing",
        ),
    ],
)
def test_state_checks_refuse_no_op_commands_without_patching(
    argv: list[str], status: dict[str, Any], expected: str
) -> None:
    api = FakeApi(mdep(**status))
    code, out, err = run(api, *argv, "fraud-scorer")
    assert code == 1 and out == ""
    assert err.startswith("error: ") and expected in err
    assert api.patches == []


def test_force_skips_the_state_check() -> None:
    api = FakeApi(mdep())
    code, _, _ = run(api, "promote", "fraud-scorer", "--force", "--no-wait")
    assert code == 0 and len(api.patches) == 1


def test_unconfirmed_request_exits_3_and_says_it_stays_queued() -> None:
    api = FakeApi(mdep(awaitingApproval=True))
    api.operator_handles = False
    with pytest.raises(PluginError) as caught:
        commands.send(api, "ml", "fraud-scorer", "promote", timeout_s=0.1, out=lambda _line: None)
    assert caught.value.exit_code == EXIT_NOT_CONFIRMED
    assert "not confirmed it within 0.1s" in caught.value.message and "operator is running" in caught.value.message


def test_a_request_the_operator_ignored_is_an_error_with_its_reason() -> None:
    api = FakeApi(mdep(awaitingApproval=True))
    api.ignore_reason = "promote by alice@example.com ignored: nothing waits for approval"
    code, out, err = run(api, "promote", "fraud-scorer")
    assert code == 1 and "requested promote" in out
    assert err.startswith("error: the operator ignored the request: promote by alice@example.com ignored: ")
    assert err.endswith("nothing waits for approval\n")


def test_replacing_an_unhandled_request_is_announced() -> None:
    obj = mdep(lastRequestId="a")
    obj["metadata"]["annotations"]["modelship.dev/request"] = '{"id":"b","action":"pause","by":"bob"}'
    lines: list[str] = []
    commands.send(FakeApi(obj), "ml", "fraud-scorer", "abort", wait=False, out=lines.append)
    assert lines[0] == "note: replacing a request not handled yet: pause by bob"


def test_missing_resource_is_one_clear_line_and_namespace_defaults_to_context() -> None:
    api = FakeApi(mdep(), namespace="ml")
    code, out, err = run(api, "status", "nope")
    assert code == 1 and out == ""
    assert err == "error: modeldeployment ml/nope not found; list them with kubectl modelship get -n ml\n"
    code, out, _ = run(api, "status", "fraud-scorer")
    assert code == 0 and "ModelDeployment ml/fraud-scorer" in out


def test_get_history_and_empty_namespace() -> None:
    api = FakeApi(mdep(), mdep("other", "prod"))
    code, out, _ = run(api, "get", "-A")
    assert code == 0 and "NAMESPACE" in out and "other" in out
    code, out, _ = run(api, "-n", "empty", "get")
    assert (code, out) == (0, "No ModelDeployments found in namespace empty.\n")
    code, out, _ = run(api, "history", "fraud-scorer")
    assert code == 0 and "StageChanged" in out


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as caught:
        main.main(["frobnicate"], api_factory=lambda _args: FakeApi())
    assert caught.value.code == 2


# --- error translation of the real client ---------------------------------------------------------------


def api_error(status: int, body: str, reason: str = "") -> ApiException:
    return ApiException(status=status, reason=reason, body=body)


def test_translate_tells_missing_object_from_missing_crd() -> None:
    not_found = json.dumps(
        {
            "kind": "Status",
            "reason": "NotFound",
            "details": {"name": "foo", "group": "modelship.dev", "kind": "modeldeployments"},
        }
    )
    err = kube.translate(api_error(404, not_found), "get", "ml", "foo", "https://k")
    assert err.message == "modeldeployment ml/foo not found; list them with kubectl modelship get -n ml"
    err = kube.translate(api_error(404, "404 page not found\n"), "get", "ml", "foo", "https://k")
    assert "ModelDeployment API (modelship.dev/v1alpha1) is not installed" in err.message
    assert "crds/modeldeployments.yaml" in err.message


def test_translate_forbidden_names_verb_and_resource() -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "reason": "Forbidden",
            "message": 'modeldeployments.modelship.dev "foo" '
            'is forbidden: User "nobody" cannot patch resource "modeldeployments"',
        }
    )
    err = kube.translate(api_error(403, body, "Forbidden"), "patch", "ml", "foo", "https://k")
    assert err.message.startswith("forbidden: you may not patch modeldeployments.modelship.dev in namespace ml")
    assert "verb 'patch' on resource 'modeldeployments' in API group 'modelship.dev'" in err.message
    assert "kubectl auth can-i patch modeldeployments.modelship.dev -n ml" in err.message
    err = kube.translate(api_error(403, body), "list", None, None, "https://k")
    assert "in all namespaces" in err.message and "-A)" in err.message


def test_translate_unauthorized_and_unreachable() -> None:
    assert "rejected your credentials" in kube.translate(api_error(401, ""), "get", "ml", "x", "https://k").message
    refused = ConnectionRefusedError(111, "Connection refused")
    err = kube.translate(refused, "get", "ml", "x", "https://127.0.0.1:1")
    assert err.message.startswith("cannot reach the API server at https://127.0.0.1:1")


def test_kubeconfig_namespace_and_missing_file(tmp_path: Any) -> None:
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "a",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "a", "context": {"cluster": "c", "user": "u", "namespace": "ml"}},
                    {"name": "b", "context": {"cluster": "c", "user": "u"}},
                ],
            }
        )
    )
    assert kube.KubeApi(str(path)).default_namespace == "ml"
    assert kube.KubeApi(str(path), "b").default_namespace == "default"
    with pytest.raises(PluginError, match="context 'zz' not found"):
        kube.KubeApi(str(path), "zz")
    with pytest.raises(PluginError, match="does not exist"):
        kube.KubeApi(str(tmp_path / "missing"))
    code = main.main(["--kubeconfig", str(path), "get"])
    assert code == 1


def test_watch_redraws_on_changes_and_stops_on_errors() -> None:
    """`status --watch` clears and redraws for each object the watch yields; an error ends it cleanly."""

    class Deleting(FakeApi):
        def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
            yield self.get(namespace, name)
            yield mdep(phase="Paused")
            raise PluginError(f"modeldeployment {namespace}/{name} was deleted")

    frames: list[str] = []
    with pytest.raises(PluginError, match="was deleted"):
        main.watch_status(Deleting(mdep()), "ml", "fraud-scorer", frames.append)
    assert frames and all(frame.startswith(main.CLEAR) for frame in frames)
    assert "Phase:       Paused" in frames[-1]
    code, _, err = run(Deleting(mdep()), "status", "fraud-scorer", "--watch")
    assert code == 1 and err == "error: modeldeployment ml/fraud-scorer was deleted\n"
