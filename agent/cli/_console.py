"""rich consoles for command output: a terminal's width, or wide enough when piped to a file."""

from __future__ import annotations

from rich.console import Console

PIPED_WIDTH = 160


def console(*, stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return probe if probe.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)
