"""Everything that touches the file system: atomic writes and hot-reloading file views.

This is the only module that knows about inodes, mtimes, renames, permissions
and watchfiles (docs/architecture.md).  ``identity`` and ``provision`` go through it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Generic, TypeVar

from spiffile.errors import SpiffileError, UnsafeRootError

__all__ = [
    "DirectoryView",
    "FileStatus",
    "FileView",
    "Watcher",
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

T = TypeVar("T")
_log = logging.getLogger("spiffile")

#: A file's stamp: (device, inode, size, mtime_ns, ctime_ns), what changes when
#: a file is replaced or rewritten (PROFILE.md §7.1).
FileStamp = tuple[int, int, int, int, int]
#: Cap on any file a view reads: far above a 100k-identity bundle (~28 MB).
MAX_FILE_BYTES: Final = 128 * 1024 * 1024
# Racy window (the "racy git" problem): a file rewritten in place with the same
# size within one timestamp tick of our read keeps the same stamp.  When a
# file's newest timestamp was this close to the moment we read it, the next
# ``get`` reads it again and compares the content, until a read happens
# outside the window (the rewrite may have come inside the window, however
# late the next ``get`` is).  Coarse file systems (whole-second or
# whole-millisecond timestamps) get a wider window.
_RACY_NS: Final = 20_000_000
_RACY_COARSE_NS: Final = 2_000_000_000


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


def remove_file(path: str | os.PathLike[str]) -> None:
    """Unlink *path* (a link itself, never its target) and make the removal durable."""
    _fault(path)
    os.unlink(path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def remove_directory(path: str | os.PathLike[str]) -> None:
    """Remove the empty directory *path* and make the removal durable."""
    _fault(path)
    os.rmdir(path)
    fsync_directory(os.path.dirname(os.path.abspath(path)))


def rename_file(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename *source* over *target* in one directory, atomically and durably."""
    _fault(target)
    os.replace(source, target)
    fsync_directory(os.path.dirname(os.path.abspath(target)))


def touch(fd: int, path: str | os.PathLike[str]) -> None:
    """Set the open file *fd*'s (named *path*) modification time to now."""
    _fault(path)
    os.utime(fd)


def set_times(path: str | os.PathLike[str], atime_ns: int, mtime_ns: int) -> None:
    """Set *path*'s access and modification times (the link itself if it is one)."""
    _fault(path)
    os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)


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


def _stamp(st: os.stat_result) -> FileStamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: Which timestamp of a stamp tells when the file last changed: on POSIX
#: ctime, which every write and every utime() sets from the kernel's clock;
#: mtime can be set to anything (touch -d, rsync -t, a producer whose clock
#: runs ahead), and a future mtime kept the file racy, read on every get().
#: On Windows st_ctime is the creation time, so mtime it is.
_CHANGE_STAMP: Final = 3 if os.name == "nt" else 4


def _is_racy(stamp: FileStamp, read_ns: int) -> bool:
    """Whether a same-size rewrite after a read started at *read_ns* could keep *stamp*."""
    changed = stamp[_CHANGE_STAMP]
    coarse = changed % 1_000_000 == 0
    return read_ns - changed < (_RACY_COARSE_NS if coarse else _RACY_NS)


@dataclass(frozen=True)
class FileStatus:
    """The health of one watched file, for ``Identity.status()``.

    ``healthy`` is false while the file on disk is missing or does not parse
    and the view serves its last good version; ``error`` then says why.
    """

    path: str
    description: str
    healthy: bool
    error: str | None
    loaded_at: float
    reloads: int
    failures: int


#: While a :class:`Watcher` refreshes a view, ``get()`` looks at the file
#: itself at most this often (seconds): the bound on how stale a view can be
#: if the watcher missed an event.  A change the watcher reports is served
#: as soon as it is parsed.
PUSHED_RECHECK: Final = 0.05


