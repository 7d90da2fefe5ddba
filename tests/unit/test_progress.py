"""Cold-machine progress: one line per component, its output in a log, the log named when it fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from e2e.stack.progress import StepFailed, run_step


def test_a_step_prints_one_line_and_keeps_its_output_in_a_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    chatty = "for i in range(300): print(f'go: downloading example.com/m{i} v1.0.0')"
    run_step("kube-apiserver v1.34.4", [sys.executable, "-c", chatty], key="kube-apiserver")
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split()[:2] == ["kube-apiserver", "v1.34.4"] and "(typically 2.8 min)" in line
    log = tmp_path / "logs" / "build-kube-apiserver.log"
    assert f"log: {log}" in line and log.read_text().count("go: downloading") == 300


def test_a_failed_step_says_where_its_log_is_and_shows_the_end_of_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    failing = "import sys; [print(f'line {i}') for i in range(40)]; sys.exit('proxy.golang.org: connection refused')"
    with pytest.raises(StepFailed) as failed:
        run_step("etcd v3.6.16", [sys.executable, "-c", failing], key="etcd")
    log = tmp_path / "logs" / "build-etcd.log"
    (line,) = capsys.readouterr().out.splitlines()
    assert "FAILED" in line and str(log) in line
    assert str(log) in str(failed.value) and "connection refused" in str(failed.value)
    assert "line 39" in str(failed.value) and "line 0\n" not in str(failed.value)  # the tail, not all of it
