"""An identity root on disk: its layout, its lock, its bundle, and service names.

The primitives :mod:`spiffile.provision` builds its operations on.  Every
read-modify-write of ``bundle.json`` happens under :meth:`Root.lock`, an
exclusive ``flock`` on ``<root>/.lock``: concurrent producers serialize
instead of losing each other's updates, and the kernel releases the lock of
a producer that dies, so a crash never wedges a root.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shlex
import signal
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from spiffile.bundle import MAX_BUNDLE_BYTES, Bundle
from spiffile.errors import (
    InvalidBundleError,
    InvalidServiceNameError,
    InvalidSpiffeIdError,
    LockTimeoutError,
    NestedServiceError,
    ProvisionError,
    RootNotFoundError,
    TrustDomainMismatchError,
    UnsafeRootError,
)
from spiffile.files import (
    atomic_write,
    make_directory,
    read_regular,
    remove_directory,
    remove_file,
    require_directory,
)
from spiffile.provision._changes import Changes
from spiffile.spiffe_id import MAX_ID_BYTES, SpiffeId, validate_trust_domain

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_LOCK_TIMEOUT",
    "GROUP_DIR_MODE",
    "GROUP_KEY_MODE",
    "ID_FILE",
    "KEY_FILE",
    "KEY_MODE",
    "LOCK_FILE",
    "MAX_SEQUENCE",
    "PUBLIC_MODE",
    "SEQUENCE_FILE",
    "SERVICES_DIR",
    "STAGED_KEY_FILE",
    "Root",
    "RootFinding",
    "RootLike",
    "as_root",
    "check_directory",
    "check_not_nested",
    "check_service_dirs",
    "directory_problem",
    "ensure_service_dir",
    "init_root",
    "key_access",
    "locked",
    "open_root",
    "os_errors",
    "root_findings",
    "service_dir",
    "service_dirs",
    "service_id",
    "step",
    "sweep_stale_temporaries",
    "validate_service_name",
]

BUNDLE_FILE: Final = "bundle.json"
#: The high-water mark of ``spiffe_sequence``: the producer's, never read by consumers.
SEQUENCE_FILE: Final = ".sequence"
SERVICES_DIR: Final = "services"
LOCK_FILE: Final = ".lock"
ID_FILE: Final = "id"
KEY_FILE: Final = "key.pem"
STAGED_KEY_FILE: Final = "key.next.pem"
#: Seconds a producer waits for another one to release the root's lock.
DEFAULT_LOCK_TIMEOUT: Final = 30.0

KEY_MODE: Final = 0o600
#: The highest ``spiffe_sequence`` a producer writes: the largest value a
#: 64-bit unsigned reader (go-spiffe's bundle type) holds.
MAX_SEQUENCE: Final = 2**64 - 1
PUBLIC_MODE: Final = 0o644
_SERVICE_DIR_MODE: Final = 0o700
#: A service directory shared read-only with its workload's group (README: read-only access).
GROUP_DIR_MODE: Final = 0o750
#: The key file in such a directory: readable by the group, writable by nobody else.
GROUP_KEY_MODE: Final = 0o640
_ROOT_DIR_MODE: Final = 0o755
_MAX_SEGMENT_BYTES: Final = 255
# The profile caps a SPIFFE ID at 2048 bytes: "spiffe://", a trust domain of at
# least one byte and "/" leave this much for the name (checked exactly later).
_MAX_NAME_BYTES: Final = MAX_ID_BYTES - len("spiffe://x/")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")
# A service directory holds these files; a nested service named like one of
# them ("orders/id") would collide with its parent service's file.
_RESERVED: Final = frozenset({ID_FILE, KEY_FILE, STAGED_KEY_FILE, "svid.pem", "svid_key.pem"})
# Left behind by an atomic_write killed between create and rename
# (files.atomic_write names them ".<name>.<pid>.<thread>.<ns>.tmp").
_STALE_TEMP: Final = re.compile(
    r"\.(?:id|key\.pem|key\.next\.pem|bundle\.json|svid\.pem|svid_key\.pem|svid_bundle\.pem"
    r"|ca\.pem|state\.json|\.sequence)\..+\.tmp"
)
# Private test hook: the crash tests set it to a step name below to SIGKILL the
# producer between two durable writes.  Inert unless set to one of them.
_CRASH_ENV: Final = "SPIFFILE_TEST_CRASH_AT"


def step(name: str) -> None:
    """Mark a point between two durable writes (see ``_CRASH_ENV``)."""
    if os.environ.get(_CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _refuse_nul(path: str | os.PathLike[str]) -> None:
    # The OS cannot name such a path; say so as our error, not os's ValueError.
    if "\0" in os.fsdecode(path):
        raise ProvisionError("an identity root path cannot contain a NUL byte")


class Root:
    """An identity root on disk.  Build it with :func:`init_root` or :func:`open_root`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        trust_domain: str,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        """Describe the root at *path*; does not touch the disk."""
        _refuse_nul(path)
        self.path = Path(os.path.abspath(path))
        self.trust_domain = validate_trust_domain(trust_domain)
        self.bundle_path = self.path / BUNDLE_FILE
        self.services_path = self.path / SERVICES_DIR
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._changes: Changes | None = None
        # The last bundle read or written, keyed by its exact bytes.
        self._cache: tuple[bytes, Bundle] | None = None

    def __repr__(self) -> str:
        return f"Root({os.fspath(self.path)!r}, trust_domain={self.trust_domain!r})"

    @contextlib.contextmanager
    def lock(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold the root's exclusive lock (re-entrant within this object and thread).

        ``flock`` on ``<root>/.lock`` serializes producers across processes; the
        kernel drops it when a holder dies, so a killed producer never wedges the
        root.  Raises :class:`LockTimeoutError` after *timeout* seconds
        (default :attr:`lock_timeout`).
        """
        limit = self.lock_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if not self._mutex.acquire(timeout=max(limit, 0.0)):
            raise LockTimeoutError(
                f"timed out after {limit:g}s waiting for the lock on {self.path}"
            )
        try:
            if self._depth == 0:
                self._fd = _flock(self.path / LOCK_FILE, deadline, limit)
                self._changes = Changes()
            self._depth += 1
            try:
                yield
            except BaseException as exc:
                # The outermost holder takes back what the failed operation
                # wrote: a failure leaves the root as it was (module _changes).
                if self._depth == 1 and self._changes is not None:
                    _undo(self._changes, exc)
                raise
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    self._changes = None
                    os.close(fd)
        finally:
            self._mutex.release()

    @property
    def changes(self) -> Changes:
        """The undo log of the operation holding the lock: every write goes through it."""
        if self._changes is None:
            raise RuntimeError("a root is written only under its lock")
        return self._changes

    # -- the bundle (callers hold the lock) ------------------------------------------

    def read_bundle(self) -> Bundle:
        """The root's current bundle (the caller holds :meth:`lock`).

        Raises :class:`RootNotFoundError` when the root has no bundle and
        :class:`TrustDomainMismatchError` when it names another trust domain.
        """
        try:
            data = read_regular(self.bundle_path, limit=MAX_BUNDLE_BYTES)
        except FileNotFoundError:
            raise RootNotFoundError(
                f"{self.path} is not an identity root (no {BUNDLE_FILE})"
            ) from None
        except OSError as exc:
            raise ProvisionError(f"cannot read {self.bundle_path}: {exc}") from exc
        if self._cache is not None and self._cache[0] == data:
            return self._cache[1]
        bundle = _parse_bundle(self.bundle_path, data)
        if bundle.trust_domain != self.trust_domain:
            raise TrustDomainMismatchError(
                f"{self.bundle_path} is for trust domain {bundle.trust_domain}, "
                f"not {self.trust_domain}"
            )
        self._cache = (data, bundle)
        return bundle

    def write_bundle(self, bundle: Bundle) -> Bundle:
        """Publish *bundle* atomically with the next ``spiffe_sequence``; return what was written.

        The caller holds :meth:`lock`.  Every write increases the sequence
        because consumers refuse to go back (PROFILE.md §4.4).
        """
        # Above everything this root ever published, even when another tool
        # rewrote bundle.json without the member (its next reader would see
        # our number restart at 1 and refuse every later bundle as a
        # rollback).  The high-water mark is durable before the bundle is.
        sequence = max(bundle.sequence or 0, self.high_water()) + 1
        if sequence > MAX_SEQUENCE:
            # Another tool wrote an absurd number (PROFILE.md §4.4): readers
            # that hold it in 64 bits could not load the next document.
            raise ProvisionError(
                f"{self.bundle_path}: spiffe_sequence is at or above 2^64 - 1; write a lower "
                f"sequence into {BUNDLE_FILE} and {SEQUENCE_FILE} by hand and restart every "
                "consumer (they refuse a lower number until they restart)"
            )
        atomic_write(self.path / SEQUENCE_FILE, f"{sequence}\n".encode(), mode=PUBLIC_MODE)
        new = bundle.with_sequence(sequence)
        data = new.to_json()
        self.changes.write(self.bundle_path, data, mode=PUBLIC_MODE)
        self._cache = (data, new)
        return new

    def high_water(self) -> int:
        """The highest ``spiffe_sequence`` this root has published (0 before the first).

        Kept in ``<root>/.sequence`` (PROFILE.md §4.4).  A file that does not
        hold a plain decimal number is refused, not guessed at.
        """
        path = self.path / SEQUENCE_FILE
        try:
            text = read_regular(path, limit=64).decode("ascii", "replace").strip()
        except FileNotFoundError:
            return 0
        if not (text.isascii() and text.isdigit()) or int(text) > MAX_SEQUENCE:
            raise ProvisionError(
                f"{path} does not hold a sequence number (the highest spiffe_sequence this "
                "root published); delete it only if bundle.json's spiffe_sequence is the highest "
                "any consumer has seen"
            )
        return int(text)


def _undo(changes: Changes, failure: BaseException) -> None:
    try:
        changes.undo()
    except Exception as exc:
        raise ProvisionError(
            f"{_brief(failure)}; undoing the partial change failed too ({_brief(exc)}): every "
            "key file on disk is still bound, run the command again once the cause is fixed"
        ) from failure


def _brief(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or type(exc).__name__}:{where}"
    return str(exc) or type(exc).__name__


#: Where a function accepts a root: a :class:`Root`, or the path of one.
RootLike: TypeAlias = Root | str | os.PathLike[str]


def _flock(path: Path, deadline: float, limit: float) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, KEY_MODE)
    except FileNotFoundError:
        raise RootNotFoundError(
            f"{path.parent} is not an identity root (no such directory)"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeRootError(f"{path} is a symbolic link; refusing to lock it") from None
        raise
    delay = 0.0005
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeRootError(f"{path} is not a regular file; refusing to lock through it")
        # Created under the umask (mode 0000 under umask 0777 locks every later
        # producer out): the lock file is exactly 0600, whatever the umask.
        if stat.S_IMODE(st.st_mode) != KEY_MODE and st.st_uid == os.geteuid():
            os.fchmod(fd, KEY_MODE)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LockTimeoutError(
                    f"timed out after {limit:g}s waiting for the lock on {path.parent}"
                )
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.005)
    except BaseException:
        os.close(fd)
        raise


def _parse_bundle(path: Path, data: bytes) -> Bundle:
    try:
        return Bundle.parse(data)
    except InvalidBundleError as exc:
        raise InvalidBundleError(f"{path}: {exc} (left untouched)") from exc


@contextlib.contextmanager
def os_errors(root: Root) -> Iterator[None]:
    """Turn an unexpected OS failure (permissions, disk full) into a :class:`ProvisionError`."""
    try:
        yield
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise ProvisionError(
            f"cannot update root {root.path}:{where}: {exc.strerror or exc}"
        ) from exc


@contextlib.contextmanager
def locked(root: Root) -> Iterator[Bundle]:
    """The lock, OS-error translation and the current bundle, for one operation."""
    with os_errors(root), root.lock():
        check_directory(root.path, follow=True)
        if os.path.lexists(root.services_path):
            check_directory(root.services_path)
        sweep_stale_temporaries(root.path)
        yield root.read_bundle()


# -- names -------------------------------------------------------------------------


def validate_service_name(name: str) -> str:
    """Return *name* if it is a valid service name, else raise :class:`InvalidServiceNameError`.

    A name is a SPIFFE ID path without its leading slash (SPIFFE-ID §2.2):
    ``/``-separated segments of ``[A-Za-z0-9._-]``, none empty, ``.`` or
    ``..``.  Those rules are exactly what keeps ``services/<name>`` inside
    the root.  Nested segments may not be ``id``, ``key.pem`` or
    ``key.next.pem``: they would collide with the parent service's files.
    """
    if not isinstance(name, str):
        raise InvalidServiceNameError(f"a service name must be a string, not {type(name).__name__}")
    shown = repr(name[:80])
    if not name:
        raise InvalidServiceNameError("the service name is empty")
    if len(name) > _MAX_NAME_BYTES:
        raise InvalidServiceNameError(
            f"service name {shown}... is longer than {_MAX_NAME_BYTES} bytes"
        )
    if name.startswith("/"):
        raise InvalidServiceNameError(f"service name {shown} must not start with '/'")
    for position, segment in enumerate(name.split("/")):
        if not segment:
            raise InvalidServiceNameError(f"service name {shown} has an empty segment")
        if segment in (".", ".."):
            raise InvalidServiceNameError(f"service name {shown} has a '.' or '..' segment")
        if not _SEGMENT.fullmatch(segment):
            raise InvalidServiceNameError(
                f"service name {shown} may hold only letters, digits, '.', '-', '_' and '/'"
            )
        if len(segment) > _MAX_SEGMENT_BYTES:
            raise InvalidServiceNameError(
                f"service name {shown} has a segment longer than {_MAX_SEGMENT_BYTES} bytes"
            )
        if position > 0 and segment in _RESERVED:
            raise InvalidServiceNameError(
                f"service name {shown}: nested segment {segment!r} would collide with a file"
            )
    return name


def service_id(root: Root, name: str) -> SpiffeId:
    validate_service_name(name)
    try:
        return SpiffeId.from_parts(root.trust_domain, "/" + name)
    except InvalidSpiffeIdError as exc:
        raise InvalidServiceNameError(f"service name {name[:80]!r}: {exc}") from exc


def service_dir(root: Root, name: str) -> Path:
    return root.services_path.joinpath(*name.split("/"))


def check_not_nested(root: Root, bundle: Bundle, name: str) -> None:
    """Refuse a new service whose directory would hold, or sit inside, another service's.

    ``team/payments`` lives in ``services/team/payments/``, inside ``team``'s
    own directory: whoever mounts or is given ``services/team`` gets
    payments' private key too.  So the pair is refused, in either order
    (PROFILE.md §3.4).  Both the bundle and the disk are consulted: an entry
    another tool wrote, or files whose entry is gone, count as a service.
    """
    segments = name.split("/")
    ancestors = ["/".join(segments[:end]) for end in range(1, len(segments))]
    inner_prefix = f"spiffe://{root.trust_domain}/{name}/"
    for ancestor in ancestors:
        directory = service_dir(root, ancestor)
        holds = any(os.path.lexists(directory / f) for f in (ID_FILE, KEY_FILE, STAGED_KEY_FILE))
        if holds or f"spiffe://{root.trust_domain}/{ancestor}" in _raw_ids(bundle):
            raise NestedServiceError(
                f"service {name!r} would live inside the directory of service {ancestor!r}, "
                "which would then hold its private key; choose a name that does not nest "
                f"under {ancestor!r}"
            )
    inner = [sid for sid in _raw_ids(bundle) if sid.startswith(inner_prefix)]
    directory = service_dir(root, name)
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        inner += [f"{name}/{entry.name}" for entry in os.scandir(directory) if entry.is_dir()]
    if inner:
        raise NestedServiceError(
            f"service {name!r} would hold the directory of {inner[0][:200]!r} inside its own, "
            "and with it that service's private key; choose a name that no other service "
            "nests under"
        )


def _raw_ids(bundle: Bundle) -> list[str]:
    # Raw entry names: a malformed entry still names a service.
    identities = bundle.to_document()["identities"]
    return list(identities) if isinstance(identities, dict) else []


def service_dirs(root: Root, name: str) -> list[Path]:
    """The directories from ``services/`` down to *name*'s own, outermost first."""
    directory = root.services_path
    found = [directory]
    for segment in name.split("/"):
        directory = directory / segment
        found.append(directory)
    return found


# -- who may write the root (PROFILE.md §10: the root is the trust anchor) --------------


def directory_problem(st: os.stat_result) -> str | None:
    """Why a directory with status *st* cannot be trusted by this producer, or None.

    A directory that another user owns, or that a group or everyone may write,
    lets someone else replace the files in it (a key by a link to another
    service's key, the bundle by one of their own) between two of our steps.
    """
    euid = os.geteuid()
    if st.st_uid != euid:
        return f"is owned by uid {st.st_uid}, not by this producer (uid {euid})"
    if st.st_mode & 0o022:
        who = (
            "group- and world"
            if st.st_mode & 0o022 == 0o022
            else ("world" if st.st_mode & 0o002 else "group")
        )
        return f"is {who}-writable (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def check_directory(path: Path, *, follow: bool = False) -> os.stat_result:
    """Refuse (:class:`UnsafeRootError`) a root directory others could write, or a link.

    *follow* is for the root itself, which an operator may reach through a
    link; every directory inside it must be a real directory.
    """
    st = os.stat(path) if follow else require_directory(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ProvisionError(f"{path} exists and is not a directory")
    problem = directory_problem(st)
    if problem is not None:
        raise UnsafeRootError(
            f"{path} {problem}; refusing to write the root through it "
            f"(repair: {_directory_repair(path, st)})"
        )
    return st


def _directory_repair(path: Path, st: os.stat_result) -> str:
    quoted = shlex.quote(os.fspath(path))
    euid = os.geteuid()
    if st.st_uid != euid:
        return f"chown {euid} {quoted} && chmod go-w {quoted}"
    return f"chmod go-w {quoted}"


def as_root(root: RootLike) -> Root:
    if isinstance(root, Root):
        return root
    if isinstance(root, str | os.PathLike):
        return open_root(root)
    raise TypeError(f"root must be a Root or a path, not {type(root).__name__}")


def key_access(directory: Path) -> tuple[int, int | None]:
    """The mode (and group) a key file in *directory* gets.

    ``0600`` normally.  In a directory opened to its workload's group and to
    nobody else (group ``r-x``, others nothing: mode ``0750``; README:
    read-only access for a workload), ``0640`` with the directory's group,
    so the workload reads its key but can neither write the key nor plant
    anything next to it.
    """
    try:
        st = os.lstat(directory)
    except (FileNotFoundError, NotADirectoryError):
        return KEY_MODE, None
    if stat.S_IMODE(st.st_mode) & 0o077 == 0o050:
        return GROUP_KEY_MODE, st.st_gid
    return KEY_MODE, None


# -- what the doctor reports ------------------------------------------------------


@dataclass(frozen=True)
class RootFinding:
    """One thing in a root that the producer refuses to write through, with its repair.

    ``kind`` is stable for scripts: ``unsafe_directory`` (a directory others
    own or may write), ``link`` (a symbolic link where a file or directory of
    the root belongs), ``not_regular`` (a FIFO, socket or device there),
    ``key_mode`` (a key file readable by others), ``lock_mode`` (``.lock`` not
    ``0600``).  ``repair`` is a shell command that fixes it.  (Services nested
    in another's directory, which older versions made and ``add`` now refuses,
    are reported by :mod:`spiffile.provision.doctor`.)
    """

    kind: str
    path: Path
    message: str
    repair: str


def root_findings(root: Root) -> list[RootFinding]:
    """Everything in *root*'s file system layout that a write would refuse (read only, no lock).

    The checks the producer makes on every write (:func:`check_directory`,
    the no-link reads of :mod:`spiffile.files`), run over the whole root at
    once so that ``spiffile doctor`` can list them with the command that
    repairs each.  Sorted by path.
    """
    findings: list[RootFinding] = []
    _directory_finding(findings, root.path, follow=True)
    specials = (
        (root.path / LOCK_FILE, KEY_MODE),
        (root.bundle_path, None),
        (root.path / SEQUENCE_FILE, None),
    )
    for special, mode in specials:
        _file_finding(findings, special, mode)
    if os.path.lexists(root.services_path) and _directory_finding(findings, root.services_path):
        for dirpath, dirnames, filenames in os.walk(root.services_path):
            here = Path(dirpath)
            for entry in sorted(dirnames):
                if not _directory_finding(findings, here / entry):
                    dirnames.remove(entry)  # Not entered: a link or someone else's.
            allowed, _ = key_access(here)
            for entry in sorted(filenames):
                if entry in (ID_FILE, KEY_FILE, STAGED_KEY_FILE):
                    _file_finding(findings, here / entry, allowed if entry != ID_FILE else None)

    return sorted(findings, key=lambda finding: (str(finding.path), finding.kind))


def _directory_finding(findings: list[RootFinding], path: Path, *, follow: bool = False) -> bool:
    """Add what is wrong with directory *path*; True if it is safe to look inside."""
    quoted = shlex.quote(os.fspath(path))
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError:
        return False
    if stat.S_ISLNK(st.st_mode):
        findings.append(RootFinding("link", path, f"{path} is a symbolic link", f"rm {quoted}"))
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    problem = directory_problem(st)
    if problem is None:
        return True
    findings.append(
        RootFinding("unsafe_directory", path, f"{path} {problem}", _directory_repair(path, st))
    )
    return False


def _file_finding(findings: list[RootFinding], path: Path, mode: int | None) -> None:
    """Add what is wrong with root file *path* (a key or lock file when *mode* is given)."""
    quoted = shlex.quote(os.fspath(path))
    try:
        st = os.lstat(path)
    except OSError:
        return
    if stat.S_ISLNK(st.st_mode):
        findings.append(RootFinding("link", path, f"{path} is a symbolic link", f"rm {quoted}"))
    elif not stat.S_ISREG(st.st_mode):
        findings.append(
            RootFinding("not_regular", path, f"{path} is not a regular file", f"rm {quoted}")
        )
    elif mode is not None and stat.S_IMODE(st.st_mode) & ~mode & 0o777:
        kind = "lock_mode" if path.name == LOCK_FILE else "key_mode"
        findings.append(
            RootFinding(
                kind,
                path,
                f"{path} is mode {stat.S_IMODE(st.st_mode):04o}, wider than {mode:04o}",
                f"chmod {mode:04o} {quoted}",
            )
        )


# -- roots -------------------------------------------------------------------------


def init_root(
    path: str | os.PathLike[str],
    trust_domain: str,
    *,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
) -> Root:
    """Create an identity root for *trust_domain* at *path*, or open the existing one.

    Idempotent for the same trust domain (nothing is rewritten); raises
    :class:`TrustDomainMismatchError` for another one, and
    :class:`InvalidBundleError` (touching nothing) if the bundle is corrupt.
    """
    root = Root(path, trust_domain, lock_timeout=lock_timeout)
    created: list[Path] = []
    fresh = False
    with os_errors(root):
        try:
            if not root.path.exists():
                # Like `mkdir -p`, but every directory created gets exactly 0755
                # whatever the umask: a group/world-writable parent would let
                # others swap the root (os.makedirs gives parents 0777 & ~umask).
                missing = [root.path, *(p for p in root.path.parents if not p.exists())]
                for directory in reversed(missing):
                    if make_directory(directory, _ROOT_DIR_MODE):
                        created.append(directory)
            elif not root.path.is_dir():
                raise ProvisionError(f"{root.path} exists and is not a directory")
            if root.bundle_path.exists():
                # Checked before the lock too: a directory that is not (or not
                # our) root must not be left with a ``.lock`` file.
                _check_existing_bundle(root)
            check_directory(root.path, follow=True)
            fresh = not os.path.lexists(root.path / LOCK_FILE)
            with root.lock():
                if root.bundle_path.exists():
                    _check_existing_bundle(root)
                else:
                    root.write_bundle(Bundle.empty(root.trust_domain))
                _make_dir(root, root.services_path, _ROOT_DIR_MODE)
        except BaseException:
            # The lock's owner took back bundle.json and services/; what made
            # the directory a root in the making goes too, so a failed init
            # leaves the place as it found it.
            if fresh and not root.bundle_path.exists():
                for leftover in (SEQUENCE_FILE, LOCK_FILE):
                    with contextlib.suppress(OSError):
                        remove_file(root.path / leftover)
            for directory in reversed(created):
                with contextlib.suppress(OSError):
                    remove_directory(directory)
            raise
    return root


def _check_existing_bundle(root: Root) -> None:
    existing = _parse_bundle(
        root.bundle_path, read_regular(root.bundle_path, limit=MAX_BUNDLE_BYTES)
    )
    if existing.trust_domain != root.trust_domain:
        raise TrustDomainMismatchError(
            f"{root.path} is already a root for trust domain "
            f"{existing.trust_domain}, not {root.trust_domain}"
        )


def open_root(path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Root:
    """Open an existing root; :class:`RootNotFoundError` if *path* is not one."""
    _refuse_nul(path)
    absolute = Path(os.path.abspath(path))
    bundle_path = absolute / BUNDLE_FILE
    try:
        data = read_regular(bundle_path, limit=MAX_BUNDLE_BYTES)
    except (FileNotFoundError, NotADirectoryError):
        raise RootNotFoundError(
            f"{absolute} is not an identity root (no {BUNDLE_FILE}); create it with init"
        ) from None
    except OSError as exc:
        raise ProvisionError(f"cannot read {bundle_path}: {exc.strerror or exc}") from exc
    bundle = _parse_bundle(bundle_path, data)
    root = Root(absolute, bundle.trust_domain, lock_timeout=lock_timeout)
    root._cache = (data, bundle)
    return root


def _make_dir(root: Root, path: Path, mode: int, *, group: int | None = None) -> None:
    """Create one directory with exactly *mode* (whatever the umask), or check the existing one."""
    try:
        created = root.changes.make_dir(path, mode, group=group)
    except UnsafeRootError:
        raise
    except NotADirectoryError:
        raise ProvisionError(f"{path.parent} exists and is not a directory") from None
    if not created:
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise ProvisionError(f"{path} exists and is not a directory")
        check_directory(path)


def ensure_service_dir(root: Root, name: str, *, group: int | None = None) -> Path:
    """Create (or check) every directory down to *name*'s; the last one gets *group* access."""
    dirs = service_dirs(root, name)
    _make_dir(root, dirs[0], _ROOT_DIR_MODE)
    for directory in dirs[1:-1]:
        # Intermediate directories of nested names: a workload in a group
        # layout must be able to traverse them, and nothing in them is secret.
        _make_dir(root, directory, _ROOT_DIR_MODE if group is not None else _SERVICE_DIR_MODE)
    mode = _SERVICE_DIR_MODE if group is None else GROUP_DIR_MODE
    _make_dir(root, dirs[-1], mode, group=group)
    return dirs[-1]


def check_service_dirs(root: Root, name: str) -> None:
    """Refuse a service whose directories (from ``services/`` down) are links or others'."""
    for directory in service_dirs(root, name):
        if not os.path.lexists(directory):
            return
        check_directory(directory)


def sweep_stale_temporaries(directory: Path) -> None:
    """Delete temporary files of writes killed before their rename.

    Safe only under the lock: every writer of a root holds it, so a temporary
    file seen now belongs to a dead writer (and may hold an unbound private key).
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for entry in names:
        if _STALE_TEMP.fullmatch(entry):
            path = directory / entry
            if stat.S_ISREG(os.lstat(path).st_mode):
                remove_file(path)


# -- keys and bindings (callers hold the lock) ----------------------------------------
