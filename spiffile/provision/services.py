"""Producer side: create and maintain an identity root (PROFILE.md §3.4).

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

A failure part way (a full disk, a read-only file system) is not a crash:
the root's lock takes back every write the operation made, newest first
(:mod:`spiffile.provision._changes`), so the root is left as it was.

Rotation is two-phase so that it is safe when bundles reach other hosts later
than keys do: :func:`stage_rotation` binds a new key while the service keeps
signing with the old one, :func:`commit_rotation` switches the service to it,
:func:`prune_service` drops the old key.  :func:`rotate_service` does all
three at once (reusing a key already staged).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from spiffile._quote import quote_id_content
from spiffile.bundle import MAX_BUNDLE_BYTES, Bundle
from spiffile.errors import (
    InvalidKeyError,
    InvalidServiceNameError,
    KeyInUseError,
    NoStagedRotationError,
    ProvisionError,
    PruneTooSoonError,
    ServiceNotFoundError,
    UnknownKeyError,
)
from spiffile.files import (
    open_regular,
    read_descriptor,
    read_regular,
    set_access,
)
from spiffile.keys import (
    generate_private_key,
    kid_for,
    load_private_key_pem,
    private_key_to_pem,
    public_jwk,
)
from spiffile.provision.kubernetes import render_kubernetes
from spiffile.provision.root import (
    BUNDLE_FILE,
    DEFAULT_LOCK_TIMEOUT,
    GROUP_DIR_MODE,
    GROUP_KEY_MODE,
    ID_FILE,
    KEY_FILE,
    KEY_MODE,
    PUBLIC_MODE,
    SERVICES_DIR,
    STAGED_KEY_FILE,
    Root,
    RootLike,
    as_root,
    check_directory,
    check_not_nested,
    check_service_dirs,
    ensure_service_dir,
    init_root,
    key_access,
    locked,
    open_root,
    os_errors,
    service_dir,
    service_id,
    step,
    sweep_stale_temporaries,
    validate_service_name,
)
from spiffile.provision.x509 import SVID_FILE, SVID_KEY_FILE, x509_env
from spiffile.provision.x509 import service_hook as x509_service_hook
from spiffile.spiffe_id import SpiffeId
from spiffile.svid.jwt import DEFAULT_LEEWAY, DEFAULT_TTL

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = [
    "BUNDLE_FILE",
    "DEFAULT_LOCK_TIMEOUT",
    "ID_FILE",
    "KEY_FILE",
    "PRUNE_DELAY",
    "SERVICES_DIR",
    "STAGED_KEY_FILE",
    "Root",
    "RootLike",
    "Rotation",
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
    "republish_bundle",
    "revoke_key",
    "rotate",
    "rotate_service",
    "service_env",
    "service_info",
    "stage_rotation",
    "validate_service_name",
]


# -- keys and bindings (callers hold the lock) ----------------------------------------


_MAX_KEY_BYTES = 64 * 1024
#: Seconds a replaced key stays bound before prune retires it without force
#: (PROFILE.md §8.3): the default token lifetime plus the default leeway.
PRUNE_DELAY: Final = DEFAULT_TTL + int(DEFAULT_LEEWAY)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    mode_allowed, group = key_access(path.parent)
    try:
        with open_regular(path) as (fd, st):
            data = read_descriptor(fd, path, _MAX_KEY_BYTES)
            try:
                key = load_private_key_pem(data)
            except InvalidKeyError as exc:
                raise InvalidKeyError(f"{path}: {exc}") from exc
            # A key file put in by hand may be readable by others: narrow it
            # (removing access is always safe) rather than use it as it is.
            # fchmod on the descriptor just read: the file checked is the file
            # changed, even if the name is swapped for a link meanwhile.
            mode = stat.S_IMODE(st.st_mode)
            too_open = mode & ~mode_allowed & 0o777 or (
                group is not None and mode & 0o070 and st.st_gid != group
            )
            if too_open:
                narrowed = mode_allowed if group is not None and st.st_gid == group else KEY_MODE
                set_access(fd, path, narrowed)
                logging.getLogger("spiffile").warning(
                    "spiffile: %s was mode %04o; narrowed to %04o (a private key)",
                    path,
                    mode,
                    narrowed,
                )
    except (FileNotFoundError, NotADirectoryError):
        return None
    return key


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
    return root.write_bundle(bundle.with_keys(sid, [*jwks, jwk]))


def _unbind(root: Root, bundle: Bundle, sid: SpiffeId, kids: set[str]) -> Bundle:
    """Remove the keys *kids* from *sid*'s entry (the entry itself when none is left)."""
    if not kids & set(_bound_kids(bundle, sid)):
        return bundle
    remaining = [jwk for jwk in bundle.jwks_for(sid) if jwk["kid"] not in kids]
    if remaining:
        return root.write_bundle(bundle.with_keys(sid, remaining))
    return root.write_bundle(bundle.without_identity(sid))


