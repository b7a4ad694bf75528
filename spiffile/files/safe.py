"""Safe file access: reads that never follow a link, atomic writes, directory modes.

Every file the library reads or writes goes through these functions: a file
in an identity root may be hostile (PROFILE.md §3.3), so reads open with
``O_NOFOLLOW``, accept regular files only and are size-capped, and writes are
atomic and created with their final mode.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from spiffile.errors import UnsafeRootError

__all__ = [
    "MAX_FILE_BYTES",
    "atomic_write",
    "ephemeral_pem_paths",
    "fsync_directory",
    "make_directory",
    "open_regular",
    "read_descriptor",
    "read_file",
    "read_regular",
    "remove_directory",
    "remove_file",
    "rename_file",
    "require_directory",
    "set_access",
    "set_directory_access",
    "set_times",
    "touch",
]

MAX_FILE_BYTES: Final = 128 * 1024 * 1024


def read_file(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a whole file, refusing one larger than *limit* (raises ``OSError``)."""
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{os.fspath(path)} is larger than {limit} bytes")
    return data


# -- files in an identity root: never follow a link, never touch a non-regular file --
#
# Every file in a root may have been planted by someone hostile (PROFILE.md §10):
# a symbolic link named ``key.next.pem`` that points at another service's key,
# a FIFO that blocks a reader forever.  The producer therefore opens each file
# with O_NOFOLLOW (the last component is never a link), checks with fstat on
# the descriptor it reads that it is a regular file, and changes modes with
# fchmod on that same descriptor, so nothing can be swapped in between.

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_NONBLOCK: Final = getattr(os, "O_NONBLOCK", 0)


def _refused(path: str | os.PathLike[str], what: str) -> UnsafeRootError:
    return UnsafeRootError(
        f"{os.fspath(path)} is {what}; refusing it (a file in an identity root must be a "
        "regular file and a directory a real directory, never a link)"
    )


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


