"""Producer side: create and maintain an identity root (profile: provisioned root layout).

A root is a directory holding ``bundle.json`` and ``services/<name>/{id,key.pem}``.
Every operation that reads and rewrites the bundle runs under an exclusive
``flock`` on ``<root>/.lock``, so concurrent producers (two deploy scripts, a
CLI and a test) serialize instead of losing each other's updates.  Every file
is written through :func:`spiffile.files.atomic_write`, private keys with mode
0600 from their first byte.

Crash safety rests on one ordering rule: **a public key enters the bundle
before its private key is written, and a private key is deleted before its
public key leaves the bundle.**  So at every instant a SIGKILL can leave,
every private key file on disk (``key.pem`` and a staged ``key.next.pem``)
is bound to its identity in the bundle, and the service can always
authenticate.  The only residue a crash can leave is a bound public key whose
private key was never written: harmless (nobody can sign with it) and removed
by :func:`prune_service`.  Re-running the interrupted command completes it;
``add_service`` also registers a key file that exists but is not bound (a
restored backup, a root written by another tool).

Rotation is two-phase so that it is safe when bundles reach other hosts later
than keys do: :func:`stage_rotation` binds a new key while the service keeps
signing with the old one, :func:`commit_rotation` switches the service to it,
:func:`prune_service` drops the old key.  :func:`rotate_service` does all
three at once (reusing a key already staged).
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec

from spiffile.bundle import MAX_BUNDLE_BYTES, Bundle
from spiffile.errors import (
    InvalidBundleError,
    InvalidKeyError,
    InvalidServiceNameError,
    InvalidSpiffeIdError,
    KeyInUseError,
    LockTimeoutError,
    NoStagedRotationError,
    ProvisionError,
    RootNotFoundError,
    ServiceNotFoundError,
    TrustDomainMismatchError,
    UnknownKeyError,
)
from spiffile.files import atomic_write, fsync_directory, read_file
from spiffile.keys import (
    generate_private_key,
    kid_for,
    load_private_key_pem,
    private_key_to_pem,
    public_jwk,
)
from spiffile.kubernetes import render_kubernetes
from spiffile.spiffe_id import SpiffeId, validate_trust_domain

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_LOCK_TIMEOUT",
    "ID_FILE",
    "KEY_FILE",
    "SERVICES_DIR",
    "STAGED_KEY_FILE",
    "Root",
    "RootLike",
    "ServiceInfo",
    "add_service",
    "commit_rotation",
    "export_kubernetes",
    "init_root",
    "list_services",
    "load_identity",
    "open_root",
    "prune_service",
    "remove_service",
    "revoke_key",
    "rotate_service",
    "service_env",
    "service_info",
    "stage_rotation",
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

_KEY_MODE: Final = 0o600
_PUBLIC_MODE: Final = 0o644
_SERVICE_DIR_MODE: Final = 0o700
_ROOT_DIR_MODE: Final = 0o755
_MAX_SEGMENT_BYTES: Final = 255
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


def _step(name: str) -> None:
    """Mark a point between two durable writes (see ``_CRASH_ENV``)."""
    if os.environ.get(_CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


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

    def _read_bundle(self) -> Bundle:
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

    def _write_bundle(self, bundle: Bundle) -> Bundle:
        # Every write increases spiffe_sequence: consumers refuse to go back.
        new = bundle.with_sequence((bundle.sequence or 0) + 1)
        data = new.to_json()
        atomic_write(self.bundle_path, data, mode=_PUBLIC_MODE)
        self._cache = (data, new)
        return new


#: Where a function accepts a root: a :class:`Root`, or the path of one.
RootLike: TypeAlias = Root | str | os.PathLike[str]


def _flock(path: Path, deadline: float, limit: float) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _KEY_MODE)
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
def _locked(root: Root) -> Iterator[Bundle]:
    """The lock, OS-error translation and the current bundle, for one operation."""
    with _os_errors(root), root.lock():
        yield root._read_bundle()


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


def _service_id(root: Root, name: str) -> SpiffeId:
    validate_service_name(name)
    try:
        return SpiffeId.from_parts(root.trust_domain, "/" + name)
    except InvalidSpiffeIdError as exc:
        raise InvalidServiceNameError(f"service name {name[:80]!r}: {exc}") from exc


def _service_dir(root: Root, name: str) -> Path:
    return root.services_path.joinpath(*name.split("/"))


def _as_root(root: RootLike) -> Root:
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
            os.makedirs(root.path, mode=_ROOT_DIR_MODE, exist_ok=True)
            # makedirs applies the umask; a root must not be group/world writable.
            os.chmod(root.path, _ROOT_DIR_MODE)
        elif not root.path.is_dir():
            raise ProvisionError(f"{root.path} exists and is not a directory")
        with root.lock():
            if root.bundle_path.exists():
                existing = _parse_bundle(root.bundle_path, read_file(root.bundle_path))
                if existing.trust_domain != root.trust_domain:
                    raise TrustDomainMismatchError(
                        f"{root.path} is already a root for trust domain "
                        f"{existing.trust_domain}, not {root.trust_domain}"
                    )
            else:
                root._write_bundle(Bundle.empty(root.trust_domain))
            _make_dir(root.services_path, _ROOT_DIR_MODE)
    return root


def open_root(path: str | os.PathLike[str], *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Root:
    """Open an existing root; :class:`RootNotFoundError` if *path* is not one."""
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


def _ensure_service_dir(root: Root, name: str) -> Path:
    _make_dir(root.services_path, _ROOT_DIR_MODE)
    directory = root.services_path
    for segment in name.split("/"):
        directory = directory / segment
        _make_dir(directory, _SERVICE_DIR_MODE)
    return directory


def _sweep_stale_temporaries(directory: Path) -> None:
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


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    try:
        data = read_file(path, limit=64 * 1024)
    except FileNotFoundError:
        return None
    try:
        return load_private_key_pem(data)
    except InvalidKeyError as exc:
        raise InvalidKeyError(f"{path}: {exc}") from exc


def _bound_kids(bundle: Bundle, sid: SpiffeId) -> tuple[str, ...]:
    if sid not in bundle:
        return ()
    return tuple(key.kid for key in bundle.keys_for(sid))


def _bind(root: Root, bundle: Bundle, sid: SpiffeId, key: ec.EllipticCurvePrivateKey) -> Bundle:
    """Bind *key*'s public key to *sid* (appended: the newest key comes last)."""
    jwk = public_jwk(key.public_key())
    if jwk["kid"] in _bound_kids(bundle, sid):
        return bundle
    jwks = bundle.jwks_for(sid) if sid in bundle else []
    return root._write_bundle(bundle.with_keys(sid, [*jwks, jwk]))


