"""Every option's help says in `--help` what its text says: rich reads `[...]` as markup and
drops it, so a help text like "[default: X]" used to print as " ."; error messages likewise."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

from ecomwatch.cli.main import app


def _commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of a (Typer) group, with the names that reach it."""
    if hasattr(group, "commands"):
        for name, command in group.commands.items():
            yield from _commands(command, (*path, name))
    else:
        yield path, group


def _words(text: str) -> str:
    """The text without rich's box drawing and line breaks: words separated by one space."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_every_option_help_is_printed_whole() -> None:
    runner = CliRunner()
    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root):
        shown = _words(runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}).output)
        for param in command.params:
            help_text = getattr(param, "help", None)
            if help_text:
                assert _words(help_text) in shown, (path, param.name, help_text)
                checked += 1
    assert checked > 100


def test_an_error_quoting_toml_is_printed_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An error message naming `[[rule]]` keeps it (rich would drop it as markup)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("foo = 1\n")
    result = CliRunner().invoke(app, ["rules", "validate", str(bad)])
    assert result.exit_code != 0
    assert "rules go in [[rule]]" in _words(result.output)
