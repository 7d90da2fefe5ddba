"""The operator image's Dockerfile, checked without a container engine (these machines have none).

A small instruction parser (comments, line continuations, exec-form JSON) is enough for what matters:
a pinned base, a non-root numeric user that matches the chart, runtime-only install, and an
ENTRYPOINT that names a real console script with a subcommand and flags the CLI accepts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


def parse(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        if full:
            word, _, args = full.partition(" ")
            out.append((word.upper(), args.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return parse(DOCKERFILE.read_text())


def _all(instructions: list[tuple[str, str]], word: str) -> list[str]:
    return [args for w, args in instructions if w == word]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(x, str) for x in value), f"not exec form: {args}"
    return value


def test_parser_handles_continuations_and_comments() -> None:
    text = "# c\nFROM a:1\nRUN x \\\n  # inner\n  && y\nUSER 1\n"
    assert parse(text) == [("FROM", "a:1"), ("RUN", "x && y"), ("USER", "1")]


def test_base_image_is_pinned(instructions: list[tuple[str, str]]) -> None:
    froms = _all(instructions, "FROM")
    assert froms, "no FROM"
    for image in froms:
        ref = image.split()[0]
        if "@sha256:" in ref:
            continue
        name, _, tag = ref.rpartition(":")
        assert name and "/" not in tag, f"FROM {ref} has no tag"
        assert tag != "latest", f"FROM {ref} uses latest"
        # A full patch version (3.11.13), not a moving one (3.11, 3-slim).
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"FROM {ref}: pin a full version tag"


def test_runs_as_numeric_non_root_user_matching_the_chart(instructions: list[tuple[str, str]]) -> None:
    users = _all(instructions, "USER")
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), "a numeric UID lets the kubelet enforce runAsNonRoot"
    assert int(user) != 0 and (not group or int(group) != 0)
    values = yaml.safe_load((REPO / "charts/modelship/values.yaml").read_text())
    assert int(user) == values["runAsUser"], "the chart's runAsUser must be the image's user"
    # USER must come after the install: everything before it runs as root on purpose.
    words = [w for w, _ in instructions]
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")


def test_installs_runtime_only_without_cache(instructions: list[tuple[str, str]]) -> None:
    runs = " ; ".join(_all(instructions, "RUN"))
    installs = re.findall(r"pip install ([^;&]*)", runs)
    assert installs, "no pip install"
    for args in installs:
        words = shlex.split(args)
        assert "--no-cache-dir" in words
        assert "." in words, f"pip install {args}: install the project itself"
        assert not any("[" in w for w in words), f"pip install {args}: no extras (dev tools) in the image"


def test_read_only_root_filesystem_friendly(instructions: list[tuple[str, str]]) -> None:
    env = " ".join(_all(instructions, "ENV"))
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)


def test_copied_sources_exist(instructions: list[tuple[str, str]]) -> None:
    for args in _all(instructions, "COPY"):
        *sources, _dest = [w for w in shlex.split(args) if not w.startswith("--")]
        for src in sources:
            assert (REPO / src).exists(), f"COPY {src}: not in the repository"


def test_exposed_ports_are_the_charts(instructions: list[tuple[str, str]]) -> None:
    exposed = {int(p.split("/")[0]) for args in _all(instructions, "EXPOSE") for p in args.split()}
    values = yaml.safe_load((REPO / "charts/modelship/values.yaml").read_text())
    assert {values["metrics"]["port"], values["livenessProbe"]["port"]} <= exposed


def test_entrypoint_is_a_declared_console_script_and_subcommand(instructions: list[tuple[str, str]]) -> None:
    entry = _all(instructions, "ENTRYPOINT")
    assert len(entry) == 1, "exactly one ENTRYPOINT"
    argv = _exec_form(entry[0])  # exec form: signals reach the operator (no shell as PID 1)
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts, f"{argv[0]} is not in [project.scripts] {sorted(scripts)}"
    assert len(argv) >= 2, "the ENTRYPOINT must name the subcommand"
    script = VENV_BIN / argv[0]
    assert script.exists(), f"{script} missing: is the package installed in the venv?"
    # The real CLI accepts the subcommand (argparse exits 2 on an unknown one).
    proc = subprocess.run(
        [str(script), *argv[1:], "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert argv[1] in proc.stdout.split("\n")[0], proc.stdout


def test_chart_arguments_are_accepted_by_the_cli(instructions: list[tuple[str, str]]) -> None:
    """The Deployment passes flags to the ENTRYPOINT; each must be one `modelship run` knows."""
    argv = _exec_form(_all(instructions, "ENTRYPOINT")[0])
    proc = subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:], "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    known = set(re.findall(r"(--[a-z][a-z-]*)", proc.stdout))
    template = (REPO / "charts/modelship/templates/deployment.yaml").read_text()
    args_block = template.split("args:", 1)[1].split("env:", 1)[0]
    flags = set(re.findall(r"^\s*- (--[a-z][a-z-]*)", args_block, re.MULTILINE))
    assert flags >= {"--liveness", "--namespace", "--all-namespaces"}, flags
    assert flags <= known, f"flags the CLI does not accept: {sorted(flags - known)}"
