"""`kubectl modelship undo` and `revisions`: the request the operator parses, refusals that name the fix."""

from __future__ import annotations

import json
from typing import Any

from modelship.controller.requests import parse_request
from modelship.plugin import commands
from plugin_fixtures import FakeApi, mdep
from test_plugin_requests import run

REVISIONS = [
    {"version": "5", "hash": "111aaa", "promotedAt": "2024-05-01T08:00:00Z", "retiredAt": "2024-05-01T09:00:00Z",
     "outcome": "Replaced", "by": "modelship", "reason": "first revision"},
    {"version": "6", "hash": "5d8f7c", "promotedAt": "2024-05-01T09:00:00Z", "by": "bob",
     "reason": "promoted; last check Pass"},
]


def stable(**status: Any) -> dict[str, Any]:
    """v6 stable after promotion, v5 served before it."""
    fields: dict[str, Any] = {"canaryRevision": None, "stage": "Stable", "phase": "Healthy", "canaryWeight": 0,
                              "revisions": REVISIONS, **status}
    return mdep(**fields)


def test_undo_to_a_version_sends_it_and_the_operator_parser_reads_it_back() -> None:
    api = FakeApi(stable())
    code, out, err = run(api, "undo", "fraud-scorer", "--to-version", "5", "--no-wait")
    assert (code, err) == (0, "") and "requested undo" in out
    [(_, _, annotations)] = api.patches
    payload = json.loads(annotations[commands.REQUEST_ANNOTATION])
    assert payload["action"] == "undo" and payload["toVersion"] == "5"
    parsed = parse_request(annotations, policy_in_force=True)
    assert parsed is not None and parsed.problem is None and parsed.to_version == "5" and parsed.action == "undo"


def test_undo_to_a_version_that_never_served_is_refused_with_the_known_ones() -> None:
    api = FakeApi(stable())
    code, _, err = run(api, "undo", "fraud-scorer", "--to-version", "3")
    assert code == 1 and not api.patches
    assert "never served as stable" in err and "earlier versions: 5" in err and "revisions fraud-scorer" in err


def test_undo_while_a_canary_runs_points_to_abort() -> None:
    api = FakeApi(mdep())
    code, _, err = run(api, "undo", "fraud-scorer")
    assert code == 1 and "abort" in err and not api.patches


def test_abort_in_the_post_promotion_window_is_sent() -> None:
    api = FakeApi(stable(stage="PostPromotion", previousRevision={"version": "5", "hash": "111aaa"}))
    code, _, err = run(api, "abort", "fraud-scorer", "--no-wait")
    assert (code, err) == (0, "") and len(api.patches) == 1


def test_to_version_on_another_action_is_malformed_for_the_operator() -> None:
    payload = {"id": "x1", "action": "abort", "at": "2024-05-01T10:00:00Z", "toVersion": "5"}
    parsed = parse_request(commands.request_annotations(payload, "alice"))
    assert parsed is not None and parsed.problem is not None and "only undo" in parsed.problem


def test_revisions_lists_every_stable_period_with_who_and_how_it_ended() -> None:
    code, out, _ = run(FakeApi(stable()), "revisions", "fraud-scorer")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:6] == ["VERSION", "REVISION", "PROMOTED", "RETIRED", "OUTCOME", "BY"]
    assert "5" in lines[1] and "Replaced" in lines[1] and "Serving" in lines[2] and "bob" in lines[2]
    code, out, _ = run(FakeApi(mdep(revisions=[])), "revisions", "fraud-scorer")
    assert "no revision has served as stable yet" in out


def test_status_shows_the_warm_previous_revision() -> None:
    obj = stable(stage="PostPromotion", previousRevision={"version": "5", "hash": "111aaa"})
    code, out, _ = run(FakeApi(obj), "status", "fraud-scorer")
    assert code == 0 and "Previous:    v5 (111aaa) (kept warm" in out