@contextlib.contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[tuple[int, os.stat_result]]:
    """Open *path* read-only without following a link; yield the descriptor and its fstat.

    Raises :class:`FileNotFoundError` when it does not exist and
    :class:`UnsafeRootError` when it is a link or not a regular file.  The
    descriptor is opened non-blocking, so a FIFO planted under the name
    cannot hang the caller, and is closed on exit.
    """
    flags = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | _NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refused(path, "a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refused(path, _kind(st.st_mode))
        yield fd, st
    finally:
        os.close(fd)


def read_regular(path: str | os.PathLike[str], *, limit: int = MAX_FILE_BYTES) -> bytes:
    """Read a regular file of an identity root (no link followed); refuse one over *limit*."""
    with open_regular(path) as (fd, _st):
        return read_descriptor(fd, path, limit)


def read_descriptor(fd: int, path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """Read what is left of open file *fd* (named *path* in errors), refusing more than *limit*."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, min(1 << 20, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", os.fspath(path))


def require_directory(path: str | os.PathLike[str]) -> os.stat_result:
    """``lstat`` *path* and insist on a real directory (a link to one is refused)."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        link = stat.S_ISLNK(st.st_mode)
        raise _refused(path, "a symbolic link" if link else "not a directory")
    return st


def make_directory(path: str | os.PathLike[str], mode: int, *, group: int | None = None) -> bool:
    """Create directory *path* with exactly *mode* (and *group*); True if it was created.

    An existing directory is left as it is (and must not be a link).  The
    mode and group are set with ``fchmod``/``fchown`` on the new directory
    opened without following links, so a name swapped in between cannot
    redirect them.
    """
    _fault(path)
    try:
        os.mkdir(path, mode & 0o700)  # Nobody else gets in before the mode is final.
    except FileExistsError:
        require_directory(path)
        return False
    set_directory_access(path, mode, group=group, count=False)
    fsync_directory(os.path.dirname(os.path.abspath(path)))
    return True


def set_directory_access(
    path: str | os.PathLike[str], mode: int, *, group: int | None = None, count: bool = True
) -> None:
    """Give directory *path* exactly *mode* (and *group*), through a descriptor (no link)."""
    if count:
        _fault(path)
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except PermissionError:
        # A directory we own that we cannot read (made 0000 under umask 0777):
        # only its name can be changed.  Callers have checked that nobody else
        # can write its parent, so nobody else can swap the name meanwhile.
        require_directory(path)
        if group is not None:
            os.chown(path, -1, group, follow_symlinks=False)
        os.chmod(path, mode)
        return
    try:
        if group is not None:
            os.fchown(fd, -1, group)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def set_access(
    fd: int, path: str | os.PathLike[str], mode: int, *, group: int | None = None
) -> None:
    """Give the open file *fd* (named *path*) exactly *mode* (and *group*).

    On the descriptor, never the name: the file that was checked is the one
    that changes, even if the name is swapped for a link in between.
    """
    _fault(path)
    if group is not None:
        os.fchown(fd, -1, group)
    os.fchmod(fd, mode)
    _changed()


def remove_file(path: str | os.PathLike[str]) -> None:
    """Unlink *path* (a link itself, never its target) and make the removal durable."""
    _fault(path)
    os.unlink(path)
    _changed()
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def remove_directory(path: str | os.PathLike[str]) -> None:
    """Remove the empty directory *path* and make the removal durable."""
    _fault(path)
    os.rmdir(path)
    _changed()
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def rename_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename *source* over *target* in one directory, atomically and durably."""
    _fault(target)
    os.replace(source, target)
    _changed()
    fsync_directory(os.path.dirname(os.path.abspath(target)))


def touch(fd: int, path: str | os.PathLike[str]) -> None:
    """Set the open file *fd*'s (named *path*) modification time to now."""
    _fault(path)
    os.utime(fd)
    _changed()


def set_times(path: str | os.PathLike[str], atime_ns: int, mtime_ns: int) -> None:
    """Set *path*'s access and modification times (the link itself if it is one)."""
    _fault(path)
    os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)
    _changed()


# -- changes made by this process ----------------------------------------------------
#
# After each change it makes (a rename, a removal, new times or mode), a
# function here sets ``generation`` to a number never used before.  A
# FileView compares it on every get() and looks at its file again when it
# moved, so a change this process made through these functions (the
# provisioning API, the CLI run in-process) is served on the next call,
# without waiting out the 50 ms between looks (PROFILE.md §7.2).  The
# numbers come from one counter, so a store never repeats a value a view
# may have remembered, even when two writers' stores race.

_generations: Final = itertools.count(1)
#: The number of the last change made through this module (0: none yet).
generation = 0


def _changed() -> None:
    global generation
    generation = next(_generations)


# -- fault injection (tests only) ----------------------------------------------------
#
# Every change the producer makes to a root goes through the functions above
# and atomic_write.  The fault-injection tests set this to make the Nth such
# change fail with a real errno (ENOSPC, EACCES, EROFS) before it happens, and
# check that the root is left as it was.  None in normal use: one global read.


class _FaultPlan:
    """Raise ``OSError(errno)`` at write number *at* (1-based); count writes either way."""

    def __init__(self, at: int | None, error: int = errno.ENOSPC) -> None:
        self.at = at
        self.error = error
        self.count = 0
        self.paths: list[str] = []

    def __call__(self, path: str | os.PathLike[str]) -> None:
        self.count += 1
        self.paths.append(os.fspath(path))
        if self.count == self.at:
            raise OSError(self.error, os.strerror(self.error), os.fspath(path))


_faults: _FaultPlan | None = None


def _fault(path: str | os.PathLike[str]) -> None:
    if _faults is not None:
        _faults(path)


def fsync_directory(path: str | os.PathLike[str]) -> None:
    """Make a rename or unlink in *path* durable (POSIX needs the directory synced)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes, *, mode: int = 0o644, group: int | None = None
) -> None:
    """Replace *path* with *data* so that readers see the old file or the new one, never a mix.

    The temporary file lives in the same directory (rename is atomic only
    within a file system), is created with ``O_EXCL`` and *mode* from its first
    byte (so a private key is never readable by others, even for an instant),
    is fsynced, renamed over *path*, and the directory is fsynced.  If the
    umask strips bits of *mode*, ``fchmod`` on the still-private descriptor
    restores exactly *mode*; it never widens access beyond *mode*.  With
    *group*, the file gets that group (``fchown``) before its mode is widened
    to *mode* and before its first byte is written.
    """
    _fault(path)
    target = Path(path)
    directory = target.parent
    tmp = directory / f".{target.name}.{os.getpid()}.{threading.get_ident()}.{time.time_ns()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, mode & 0o600)
    try:
        try:
            if group is not None:
                os.fchown(fd, -1, group)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        _changed()
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # Name the file being replaced, not the temporary one next to it.
        raise OSError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


@contextlib.contextmanager
def ephemeral_pem_paths(cert: bytes, key: bytes) -> Iterator[tuple[str, str]]:
    """Paths from which OpenSSL can read *cert* and *key* once, without them touching a disk.

    :meth:`ssl.SSLContext.load_cert_chain` only takes paths, and a private
    key must not be copied to a file others could read or that outlives us.
    On Linux the bytes go to anonymous memory files (``memfd_create``) read
    through ``/proc/self/fd``; elsewhere to pipes read through ``/dev/fd``
    (each read once, in the order ``load_cert_chain`` reads them).  The
    descriptors are closed when the block ends.
    """
    fds: list[int] = []
    try:
        memfd = getattr(os, "memfd_create", None)
        if memfd is not None and os.path.isdir("/proc/self/fd"):
            paths = []
            for data in (cert, key):
                fd = memfd("spiffile-pem", getattr(os, "MFD_CLOEXEC", 0))
                fds.append(fd)
                _write_all(fd, data)
                paths.append(f"/proc/self/fd/{fd}")
            yield paths[0], paths[1]
            return
        paths = []
        for data in (cert, key):
            if len(data) > _PIPE_CAPACITY:
                raise OSError(f"PEM larger than {_PIPE_CAPACITY} bytes cannot go through a pipe")
            read_end, write_end = os.pipe()
            fds += [read_end, write_end]
            _write_all(write_end, data)
            os.close(write_end)
            fds.remove(write_end)
            paths.append(f"/dev/fd/{read_end}")
        yield paths[0], paths[1]
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


#: What a pipe holds without a reader (POSIX guarantees at least 4 KiB; Linux and macOS 16+).
_PIPE_CAPACITY: Final = 16 * 1024


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