class FileView(Generic[T]):
    """A parsed view of one file that follows changes and survives bad ones.

    ``get()`` costs one ``stat`` when nothing changed; while a
    :class:`Watcher` refreshes the view, at most one per
    :data:`PUSHED_RECHECK` (50 ms), so a change on disk is served at most
    50 ms after it happened, and at once after the watcher reports it.  A change is any
    difference in (device, inode, size, mtime_ns, ctime_ns): that catches a
    replacement by rename (new inode), an in-place rewrite (size, mtime or
    ctime) and a rewrite that restores the old mtime (ctime cannot be set).
    When the changed file does not parse, fails *accept*, or vanishes, the view
    keeps serving the last good value, logs one warning for that change and
    reports it in :meth:`status`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        parse: Callable[[bytes], T],
        *,
        description: str,
        accept: Callable[[T, T], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load *path* now; raise the parse error (or ``OSError``) if it is not usable yet.

        *accept(old, new)* may raise a :class:`SpiffileError` to refuse a new
        version (for example a bundle rollback); it is treated like a parse
        failure.  *monotonic* times the re-checks while pushed (tests inject it).
        """
        self._path = os.fspath(path)
        self._parse = parse
        self._accept = accept
        self._clock = clock
        self.description = description
        self._lock = threading.Lock()
        self._stamp_seen: FileStamp | None = None
        # While racy, ``_raw`` holds the content last read for ``_stamp_seen``.
        self._racy = False
        self._raw = b""
        self._reloads = 0
        self._failures = 0
        self._error: str | None = None
        self._failed_stamp: FileStamp | None = None
        self._loaded_at = 0.0
        self._monotonic = monotonic
        self._pushed = False
        self._recheck_at = 0.0
        st = os.stat(self._path)
        read_ns = time.time_ns()
        raw = read_file(self._path)
        self._value: T = parse(raw)
        self._install(raw, self._value, _stamp(st), read_ns)

    @property
    def path(self) -> str:
        """The watched path."""
        return self._path

    @property
    def pushed(self) -> bool:
        """Whether a watcher refreshes this view (``get()`` then stats at most every 50 ms)."""
        return self._pushed

    @pushed.setter
    def pushed(self, value: bool) -> None:
        self._recheck_at = 0.0
        self._pushed = value

    def check(self) -> T:
        """:meth:`get`, looking at the file now even while pushed (health and status paths)."""
        self._recheck_at = 0.0
        return self.get()

    def get(self) -> T:
        """The current value: re-read only if the file changed, else the cached one."""
        if self._pushed:
            now = self._monotonic()
            # A clock that jumped back (an injected one) re-checks at once.
            if now < self._recheck_at <= now + PUSHED_RECHECK:
                return self._value
            self._recheck_at = now + PUSHED_RECHECK
        try:
            st = os.stat(self._path)
        except OSError:
            stamp: FileStamp | None = None
        else:
            # _stamp(st), inlined: this runs on every verify and token.
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._stamp_seen and not self._racy:
            return self._value
        return self._reload(stamp)

    def refresh(self) -> T:
        """Re-read the file now, whatever its stamp (used by :class:`Watcher`)."""
        try:
            stamp: FileStamp | None = _stamp(os.stat(self._path))
        except OSError:
            stamp = None
        return self._reload(stamp, force=True)

    def status(self) -> FileStatus:
        """Whether the file on disk is what is being served."""
        return FileStatus(
            path=self._path,
            description=self.description,
            healthy=self._error is None,
            error=self._error,
            loaded_at=self._loaded_at,
            reloads=self._reloads,
            failures=self._failures,
        )

    def _install(self, raw: bytes, value: T, stamp: FileStamp, read_ns: int) -> None:
        racy = _is_racy(stamp, read_ns)
        self._value = value
        # The raw bytes are only needed to compare content while racy;
        # keeping them longer would double a large bundle's memory.
        self._raw = raw if racy else b""
        self._racy = racy
        self._loaded_at = self._clock()
        self._error = None
        self._failed_stamp = None
        self._stamp_seen = stamp  # Last: get() trusts it without the lock.

    def _reload(self, seen: FileStamp | None, *, force: bool = False) -> T:
        with self._lock:
            if not force and seen == self._stamp_seen and not self._racy:
                # Another thread loaded (or refused) this version while we
                # waited for the lock: one change, one read and one parse.
                return self._value
            try:
                with open(self._path, "rb") as handle:
                    stamp = _stamp(os.fstat(handle.fileno()))
                    read_ns = time.time_ns()
                    raw = handle.read(MAX_FILE_BYTES + 1)
                if len(raw) > MAX_FILE_BYTES:
                    raise OSError(f"larger than {MAX_FILE_BYTES} bytes")
            except OSError as exc:
                self._fail(seen, f"cannot read {self._path}: {exc.strerror or exc}")
                return self._value
            if stamp == self._stamp_seen and self._raw and raw == self._raw:
                # Racy re-check found the same content (good or bad): nothing
                # changed.  Stop comparing once a read falls outside the window.
                if not _is_racy(stamp, read_ns):
                    self._racy = False
                    self._raw = b""
                return self._value
            try:
                value = self._parse(raw)
                if self._accept is not None:
                    self._accept(self._value, value)
            except SpiffileError as exc:
                self._fail(stamp, str(exc), raw, read_ns)
                return self._value
            self._install(raw, value, stamp, read_ns)
            self._reloads += 1
            _log.info("spiffile: reloaded %s %s", self.description, self._path)
            return value

    def _fail(
        self, stamp: FileStamp | None, reason: str, raw: bytes = b"", read_ns: int = 0
    ) -> None:
        # Keep the last good value; warn once per distinct bad version.  A bad
        # version read within its timestamp tick may be a writer's unfinished
        # work: stay racy, so the next get() reads it again.
        racy = stamp is not None and bool(raw) and _is_racy(stamp, read_ns)
        self._raw = raw if racy else b""
        self._racy = racy
        self._stamp_seen = stamp
        if self._failed_stamp == stamp and self._error is not None:
            return
        self._failed_stamp = stamp
        self._error = reason
        self._failures += 1
        _log.warning(
            "spiffile: keeping the last good %s: %s changed and is not usable: %s",
            self.description,
            self._path,
            reason,
        )


