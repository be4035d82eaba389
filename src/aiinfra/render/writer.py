"""Write a rendered tree safely, or compare it with what is on disk.

A render is built completely in memory first. :func:`write_tree` then, holding a lock:

1. **Lock**: ``fcntl.flock`` on ``<parent>/.<name>.lock`` (e.g. ``manifests/.dev.lock``). A second
   render of the same tree waits for the first, at most ``lock_timeout_s`` (60 s by default), then
   fails with :class:`RenderBusy`, one line. The lock file is removed by its holder before the
   lock is released (waiters check that the file they locked is still the one at the path); a
   holder killed with SIGKILL leaves the file behind, harmless: the kernel dropped the lock and
   the next render takes it and removes it.
2. **Recover and clean**: leftovers of earlier runs beside the target are removed: staging folders
   ``.<name>.new-*`` (never a complete tree) and retired trees ``.<name>.old-*`` (those of the old
   writer too, ``.<name>.old-<pid>``). If the target is missing while a retired tree exists (a run
   killed between the two renames of the fallback below), that tree is put back first.
3. **Hand edits**: every tree carries its render record, ``.aiinfra-render.sha256``, written as
   part of the tree (``sha256sum`` format, sorted by path; ``sha256sum -c`` checks a tree against
   it). A file on disk that would be overwritten with other bytes or deleted is refused unless
   ``force``: when its hash differs from the record (edited by hand), or when it is not in the
   record (untracked). Files that still hold what the last render wrote are replaced freely, and a
   file that already holds what this render writes is never in the way. A tree without a record
   (written by an older aiinfra, or not by aiinfra at all) cannot tell a stale render from a hand
   edit: every file that this render would change or delete is refused unless ``force``; an
   up-to-date tree without a record gains one without ``force``. A file deleted by hand is
   written again (nothing is lost).
4. **Stage**: the files are written into a fresh ``.<name>.new-<hex>`` folder beside the target
   with normal modes (folders ``0o755``, files ``0o644``, ``#!`` scripts ``0o755``), less what the
   umask takes away: a restrictive umask (``077``) is respected, a permissive one (``000``) never
   makes a group- or world-writable tree. Files and folders are fsynced.
5. **Swap**: ``renameat2(RENAME_EXCHANGE)`` swaps the staging folder and the target in one step,
   so at every instant the target is either the whole old tree or the whole new one; the old tree
   (now at the staging name) is then deleted. Where the kernel or filesystem cannot exchange
   (ENOSYS, EINVAL, EOPNOTSUPP), the fallback renames the old tree to ``.<name>.old-<hex>``, the new
   one in, and only then deletes the old one: the old tree is never lost, and step 2 puts it back
   if a run dies between the two renames. A first render (no target yet) is a plain rename.

Any OSError on the way (ENOSPC, EROFS, EACCES ...) becomes :class:`DiskError`, one line naming the
path and the reason; the staging folder is removed and the previous tree is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiinfra.errors import WriteError
from aiinfra.render import Artifacts

#: The render record: ``<sha256>  <path>`` per rendered file, sorted by path; part of the tree.
RECORD = ".aiinfra-render.sha256"
LOCK_TIMEOUT_S = 60.0

# /usr/include/linux/fcntl.h: #define AT_FDCWD -100; /usr/include/linux/fs.h (and stdio.h):
# #define RENAME_EXCHANGE (1 << 1)
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: errnos of renameat2 that mean "this kernel or filesystem cannot exchange": use the fallback.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_MODE_DIR = 0o755
_MODE_FILE = 0o644
_MODE_SCRIPT = 0o755
_RECORD_LINE = re.compile(r"([0-9a-f]{64})  (.+)")


class DiskError(WriteError, OSError):
    """The OS refused a step (disk full, read-only, permission ...); the previous tree is intact.

    An OSError too, with the errno and file of the failure, for callers that handle OSError.
    """

    def __init__(self, message: str, cause: OSError):
        super().__init__(message)
        self.message = message
        self.errno, self.strerror, self.filename = cause.errno, cause.strerror, cause.filename

    def __str__(self) -> str:
        return self.message


class RenderBusy(WriteError):
    """Another render holds the tree's lock for longer than the wait allows."""