def _unbind(root: Root, bundle: Bundle, sid: SpiffeId, kids: set[str]) -> Bundle:
    """Remove the keys *kids* from *sid*'s entry (the entry itself when none is left)."""
    if not kids & set(_bound_kids(bundle, sid)):
        return bundle
    remaining = [jwk for jwk in bundle.jwks_for(sid) if jwk["kid"] not in kids]
    if remaining:
        return root._write_bundle(bundle.with_keys(sid, remaining))
    return root._write_bundle(bundle.without_identity(sid))


def _require_key(directory: Path, name: str) -> ec.EllipticCurvePrivateKey:
    key = _load_key(directory / KEY_FILE)
    if key is None:
        raise ServiceNotFoundError(f"no service {name!r} in this root (no {KEY_FILE})")
    return key


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    atomic_write(path, private_key_to_pem(key), mode=_KEY_MODE)


def _write_id(directory: Path, sid: SpiffeId) -> None:
    content = f"{sid}\n".encode()
    path = directory / ID_FILE
    with contextlib.suppress(FileNotFoundError):
        if read_file(path, limit=4096) == content:
            return
    atomic_write(path, content, mode=_PUBLIC_MODE)


# -- services ------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceInfo:
    """One provisioned service: its identity, signing key and what the bundle binds."""

    name: str
    id: SpiffeId
    #: The ``kid`` of ``key.pem``: the key the service signs with now.
    kid: str
    #: Every ``kid`` bound to the identity in the bundle, oldest first.
    bound_kids: tuple[str, ...]
    #: The ``kid`` of ``key.next.pem`` while a rotation is staged.
    staged_kid: str | None
    directory: Path

    @property
    def bound(self) -> bool:
        """Whether the signing key is in the bundle (false only in a root damaged by hand)."""
        return self.kid in self.bound_kids

    @property
    def key_file(self) -> Path:
        """The service's private key file."""
        return self.directory / KEY_FILE

    @property
    def id_file(self) -> Path:
        """The service's identity file."""
        return self.directory / ID_FILE


