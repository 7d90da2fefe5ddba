"""`modelship` command line: generators print, `run` hands its options to kopf."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
from modelship import cli


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("crds", "docs", "run", "validate"))


def test_namespace_and_all_namespaces_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        cli.main(["run", "--namespace", "ml", "--all-namespaces"])


@pytest.mark.parametrize(
    ("argv", "clusterwide", "namespaces", "liveness"),
    [
        (["run"], True, [], cli.DEFAULT_LIVENESS),
        (["run", "-A", "--liveness", ""], True, [], None),
        (
            ["run", "-n", "ml", "-n", "team-*", "--liveness", "http://0.0.0.0:9090/healthz", "-v"],
            False,
            ["ml", "team-*"],
            "http://0.0.0.0:9090/healthz",
        ),
    ],
)
def test_run_passes_options_to_kopf(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    clusterwide: bool,
    namespaces: list[str],
    liveness: str | None,
) -> None:
    calls: dict[str, Any] = {}
    fake = types.ModuleType("kopf")
    fake.configure = lambda **kw: calls.setdefault("configure", kw)  # type: ignore[attr-defined]
    fake.run = lambda **kw: calls.setdefault("run", kw)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kopf", fake)
    monkeypatch.setitem(sys.modules, "modelship.handlers", types.ModuleType("modelship.handlers"))
    assert cli.main(argv) == 0
    run = calls["run"]
    assert run["clusterwide"] is clusterwide and run["namespaces"] == namespaces
    assert run["liveness_endpoint"] == liveness and run["standalone"] is True
    assert calls["configure"] == {"verbose": "-v" in argv}
