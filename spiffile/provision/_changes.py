"""The changes one producer operation makes to a root, and how to take them back.

Every write to a root happens under its lock (:meth:`Root.lock`), and every
write goes through a :class:`Changes` that first saves what it replaces.  When
an operation fails part way (a full disk, a file system turned read-only, a
permission taken away, any exception), the lock's owner undoes the recorded
steps in reverse order.  The root then holds exactly the files, contents,
modes, groups and key modification times it held before, so a failed command
leaves nothing half done.  Walking the steps backwards visits the same states
the operation went through, so the crash-ordering rule (every key on disk is
bound) holds during the undo too.

Three things are deliberately not undone: the sequence high-water mark (a
number that was published must stay behind us, PROFILE.md §4.4), a key file
narrowed to ``0600`` because others could read it (undoing that would widen
a private key's access), and a link or other non-regular file that a removal
deleted (it is never read, so it cannot be put back).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spiffile.files import (
    atomic_write,
    make_directory,
    open_regular,
    read_descriptor,
    remove_directory,
    remove_file,
    rename_file,
    set_access,
    set_directory_access,
    set_times,
    touch,
)

__all__ = ["Changes"]


@dataclass(frozen=True)
class _Saved:
    """A regular file as it was: what putting it back needs."""

    data: bytes
    mode: int
    gid: int
    atime_ns: int
    mtime_ns: int


def _save(path: Path) -> _Saved | None:
    try:
        with open_regular(path) as (fd, st):
            data = read_descriptor(fd, path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return _Saved(data, stat.S_IMODE(st.st_mode), st.st_gid, st.st_atime_ns, st.st_mtime_ns)


def _put_back(path: Path, saved: _Saved | None) -> None:
    if saved is None:
        if os.path.lexists(path):
            remove_file(path)
        return
    group = saved.gid if saved.gid != os.getegid() else None
    atomic_write(path, saved.data, mode=saved.mode, group=group)
    set_times(path, saved.atime_ns, saved.mtime_ns)


class Changes:
    """The undo log of one operation (see the module docstring)."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def write(self, path: Path, data: bytes, *, mode: int, group: int | None = None) -> None:
        """Replace *path* atomically (``files.atomic_write``), remembering the old file."""
        saved = _save(path)
        atomic_write(path, data, mode=mode, group=group)
        self._undo.append(lambda: _put_back(path, saved))

    def remove(self, path: Path) -> None:
        """Unlink *path*, remembering its content.

        Anything but a regular file (a link or a FIFO someone planted) is
        removed for good: it is never read, so it cannot be put back.
        """
        if not stat.S_ISREG(os.lstat(path).st_mode):
            remove_file(path)
            return
        saved = _save(path)
        remove_file(path)
        self._undo.append(lambda: _put_back(path, saved))

    def rename(self, source: Path, target: Path) -> None:
        """Rename *source* over *target*, remembering both."""
        saved_source, saved_target = _save(source), _save(target)

        def undo() -> None:
            _put_back(source, saved_source)
            _put_back(target, saved_target)

        rename_file(source, target)
        self._undo.append(undo)

    def make_dir(self, path: Path, mode: int, *, group: int | None = None) -> bool:
        """Create directory *path* (``files.make_directory``); True if it was created."""
        created = make_directory(path, mode, group=group)
        if created:
            self._undo.append(lambda: remove_directory(path))
        return created

    def remove_dir(self, path: Path) -> None:
        """Remove the empty directory *path*, remembering its mode and group."""
        st = os.lstat(path)
        remove_directory(path)
        mode, gid = stat.S_IMODE(st.st_mode), st.st_gid
        self._undo.append(lambda: _recreate_dir(path, mode, gid))

    def set_dir_access(self, path: Path, mode: int, *, group: int) -> None:
        """Give directory *path* *mode* and *group*, remembering the old ones."""
        st = os.lstat(path)
        set_directory_access(path, mode, group=group)
        old_mode, old_gid = stat.S_IMODE(st.st_mode), st.st_gid
        self._undo.append(lambda: set_directory_access(path, old_mode, group=old_gid))

    def set_file_access(self, fd: int, path: Path, mode: int, *, group: int) -> None:
        """Give open file *fd* (named *path*) *mode* and *group*, remembering the old ones."""
        st = os.fstat(fd)
        set_access(fd, path, mode, group=group)
        old_mode, old_gid = stat.S_IMODE(st.st_mode), st.st_gid

        def undo() -> None:
            with open_regular(path) as (again, _st):
                set_access(again, path, old_mode, group=old_gid)

        self._undo.append(undo)

    def touch(self, fd: int, path: Path) -> None:
        """Set open file *fd*'s modification time to now, remembering the old times."""
        st = os.fstat(fd)
        touch(fd, path)
        self._undo.append(lambda: set_times(path, st.st_atime_ns, st.st_mtime_ns))

    def undo(self) -> None:
        """Take back every recorded change, newest first; raises the first failure."""
        while self._undo:
            self._undo.pop()()

    def forget(self) -> None:
        """The operation succeeded: nothing is to be undone."""
        self._undo.clear()


def _recreate_dir(path: Path, mode: int, gid: int) -> None:
    make_directory(path, mode, group=gid if gid != os.getegid() else None)
