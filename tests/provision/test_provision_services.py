"""Tests for spiffile/provision.py and spiffile/_root.py: roots, services, rotation, errors.

Real roots in temporary directories, real keys, real tokens verified through
the core API.  Process-level guarantees (concurrency, SIGKILL at every step,
umask) are in ``test_provision_processes.py``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from spiffile import svid
from spiffile.bundle import Bundle
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
    SignatureError,
    SpiffileError,
    TrustDomainMismatchError,
    UnknownIdentityError,
    UnknownKeyError,
)
from spiffile.identity import Identity
from spiffile.keys import generate_private_key, kid_for, load_private_key_pem, private_key_to_pem
from spiffile.provision import (
    Root,
    ServiceInfo,
    add_service,
    commit_rotation,
    init_root,
    list_services,
    load_identity,
    open_root,
    prune_service,
    remove_service,
    revoke_key,
    rotate_service,
    service_env,
    service_info,
    stage_rotation,
    validate_service_name,
)

TD = "example.org"


def read_bundle(root: Root) -> Bundle:
    return Bundle.parse(root.bundle_path.read_bytes())


def bound(root: Root, name: str) -> list[str]:
    bundle = read_bundle(root)
    sid = f"spiffe://{TD}/{name}"
    return [key.kid for key in bundle.keys_for(sid)] if sid in bundle else []


def key_kid(path: Path) -> str:
    return kid_for(load_private_key_pem(path.read_bytes()).public_key())


def snapshot(path: Path) -> dict[str, tuple[bytes | None, int]]:
    """Every file and directory under *path* with its content and mode (the lock file aside)."""
    found: dict[str, tuple[bytes | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames:
            full = Path(dirpath, name)
            found[str(full.relative_to(path))] = (None, full.lstat().st_mode)
        for name in filenames:
            full = Path(dirpath, name)
            if name != ".lock":
                found[str(full.relative_to(path))] = (full.read_bytes(), full.lstat().st_mode)
    return found


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return init_root(tmp_path / "identity", TD)


# -- roots ---------------------------------------------------------------------------


def test_init_root_writes_an_empty_versioned_bundle(tmp_path: Path) -> None:
    root = init_root(tmp_path / "a" / "b", TD)
    assert root.path == tmp_path / "a" / "b"
    assert root.trust_domain == TD
    document = json.loads(root.bundle_path.read_text())
    assert document == {
        "trust_domain": TD,
        "spiffile_version": 1,
        "spiffe_sequence": 1,
        "identities": {},
    }
    assert stat.S_IMODE(root.path.stat().st_mode) == 0o755
    assert (root.path / "services").is_dir()
    assert stat.S_IMODE(root.bundle_path.stat().st_mode) == 0o644


def test_init_root_is_idempotent_and_rewrites_nothing(root: Root) -> None:
    add_service(root, "orders")
    before = snapshot(root.path)
    inode = root.bundle_path.stat().st_ino
    again = init_root(root.path, TD)
    assert again.trust_domain == TD
    assert snapshot(root.path) == before
    assert root.bundle_path.stat().st_ino == inode


def test_init_root_refuses_another_trust_domain(root: Root) -> None:
    before = snapshot(root.path)
    with pytest.raises(TrustDomainMismatchError, match=r"example\.org"):
        init_root(root.path, "other.org")
    assert snapshot(root.path) == before


@pytest.mark.parametrize("trust_domain", ["Example.org", "", "a b", "spiffe://x"])
def test_init_root_rejects_invalid_trust_domains(tmp_path: Path, trust_domain: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        init_root(tmp_path / "r", trust_domain)
    assert not (tmp_path / "r").exists()


def test_init_root_on_a_file_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ProvisionError, match="not a directory"):
        init_root(target, TD)
    assert target.read_text() == "x"


@pytest.mark.parametrize(
    ("bundle", "error"),
    [
        (b"{not json", InvalidBundleError),
        (b'{"trust_domain": "other.org", "spiffile_version": 1, "identities": {}}', None),
        (None, ProvisionError),  # bundle.json is a directory
    ],
)
def test_init_root_that_fails_on_a_directory_leaves_no_lock_file(
    tmp_path: Path, bundle: bytes | None, error: type[Exception] | None
) -> None:
    """A directory that is not (or not our) root gets nothing written, not even ``.lock``."""
    if bundle is None:
        (tmp_path / "bundle.json").mkdir()
    else:
        (tmp_path / "bundle.json").write_bytes(bundle)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(error or TrustDomainMismatchError):
        init_root(tmp_path, TD)
    assert sorted(os.listdir(tmp_path)) == before


def test_open_root(root: Root, tmp_path: Path) -> None:
    opened = open_root(os.path.relpath(root.path))
    assert opened.path == root.path and opened.trust_domain == TD
    with pytest.raises(RootNotFoundError):
        open_root(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RootNotFoundError, match="init"):
        open_root(tmp_path / "empty")
    with pytest.raises(RootNotFoundError):
        add_service(tmp_path / "missing", "orders")
    assert not (tmp_path / "missing").exists()


def test_functions_accept_a_path(root: Root) -> None:
    info = add_service(str(root.path), "orders")
    assert [s.name for s in list_services(root.path)] == ["orders"]
    assert info.kid == key_kid(root.path / "services" / "orders" / "key.pem")


# -- adding services -----------------------------------------------------------------


def test_add_service_writes_the_profile_layout(root: Root) -> None:
    info = add_service(root, "orders")
    directory = root.path / "services" / "orders"
    assert info == ServiceInfo(
        name="orders",
        id=info.id,
        kid=info.kid,
        bound_kids=(info.kid,),
        staged_kid=None,
        directory=directory,
    )
    assert str(info.id) == "spiffe://example.org/orders"
    assert (directory / "id").read_bytes() == b"spiffe://example.org/orders\n"
    assert key_kid(directory / "key.pem") == info.kid
    assert stat.S_IMODE((directory / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert bound(root, "orders") == [info.kid]
    assert info.bound and info.key_file == directory / "key.pem"
    jwk = read_bundle(root).keys_for(info.id)[0].jwk
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "use", "alg"}


def test_add_service_is_idempotent_and_keeps_the_key(root: Root) -> None:
    first = add_service(root, "orders")
    sequence = read_bundle(root).sequence
    key = (root.path / "services/orders/key.pem").read_bytes()
    second = add_service(root, "orders")
    assert second == first
    assert read_bundle(root).sequence == sequence  # nothing to write, nothing written
    assert (root.path / "services/orders/key.pem").read_bytes() == key


def test_add_service_registers_an_existing_unbound_key(root: Root) -> None:
    directory = root.path / "services" / "orders"
    directory.mkdir(mode=0o700)
    key = generate_private_key()
    fd = os.open(directory / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, private_key_to_pem(key))
    os.close(fd)
    info = add_service(root, "orders")
    assert info.kid == kid_for(key.public_key())
    assert bound(root, "orders") == [info.kid]
    assert (directory / "id").read_text() == "spiffe://example.org/orders\n"


def test_add_service_repairs_a_missing_id_file(root: Root) -> None:
    info = add_service(root, "orders")
    (info.directory / "id").unlink()
    assert add_service(root, "orders") == info
    assert (info.directory / "id").read_text() == "spiffe://example.org/orders\n"


def test_add_service_after_a_lost_key_keeps_the_orphan_until_pruned(root: Root) -> None:
    # The state a crash between "bundle written" and "key written" leaves:
    # a bound public key whose private key never reached the disk.
    first = add_service(root, "orders")
    first.key_file.unlink()
    second = add_service(root, "orders")
    assert second.kid != first.kid
    assert bound(root, "orders") == [first.kid, second.kid]
    assert prune_service(root, "orders", force=True) == [first.kid]
    assert bound(root, "orders") == [second.kid]


def test_add_service_refuses_a_corrupt_key_file(root: Root) -> None:
    directory = root.path / "services" / "orders"
    directory.mkdir()
    (directory / "key.pem").write_bytes(b"not a key")
    before = snapshot(root.path)
    with pytest.raises(InvalidKeyError, match=r"key\.pem"):
        add_service(root, "orders")
    assert snapshot(root.path) == before


def test_nested_services(root: Root) -> None:
    nested = add_service(root, "team/orders")
    deep = add_service(root, "a/b/c.d_e-f")
    assert str(nested.id) == "spiffe://example.org/team/orders"
    assert nested.directory == root.path / "services" / "team" / "orders"
    assert str(deep.id) == "spiffe://example.org/a/b/c.d_e-f"
    assert stat.S_IMODE((root.path / "services" / "a").stat().st_mode) == 0o700
    assert [s.name for s in list_services(root)] == ["a/b/c.d_e-f", "team/orders"]
    remove_service(root, "a/b/c.d_e-f")
    assert not (root.path / "services" / "a").exists()
    remove_service(root, "team/orders")
    assert not (root.path / "services" / "team").exists()


def test_uppercase_and_dots_are_allowed(root: Root) -> None:
    info = add_service(root, "UPPER.case/.hidden/x_y-z")
    assert str(info.id) == "spiffe://example.org/UPPER.case/.hidden/x_y-z"
    assert info.directory.is_relative_to(root.path / "services")


BAD_NAMES = [
    "",
    "../x",
    "a/../../b",
    "..",
    ".",
    "a/./b",
    "/abs",
    "/",
    "a//b",
    "a/",
    "a b",
    " a",
    "a\tb",
    "a\\b",
    "a\x00b",
    "x%2e%2e",
    "a:b",
    "ünicode",
    "a?b",
    "a#b",
    "a/id",
    "a/key.pem",
    "a/key.next.pem",
    "x" * 256,
    "a/" * 1100 + "a",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=[repr(n)[:30] for n in BAD_NAMES])
def test_bad_names_are_refused_and_touch_nothing(root: Root, name: str) -> None:
    add_service(root, "orders")
    before = snapshot(root.path)
    outside = sorted(os.listdir(root.path.parent))
    with pytest.raises(InvalidServiceNameError):
        validate_service_name(name)
    for operation in (add_service, stage_rotation, commit_rotation, prune_service, remove_service):
        with pytest.raises(InvalidServiceNameError):
            operation(root, name)
    with pytest.raises(InvalidServiceNameError):
        rotate_service(root, name)
    with pytest.raises(InvalidServiceNameError):
        revoke_key(root, name, "kid")
    with pytest.raises(InvalidServiceNameError):
        service_env(root, name)
    assert snapshot(root.path) == before
    assert sorted(os.listdir(root.path.parent)) == outside


def test_a_non_string_name_is_an_invalid_name(root: Root) -> None:
    with pytest.raises(InvalidServiceNameError):
        add_service(root, 3)  # type: ignore[arg-type]


def test_a_top_level_service_may_be_named_id(root: Root) -> None:
    assert str(add_service(root, "id").id) == "spiffe://example.org/id"


def test_a_symlinked_service_directory_is_not_followed(root: Root, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (root.path / "services" / "evil").symlink_to(outside)
    with pytest.raises(ProvisionError, match="symbolic link"):
        add_service(root, "evil")
    with pytest.raises(ProvisionError):
        add_service(root, "evil/inner")
    assert list(outside.iterdir()) == []
    assert read_bundle(root).identities() == []


# -- sequence ------------------------------------------------------------------------


def test_every_bundle_write_increases_the_sequence(
    root: Root, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spiffile.files import atomic_write as real

    written: list[int] = []

    def recording(path: Any, data: bytes, *, mode: int = 0o644, group: int | None = None) -> None:
        if Path(path).name == "bundle.json":
            written.append(json.loads(data)["spiffe_sequence"])
        real(path, data, mode=mode, group=group)

    # Every change to a root goes through its undo log (provision._changes).
    monkeypatch.setattr("spiffile.provision._changes.atomic_write", recording)
    add_service(root, "orders")
    add_service(root, "billing")
    old = service_info(root, "orders").kid
    rotate_service(root, "orders")
    staged = stage_rotation(root, "orders")
    commit_rotation(root, "orders")
    prune_service(root, "orders", force=True)
    revoke_key(root, "billing", stage_rotation(root, "billing"))
    rotate_service(root, "billing", keep_old=False)
    remove_service(root, "billing")
    assert written == list(range(2, 2 + len(written)))
    assert len(written) == 10
    assert read_bundle(root).sequence == written[-1]
    assert old not in bound(root, "orders") and bound(root, "orders") == [staged]


# -- rotation ------------------------------------------------------------------------


def mint_with(path: Path, subject: str, audience: str) -> str:
    key = load_private_key_pem(path.read_bytes())
    return svid.mint(key, kid_for(key.public_key()), subject, audience, now=time.time())


def test_rotate_keeping_the_old_key(root: Root) -> None:
    old = add_service(root, "orders")
    add_service(root, "billing")
    billing = load_identity(root, "billing")
    old_token = mint_with(old.key_file, str(old.id), str(billing.id))
    old_pem = old.key_file.read_bytes()
    new_kid = rotate_service(root, "orders")
    info = service_info(root, "orders")
    assert info.kid == new_kid != old.kid
    assert info.bound_kids == (old.kid, new_kid)
    assert info.staged_kid is None
    assert old.key_file.read_bytes() != old_pem
    assert not (info.directory / "key.next.pem").exists()
    assert stat.S_IMODE(info.key_file.stat().st_mode) == 0o600
    assert billing.verify(old_token).id == old.id
    assert billing.verify(load_identity(root, "orders").token(str(billing.id))).id == old.id


def test_rotate_dropping_the_old_key(root: Root) -> None:
    old = add_service(root, "orders")
    add_service(root, "billing")
    billing = load_identity(root, "billing")
    old_token = mint_with(old.key_file, str(old.id), str(billing.id))
    rotate_service(root, "orders")
    new_kid = rotate_service(root, "orders", keep_old=False)
    assert bound(root, "orders") == [new_kid]
    with pytest.raises(SignatureError):
        billing.verify(old_token)


def test_two_phase_rotation(root: Root) -> None:
    old = add_service(root, "orders")
    add_service(root, "billing")
    orders = load_identity(root, "orders")
    billing = load_identity(root, "billing")

    staged = stage_rotation(root, "orders")
    info = service_info(root, "orders")
    assert info.staged_kid == staged and info.kid == old.kid
    assert info.bound_kids == (old.kid, staged)
    assert stat.S_IMODE((info.directory / "key.next.pem").stat().st_mode) == 0o600
    assert orders.kid == old.kid  # still signing with the old key
    assert stage_rotation(root, "orders") == staged  # idempotent
    assert bound(root, "orders") == [old.kid, staged]

    assert commit_rotation(root, "orders") == staged
    assert orders.kid == staged  # the running identity picks up the new key file
    assert billing.verify(orders.token(str(billing.id))).id == old.id
    assert service_info(root, "orders").staged_kid is None
    with pytest.raises(NoStagedRotationError):
        commit_rotation(root, "orders")

    assert prune_service(root, "orders", force=True) == [old.kid]
    assert bound(root, "orders") == [staged]
    assert prune_service(root, "orders") == []


def test_prune_keeps_a_staged_key(root: Root) -> None:
    add_service(root, "orders")
    rotate_service(root, "orders")
    staged = stage_rotation(root, "orders")
    current = service_info(root, "orders").kid
    assert len(prune_service(root, "orders", force=True)) == 1
    assert bound(root, "orders") == [current, staged]


def test_rotate_commits_an_already_staged_key(root: Root) -> None:
    old = add_service(root, "orders")
    staged = stage_rotation(root, "orders")
    assert rotate_service(root, "orders") == staged
    assert bound(root, "orders") == [old.kid, staged]


def test_revoke(root: Root) -> None:
    old = add_service(root, "orders")
    new = rotate_service(root, "orders")
    staged = stage_rotation(root, "orders")
    before = snapshot(root.path)
    with pytest.raises(KeyInUseError, match="rotate"):
        revoke_key(root, "orders", new)
    with pytest.raises(UnknownKeyError):
        revoke_key(root, "orders", "no-such-kid")
    assert snapshot(root.path) == before
    revoke_key(root, "orders", old.kid)
    assert bound(root, "orders") == [new, staged]
    revoke_key(root, "orders", staged)
    assert bound(root, "orders") == [new]
    assert not (old.directory / "key.next.pem").exists()
    with pytest.raises(UnknownKeyError):
        revoke_key(root, "orders", old.kid)


# -- removal -------------------------------------------------------------------------


def test_remove_service_revokes(root: Root) -> None:
    orders = add_service(root, "orders")
    add_service(root, "billing")
    stage_rotation(root, "orders")
    billing = load_identity(root, "billing")
    token = load_identity(root, "orders").token(str(billing.id))
    remove_service(root, "orders")
    assert not orders.directory.exists()
    assert str(orders.id) not in read_bundle(root)
    with pytest.raises(UnknownIdentityError):
        billing.verify(token)
    with pytest.raises(ServiceNotFoundError):
        remove_service(root, "orders")


def test_remove_service_removes_a_bundle_entry_without_files(root: Root) -> None:
    # A half-removed service (keys deleted, entry still there) or a foreign entry.
    info = add_service(root, "orders")
    for name in ("key.pem", "id"):
        (info.directory / name).unlink()
    info.directory.rmdir()
    remove_service(root, "orders")
    assert bound(root, "orders") == []


def test_remove_completes_when_the_directories_of_a_nested_service_are_gone(root: Root) -> None:
    # Regression: a remove killed after its directories were removed but before
    # the bundle was written left an entry whose parent directories are gone
    # too; the re-run failed with "No such file or directory" and never
    # unbound the key.
    add_service(root, "team/c/d")
    (root.services_path / "team" / "c" / "d" / "key.pem").unlink()
    (root.services_path / "team" / "c" / "d" / "id").unlink()
    for directory in ("team/c/d", "team/c", "team"):
        (root.services_path / directory).rmdir()
    remove_service(root, "team/c/d")
    assert bound(root, "team/c/d") == []


# -- listing, environment, identities -------------------------------------------------


def test_list_services(root: Root) -> None:
    assert list_services(root) == []
    for name in ("b", "a", "team/c"):
        add_service(root, name)
    stage_rotation(root, "b")
    services = list_services(root)
    assert [s.name for s in services] == ["a", "b", "team/c"]
    assert services[1].staged_kid is not None
    assert all(s.bound for s in services)
    (root.path / "services" / "not a service").mkdir()
    (root.path / "services" / "not a service" / "key.pem").write_bytes(b"")
    assert [s.name for s in list_services(root)] == ["a", "b", "team/c"]


def test_service_env_and_load_identity(
    root: Root, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_service(root, "orders")
    add_service(root, "team/billing")
    monkeypatch.chdir(tmp_path)
    env = service_env(os.path.relpath(root.path), "orders")
    assert set(env) == {"SPIFFILE_ID_FILE", "SPIFFILE_KEY_FILE", "SPIFFILE_BUNDLE_FILE"}
    assert all(os.path.isabs(value) for value in env.values())
    assert env["SPIFFILE_BUNDLE_FILE"] == str(root.bundle_path)
    orders = Identity.from_env(env)
    billing = load_identity(root, "team/billing")
    token = orders.token(audience=str(billing.id))
    caller = billing.verify(token)
    assert str(caller.id) == "spiffe://example.org/orders"
    back = billing.token(audience=str(orders.id))
    assert str(orders.verify(back).id) == "spiffe://example.org/team/billing"
    with pytest.raises(ServiceNotFoundError):
        service_env(root, "nobody")
    with pytest.raises(ServiceNotFoundError):
        load_identity(root, "nobody")


def test_a_child_process_loads_the_printed_environment(root: Root) -> None:
    add_service(root, "orders")
    add_service(root, "billing")
    billing = load_identity(root, "billing")
    env = {**os.environ, **service_env(root, "orders")}
    env.pop("SPIFFILE_DIR", None)
    script = (
        "import sys\nfrom spiffile import Identity\n"
        "print(Identity.from_env().token(audience=sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(billing.id)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert str(billing.verify(result.stdout.strip()).id) == "spiffe://example.org/orders"


# -- errors leave files as they were ----------------------------------------------------


def test_unknown_service_errors_touch_nothing(root: Root) -> None:
    add_service(root, "orders")
    before = snapshot(root.path)
    for operation in (stage_rotation, commit_rotation, prune_service, remove_service):
        with pytest.raises(ServiceNotFoundError):
            operation(root, "nobody")
    with pytest.raises(ServiceNotFoundError):
        rotate_service(root, "team/nobody")
    with pytest.raises(ServiceNotFoundError):
        revoke_key(root, "nobody", "kid")
    with pytest.raises(ServiceNotFoundError):
        service_info(root, "nobody")
    assert snapshot(root.path) == before


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"[]", b'{"trust_domain": "example.org", "spiffile_version": 2, "identities": {}}'],
)
def test_a_corrupt_bundle_is_reported_and_never_overwritten(root: Root, content: bytes) -> None:
    add_service(root, "orders")
    root.bundle_path.write_bytes(content)
    before = snapshot(root.path)
    with pytest.raises(InvalidBundleError, match=r"bundle\.json"):
        open_root(root.path)
    with pytest.raises(InvalidBundleError):
        init_root(root.path, TD)
    for operation in (add_service, rotate_service, stage_rotation, prune_service, remove_service):
        with pytest.raises(InvalidBundleError, match="untouched"):
            operation(root, "orders")
    with pytest.raises(InvalidBundleError):
        add_service(root, "new")
    with pytest.raises(InvalidBundleError):
        list_services(root)
    assert snapshot(root.path) == before


def test_a_bundle_of_another_trust_domain_is_refused(root: Root) -> None:
    add_service(root, "orders")
    root.bundle_path.write_bytes(Bundle.empty("other.org").with_sequence(9).to_json())
    before = snapshot(root.path)
    with pytest.raises(TrustDomainMismatchError):
        add_service(root, "orders")
    assert snapshot(root.path) == before


def test_malformed_entries_of_others_survive_a_rewrite(root: Root) -> None:
    document = json.loads(root.bundle_path.read_text())
    document["identities"]["spiffe://example.org/foreign"] = {"keys": [{"kty": "RSA"}]}
    root.bundle_path.write_text(json.dumps(document))
    add_service(root, "orders")
    after = json.loads(root.bundle_path.read_text())
    assert after["identities"]["spiffe://example.org/foreign"] == {"keys": [{"kty": "RSA"}]}


def test_os_errors_become_provision_errors(root: Root) -> None:
    (root.path / "services" / "blocked").write_text("a file where a directory must go")
    with pytest.raises(ProvisionError, match="not a directory"):
        add_service(root, "blocked/inner")
    with pytest.raises(ProvisionError):
        add_service(root, "blocked")
    assert read_bundle(root).identities() == []


def test_every_error_is_a_spiffile_error() -> None:
    for error in (
        RootNotFoundError,
        ServiceNotFoundError,
        InvalidServiceNameError,
        KeyInUseError,
        UnknownKeyError,
        NoStagedRotationError,
        LockTimeoutError,
        TrustDomainMismatchError,
    ):
        assert issubclass(error, ProvisionError) and issubclass(error, SpiffileError)
        assert error.code != ProvisionError.code


# -- the lock --------------------------------------------------------------------------


def test_the_lock_is_reentrant_within_one_root_object(root: Root) -> None:
    with root.lock(), root.lock():
        info = add_service(root, "orders")
    assert info.bound


def test_threads_with_their_own_root_objects_serialize(root: Root) -> None:
    import threading

    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            mine = open_root(root.path)  # its own lock file descriptor
            for i in range(10):
                add_service(mine, f"t{n}/s{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    bundle = read_bundle(root)
    assert len(bundle.identities()) == 40 and bundle.sequence == 41
    assert all(s.bound for s in list_services(root))


def test_a_held_lock_times_out_with_a_clear_error(root: Root) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            "f = open(sys.argv[1], 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
            str(root.path / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        before = snapshot(root.path)
        slow = open_root(root.path, lock_timeout=0.2)
        with pytest.raises(LockTimeoutError, match="lock"):
            add_service(slow, "orders")
        assert snapshot(root.path) == before
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    # The kernel released the dead holder's lock.
    assert add_service(open_root(root.path, lock_timeout=5), "orders").bound


# -- stale temporaries -------------------------------------------------------------------


def test_stale_temporary_files_of_a_killed_writer_are_swept(root: Root) -> None:
    info = add_service(root, "orders")
    stale = info.directory / ".key.pem.4242.1.1.tmp"
    fd = os.open(stale, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, private_key_to_pem(generate_private_key()))
    os.close(fd)
    foreign = info.directory / "notes.txt"
    foreign.write_text("kept")
    add_service(root, "orders")
    assert not stale.exists()
    assert foreign.read_text() == "kept"


def test_a_hand_placed_key_readable_by_others_is_narrowed_to_0600(
    root: Root, caplog: pytest.LogCaptureFixture
) -> None:
    directory = root.services_path / "orders"
    directory.mkdir(parents=True)
    key_file = directory / "key.pem"
    key_file.write_bytes(private_key_to_pem(generate_private_key()))
    os.chmod(key_file, 0o644)
    with caplog.at_level("WARNING", logger="spiffile"):
        info = add_service(root, "orders")
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert info.kid == kid_for(load_private_key_pem(key_file.read_bytes()).public_key())
    assert any("narrowed to 0600" in r.getMessage() for r in caplog.records)


def test_init_creates_missing_parents_0755_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        init_root(tmp_path / "a" / "b" / "identity", trust_domain="example.org")
    finally:
        os.umask(old)
    for directory in ("a", "a/b", "a/b/identity"):
        assert stat.S_IMODE(os.stat(tmp_path / directory).st_mode) == 0o755, directory


@pytest.mark.parametrize(
    "operation",
    ["add", "rotate", "stage", "prune", "remove", "env"],
)
def test_a_directory_holding_another_identity_is_not_touched(root: Root, operation: str) -> None:
    # What a case-insensitive file system does to "orders" and "Orders":
    # one directory, two identities.  Simulated by the id file naming another.
    info = add_service(root, "orders")
    (info.directory / "id").write_text("spiffe://example.org/Orders\n")
    before = snapshot(root.path)
    actions: dict[str, Callable[[], object]] = {
        "add": lambda: add_service(root, "orders"),
        "rotate": lambda: rotate_service(root, "orders"),
        "stage": lambda: stage_rotation(root, "orders"),
        "prune": lambda: prune_service(root, "orders"),
        "remove": lambda: remove_service(root, "orders"),
        "env": lambda: service_env(root, "orders"),
    }
    with pytest.raises(ProvisionError, match="case-insensitive"):
        actions[operation]()
    assert snapshot(root.path) == before


def test_a_root_path_with_a_nul_byte_is_a_provision_error(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError, match="NUL"):
        init_root(f"{tmp_path}/x\x00", "example.org")
    with pytest.raises(ProvisionError, match="NUL"):
        open_root(f"{tmp_path}/x\x00")
