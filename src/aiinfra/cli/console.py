"""The one way the CLI makes a rich Console: soft wrap (long lines are not cut) and no emoji codes
(rich would print ``file.yaml:100: key`` as ``file.yaml💯 key``: ``:100:`` is an emoji code)."""

from __future__ import annotations

from rich.console import Console


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=True, emoji=False)