class HandEdits(WriteError):
    """Files in the tree that the write would overwrite or delete were not written by the last render."""

    def __init__(self, target: Path, changes: LocalChanges):
        self.target = target
        self.changes = changes
        lines = [f"{_shown(target)}: {len(changes.edited) + len(changes.untracked)} file(s) not written by "
                 f"the last render would be lost; nothing written"]
        if not changes.recorded:
            lines.append(f"  (no render record {RECORD}: the tree predates it or was not written by aiinfra, "
                         f"so a stale file cannot be told from a hand edit)")
        for label, items in (("edited", changes.edited), ("untracked", changes.untracked)):
            lines += [f"  {label}: {p}" for p in items[:20]]
            if len(items) > 20:
                lines.append(f"  ... and {len(items) - 20} more {label}")
        lines.append("fix: move the change into the blueprint (or a template) and render again, or pass "
                     "--force to overwrite them")
        super().__init__("\n".join(lines))


@dataclass
class TreeDiff:
    added: list[str] = field(default_factory=list)  # rendered, missing on disk
    removed: list[str] = field(default_factory=list)  # on disk, not rendered (stale)
    changed: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class LocalChanges:
    """Files on disk the write would overwrite with other bytes or delete, not from the last render."""

    edited: list[str] = field(default_factory=list)  # in the record, bytes differ from it
    untracked: list[str] = field(default_factory=list)  # not in the record (or no record)
    recorded: bool = True  # the tree had a readable render record

    @property
    def clean(self) -> bool:
        return not (self.edited or self.untracked)


@dataclass
class Written:
    files: int  # files written, the record included
    overwritten: LocalChanges  # what ``force`` replaced or deleted (empty without force)


# ------------------------------------------------------------------ the record


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_text(artifacts: Artifacts) -> str:
    """The render record of ``artifacts``: ``sha256sum`` lines, sorted by path."""
    return "".join(f"{_sha256(text.encode('utf-8'))}  {path}\n"
                   for path, text in sorted(artifacts.items()) if path != RECORD)


def with_record(artifacts: Artifacts) -> Artifacts:
    """The tree as written: ``artifacts`` plus their render record, sorted by path."""
    return dict(sorted({**artifacts, RECORD: record_text(artifacts)}.items()))


