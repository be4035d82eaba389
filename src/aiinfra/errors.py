"""Problems are values: every user mistake becomes a Problem that names the file and key path.

The CLI prints them; nothing in the library raises a bare traceback for bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


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
        where = f"{file}:{self.line}" if self.line else file
        text = f"{where}: {self.key_path}: {self.level.value}[{self.id}]: {self.message}"
        if self.hint:
            text += f" (fix: {self.hint})"
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
