"""Tables for people and for logs: on a terminal, fitted to its width; elsewhere (a CI log, a
cron mail, a pipe) at their natural width, so that no path, error or sequence number is cut."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

LOG_WIDTH = 10_000  # wide enough for any row; a table is only as wide as its content


def print_table(console: Console, table: Table) -> None:
    if console.is_terminal:
        console.print(table)
        return
    fitted = console.width
    console.width = LOG_WIDTH
    try:
        console.print(table, crop=False)
    finally:
        console.width = fitted


def error_line(message: object) -> str:
    """An error for a console: "error:" in red, then the message as it is (a message quoting
    TOML such as `[[rule]]` or `[engine]` is not read as markup and dropped)."""
    return f"[red]error:[/] {escape(str(message))}"
