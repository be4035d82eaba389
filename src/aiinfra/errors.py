"""Problems are values: every user mistake becomes a Problem that names the file and key path.

The CLI prints them; nothing in the library raises a bare traceback for bad input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_SHOWN = 400  # characters of one part of a problem line (a value echoed in a message can be 64k)


def one_line(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` safe for one line of a terminal: control characters escaped, the middle of an
    overlong text cut (a problem line never spans lines or screens)."""
    text = _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)
    if len(text) <= limit:
        return text
    keep = limit // 2 - 20
    return f"{text[:keep]}...({len(text) - 2 * keep:,} characters)...{text[-keep:]}"


class Level(str, Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding about a blueprint.

    ``id`` is stable (documented in docs/validation.md) so that a named warning can be silenced
    in the blueprint (``silence: [id]``); errors can never be silenced.
    ``path`` is a tuple of keys/indices below ``aiinfra:cluster``.
    """

    path: tuple[str | int, ...]
    id: str
    message: str
    level: Level = Level.ERROR
    hint: str = ""
    line: int | None = field(default=None, compare=False)

    @property
    def key_path(self) -> str:
        return format_path(self.path)

    def to_dict(self, file: str) -> dict:
        return {
            "file": file,
            "line": self.line,
            "path": self.key_path,
            "id": self.id,
            "level": self.level.value,
            "message": self.message,
            "hint": self.hint,
        }

    def format(self, file: str) -> str:
        where = f"{one_line(file)}:{self.line}" if self.line else one_line(file)
        text = f"{where}: {one_line(self.key_path)}: {self.level.value}[{self.id}]: {one_line(self.message)}"
        if self.hint:
            text += f" (fix: {one_line(self.hint)})"
        return text


ROOT_KEY = "aiinfra:cluster"


def format_path(path: tuple[str | int, ...]) -> str:
    """``("node_groups", 0, "hosts")`` -> ``aiinfra:cluster.node_groups[0].hosts``."""
    out = ROOT_KEY
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class AiinfraError(Exception):
    """Base class of errors the CLI reports without a traceback."""

    exit_code = 1


class BlueprintError(AiinfraError):
    """The blueprint cannot be used: carries every problem found, all at once."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.format(file) for p in problems))


class UsageError(AiinfraError):
    """Bad command-line input (unknown stack, unknown model name ...)."""

    exit_code = 2


class WriteError(AiinfraError):
    """A rendered tree was not written (disk full, read-only, another render holds the lock, hand
    edits in the way); the previous tree is intact. :mod:`aiinfra.render.writer` has the kinds."""
