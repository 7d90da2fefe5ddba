"""RouteRestored means someone changed the route, never that the rollout itself moved traffic."""

from __future__ import annotations

import pytest
from modelship.controller.reconciler import route_was_edited
from modelship.domain.actions import SetTraffic
from modelship.domain.observations import RouteState
from modelship.domain.status import ModelDeploymentStatus, Revision

STABLE, CANARY = Revision(version="1", hash="aaa"), Revision(version="2", hash="bbb")


def status(weight: int, mirror: int = 0) -> ModelDeploymentStatus:
    return ModelDeploymentStatus(canary_weight=weight, mirror_percent=mirror, stable_revision=STABLE,
                                 canary_revision=CANARY)


def traffic(weight: int, mirror: int = 0) -> SetTraffic:
    return SetTraffic(stable=STABLE, canary=CANARY, canary_weight=weight, mirror_percent=mirror)


def found(weight: int, mirror: int = 0, in_sync: bool = False, exists: bool = True) -> RouteState:
    return RouteState(exists=exists, canary_weight=weight, mirror_percent=mirror, in_sync=in_sync)


@pytest.mark.parametrize(
    ("before", "action", "route"),
    [
        (status(20), traffic(50), found(20)),  # next step
        (status(0, 100), traffic(20), found(0, 100)),  # shadow -> first canary step
        (status(50), traffic(0), found(50)),  # rollback or promotion
        (status(0), traffic(0, 100), found(0)),  # shadow starts
    ],
)
def test_the_rollouts_own_moves_are_not_reported(before: ModelDeploymentStatus, action: SetTraffic,
                                                 route: RouteState) -> None:
    assert not route_was_edited(route, action, before)


@pytest.mark.parametrize(
    ("before", "action", "route"),
    [
        (status(20), traffic(20), found(70)),  # weight edited by hand during a step
        (status(20), traffic(20), found(20)),  # same weights, something else edited (e.g. a backend added)
        (status(0, 100), traffic(0, 100), found(0, 0)),  # mirror filter removed by hand
        (status(20), traffic(50), found(90)),  # edited by hand just before the step moved on
    ],
)
def test_hand_edits_are_reported(before: ModelDeploymentStatus, action: SetTraffic, route: RouteState) -> None:
    assert route_was_edited(route, action, before)


def test_in_sync_or_missing_routes_are_not_edits() -> None:
    assert not route_was_edited(found(20, in_sync=True), traffic(20), status(20))
    assert not route_was_edited(found(0, exists=False), traffic(20), status(0))
