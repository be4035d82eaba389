"""Write a rendered tree atomically, or compare it with what is on disk.

A render is built completely in memory first; it is then written into a fresh folder beside the
target and swapped in with renames, so a failure at any point leaves the previous tree intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from aiinfra.render import Artifacts


@dataclass
class TreeDiff:
    added: list[str] = field(default_factory=list)  # rendered, missing on disk
    removed: list[str] = field(default_factory=list)  # on disk, not rendered (stale)
    changed: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.added or self.removed or self.changed)


def files_on_disk(target: Path) -> dict[str, Path]:
    if not target.is_dir():
        return {}
    return {p.relative_to(target).as_posix(): p for p in sorted(target.rglob("*")) if p.is_file()}


def diff_tree(target: Path, artifacts: Artifacts) -> TreeDiff:
    disk = files_on_disk(target)
    d = TreeDiff()
    for path, text in artifacts.items():
        if path not in disk:
            d.added.append(path)
        elif disk[path].read_bytes() != text.encode("utf-8"):
            d.changed.append(path)
    d.removed = [p for p in disk if p not in artifacts]
    return d


def write_tree(target: Path, artifacts: Artifacts) -> None:
    """Replace ``target`` with exactly ``artifacts``; all or nothing."""
    target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=target.parent))
    try:
        for rel, text in artifacts.items():
            path = staging / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if text.startswith("#!"):
                path.chmod(0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException:
        if retired.exists():
            os.rename(retired, target)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(retired, ignore_errors=True)
