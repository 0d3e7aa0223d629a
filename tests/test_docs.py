"""The docs stay true: every `ecomwatch …` command line in the README, CONTRIBUTING and docs/
names a real command and real options, and the README's tour, rerun, prints what it shows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from ecomwatch.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
TOUR_DIR = "/tmp/tour"  # where the README's tour was run


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def _command_lines(path: Path) -> list[str]:
    """Lines of code blocks that run ecomwatch (`$ ` prompts and `.venv/bin/` prefixes removed)."""
    found = []
    for block in _code_blocks(path.read_text()):
        for line in block.splitlines():
            line = line.removeprefix("$ ").strip().removeprefix(".venv/bin/")
            if line.startswith("ecomwatch "):
                found.append(line)
    return found


def _check(line: str, root: Any) -> str | None:
    """What is wrong with one documented command line, or None."""
    words = line.split("#", 1)[0].split("|", 1)[0].split()[1:]
    command = root
    while hasattr(command, "commands") and words and words[0] in command.commands:
        command = command.commands[words.pop(0)]
    if command is root:
        return f"no such command: {line}"
    known = {"--help", *(opt for p in command.params for opt in (*p.opts, *p.secondary_opts))}
    for word in words:
        option = re.match(r"\[?(--[a-z][a-z-]*)", word)
        if option and option[1] not in known:
            return f"{option[1]} is not an option of `{command.name}`: {line}"
    return None


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_documented_commands_exist(path):
    assert path.exists(), path
    root = typer.main.get_command(app)
    lines = _command_lines(path)
    problems = [p for p in (_check(line, root) for line in lines) if p]
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_wrong_command():
    root = typer.main.get_command(app)
    assert _check("ecomwatch run x.csv --lake l --alerts a.jsonl", root) is None
    assert _check("ecomwatch bench-serve --seconds 3", root)
    assert _check("ecomwatch run x.csv --lakes l", root)


def _normalized(text: str) -> list[str]:
    """Lines with numbers masked and runs of spaces and rules collapsed: timings, sizes and
    column widths vary from run to run; words, order and structure must not."""
    lines = []
    for line in text.splitlines():
        line = re.sub(r"\d[\d,.]*", "#", line)
        line = re.sub(r"([━─═ ])\1+", r"\1", line).strip()
        if line:
            lines.append(line)
    return lines


def _tour() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A five-minute tour", 1)[1]
    block = _code_blocks(section)[0]
    steps: list[tuple[str, str]] = []
    for line in block.splitlines(keepends=True):
        if line.startswith("$ "):
            steps.append((line[2:].strip(), ""))
        else:
            steps[-1] = (steps[-1][0], steps[-1][1] + line)
    return steps


@pytest.mark.integration
def test_the_readme_tour_prints_what_it_shows(tmp_path):
    steps = _tour()
    assert len(steps) >= 5 and steps[0][0].startswith("ecomwatch simulate")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("COLUMNS", None)
    for command, shown in steps:
        assert shlex.split(command)[0] == "ecomwatch"
        # Without pipefail: `… | head` closes the pipe early, which click reports with exit
        # code 1; what the command printed is compared below.
        ran = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert ran.returncode == 0, (command, ran.stderr)
        printed = (ran.stdout + ran.stderr).replace(str(tmp_path), TOUR_DIR)
        assert _normalized(printed) == _normalized(shown), command
