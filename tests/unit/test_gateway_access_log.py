"""The gateway access log tailer: which pod the gateway sent each request to, as the generator attributes it."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.stack.accesslog import ID_FIELD, AccessLog


def _line(request_id: str, upstream: str = "10.77.0.5:8000", **extra: object) -> str:
    return json.dumps({ID_FIELD: request_id, "ServiceAddr": upstream, "DownstreamStatus": 200, **extra}) + "\n"


def test_a_request_is_attributed_to_the_upstream_its_line_names(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(_line("old"))  # before the tailer: not ours
    log = AccessLog(path, poll_s=0.005)
    try:
        with path.open("a") as out:
            out.write(_line("a", "10.77.0.9:8000"))
            out.write(json.dumps({"ServiceAddr": "10.77.0.1:8000"}) + "\n")  # a request without our header
            out.write("not json\n")
            out.write(_line("b", ""))  # the gateway answered itself (no upstream)
        assert log.upstream("a", timeout=2) == "10.77.0.9:8000"
        assert log.upstream("b", timeout=2) == ""
        assert log.upstream("old", timeout=0.05) is None
    finally:
        log.close()


def test_a_line_written_in_two_parts_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text("")
    log = AccessLog(path, poll_s=0.005)
    try:
        line = _line("split", "10.77.0.3:8000")
        with path.open("a") as out:
            out.write(line[:20])
            out.flush()
            assert log.upstream("split", timeout=0.1) is None
            out.write(line[20:])
        assert log.upstream("split", timeout=2) == "10.77.0.3:8000"
    finally:
        log.close()


def test_a_log_truncated_by_a_new_gateway_start_is_read_from_its_top(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    path.write_text(_line("x") * 50)
    log = AccessLog(path, poll_s=0.005)
    try:
        path.write_text(_line("after-restart", "10.77.0.4:8000"))
        assert log.upstream("after-restart", timeout=2) == "10.77.0.4:8000"
    finally:
        log.close()
