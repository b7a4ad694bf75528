"""Hot-reloading views of files and directories: re-read on change, last known good kept.

A view serves the parsed value of a file and re-reads it only when its stamp
(device, inode, size, mtime, ctime) changes (PROFILE.md §7.1); a version that
does not parse never replaces a good one (PROFILE.md §7.3).
"""

from __future__ import annotations

import _thread
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Final, Generic, TypeVar

from spiffile.errors import SpiffileError
from spiffile.files import safe as _safe
from spiffile.files.safe import MAX_FILE_BYTES, read_file

__all__ = [
    "INLINE_RELOAD_BYTES",
    "PUSHED_RECHECK",
    "RECHECK_INTERVAL",
    "DirectoryView",
    "FileStamp",
    "FileStatus",
    "FileView",
    "give_way",
]

T = TypeVar("T")
_log = logging.getLogger("spiffile")

#: A file's stamp: (device, inode, size, mtime_ns, ctime_ns), what changes when
#: a file is replaced or rewritten (PROFILE.md §7.1).
FileStamp = tuple[int, int, int, int, int]
#: Cap on any file a view reads: far above a 100k-identity bundle (~28 MB).
# Racy window (the "racy git" problem): a file rewritten in place with the same
# size within one timestamp tick of our read keeps the same stamp.  When a
# file's newest timestamp was this close to the moment we read it, the next
# ``get`` reads it again and compares the content, until a read happens
# outside the window (the rewrite may have come inside the window, however
# late the next ``get`` is).  Coarse file systems (whole-second or
# whole-millisecond timestamps) get a wider window.
_RACY_NS: Final = 20_000_000
_RACY_COARSE_NS: Final = 2_000_000_000


def _stamp(st: os.stat_result) -> FileStamp:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


#: Which timestamp of a stamp tells when the file last changed: on POSIX
#: ctime, which every write and every utime() sets from the kernel's clock;
#: mtime can be set to anything (touch -d, rsync -t, a producer whose clock
#: runs ahead), and a future mtime kept the file racy, read on every get().
#: On Windows st_ctime is the creation time, so mtime it is.
_CHANGE_STAMP: Final = 3 if os.name == "nt" else 4


def _racy_window(stamp: FileStamp) -> int:
    """The file system's timestamp tick, as far as *stamp* shows it (ns)."""
    return _RACY_COARSE_NS if stamp[_CHANGE_STAMP] % 1_000_000 == 0 else _RACY_NS


def _is_racy(stamp: FileStamp, read_ns: int) -> bool:
    """Whether a same-size rewrite after a read started at *read_ns* could keep *stamp*."""
    return read_ns - stamp[_CHANGE_STAMP] < _racy_window(stamp)


def _is_future(stamp: FileStamp, read_ns: int) -> bool:
    """Whether *stamp* was set by a clock ahead of ours (a file server's, or ours before a step).

    Such a stamp stays "racy" until our clock catches up, which may be hours:
    comparing the content on every call would read the whole file every time.
    """
    return stamp[_CHANGE_STAMP] > read_ns


def _read_capped(handle: BinaryIO, expected: int) -> bytes:
    """What ``handle.read(MAX_FILE_BYTES + 1)`` returns, asking first for *expected* + 1 bytes.

    *expected* is the size ``fstat`` gave.  One read of the cap would have
    the interpreter allocate a 128 MiB buffer and fault in its pages for a
    27 MB bundle (40-65 ms against 3 ms here, in the thread that reloads
    while verifiers run, PROFILE.md §7.2).  A file that grew since the
    ``fstat`` fills the first read, and the rest is read up to the cap: the
    bytes are those of the single read either way.
    """
    first = min(max(expected, 0), MAX_FILE_BYTES) + 1
    raw = handle.read(first)
    if len(raw) == first and first <= MAX_FILE_BYTES:
        raw += handle.read(MAX_FILE_BYTES + 1 - first)
    return raw


def give_way() -> None:
    """Let the other threads of the process run for a moment (a parse calls it between slices).

    ``time.sleep(0)`` releases the GIL, so a thread waiting for it (a
    ``verify`` on the previous bundle) takes it now rather than when the
    parse ends (PROFILE.md §7.2).
    """
    time.sleep(0)


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