def _info(bundle: Bundle, name: str, sid: SpiffeId, directory: Path) -> ServiceInfo:
    key = _require_key(directory, name)
    staged = _load_key(directory / STAGED_KEY_FILE)
    return ServiceInfo(
        name=name,
        id=sid,
        kid=kid_for(key.public_key()),
        bound_kids=_bound_kids(bundle, sid),
        staged_kid=None if staged is None else kid_for(staged.public_key()),
        directory=directory,
    )


def add_service(root: RootLike, name: str) -> ServiceInfo:
    """Provision service *name*: identity file, private key, public key bound in the bundle.

    Idempotent: an existing key is kept.  A key file that exists but is not
    bound (a crash of another tool, a restored backup) is registered.
    Write order: ``id``, then the bundle, then ``key.pem`` (see the module
    docstring), so the key file never exists unbound.
    """
    root = _as_root(root)
    sid = _service_id(root, name)
    with _locked(root) as bundle:
        directory = _ensure_service_dir(root, name)
        _sweep_stale_temporaries(directory)
        _write_id(directory, sid)
        _step("add:id-written")
        key = _load_key(directory / KEY_FILE)
        if key is None:
            key = generate_private_key()
            bundle = _bind(root, bundle, sid, key)
            _step("add:bundle-written")
            _write_key(directory / KEY_FILE, key)
            _step("add:key-written")
        else:
            bundle = _bind(root, bundle, sid, key)
        return _info(bundle, name, sid, directory)


def _stage(root: Root, bundle: Bundle, sid: SpiffeId, directory: Path) -> tuple[str, Bundle]:
    staged = _load_key(directory / STAGED_KEY_FILE)
    if staged is not None:
        return kid_for(staged.public_key()), _bind(root, bundle, sid, staged)
    key = generate_private_key()
    bundle = _bind(root, bundle, sid, key)
    _step("stage:bundle-written")
    _write_key(directory / STAGED_KEY_FILE, key)
    _step("stage:key-written")
    return kid_for(key.public_key()), bundle


def _commit(root: Root, bundle: Bundle, sid: SpiffeId, directory: Path, name: str) -> Bundle:
    staged = _load_key(directory / STAGED_KEY_FILE)
    if staged is None:
        raise NoStagedRotationError(
            f"no rotation staged for service {name!r} (stage one first, or it was committed)"
        )
    bundle = _bind(root, bundle, sid, staged)
    # The staged file was created 0600 by atomic_write; renaming it keeps the
    # key file's replacement atomic and never widens its mode.
    os.replace(directory / STAGED_KEY_FILE, directory / KEY_FILE)
    fsync_directory(directory)
    _step("commit:renamed")
    return bundle


def _service_prelude(root: Root, bundle: Bundle, name: str) -> tuple[SpiffeId, Path, Bundle]:
    """Common start of every change to an existing service: its key, bound."""
    sid = _service_id(root, name)
    directory = _service_dir(root, name)
    key = _require_key(directory, name)
    _sweep_stale_temporaries(directory)
    return sid, directory, _bind(root, bundle, sid, key)