def _require_key(directory: Path, name: str) -> ec.EllipticCurvePrivateKey:
    key = _load_key(directory / KEY_FILE)
    if key is None:
        raise ServiceNotFoundError(f"no service {name!r} in this root (no {KEY_FILE})")
    return key


def _write_key(root: Root, path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    mode, group = key_access(path.parent)
    root.changes.write(path, private_key_to_pem(key), mode=mode, group=group)


def _check_owner(directory: Path, sid: SpiffeId) -> None:
    """Refuse to touch a service directory whose ``id`` names another identity.

    On a case-insensitive file system (macOS, Windows) ``orders`` and
    ``Orders`` are one directory but two SPIFFE IDs: without this check,
    ``add Orders`` would bind orders' key to a second identity and
    ``remove Orders`` would delete orders' key.
    """
    path = directory / ID_FILE
    try:
        text = read_regular(path, limit=4096).decode("utf-8", "replace").rstrip()
    except (FileNotFoundError, NotADirectoryError):
        return
    if text == str(sid):
        return
    shown = quote_id_content(text)
    if shown is None:
        # Never quoted: a key copied over ``id`` would land in the message.
        raise ProvisionError(
            f"{path} does not hold a SPIFFE ID (one line starting with 'spiffe://'); "
            f"if it should be {sid}, delete it and run add again"
        )
    raise ProvisionError(
        f"{directory} belongs to {shown}, not {sid}: service names that differ only "
        "in case share a directory on case-insensitive file systems"
    )


def _write_id(root: Root, directory: Path, sid: SpiffeId) -> None:
    content = f"{sid}\n".encode()
    path = directory / ID_FILE
    with contextlib.suppress(FileNotFoundError):
        if read_regular(path, limit=4096) == content:
            return
    root.changes.write(path, content, mode=PUBLIC_MODE)


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


def add_service(root: RootLike, name: str, *, group: int | str | None = None) -> ServiceInfo:
    """Provision service *name*: identity file, private key, public key bound in the bundle.

    Idempotent: an existing key is kept.  A key file that exists but is not
    bound (a crash of another tool, a restored backup) is registered.
    Write order: ``id``, then the bundle, then ``key.pem`` (see the module
    docstring), so the key file never exists unbound.

    *group* (a group name or id) opens the service to a workload running as
    its own user without letting it write anything: the directory becomes
    ``0750`` and the key ``0640``, both with that group, owned by the
    producer (README: read-only access for a workload).  The layout is kept
    by every later rotation.
    """
    root = as_root(root)
    sid = service_id(root, name)
    gid = None if group is None else _resolve_group(group)
    with locked(root) as bundle:
        check_service_dirs(root, name)
        if not _is_provisioned(root, bundle, name, sid):
            check_not_nested(root, bundle, name)
        directory = ensure_service_dir(root, name, group=gid)
        _check_owner(directory, sid)
        if gid is not None:
            _open_to_group(root, directory, gid)
        sweep_stale_temporaries(directory)
        key = _load_key(directory / KEY_FILE)  # A corrupt key file stops us here.
        _write_id(root, directory, sid)
        step("add:id-written")
        if key is None:
            key = generate_private_key()
            bundle = _bind(root, bundle, sid, key)
            step("add:bundle-written")
            _write_key(root, directory / KEY_FILE, key)
            step("add:key-written")
        else:
            bundle = _bind(root, bundle, sid, key)
        x509_service_hook(root, name, force=False)
        return _info(bundle, name, sid, directory)


def _is_provisioned(root: Root, bundle: Bundle, name: str, sid: SpiffeId) -> bool:
    """Whether *name* exists already (its files or its entry): adding it again is allowed."""
    directory = service_dir(root, name)
    on_disk = any(os.path.lexists(directory / f) for f in (ID_FILE, KEY_FILE))
    return on_disk or str(sid) in bundle.to_document()["identities"]


def _resolve_group(group: int | str) -> int:
    import grp  # POSIX only, like the rest of the producer (flock).

    if isinstance(group, bool) or not isinstance(group, int | str):
        raise TypeError(f"group must be a name or an id, not {type(group).__name__}")
    try:
        return grp.getgrgid(group).gr_gid if isinstance(group, int) else grp.getgrnam(group).gr_gid
    except (KeyError, OverflowError):
        if isinstance(group, str) and group.isdigit():
            return _resolve_group(int(group))
        raise ProvisionError(f"no group {str(group)[:64]!r} on this host") from None


def _open_to_group(root: Root, directory: Path, gid: int) -> None:
    """Give an existing service directory (and its key files) the read-only group layout."""
    st = os.lstat(directory)
    if st.st_gid != gid or stat.S_IMODE(st.st_mode) != GROUP_DIR_MODE:
        root.changes.set_dir_access(directory, GROUP_DIR_MODE, group=gid)
    for file_name in (KEY_FILE, STAGED_KEY_FILE):
        path = directory / file_name
        with contextlib.suppress(FileNotFoundError), open_regular(path) as (fd, key_st):
            if key_st.st_gid != gid or stat.S_IMODE(key_st.st_mode) != GROUP_KEY_MODE:
                root.changes.set_file_access(fd, path, GROUP_KEY_MODE, group=gid)


def _stage(root: Root, bundle: Bundle, sid: SpiffeId, directory: Path) -> tuple[str, Bundle]:
    staged = _load_key(directory / STAGED_KEY_FILE)
    if staged is not None:
        return kid_for(staged.public_key()), _bind(root, bundle, sid, staged)
    key = generate_private_key()
    bundle = _bind(root, bundle, sid, key)
    step("stage:bundle-written")
    _write_key(root, directory / STAGED_KEY_FILE, key)
    step("stage:key-written")
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
    root.changes.rename(directory / STAGED_KEY_FILE, directory / KEY_FILE)
    # The key starts signing now: its mtime says so to the prune delay.
    with open_regular(directory / KEY_FILE) as (fd, _st):
        root.changes.touch(fd, directory / KEY_FILE)
    step("commit:renamed")
    return bundle


def _service_prelude(root: Root, bundle: Bundle, name: str) -> tuple[SpiffeId, Path, Bundle]:
    """Common start of every change to an existing service: its key, bound."""
    sid = service_id(root, name)
    check_service_dirs(root, name)
    directory = service_dir(root, name)
    _check_owner(directory, sid)
    key = _require_key(directory, name)
    sweep_stale_temporaries(directory)
    return sid, directory, _bind(root, bundle, sid, key)


def stage_rotation(root: RootLike, name: str) -> str:
    """Phase 1: bind a new key (``key.next.pem``) while the service keeps signing with the old one.

    Returns the staged ``kid``.  Idempotent: a key already staged is kept.
    Commit once the new bundle has reached every verifier.
    """
    root = as_root(root)
    service_id(root, name)
    with locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        kid, _ = _stage(root, bundle, sid, directory)
        return kid


def commit_rotation(root: RootLike, name: str) -> str:
    """Phase 2: the service switches to the staged key; returns its ``kid``.

    The old key stays bound (tokens it signed remain verifiable) until
    :func:`prune_service`.  Raises :class:`NoStagedRotationError` if nothing
    is staged.
    """
    root = as_root(root)
    service_id(root, name)
    with locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        _commit(root, bundle, sid, directory, name)
        return kid_for(_require_key(directory, name).public_key())


def prune_service(root: RootLike, name: str, *, force: bool = False) -> list[str]:
    """Phase 3: unbind every key except the current and the staged one; returns the removed kids.

    Refuses (:class:`PruneTooSoonError`) while the current key started
    signing less than :data:`PRUNE_DELAY` seconds ago, unless *force*: a
    token the previous key signed just before the switch is still valid for
    that long (PROFILE.md §8.3: longest lifetime plus leeway).  When the old
    key may be compromised, do not wait: rotate with ``keep_old=False``.
    """
    root = as_root(root)
    service_id(root, name)
    with locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        return _prune(root, bundle, sid, directory, name, force=force)


def _signing_since(directory: Path) -> float:
    """When the current key started signing: the last write (or commit) of ``key.pem``."""
    with open_regular(directory / KEY_FILE) as (_fd, st):
        return st.st_mtime


def _prune(
    root: Root, bundle: Bundle, sid: SpiffeId, directory: Path, name: str, *, force: bool
) -> list[str]:
    keep = {kid_for(_require_key(directory, name).public_key())}
    staged = _load_key(directory / STAGED_KEY_FILE)
    if staged is not None:
        keep.add(kid_for(staged.public_key()))
    removed = [kid for kid in _bound_kids(bundle, sid) if kid not in keep]
    if removed and not force:
        age = time.time() - _signing_since(directory)
        if age < PRUNE_DELAY:
            raise PruneTooSoonError(
                f"the current key of {name!r} started signing {max(age, 0):.0f} s ago; tokens "
                f"signed by the key it replaced stay valid for up to {PRUNE_DELAY} s "
                f"(PROFILE.md §8.3): prune again in {PRUNE_DELAY - max(age, 0):.0f} s, or force it"
            )
    _unbind(root, bundle, sid, set(removed))
    return removed


@dataclass(frozen=True)
class Rotation:
    """What a one-step rotation did, so that a caller can say it."""

    #: The ``kid`` the service signs with now.
    kid: str
    #: True when the committed key was one already staged (``key.next.pem``).
    reused_staged: bool
    #: The staged key thrown away by a rotation that dropped the old key.
    discarded_staged_kid: str | None
    #: The keys unbound by a rotation that dropped the old key.
    removed_kids: tuple[str, ...]


def rotate(root: RootLike, name: str, *, keep_old: bool = True) -> Rotation:
    """Switch *name* to a new key at once and say how (see :func:`rotate_service`).

    With ``keep_old=True`` a key already staged is the one committed: it may
    already have reached other hosts.  With ``keep_old=False`` (the old key
    may be compromised) the new key is always fresh: a staged key sat next to
    the old one, so it is deleted and unbound too, and only the fresh key
    remains bound.
    """
    root = as_root(root)
    service_id(root, name)
    with locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        discarded = None
        if not keep_old:
            staged = _load_key(directory / STAGED_KEY_FILE)
            if staged is not None:
                discarded = kid_for(staged.public_key())
                # Private key first: it stays bound until the prune below.
                root.changes.remove(directory / STAGED_KEY_FILE)
                step("rotate:staged-discarded")
        reused = discarded is None and _load_key(directory / STAGED_KEY_FILE) is not None
        kid, bundle = _stage(root, bundle, sid, directory)
        bundle = _commit(root, bundle, sid, directory, name)
        step("rotate:committed")
        removed: list[str] = []
        if not keep_old:
            removed = _prune(root, bundle, sid, directory, name, force=True)
        x509_service_hook(root, name, force=True)
        return Rotation(
            kid=kid,
            reused_staged=reused,
            discarded_staged_kid=discarded,
            removed_kids=tuple(removed),
        )


def rotate_service(root: RootLike, name: str, keep_old: bool = True) -> str:
    """Switch *name* to a new key at once; returns the new ``kid``.

    Stage, commit and (unless *keep_old*) prune under one lock.  With
    ``keep_old=True`` the old key stays bound, so tokens it signed still
    verify until it is pruned, and a key already staged is the one committed.
    With ``keep_old=False`` only a freshly generated key remains bound (a
    staged key is discarded).  :func:`rotate` also says which it did.
    """
    return rotate(root, name, keep_old=keep_old).kid


def revoke_key(root: RootLike, name: str, kid: str) -> None:
    """Unbind one key by ``kid`` (an old key, or a staged one, whose file is deleted first).

    Refuses the current signing key with :class:`KeyInUseError`: revoking it
    would leave the service unable to authenticate; rotate first.
    :class:`UnknownKeyError` if no such key is bound or staged.
    """
    root = as_root(root)
    service_id(root, name)
    with locked(root) as bundle:
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
            root.changes.remove(directory / STAGED_KEY_FILE)
            step("revoke:staged-key-deleted")
        _unbind(root, bundle, sid, {kid})


def remove_service(root: RootLike, name: str) -> None:
    """Revoke *name*: its key files, then its identity file and directory, then its bundle entry.

    The key files go first, so no key on disk is ever unbound; re-running after
    a crash finishes the removal.  :class:`ServiceNotFoundError` if neither
    files nor a bundle entry exist.
    """
    root = as_root(root)
    sid = service_id(root, name)
    with locked(root) as bundle:
        check_service_dirs(root, name)
        directory = service_dir(root, name)
        _check_owner(directory, sid)
        files = [
            directory / f for f in (STAGED_KEY_FILE, KEY_FILE, SVID_KEY_FILE, SVID_FILE, ID_FILE)
        ]
        present = [path for path in files if os.path.lexists(path)]
        # Raw membership: a malformed entry for this ID must go as well.
        entry_present = str(sid) in bundle.to_document()["identities"]
        if not present and not entry_present:
            raise ServiceNotFoundError(f"no service {name!r} in this root")
        sweep_stale_temporaries(directory)
        for path in present:
            root.changes.remove(path)
            step(f"remove:{path.name}-deleted")
        _remove_empty_dirs(root, directory)
        step("remove:dirs-removed")
        if entry_present:
            root.write_bundle(bundle.without_identity(sid))
        step("remove:bundle-written")


def _remove_empty_dirs(root: Root, directory: Path) -> None:
    """Remove *directory* and its parents up to ``services/`` while they are empty."""
    while directory != root.services_path and root.services_path in directory.parents:
        try:
            root.changes.remove_dir(directory)
        except FileNotFoundError:
            pass  # Gone already (a re-run after a crash): its parent may be too.
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return  # Not empty: a nested service or a foreign file lives there.
            raise
        directory = directory.parent


def service_info(root: RootLike, name: str) -> ServiceInfo:
    """The current state of one service (:class:`ServiceNotFoundError` if absent)."""
    root = as_root(root)
    sid = service_id(root, name)
    with locked(root) as bundle:
        check_service_dirs(root, name)
        return _info(bundle, name, sid, service_dir(root, name))


def list_services(root: RootLike) -> list[ServiceInfo]:
    """Every service of the root (a directory under ``services/`` with a key file), by name.

    The walk also deletes temporary files of writes killed before their rename
    (under the lock, so they belong to dead writers), including those of a
    service whose first ``add`` died before its key file existed.
    """
    root = as_root(root)
    found: list[ServiceInfo] = []
    with locked(root) as bundle:
        for dirpath, dirnames, filenames in os.walk(root.services_path):
            dirnames.sort()
            check_directory(Path(dirpath))
            for entry in dirnames:
                # os.walk lists a link to a directory here without entering it.
                check_directory(Path(dirpath, entry))
            if any(name.endswith(".tmp") for name in filenames):
                sweep_stale_temporaries(Path(dirpath))
            if KEY_FILE not in filenames:
                continue
            name = Path(dirpath).relative_to(root.services_path).as_posix()
            try:
                sid = service_id(root, name)
            except InvalidServiceNameError:
                continue  # Not ours: a directory no valid name maps to.
            found.append(_info(bundle, name, sid, Path(dirpath)))
    return sorted(found, key=lambda info: info.name)


def service_env(root: RootLike, name: str) -> dict[str, str]:
    """The ``SPIFFILE_*_FILE`` variables (absolute paths) that make a workload *name*."""
    root = as_root(root)
    sid = service_id(root, name)
    with os_errors(root):
        check_service_dirs(root, name)
        directory = service_dir(root, name)
        _check_owner(directory, sid)
        try:
            with open_regular(directory / KEY_FILE):
                pass
        except (FileNotFoundError, NotADirectoryError):
            raise ServiceNotFoundError(
                f"no service {name!r} in this root (no {KEY_FILE})"
            ) from None
    return {
        "SPIFFILE_ID_FILE": os.fspath(directory / ID_FILE),
        "SPIFFILE_KEY_FILE": os.fspath(directory / KEY_FILE),
        "SPIFFILE_BUNDLE_FILE": os.fspath(root.bundle_path),
        **x509_env(root, name),
    }


def load_identity(root: RootLike, name: str, **options: Any) -> Identity:
    """The :class:`~spiffile.Identity` of service *name*, reading the root's files in place."""
    from spiffile.identity import Identity  # Imported late: identity is a sibling layer.

    return Identity.from_env(service_env(root, name), **options)


def export_kubernetes(root: RootLike, name: str, *, namespace: str | None = None) -> str:
    """Kubernetes manifests for *name*: a Secret (id, key.pem), a ConfigMap (bundle.json).

    A commented pod-spec snippet shows the ``SPIFFILE_*`` variables and volume
    mounts.  The files are read under the lock, so the key and the bundle form
    one consistent snapshot in which the key is bound.
    """
    root = as_root(root)
    sid = service_id(root, name)
    with locked(root) as bundle:
        sid, directory, bundle = _service_prelude(root, bundle, name)
        _write_id(root, directory, sid)
        info = _info(bundle, name, sid, directory)
        return render_kubernetes(
            name=name,
            spiffe_id=str(sid),
            trust_domain=root.trust_domain,
            kid=info.kid,
            id_file=read_regular(directory / ID_FILE, limit=4096),
            key_pem=read_regular(directory / KEY_FILE, limit=_MAX_KEY_BYTES),
            bundle_json=read_regular(root.bundle_path, limit=MAX_BUNDLE_BYTES),
            namespace=namespace,
        )


def republish_bundle(root: RootLike) -> int:
    """Write the bundle again, unchanged but for the next ``spiffe_sequence``; return it.

    The repair for a bundle another tool rewrote without the member, or with a
    number behind what this root has published (PROFILE.md §4.4): consumers
    that loaded the higher number refuse every lower one, so the next
    document must be above it.
    """
    root = as_root(root)
    with locked(root) as bundle:
        written = root.write_bundle(bundle)
    sequence = written.sequence
    if sequence is None:  # pragma: no cover - write_bundle always sets it
        raise ProvisionError(f"{root.bundle_path}: no spiffe_sequence was written")
    return sequence