def parse_record(text: str) -> dict[str, str] | None:
    """``{path: sha256}`` of a render record, or None when it is not one."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _RECORD_LINE.fullmatch(line)
        if m is None:
            return None
        out[m.group(2)] = m.group(1)
    return out


def read_record(target: Path) -> dict[str, str] | None:
    path = target / RECORD
    try:
        return parse_record(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


# ------------------------------------------------------------------ reading a tree


def files_on_disk(target: Path) -> dict[str, Path]:
    if not target.is_dir():
        return {}
    return {p.relative_to(target).as_posix(): p for p in sorted(target.rglob("*")) if p.is_file()}


def diff_tree(target: Path, artifacts: Artifacts) -> TreeDiff:
    """What differs between ``target`` and the tree :func:`write_tree` would write (record included)."""
    expected = with_record(artifacts)
    disk = files_on_disk(target)
    d = TreeDiff()
    for path, text in expected.items():
        if path not in disk:
            d.added.append(path)
        elif disk[path].read_bytes() != text.encode("utf-8"):
            d.changed.append(path)
    d.removed = [p for p in disk if p not in expected]
    return d


def _entries(target: Path) -> dict[str, Path]:
    """Every non-folder entry below ``target`` (files, links, sockets ...), by relative path."""
    out: dict[str, Path] = {}
    for folder, dirs, names in os.walk(target):
        base = Path(folder)
        for name in names + [d for d in dirs if (base / d).is_symlink()]:
            out[(base / name).relative_to(target).as_posix()] = base / name
    return dict(sorted(out.items()))


def local_changes(target: Path, artifacts: Artifacts) -> LocalChanges:
    """Files in ``target`` that writing ``artifacts`` would lose and that the last render did not write."""
    record = read_record(target)
    out = LocalChanges(recorded=record is not None)
    if not target.is_dir():
        return out
    for rel, path in _entries(target).items():
        if rel == RECORD:
            continue
        new = artifacts.get(rel)
        regular = path.is_file() and not path.is_symlink()
        data = path.read_bytes() if regular else None
        if new is not None and data == new.encode("utf-8"):
            continue  # already what this render writes: nothing is lost
        if record is None or rel not in record:
            (out.edited if record is None and new is not None else out.untracked).append(rel)
        elif data is None or _sha256(data) != record[rel]:
            out.edited.append(rel)
    return out


# ------------------------------------------------------------------ writing


def write_tree(target: Path, artifacts: Artifacts, *, force: bool = False,
               lock_timeout_s: float = LOCK_TIMEOUT_S) -> Written:
    """Replace ``target`` with exactly ``artifacts`` plus their render record; all or nothing.

    Refuses (:class:`HandEdits`) to lose files the last render did not write unless ``force``;
    see the module docstring for the lock, the swap and the errors.
    """
    target = target.resolve()
    tree = with_record(artifacts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _disk_error(target, exc) from exc
    with _locked(target, lock_timeout_s):
        try:
            _recover(target)
            if target.exists() and not target.is_dir():
                raise WriteError(f"{_shown(target)} is not a folder; move it away and render again")
            changes = local_changes(target, tree)
        except OSError as exc:
            raise _disk_error(target, exc) from exc
        if not changes.clean and not force:
            raise HandEdits(target, changes)
        _swap_in(target, tree)
    return Written(len(tree), changes if force else LocalChanges())


def _swap_in(target: Path, tree: Artifacts) -> None:
    staging = _new_name(target, "new")
    try:
        _stage(staging, tree)
        if not target.exists():
            os.rename(staging, target)
        else:
            try:
                _exchange(staging, target)
            except OSError as exc:
                if exc.errno not in _NO_EXCHANGE:
                    raise
                _replace_by_renames(staging, target)
    except DiskError:
        _remove(staging)
        raise
    except OSError as exc:
        _remove(staging)
        raise _disk_error(target, exc) from exc
    except BaseException:
        _remove(staging)
        raise
    # The new tree is in place: what follows is best effort (leftovers go at the next write).
    with contextlib.suppress(OSError):
        _fsync_dir(target.parent)
    _remove(staging)  # after an exchange: the old tree


def _stage(staging: Path, tree: Artifacts) -> None:
    """Write ``tree`` into the new folder ``staging`` with normal modes, durably."""
    mask = _umask()
    os.mkdir(staging, 0o700)
    folders = {staging}
    for rel, text in tree.items():
        path = staging / rel
        for parent in reversed(path.relative_to(staging).parents[:-1]):
            folder = staging / parent
            if folder not in folders:
                folder.mkdir(0o700, exist_ok=True)
                folders.add(folder)
        path.write_text(text, encoding="utf-8")
        os.chmod(path, (_MODE_SCRIPT if text.startswith("#!") else _MODE_FILE) & ~mask)
        _fsync(path, os.O_RDONLY)
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        os.chmod(folder, _MODE_DIR & ~mask)
        _fsync_dir(folder)


def _replace_by_renames(staging: Path, target: Path) -> None:
    """The fallback swap: the old tree goes to ``.<name>.old-*`` until the new one is in place."""
    retired = _new_name(target, "old")
    os.rename(target, retired)
    try:
        os.rename(staging, target)
    except BaseException as exc:  # an OSError, or Ctrl-C between the renames: put the old tree back
        try:
            os.rename(retired, target)
        except OSError:
            if not isinstance(exc, OSError):
                raise
            raise DiskError(f"cannot write {_shown(target)}: {exc.strerror or exc}; the previous tree is "
                            f"kept at {_shown(retired)} and the next render puts it back", exc) from exc
        raise
    # ``staging`` is free again: the retired tree takes that name, which marks it as junk.
    with contextlib.suppress(OSError):
        os.rename(retired, staging)


def _libc_renameat2() -> Callable[..., int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _libc_renameat2()


def _exchange(a: Path, b: Path) -> None:
    """Swap ``a`` and ``b`` in one step (Linux ``renameat2(..., RENAME_EXCHANGE)``)."""
    if _RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library", str(a))
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


# ------------------------------------------------------------------ leftovers


def _leftover(target: Path, kind: str) -> re.Pattern[str]:
    # ours: .<name>.<kind>-<12 hex>; the old writer's: .<name>.new-<8 of mkdtemp>, .<name>.old-<pid>
    legacy = r"[a-z0-9_]{8}" if kind == "new" else r"\d+"
    return re.compile(rf"\.{re.escape(target.name)}\.{kind}-(?:[0-9a-f]{{12}}|{legacy})")


def leftovers(target: Path) -> dict[str, list[Path]]:
    """Staging (``new``) and retired (``old``) folders of earlier writes beside ``target``."""
    out: dict[str, list[Path]] = {"new": [], "old": []}
    if not target.parent.is_dir():
        return out
    for entry in sorted(target.parent.iterdir()):
        for kind, pattern in (("new", _leftover(target, "new")), ("old", _leftover(target, "old"))):
            if pattern.fullmatch(entry.name):
                out[kind].append(entry)
    return out


def _recover(target: Path) -> None:
    """Put a retired tree back when the target is missing, then remove every leftover."""
    found = leftovers(target)
    if not os.path.lexists(target) and found["old"]:
        newest = max(found["old"], key=lambda p: p.lstat().st_ctime_ns)  # a rename sets ctime
        os.rename(newest, target)
        found["old"].remove(newest)
    for path in found["new"] + found["old"]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def recover(target: Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
    """Under the lock, undo what a killed write left beside ``target`` (``write_tree`` does this first)."""
    target = target.resolve()
    if not target.parent.is_dir():
        return
    with _locked(target, lock_timeout_s):
        try:
            _recover(target)
        except OSError as exc:
            raise _disk_error(target, exc) from exc


# ------------------------------------------------------------------ the lock


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def _locked(target: Path, timeout_s: float) -> Iterator[None]:
    path = lock_path(target)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _disk_error(target, exc) from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RenderBusy(
                            f"another render is writing {_shown(target)} (it holds {_shown(path)}); waited "
                            f"{timeout_s:g} s, nothing written; run it again when that one ends") from None
                    time.sleep(0.05)
            # The holder before us may have removed the file: then our lock is on a dead inode.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # while still holding it: see the module docstring
            os.close(fd)
        return


# ------------------------------------------------------------------ small helpers


def _new_name(target: Path, kind: str) -> Path:
    """A fresh name ``.<name>.<kind>-<12 hex>`` beside ``target`` (unique while the lock is held)."""
    while True:
        path = target.parent / f".{target.name}.{kind}-{secrets.token_hex(6)}"
        if not os.path.lexists(path):
            return path


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when below it (``manifests/dev``), else absolute."""
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _disk_error(target: Path, exc: OSError) -> DiskError:
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" ({_shown(Path(os.fsdecode(exc.filename)))})" if exc.filename else ""
    return DiskError(f"cannot write {_shown(target)}: {reason}{where}; nothing written, the previous "
                     f"tree is intact", exc)