def stage_rotation(root: RootLike, name: str) -> str:
    """Phase 1: bind a new key (``key.next.pem``) while the service keeps signing with the old one.

    Returns the staged ``kid``.  Idempotent: a key already staged is kept.
    Commit once the new bundle has reached every verifier.
    """
    root = _as_root(root)
    _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        kid, _ = _stage(root, bundle, sid, directory)
        return kid


def commit_rotation(root: RootLike, name: str) -> str:
    """Phase 2: the service switches to the staged key; returns its ``kid``.

    The old key stays bound (tokens it signed remain verifiable) until
    :func:`prune_service`.  Raises :class:`NoStagedRotationError` if nothing
    is staged.
    """
    root = _as_root(root)
    _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        _commit(root, bundle, sid, directory, name)
        return kid_for(_require_key(directory, name).public_key())


def prune_service(root: RootLike, name: str) -> list[str]:
    """Phase 3: unbind every key except the current and the staged one; returns the removed kids."""
    root = _as_root(root)
    _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        return _prune(root, bundle, sid, directory, name)


def _prune(root: Root, bundle: Bundle, sid: SpiffeId, directory: Path, name: str) -> list[str]:
    keep = {kid_for(_require_key(directory, name).public_key())}
    staged = _load_key(directory / STAGED_KEY_FILE)
    if staged is not None:
        keep.add(kid_for(staged.public_key()))
    removed = [kid for kid in _bound_kids(bundle, sid) if kid not in keep]
    _unbind(root, bundle, sid, set(removed))
    return removed


def rotate_service(root: RootLike, name: str, keep_old: bool = True) -> str:
    """Switch *name* to a new key at once; returns the new ``kid``.

    Stage, commit and (unless *keep_old*) prune under one lock.  A key already
    staged is the one committed: it may already have reached other hosts.
    With ``keep_old=True`` the old key stays bound, so tokens it signed still
    verify until it is pruned; with ``keep_old=False`` only the new key
    remains bound.
    """
    root = _as_root(root)
    _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        kid, bundle = _stage(root, bundle, sid, directory)
        bundle = _commit(root, bundle, sid, directory, name)
        _step("rotate:committed")
        if not keep_old:
            _prune(root, bundle, sid, directory, name)
        return kid


def revoke_key(root: RootLike, name: str, kid: str) -> None:
    """Unbind one key by ``kid`` (an old key, or a staged one, whose file is deleted first).

    Refuses the current signing key with :class:`KeyInUseError`: revoking it
    would leave the service unable to authenticate; rotate first.
    :class:`UnknownKeyError` if no such key is bound or staged.
    """
    root = _as_root(root)
    _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        if kid == kid_for(_require_key(directory, name).public_key()):
            raise KeyInUseError(
                f"key {kid} is the current signing key of {name!r}; rotate before revoking it"
            )
        staged = _load_key(directory / STAGED_KEY_FILE)
        is_staged = staged is not None and kid == kid_for(staged.public_key())
        if not is_staged and kid not in _bound_kids(bundle, sid):
            raise UnknownKeyError(f"no key {kid[:64]!r} is bound to or staged for {name!r}")
        if is_staged:
            # Private key first: a key file must never outlive its binding.
            os.unlink(directory / STAGED_KEY_FILE)
            fsync_directory(directory)
            _step("revoke:staged-key-deleted")
        _unbind(root, bundle, sid, {kid})


def remove_service(root: RootLike, name: str) -> None:
    """Revoke *name*: its key files, then its identity file and directory, then its bundle entry.

    The key files go first, so no key on disk is ever unbound; re-running after
    a crash finishes the removal.  :class:`ServiceNotFoundError` if neither
    files nor a bundle entry exist.
    """
    root = _as_root(root)
    sid = _service_id(root, name)
    with _locked(root) as bundle:
        directory = _service_dir(root, name)
        files = [directory / f for f in (STAGED_KEY_FILE, KEY_FILE, ID_FILE)]
        present = [path for path in files if os.path.lexists(path)]
        # Raw membership: a malformed entry for this ID must go as well.
        entry_present = str(sid) in bundle.to_document()["identities"]
        if not present and not entry_present:
            raise ServiceNotFoundError(f"no service {name!r} in this root")
        _sweep_stale_temporaries(directory)
        for path in present:
            os.unlink(path)
            fsync_directory(directory)
            _step(f"remove:{path.name}-deleted")
        _remove_empty_dirs(root, directory)
        _step("remove:dirs-removed")
        if entry_present:
            root._write_bundle(bundle.without_identity(sid))
        _step("remove:bundle-written")


