"""An identity root on disk: its layout, its lock, its bundle, and service names.

The primitives :mod:`spiffile.provision` builds its operations on.  Every
read-modify-write of ``bundle.json`` happens under :meth:`Root.lock`, an
exclusive ``flock`` on ``<root>/.lock``: concurrent producers serialize
instead of losing each other's updates, and the kernel releases the lock of
a producer that dies, so a crash never wedges a root.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TypeAlias

from spiffile.bundle import MAX_BUNDLE_BYTES, Bundle
from spiffile.errors import (
    InvalidBundleError,
    InvalidServiceNameError,
    InvalidSpiffeIdError,
    LockTimeoutError,
    ProvisionError,
    RootNotFoundError,
    TrustDomainMismatchError,
)
from spiffile.files import atomic_write, fsync_directory, read_file
from spiffile.spiffe_id import MAX_ID_BYTES, SpiffeId, validate_trust_domain

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_LOCK_TIMEOUT",
    "ID_FILE",
    "KEY_FILE",
    "KEY_MODE",
    "LOCK_FILE",
    "PUBLIC_MODE",
    "SERVICES_DIR",
    "STAGED_KEY_FILE",
    "Root",
    "RootLike",
    "as_root",
    "ensure_service_dir",
    "init_root",
    "locked",
    "open_root",
    "service_dir",
    "service_id",
    "step",
    "sweep_stale_temporaries",
    "validate_service_name",
]

BUNDLE_FILE: Final = "bundle.json"
SERVICES_DIR: Final = "services"
LOCK_FILE: Final = ".lock"
ID_FILE: Final = "id"
KEY_FILE: Final = "key.pem"
STAGED_KEY_FILE: Final = "key.next.pem"
#: Seconds a producer waits for another one to release the root's lock.
DEFAULT_LOCK_TIMEOUT: Final = 30.0

KEY_MODE: Final = 0o600
PUBLIC_MODE: Final = 0o644
_SERVICE_DIR_MODE: Final = 0o700
_ROOT_DIR_MODE: Final = 0o755
_MAX_SEGMENT_BYTES: Final = 255
# The profile caps a SPIFFE ID at 2048 bytes: "spiffe://", a trust domain of at
# least one byte and "/" leave this much for the name (checked exactly later).
_MAX_NAME_BYTES: Final = MAX_ID_BYTES - len("spiffe://x/")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")
# A service directory holds these files; a nested service named like one of
# them ("orders/id") would collide with its parent service's file.
_RESERVED: Final = frozenset({ID_FILE, KEY_FILE, STAGED_KEY_FILE})
# Left behind by an atomic_write killed between create and rename
# (files.atomic_write names them ".<name>.<pid>.<thread>.<ns>.tmp").
_STALE_TEMP: Final = re.compile(r"\.(?:id|key\.pem|key\.next\.pem|bundle\.json)\..+\.tmp")
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
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    fd, self._fd = self._fd, None
                    os.close(fd)
        finally:
            self._mutex.release()

    # -- the bundle (callers hold the lock) ------------------------------------------

    def read_bundle(self) -> Bundle:
        """The root's current bundle (the caller holds :meth:`lock`).

        Raises :class:`RootNotFoundError` when the root has no bundle and
        :class:`TrustDomainMismatchError` when it names another trust domain.
        """
        try:
            data = read_file(self.bundle_path, limit=MAX_BUNDLE_BYTES)
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
        new = bundle.with_sequence((bundle.sequence or 0) + 1)
        data = new.to_json()
        atomic_write(self.bundle_path, data, mode=PUBLIC_MODE)
        self._cache = (data, new)
        return new


#: Where a function accepts a root: a :class:`Root`, or the path of one.
RootLike: TypeAlias = Root | str | os.PathLike[str]


def _flock(path: Path, deadline: float, limit: float) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, KEY_MODE)
    except FileNotFoundError:
        raise RootNotFoundError(
            f"{path.parent} is not an identity root (no such directory)"
        ) from None
    delay = 0.0005
    try:
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
def _os_errors(root: Root) -> Iterator[None]:
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
    with _os_errors(root), root.lock():
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


def as_root(root: RootLike) -> Root:
    if isinstance(root, Root):
        return root
    if isinstance(root, str | os.PathLike):
        return open_root(root)
    raise TypeError(f"root must be a Root or a path, not {type(root).__name__}")


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
    with _os_errors(root):
        if not root.path.exists():
            # Like `mkdir -p`, but every directory created gets exactly 0755
            # whatever the umask: a group/world-writable parent would let
            # others swap the root (os.makedirs gives parents 0777 & ~umask).
            missing = [root.path, *(p for p in root.path.parents if not p.exists())]
            for directory in reversed(missing):
                with contextlib.suppress(FileExistsError):  # A concurrent init.
                    os.mkdir(directory, _ROOT_DIR_MODE)
                    os.chmod(directory, _ROOT_DIR_MODE)
        elif not root.path.is_dir():
            raise ProvisionError(f"{root.path} exists and is not a directory")
        if root.bundle_path.exists():
            # Checked before the lock too: a directory that is not (or not
            # our) root must not be left with a ``.lock`` file.
            _check_existing_bundle(root)
        with root.lock():
            if root.bundle_path.exists():
                _check_existing_bundle(root)
            else:
                root.write_bundle(Bundle.empty(root.trust_domain))
            _make_dir(root.services_path, _ROOT_DIR_MODE)
    return root


def _check_existing_bundle(root: Root) -> None:
    existing = _parse_bundle(root.bundle_path, read_file(root.bundle_path))
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
        data = read_file(bundle_path, limit=MAX_BUNDLE_BYTES)
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


def _make_dir(path: Path, mode: int) -> None:
    """Create one directory with exactly *mode* (whatever the umask), or check the existing one."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise ProvisionError(f"{path} exists and is not a directory") from None
        return
    os.chmod(path, mode)
    fsync_directory(path.parent)


def ensure_service_dir(root: Root, name: str) -> Path:
    _make_dir(root.services_path, _ROOT_DIR_MODE)
    directory = root.services_path
    for segment in name.split("/"):
        directory = directory / segment
        _make_dir(directory, _SERVICE_DIR_MODE)
    return directory


def sweep_stale_temporaries(directory: Path) -> None:
    """Delete temporary files of writes killed before their rename.

    Safe only under the lock: every writer of a root holds it, so a temporary
    file seen now belongs to a dead writer (and may hold an unbound private key).
    """
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    removed = False
    for entry in names:
        if _STALE_TEMP.fullmatch(entry):
            path = directory / entry
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.unlink(path)
                removed = True
    if removed:
        fsync_directory(directory)


# -- keys and bindings (callers hold the lock) ----------------------------------------