class DirectoryView(Generic[T]):
    """Parsed views of the files ``<name><suffix>`` in one directory; the set follows the directory.

    Each file is a :class:`FileView` (hot reload, last good version kept on
    a bad change).  Adding a file adds its name, removing it removes the
    name: the directory's own stat signature says when to list it again, so
    :meth:`get` costs one ``stat`` of the directory and one of the file when
    nothing changed.  A new file that does not parse yet is retried whenever
    its signature changes, and reported in :meth:`status` meanwhile.

    Names are taken only from entries that are regular files or links to
    them, whose stem *accept_name* accepts; hidden entries (Kubernetes'
    ``..data``, producers' temporary files) never are.
    """

    is_directory: Final = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        parse: Callable[[str, bytes], T],
        *,
        suffix: str,
        description: str,
        accept_name: Callable[[str], bool] = lambda name: True,
        accept: Callable[[T, T], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """List *path* now; raise ``OSError`` if it is not a readable directory."""
        self._path = os.fspath(path)
        self._parse = parse
        self._suffix = suffix
        self._accept_name = accept_name
        self._accept = accept
        self._clock = clock
        self.description = description
        self._lock = threading.Lock()
        self._views: dict[str, FileView[T]] = {}
        # Names whose file never parsed: the signature last tried and why it failed.
        self._pending: dict[str, tuple[FileStamp | None, str]] = {}
        self._signature: FileStamp | None = None
        self._racy = False
        if not os.path.isdir(self._path):
            raise NotADirectoryError(f"{self._path} is not a directory")
        self._list(force=True)

    @property
    def path(self) -> str:
        """The watched directory."""
        return self._path

    def names(self) -> list[str]:
        """The names with a usable file now, sorted."""
        self._list()
        return sorted(self._views)

    def get(self, name: str) -> T | None:
        """The current value of ``<name><suffix>``, or ``None`` when there is no usable one."""
        self._list()
        view = self._views.get(name)
        if view is not None:
            return view.get()
        if name in self._pending:
            return self._retry(name)
        return None

    def refresh(self) -> None:
        """List the directory and re-read every file now (used by :class:`Watcher`)."""
        self._list(force=True)
        for view in list(self._views.values()):
            view.refresh()
        for name in list(self._pending):
            self._retry(name)

    def status(self) -> dict[str, FileStatus]:
        """Per name, whether its file on disk is what is being served."""
        self._list()
        found = {name: view.status() for name, view in self._views.items()}
        for name, (_signature, error) in self._pending.items():
            found[name] = FileStatus(
                path=self._file(name),
                description=f"{self.description} {name}",
                healthy=False,
                error=error,
                loaded_at=0.0,
                reloads=0,
                failures=1,
            )
        return dict(sorted(found.items()))

    def _file(self, name: str) -> str:
        return os.path.join(self._path, name + self._suffix)

    def _list(self, *, force: bool = False) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            signature: FileStamp | None = None
        else:
            signature = _stamp(st)
        if not force and signature == self._signature and not self._racy:
            return
        with self._lock:
            read_ns = time.time_ns()
            try:
                entries = list(os.scandir(self._path))
            except OSError as exc:
                # The directory vanished or cannot be read: keep serving what
                # was loaded (PROFILE.md §7.3); a later change lists it again.
                if signature != self._signature:
                    _log.warning(
                        "spiffile: keeping the last good %s: cannot list %s: %s",
                        self.description,
                        self._path,
                        exc.strerror or exc,
                    )
                self._signature = signature
                self._racy = False
                return
            present = set()
            for entry in entries:
                stem = entry.name[: -len(self._suffix)]
                if (
                    entry.name.startswith(".")
                    or not entry.name.endswith(self._suffix)
                    or not stem
                    or not self._accept_name(stem)
                ):
                    continue
                try:
                    if not entry.is_file():  # Follows links, as FileView does.
                        continue
                except OSError:
                    continue
                present.add(stem)
            for gone in (set(self._views) | set(self._pending)) - present:
                self._views.pop(gone, None)
                self._pending.pop(gone, None)
                _log.info("spiffile: %s %s removed", self.description, gone)
            for name in sorted(present - set(self._views) - set(self._pending)):
                self._pending[name] = (None, "not loaded yet")
                self._load(name)
            self._racy = signature is not None and _is_racy(signature, read_ns)
            self._signature = signature

    def _load(self, name: str) -> None:
        """Try to build the view of a new name (under the lock)."""
        path = self._file(name)
        try:
            signature: FileStamp | None = _stamp(os.stat(path))
        except OSError:
            signature = None
        try:
            view = FileView(
                path,
                lambda data: self._parse(name, data),
                description=f"{self.description} {name}",
                accept=self._accept,
                clock=self._clock,
            )
        except (SpiffileError, OSError, ValueError) as exc:
            reason = (
                str(exc)
                if isinstance(exc, SpiffileError)
                else (getattr(exc, "strerror", None) or str(exc))
            )
            if self._pending.get(name, (None, ""))[0] != signature or signature is None:
                _log.warning(
                    "spiffile: %s %s is not usable yet: %s", self.description, path, reason
                )
            self._pending[name] = (signature, reason)
            return
        self._pending.pop(name, None)
        self._views[name] = view
        _log.info("spiffile: loaded %s %s", self.description, path)

    def _retry(self, name: str) -> T | None:
        try:
            signature: FileStamp | None = _stamp(os.stat(self._file(name)))
        except OSError:
            signature = None
        with self._lock:
            pending = self._pending.get(name)
            if pending is None:
                view = self._views.get(name)
                return None if view is None else view.get()
            if pending[0] == signature and signature is not None:
                return None
            self._load(name)
            view = self._views.get(name)
        return None if view is None else view.get()


class Watcher:
    """Push reload: refresh file views as soon as watchfiles reports a change.

    While watched, a view stats its file at most every :data:`PUSHED_RECHECK`
    (a backstop should an event be missed) instead of on every ``get``; the
    watcher moves the stat, the parsing and the warnings off the request path.
    It watches the parent directories, because an atomic replace swaps the
    file's inode.
    """

    def __init__(
        self,
        views: Iterable[FileView[object]],
        *,
        debounce_ms: int = 50,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        """Start a daemon thread watching *views*; stop it with :meth:`close`.

        *on_refresh* is called after each batch of refreshes (change
        notifications); an exception from it is logged, not raised.
        """
        self._views = list(views)
        for view in self._views:
            if isinstance(view, FileView):
                view.pushed = True
        self._on_refresh = on_refresh
        self._stop = threading.Event()
        self._debounce_ms = debounce_ms
        self._thread = threading.Thread(target=self._run, name="spiffile-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import watchfiles  # Lazy: only push reload needs it.

        # A file's parent directory (an atomic replace swaps the file's inode);
        # a DirectoryView's own directory.
        directories = sorted(
            {
                os.path.abspath(v.path)
                if getattr(v, "is_directory", False)
                else os.path.dirname(os.path.abspath(v.path))
                for v in self._views
            }
        )
        try:
            for _changes in watchfiles.watch(
                *directories,
                stop_event=self._stop,
                debounce=self._debounce_ms,
                raise_interrupt=False,
                yield_on_timeout=False,
            ):
                for view in self._views:
                    view.refresh()
                if self._on_refresh is not None:
                    try:
                        self._on_refresh()
                    except Exception:
                        _log.exception("spiffile: a change notification failed")
        except (OSError, UnicodeError, RuntimeError) as exc:
            # Push reload is an optimisation: every get() still checks the
            # file, so losing the watch (a path watchfiles cannot encode, a
            # directory that vanished) must not kill anything or go unsaid.
            _log.warning("spiffile: push reload stopped, files are checked on use: %s", exc)
            for view in self._views:
                if isinstance(view, FileView):
                    view.pushed = False

    def close(self) -> None:
        """Stop watching and wait for the thread to end; views stat on every get again."""
        self._stop.set()
        self._thread.join(timeout=5)
        for view in self._views:
            if isinstance(view, FileView):
                view.pushed = False