def _remove_empty_dirs(root: Root, directory: Path) -> None:
    """Remove *directory* and its parents up to ``services/`` while they are empty."""
    while directory != root.services_path and root.services_path in directory.parents:
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            pass
        except OSError:
            return  # Not empty: a nested service or a foreign file lives there.
        fsync_directory(directory.parent)
        directory = directory.parent


def service_info(root: RootLike, name: str) -> ServiceInfo:
    """The current state of one service (:class:`ServiceNotFoundError` if absent)."""
    root = _as_root(root)
    sid = _service_id(root, name)
    with _locked(root) as bundle:
        return _info(bundle, name, sid, _service_dir(root, name))


def list_services(root: RootLike) -> list[ServiceInfo]:
    """Every service of the root (a directory under ``services/`` with a key file), by name."""
    root = _as_root(root)
    found: list[ServiceInfo] = []
    with _locked(root) as bundle:
        for dirpath, dirnames, filenames in os.walk(root.services_path):
            dirnames.sort()
            if KEY_FILE not in filenames:
                continue
            name = Path(dirpath).relative_to(root.services_path).as_posix()
            try:
                sid = _service_id(root, name)
            except InvalidServiceNameError:
                continue  # Not ours: a directory no valid name maps to.
            found.append(_info(bundle, name, sid, Path(dirpath)))
    return sorted(found, key=lambda info: info.name)


def service_env(root: RootLike, name: str) -> dict[str, str]:
    """The ``SPIFFILE_*_FILE`` variables (absolute paths) that make a workload *name*."""
    root = _as_root(root)
    _service_id(root, name)
    directory = _service_dir(root, name)
    if not (directory / KEY_FILE).is_file():
        raise ServiceNotFoundError(f"no service {name!r} in this root (no {KEY_FILE})")
    return {
        "SPIFFILE_ID_FILE": os.fspath(directory / ID_FILE),
        "SPIFFILE_KEY_FILE": os.fspath(directory / KEY_FILE),
        "SPIFFILE_BUNDLE_FILE": os.fspath(root.bundle_path),
    }


def load_identity(root: RootLike, name: str, **options: Any) -> Identity:
    """The :class:`~spiffile.Identity` of service *name*, reading the root's files in place."""
    from spiffile.identity import Identity  # Imported late: identity is a sibling layer.

    env = service_env(root, name)
    return Identity.from_files(
        env["SPIFFILE_ID_FILE"], env["SPIFFILE_KEY_FILE"], env["SPIFFILE_BUNDLE_FILE"], **options
    )


def export_kubernetes(root: RootLike, name: str, *, namespace: str | None = None) -> str:
    """Kubernetes manifests for *name*: a Secret (id, key.pem), a ConfigMap (bundle.json).

    A commented pod-spec snippet shows the ``SPIFFILE_*`` variables and volume
    mounts.  The files are read under the lock, so the key and the bundle form
    one consistent snapshot in which the key is bound.
    """
    root = _as_root(root)
    sid = _service_id(root, name)
    with _locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        _write_id(directory, sid)
        info = _info(bundle, name, sid, directory)
        return render_kubernetes(
            name=name,
            spiffe_id=str(sid),
            trust_domain=root.trust_domain,
            kid=info.kid,
            id_file=read_file(directory / ID_FILE, limit=4096),
            key_pem=read_file(directory / KEY_FILE, limit=64 * 1024),
            bundle_json=read_file(root.bundle_path, limit=MAX_BUNDLE_BYTES),
            namespace=namespace,
        )
