"""The docs stay true: every `ecomwatch …` command line in the README, CONTRIBUTING and docs/
names a real command and real options, and the sessions of the README's tour and the
detection walk-through, rerun, print what they show."""

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
TOUR_DIR = "/tmp/tour"  # where the docs' sessions were run


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)


def _command_lines(path: Path) -> list[str]:
    """Lines of code blocks that run ecomwatch (`$ ` prompts and `.venv/bin/` prefixes removed)."""
    found = []
    for kind, block in re.findall(r"^```([a-z]*)\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        for line in block.splitlines():
            if kind == "console" and not line.startswith("$ "):
                continue  # output, not a command
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


RERUN = {"README.md": ROOT / "README.md", "detection.md": ROOT / "docs" / "detection.md"}
# Real logs the README's web walk-through reads, copied into the session's directory.
SHARED_LOGS = ROOT.parent / "shared" / "data" / "accesslogs"
COPIED = {"scan.log": "scan_attack_2024__AgungBahtiarr_webserver_attack_clasification_access.log"}


def _copy_shared_logs(directory: Path) -> None:
    for name, original in COPIED.items():
        (directory / name).write_bytes((SHARED_LOGS / original).read_bytes())


def _command(line: str) -> str:
    """`$ ecomwatch … | wc -l   # a comment` → the command."""
    return line[2:].split("   #", 1)[0].strip()


def _sessions(path: Path) -> list[tuple[str, str]]:
    """The `$ command` lines of a doc's console blocks, in order, each with the output shown."""
    steps: list[tuple[str, str]] = []
    for block in re.findall(r"^```console\n(.*?)^```", path.read_text(), flags=re.S | re.M):
        for line in block.splitlines(keepends=True):
            if line.startswith("$ "):
                steps.append((_command(line), ""))
            else:
                steps[-1] = (steps[-1][0], steps[-1][1] + line)
    return steps


def _run(command: str, directory: Path) -> str:
    """A documented command run as a user would, in `directory`; what it printed."""
    assert shlex.split(command)[0] == "ecomwatch"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("COLUMNS", None)
    # Without pipefail: `… | head` closes the pipe early, which click reports with exit code 1;
    # what the command printed is what counts.
    ran = subprocess.run(
        ["bash", "-c", command],
        cwd=directory, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, (command, ran.stderr)
    printed = (ran.stdout + ran.stderr).replace(str(directory), TOUR_DIR)
    return "".join(line.rstrip() + "\n" for line in printed.splitlines())


@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(RERUN))
def test_a_docs_session_prints_what_it_shows(name, tmp_path):
    if name == "README.md":
        if not SHARED_LOGS.is_dir():
            pytest.skip("the README's web walk-through reads ../shared/data/accesslogs")
        _copy_shared_logs(tmp_path)
    steps = _sessions(RERUN[name])
    assert len(steps) >= 4 and steps[0][0].startswith("ecomwatch simulate")
    for command, shown in steps:
        assert _normalized(_run(command, tmp_path)) == _normalized(shown), command


def regenerate(path: Path, directory: Path) -> None:
    """Rewrite the output shown in a doc's console blocks with a real run's (in `directory`,
    which should be TOUR_DIR so that paths read the same): `python -m tests.test_docs DOC`."""
    directory.mkdir(parents=True, exist_ok=True)
    _copy_shared_logs(directory)

    def rerun(block: re.Match[str]) -> str:
        commands = [line for line in block[1].splitlines(keepends=True) if line.startswith("$ ")]
        outputs = [
            line + _run(line[2:].split("   #", 1)[0].strip(), directory) for line in commands
        ]
        return "```console\n" + "".join(outputs) + "```"

    text = re.sub(r"^```console\n(.*?)^```", rerun, path.read_text(), flags=re.S | re.M)
    path.write_text(text)


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]), Path(TOUR_DIR))