#: While a :class:`Watcher` refreshes a view, a changed file larger than this
#: that a caller notices first is loaded by a thread of its own: the caller
#: is served the current value (PROFILE.md §7.2).  Smaller files load in the
#: caller's call, in well under a millisecond.
INLINE_RELOAD_BYTES: Final = 256 * 1024
#: ``get()`` looks at the file at most this often (seconds): the bound on how
#: long a change on disk (a rotation, a revocation) goes unserved
#: (PROFILE.md §7.2).  Within it a call costs a monotonic clock read instead
#: of a ``stat`` (rows "Identity.verify, token verified before" and
#: "Identity.token, served from cache").  A change a :class:`Watcher`
#: reports is served as soon as it is parsed.
RECHECK_INTERVAL: Final = 0.05
#: The former name of :data:`RECHECK_INTERVAL`, when only watched views had it.
PUSHED_RECHECK: Final = RECHECK_INTERVAL


class FileView(Generic[T]):
    """A parsed view of one file that follows changes and survives bad ones.

    ``get()`` looks at the file (one ``stat``) at most once per
    :data:`RECHECK_INTERVAL` (50 ms) and otherwise serves what it holds, so a
    change on disk is served at most 50 ms after it happened, on the first
    call after that (PROFILE.md §7.2); with a :class:`Watcher` refreshing the
    view, at once after the watcher reports it.  A change is any
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
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """Load *path* now; raise the parse error (or ``OSError``) if it is not usable yet.

        *accept(old, new)* may raise a :class:`SpiffileError` to refuse a new
        version (for example a bundle rollback); it is treated like a parse
        failure.  *monotonic* times the looks (tests inject it).
        *wall_ns* is the clock a file's timestamps are compared with, once per
        read (the racy check); tests inject one that runs behind.
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
        # A racy version whose stamp is in the future is compared once more,
        # at the first look after this monotonic time, then no more.
        self._future_recheck: float | None = None
        self._wall_ns = wall_ns
        self._reloads = 0
        self._failures = 0
        self._error: str | None = None
        self._failed_stamp: FileStamp | None = None
        self._loaded_at = 0.0
        self._monotonic = monotonic
        self._pushed = False
        # A thread of its own is loading a change a caller noticed (watched).
        self._loading = False
        # (look again at this monotonic time, generation of _safe seen then)
        self._fresh = (0.0, -1)
        st = os.stat(self._path)
        read_ns = wall_ns()
        raw = read_file(self._path)
        self._value: T = parse(raw)
        self._install(raw, self._value, _stamp(st), read_ns)

    @property
    def path(self) -> str:
        """The watched path."""
        return self._path

    @property
    def pushed(self) -> bool:
        """Whether a watcher refreshes this view (a change is then served once it reports it)."""
        return self._pushed

    @pushed.setter
    def pushed(self, value: bool) -> None:
        self._fresh = (0.0, -1)
        self._pushed = value

    def check(self) -> T:
        """:meth:`get`, looking at the file now, inside the 50 ms too (health and status paths)."""
        self._fresh = (0.0, -1)
        return self.get()

    def get(self) -> T:
        """The current value: re-read only if the file changed, else the cached one."""
        now = self._monotonic()
        written = _safe.generation
        until, seen = self._fresh
        # Within 50 ms of the last look, and with no write by this process
        # since, the value held (PROFILE.md §7.2).  A clock that jumped back
        # (an injected one) looks at once.
        if now < until <= now + RECHECK_INTERVAL and written == seen:
            return self._value
        try:
            st = os.stat(self._path)
        except OSError:
            stamp: FileStamp | None = None
        else:
            # _stamp(st), inlined: this runs on every look.
            stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if stamp == self._stamp_seen and (
            not self._racy or (self._future_recheck is not None and now < self._future_recheck)
        ):
            self._fresh = (now + RECHECK_INTERVAL, written)
            return self._value
        if self._pushed and stamp is not None and stamp[2] > INLINE_RELOAD_BYTES:
            # Watched: a large file is loaded by a thread of its own, never
            # by a caller (the watcher may not have seen the change yet).
            # The next call looks again.
            self._load_in_background()
            return self._value
        value = self._reload(stamp)
        if stamp == self._stamp_seen:
            # This very version is what the view holds now (loaded, or
            # refused with the last good kept).  Not when another thread was
            # still loading one: then the next call looks again.  One store,
            # so the time and the generation always come from the same look.
            self._fresh = (now + RECHECK_INTERVAL, written)
        return value

    def _load_in_background(self) -> None:
        if self._lock.locked() or self._loading:
            return  # Already being loaded.
        self._loading = True
        # Not threading.Thread: its start() waits until the new thread runs,
        # and with the GIL contended (the verifying threads, the watcher)
        # that was up to 29 ms of the calling request (PROFILE.md §7.2).
        try:
            _thread.start_new_thread(self._background_refresh, ())
        except BaseException:
            self._loading = False
            raise

    def _background_refresh(self) -> None:
        try:
            self.refresh(changed_only=True)
        finally:
            self._loading = False

    @property
    def current(self) -> T:
        """The value served now, without looking at the file."""
        return self._value

    def latest(self) -> T:
        """The value once the file as it is now is loaded: waits for a load under way.

        For a caller the current value could not serve (a token signed by a
        key that only the new bundle binds): everyone else keeps the current
        value meanwhile (:meth:`get`).
        """
        try:
            stamp: FileStamp | None = _stamp(os.stat(self._path))
        except OSError:
            stamp = None
        if stamp == self._stamp_seen and not self._racy and not self._lock.locked():
            return self._value
        return self._reload(stamp, wait=True)

    def refresh(self, *, changed_only: bool = False) -> T:
        """Re-read the file now, whatever its stamp, waiting for a load under way.

        With *changed_only* (what :class:`Watcher` asks), an unchanged file is
        not read again: a notification about another file of the directory
        must not parse a 100k-identity bundle again (and empty the
        verified-token cache).
        """
        try:
            stamp: FileStamp | None = _stamp(os.stat(self._path))
        except OSError:
            stamp = None
        return self._reload(stamp, wait=True, force=not changed_only)

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

    def _set_racy(self, raw: bytes, stamp: FileStamp, read_ns: int) -> None:
        racy = _is_racy(stamp, read_ns)
        # The raw bytes are only needed to compare content while racy;
        # keeping them longer would double a large bundle's memory.
        self._raw = raw if racy else b""
        self._racy = racy
        # A stamp from a clock ahead of ours: a same-tick rewrite can only
        # come within one tick of the write, which was before our read, so
        # one comparison a tick after the read (on our monotonic clock,
        # which no step moves) settles it: one extra read per change.
        self._future_recheck = (
            self._monotonic() + _racy_window(stamp) / 1e9
            if racy and _is_future(stamp, read_ns)
            else None
        )

    def _install(self, raw: bytes, value: T, stamp: FileStamp, read_ns: int) -> None:
        self._value = value
        self._set_racy(raw, stamp, read_ns)
        self._loaded_at = self._clock()
        self._error = None
        self._failed_stamp = None
        self._stamp_seen = stamp  # Last: get() trusts it without the lock.

    def _reload(self, seen: FileStamp | None, *, wait: bool = False, force: bool = False) -> T:
        if wait:
            self._lock.acquire()
        elif not self._lock.acquire(blocking=False):
            # Another thread is reading and parsing a new version: keep
            # serving the current one meanwhile (PROFILE.md §7.2); the new
            # one is installed by a single assignment when it is ready.
            return self._value
        try:
            return self._reload_locked(seen, force)
        finally:
            self._lock.release()

    def _reload_locked(self, seen: FileStamp | None, force: bool) -> T:
        if not force and seen == self._stamp_seen and not self._racy:
            # Another thread loaded (or refused) this version while we
            # waited for the lock: one change, one read and one parse.
            return self._value
        try:
            with open(self._path, "rb") as handle:
                st = os.fstat(handle.fileno())
                stamp = _stamp(st)
                read_ns = self._wall_ns()
                raw = _read_capped(handle, st.st_size)
            if len(raw) > MAX_FILE_BYTES:
                raise OSError(f"larger than {MAX_FILE_BYTES} bytes")
        except OSError as exc:
            self._fail(seen, f"cannot read {self._path}: {exc.strerror or exc}")
            return self._value
        if stamp == self._stamp_seen and self._raw and raw == self._raw:
            # Racy re-check found the same content (good or bad): nothing
            # changed.  Stop comparing once a read falls outside the window,
            # or after the one comparison a future stamp gets.
            future = self._future_recheck
            if not _is_racy(stamp, read_ns) or (future is not None and self._monotonic() >= future):
                self._racy = False
                self._raw = b""
                self._future_recheck = None
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
        if stamp is not None and raw:
            self._set_racy(raw, stamp, read_ns)
        else:
            self._raw, self._racy, self._future_recheck = b"", False, None
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
        monotonic: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """List *path* now; raise ``OSError`` if it is not a readable directory.

        *monotonic* and *wall_ns* are as for :class:`FileView` and are given
        to each file's view: *wall_ns* is consulted once per listing and once
        per read of a file (tests inject one that runs behind and count).
        """
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
        # A racy listing whose stamp is in the future is listed once more, at
        # the first look after this monotonic time, then no more (as FileView).
        self._future_recheck: float | None = None
        self._monotonic = monotonic
        self._wall_ns = wall_ns
        self._pushed = False
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

    @property
    def pushed(self) -> bool:
        """Whether a watcher refreshes this directory (each file's view is then pushed)."""
        return self._pushed

    @pushed.setter
    def pushed(self, value: bool) -> None:
        self._pushed = value
        for view in list(self._views.values()):
            view.pushed = value

    def latest(self, name: str) -> T | None:
        """:meth:`get`, waiting for a load of the directory or of the file under way.

        For a caller the current value could not serve (a token signed by a
        key only the new document binds, or a trust domain whose file is
        being loaded); everyone else keeps the current value meanwhile.
        """
        self._list(wait=True)
        view = self._views.get(name)
        if view is not None:
            return view.latest()
        if name in self._pending:
            return self._retry(name)
        return None

    def current(self, name: str) -> T | None:
        """The value served now for *name*, without looking at the disk."""
        view = self._views.get(name)
        return None if view is None else view.current

    def refresh(self, *, changed_only: bool = False) -> None:
        """List the directory and re-read every file now (used by :class:`Watcher`).

        With *changed_only* (what :class:`Watcher` asks), a file whose stamp
        did not change is not read again: a change to one trust domain's
        document must not parse every other one again.
        """
        self._list(force=True)
        for view in list(self._views.values()):
            view.refresh(changed_only=changed_only)
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

    def _list(self, *, force: bool = False, wait: bool = False) -> None:
        try:
            st = os.stat(self._path)
        except OSError:
            signature: FileStamp | None = None
        else:
            signature = _stamp(st)
        if not force and signature == self._signature:
            if not self._racy:
                return
            future = self._future_recheck
            if future is not None and self._monotonic() < future:
                return
        if not (force or wait):
            if not self._lock.acquire(blocking=False):
                # Another thread is listing, maybe loading a new name's file:
                # serve the set as it is meanwhile (PROFILE.md §7.2).
                return
        else:
            self._lock.acquire()
        try:
            self._list_locked(signature)
        finally:
            self._lock.release()

    def _list_locked(self, signature: FileStamp | None) -> None:
        read_ns = self._wall_ns()
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
            self._racy, self._future_recheck = False, None
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
        self._set_racy(signature, read_ns)
        self._signature = signature

    def _set_racy(self, signature: FileStamp | None, read_ns: int) -> None:
        """Whether to list again on the next look (the racy rule of :class:`FileView`)."""
        future = self._future_recheck
        if (
            signature is not None
            and signature == self._signature
            and future is not None
            and self._monotonic() >= future
        ):
            # The one listing a tick after a listing of a stamp from a clock
            # ahead of ours: an entry added within that tick is seen now, and
            # no later one can keep this stamp.  One extra listing per change.
            self._racy, self._future_recheck = False, None
            return
        self._racy = signature is not None and _is_racy(signature, read_ns)
        self._future_recheck = (
            self._monotonic() + _racy_window(signature) / 1e9
            if signature is not None and self._racy and _is_future(signature, read_ns)
            else None
        )

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
                monotonic=self._monotonic,
                wall_ns=self._wall_ns,
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
        view.pushed = self._pushed
        self._pending.pop(name, None)
        self._views[name] = view
        _log.info("spiffile: loaded %s %s", self.description, path)

    def _retry(self, name: str, *, wait: bool = True) -> T | None:
        try:
            signature: FileStamp | None = _stamp(os.stat(self._file(name)))
        except OSError:
            signature = None
        if not self._lock.acquire(blocking=wait):
            return None  # Being loaded by another thread: not usable yet.
        try:
            pending = self._pending.get(name)
            if pending is None:
                view = self._views.get(name)
                return None if view is None else view.get()
            if pending[0] == signature and signature is not None:
                return None
            self._load(name)
            view = self._views.get(name)
        finally:
            self._lock.release()
        return None if view is None else view.get()
