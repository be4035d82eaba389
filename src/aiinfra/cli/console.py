"""The one way the CLI makes a rich Console: soft wrap (long lines are not cut) and no emoji codes
(rich would print ``file.yaml:100: key`` as ``file.yaml💯 key``: ``:100:`` is an emoji code).

Colours and cursor moves only on a terminal: rich writes no escape sequence to a pipe, a file or
TERM=dumb (and no colour under NO_COLOR); FORCE_COLOR or TTY_COMPATIBLE=1 force them. Live displays
ask :func:`interactive` and print plain progress lines otherwise."""

from __future__ import annotations

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=True, emoji=False)


def interactive(c: Console) -> bool:
    """Whether ``c`` may redraw lines in place (a live display), or must print plain lines."""
    return c.is_terminal and not c.is_dumb_terminal
