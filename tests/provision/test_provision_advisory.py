"""One regression test per producer-hardening finding, named for it (tests/test_advisory.py style).

Each test mounts the attack for real: real symbolic links, FIFOs and
directories in a real root, a second operating-system user (``setpriv`` to
``nobody``) when the suite runs as root, real subprocesses under a hostile
umask.  The docstring says what the finding was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spiffile.bundle import Bundle, SequenceGuard
from spiffile.errors import (
    InvalidBundleError,
    NestedServiceError,
    ProvisionError,
    PruneTooSoonError,
    SpiffileError,
    UnknownIdentityError,
    UnsafeRootError,
)
from spiffile.files import atomic_write
from spiffile.keys import generate_private_key, kid_for, load_private_key_pem, private_key_to_pem
from spiffile.provision import (
    PRUNE_DELAY,
    Root,
    add_service,
    commit_rotation,
    export_kubernetes,
    init_root,
    list_services,
    load_identity,
    prune_service,
    remove_service,
    revoke_key,
    rotate,
    rotate_service,
    service_env,
    service_info,
    stage_rotation,
)
from spiffile.provision.root import root_findings

TD = "example.org"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAS_SETPRIV = shutil.which("setpriv") is not None


def bound(root: Root, name: str) -> list[str]:
    bundle = Bundle.parse(root.bundle_path.read_bytes())
    sid = f"spiffe://{TD}/{name}"
    return [key.kid for key in bundle.keys_for(sid)] if sid in bundle else []


def key_kid(path: Path) -> str:
    return kid_for(load_private_key_pem(path.read_bytes()).public_key())


def tree(path: Path) -> dict[str, tuple[bytes | str | None, int]]:
    """Every entry under *path*: content (or link target) and mode, without following links."""
    found: dict[str, tuple[bytes | str | None, int]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath, name)
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                content: bytes | str | None = os.readlink(full)
            elif stat.S_ISREG(st.st_mode) and name != ".lock":
                content = full.read_bytes()
            else:
                content = None
            found[str(full.relative_to(path))] = (content, stat.S_IMODE(st.st_mode))
    return found


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return init_root(tmp_path / "identity", TD)


def every_operation(name: str) -> list[tuple[str, Callable[[Root], object]]]:
    """Each producer operation on service *name*, as (label, call)."""
    return [
        ("add", lambda r: add_service(r, name)),
        ("rotate", lambda r: rotate_service(r, name)),
        ("rotate-drop-old", lambda r: rotate_service(r, name, keep_old=False)),
        ("stage", lambda r: stage_rotation(r, name)),
        ("commit", lambda r: commit_rotation(r, name)),
        ("prune", lambda r: prune_service(r, name)),
        ("revoke", lambda r: revoke_key(r, name, "x" * 43)),
        ("remove", lambda r: remove_service(r, name)),
        ("env", lambda r: service_env(r, name)),
        ("export", lambda r: export_kubernetes(r, name)),
        ("info", lambda r: service_info(r, name)),
        ("list", lambda r: list_services(r)),
        ("load_identity", lambda r: load_identity(r, name)),
    ]


# -- item: producer operations follow symlinks inside service directories ---------------


def test_advisory_staged_key_linked_to_another_services_key(root: Root) -> None:
    """A workload that can write its own directory links ``key.next.pem`` to billing's
    ``key.pem``: ``rotate orders`` bound billing's key to orders and ``export orders``
    shipped billing's private key.  Now the link is refused and nothing moves.
    """
    add_service(root, "orders")
    add_service(root, "billing")
    billing_key = root.services_path / "billing" / "key.pem"
    billing_kid = key_kid(billing_key)
    staged = root.services_path / "orders" / "key.next.pem"
    staged.symlink_to(billing_key)
    before = tree(root.path)
    for operation in (rotate_service, stage_rotation, commit_rotation, prune_service):
        with pytest.raises(UnsafeRootError, match="symbolic link"):
            operation(root, "orders")
    with pytest.raises(UnsafeRootError):
        list_services(root)
    assert billing_kid not in bound(root, "orders")
    assert tree(root.path) == before

    # The same with key.pem itself: export must not ship the linked key.
    staged.unlink()
    own = root.services_path / "orders" / "key.pem"
    own.unlink()
    own.symlink_to(billing_key)
    billing_pem = billing_key.read_bytes()
    with pytest.raises(UnsafeRootError):
        export_kubernetes(root, "orders")
    for label, call in every_operation("orders"):
        if label == "remove":
            continue  # Unlinking the link is harmless: checked last.
        with pytest.raises(UnsafeRootError) as caught:
            call(root)
        assert billing_pem.decode() not in str(caught.value), label
    assert billing_kid not in bound(root, "orders")
    remove_service(root, "orders")
    assert billing_key.read_bytes() == billing_pem
    assert key_kid(billing_key) == billing_kid


def test_advisory_list_chmod_follows_a_racing_symlink(root: Root, tmp_path: Path) -> None:
    """Racing ``key.pem`` between a readable key and a symlink made a root-run ``list``
    ``chmod 0600`` any file on the host.  The mode is now changed with ``fchmod`` on the
    descriptor that was checked to be a regular file, so the host file never changes.
    """
    add_service(root, "orders")
    host_file = tmp_path / "host-file"
    host_file.write_text("a file list must never touch\n")
    os.chmod(host_file, 0o644)
    key_file = root.services_path / "orders" / "key.pem"
    pem = private_key_to_pem(generate_private_key())

    # Without a race: a link is refused outright.
    key_file.unlink()
    key_file.symlink_to(host_file)
    with pytest.raises(UnsafeRootError):
        list_services(root)
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o644

    # With a race: a thread swaps key.pem (atomically) between a 0644 key, which
    # list narrows to 0600, and a link to the host file.
    stop = threading.Event()

    def swap() -> None:
        spare_key = key_file.with_name(".swap-key")
        spare_link = key_file.with_name(".swap-link")
        while not stop.is_set():
            spare_key.write_bytes(pem)
            os.chmod(spare_key, 0o644)
            os.replace(spare_key, key_file)
            with contextlib.suppress(FileExistsError):
                spare_link.symlink_to(host_file)
            os.replace(spare_link, key_file)

    racer = threading.Thread(target=swap, daemon=True)
    racer.start()
    outcomes: set[str] = set()
    try:
        for _ in range(300):
            try:
                list_services(root)
                outcomes.add("listed")
            except SpiffileError as exc:
                outcomes.add(type(exc).__name__)
            assert stat.S_IMODE(host_file.stat().st_mode) == 0o644
    finally:
        stop.set()
        racer.join(timeout=10)
    assert stat.S_IMODE(host_file.stat().st_mode) == 0o644
    assert outcomes  # Something ran; which outcomes depends on the race.


def test_advisory_symlinked_service_directory_refused_by_every_operation(
    root: Root, tmp_path: Path
) -> None:
    """A service directory that is a link (to a copy of a real service elsewhere) is
    refused by every operation: nothing is read, written or bound through it.
    """
    add_service(root, "decoy")
    outside = tmp_path / "outside"
    shutil.copytree(root.services_path / "decoy", outside)
    (outside / "id").write_text(f"spiffe://{TD}/evil\n")
    (root.services_path / "evil").symlink_to(outside)
    before_outside = tree(outside)
    before_bundle = root.bundle_path.read_bytes()
    for label, operation in every_operation("evil"):
        if label == "list":
            continue  # list is about the whole root: checked below.
        with pytest.raises(UnsafeRootError, match="symbolic link"):
            operation(root)
    with pytest.raises(UnsafeRootError, match="symbolic link"):
        list_services(root)
    with pytest.raises(UnsafeRootError, match="symbolic link"):
        add_service(root, "evil/inner")
    assert tree(outside) == before_outside
    assert root.bundle_path.read_bytes() == before_bundle
    assert [f.kind for f in root_findings(root)] == ["link"]


@pytest.mark.parametrize("file_name", ["key.pem", "key.next.pem", "id"])
def test_advisory_fifo_in_a_service_directory(root: Root, file_name: str) -> None:
    """A FIFO planted under a file name blocked the producer forever on open; it is now
    opened non-blocking and refused as not a regular file.
    """
    add_service(root, "orders")
    path = root.services_path / "orders" / file_name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    with pytest.raises(UnsafeRootError, match="not a regular file"):
        rotate_service(root, "orders")
    assert [f.kind for f in root_findings(root)] == ["not_regular"]


def nobody_python(code: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run *code* with this interpreter as user nobody, group nogroup, no other groups."""
    command = [
        "setpriv",
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        sys.executable,
        "-c",
        code,
        *args,
    ]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


@contextlib.contextmanager
def shared_tmp() -> Iterator[Path]:
    """A directory another user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="spiffile-uid-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.skipif(not (IS_ROOT and HAS_SETPRIV), reason="needs root and setpriv for a 2nd uid")
def test_advisory_workload_reads_its_key_without_write_access() -> None:
    """The documented read-only layout, with a real second user: the workload (nobody,
    group nogroup) reads its key and signs, but cannot write its directory (so it
    cannot plant a link for the next rotation), cannot replace its key, and cannot
    read another service's key.  A rotation keeps the layout.
    """
    with shared_tmp() as base:
        root = init_root(base / "identity", TD)
        info = add_service(root, "orders", group="nogroup")
        add_service(root, "billing")
        directory = root.services_path / "orders"
        st = directory.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o750)
        assert st.st_gid == 65534
        key_st = (directory / "key.pem").stat()
        assert (key_st.st_uid, key_st.st_gid, stat.S_IMODE(key_st.st_mode)) == (0, 65534, 0o640)

        env = service_env(root, "orders")
        worker = (
            "import os, sys\n"
            "from spiffile import Identity\n"
            "identity = Identity.from_env()\n"
            "identity.token(audience='spiffe://example.org/billing')\n"
            "print(identity.kid)\n"
            "d = os.path.dirname(os.environ['SPIFFILE_KEY_FILE'])\n"
            "for attempt in (lambda: open(os.path.join(d, 'key.next.pem'), 'x'),\n"
            "                lambda: os.symlink('/etc/passwd', os.path.join(d, 'key.next.pem')),\n"
            "                lambda: open(os.environ['SPIFFILE_KEY_FILE'], 'r+b'),\n"
            "                lambda: open(sys.argv[1], 'rb')):\n"
            "    try:\n"
            "        attempt()\n"
            "    except PermissionError:\n"
            "        print('denied')\n"
            "    else:\n"
            "        print('ALLOWED')\n"
        )
        billing_key = os.fspath(root.services_path / "billing" / "key.pem")
        result = nobody_python(worker, billing_key, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [info.kid, "denied", "denied", "denied", "denied"]

        new_kid = rotate_service(root, "orders")
        key_st = (directory / "key.pem").stat()
        assert (key_st.st_gid, stat.S_IMODE(key_st.st_mode)) == (65534, 0o640)
        result = nobody_python(worker, billing_key, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == new_kid
        assert root_findings(root) == []


def test_group_layout_switches_an_existing_service_and_rejects_unknown_groups(root: Root) -> None:
    info = add_service(root, "orders")
    stage_rotation(root, "orders")
    gid = os.getegid()
    again = add_service(root, "orders", group=gid)
    assert again.kid == info.kid
    directory = root.services_path / "orders"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    for name in ("key.pem", "key.next.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o640
    with pytest.raises(ProvisionError, match="no group"):
        add_service(root, "orders", group="no-such-group-here")


# -- item: the lock file and directories others can write ----------------------------------

UMASK_WORKER = """
import os, sys
os.umask(0o777)
from spiffile.provision import add_service, init_root
root = init_root(sys.argv[1], "example.org")
add_service(root, "orders")
add_service(root, "billing")
"""


def test_advisory_lock_file_created_under_umask_0777(tmp_path: Path) -> None:
    """``.lock`` was created under the umask: mode 0000 under umask 0777, after which
    every command of a non-root producer failed.  It is now exactly 0600.
    """
    target = tmp_path / "identity"
    result = subprocess.run(
        [sys.executable, "-c", UMASK_WORKER, os.fspath(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((target / ".lock").stat().st_mode) == 0o600
    # A lock file left 0000 (or 0644) by an older version is set to 0600 on next use.
    os.chmod(target / ".lock", 0o000)
    add_service(target, "ledger")
    assert stat.S_IMODE((target / ".lock").stat().st_mode) == 0o600


@pytest.mark.skipif(not (IS_ROOT and HAS_SETPRIV), reason="needs root and setpriv for a 2nd uid")
def test_advisory_lock_file_umask_0777_as_an_unprivileged_producer() -> None:
    """The same as a real unprivileged user, for whom a 0000 lock file was fatal."""
    with shared_tmp() as base:
        os.chown(base, 65534, 65534)
        result = nobody_python(UMASK_WORKER, os.fspath(base / "identity"))
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE((base / "identity" / ".lock").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("root", "g+w"),
        ("root", "o+w"),
        ("services", "g+w"),
        ("service", "o+w"),
        ("service", "chown"),
        ("services", "chown"),
        ("root", "chown"),
    ],
)
def test_advisory_writable_or_foreign_directories_are_refused(
    root: Root, where: str, change: str
) -> None:
    """A root, ``services/`` or service directory that a group or everyone may write, or
    that another user owns, let someone else swap files under the producer.  Every
    write now refuses it, names it, and the doctor's finding carries the repair.
    """
    if change == "chown" and not IS_ROOT:
        pytest.skip("changing a directory's owner needs root")
    add_service(root, "orders")
    path = {
        "root": root.path,
        "services": root.services_path,
        "service": root.services_path / "orders",
    }[where]
    if change == "chown":
        os.chown(path, 65534, -1)
    else:
        bits = stat.S_IWGRP if change == "g+w" else stat.S_IWOTH
        os.chmod(path, stat.S_IMODE(path.stat().st_mode) | bits)
    before = tree(root.path)
    writes: list[Callable[[Root], object]] = [
        lambda r: add_service(r, "orders"),
        lambda r: rotate_service(r, "orders"),
        lambda r: remove_service(r, "orders"),
    ]
    if where != "service":
        writes.append(lambda r: add_service(r, "billing"))
    for write in writes:
        with pytest.raises(UnsafeRootError, match=str(path)):
            write(root)
    assert tree(root.path) == before
    findings = root_findings(root)
    assert [(f.kind, f.path) for f in findings] == [("unsafe_directory", path)]
    subprocess.run(findings[0].repair, shell=True, check=True)
    assert root_findings(root) == []
    rotate_service(root, "orders")


def test_root_findings_report_modes_links_and_the_lock(root: Root, tmp_path: Path) -> None:
    add_service(root, "orders")
    add_service(root, "team/billing")
    key = root.services_path / "orders" / "key.pem"
    os.chmod(key, 0o644)
    os.chmod(root.path / ".lock", 0o644)
    (root.services_path / "team" / "billing" / "key.next.pem").symlink_to(key)
    findings = {(f.kind, f.path.name) for f in root_findings(root)}
    assert findings == {("key_mode", "key.pem"), ("lock_mode", ".lock"), ("link", "key.next.pem")}
    for finding in root_findings(root):
        subprocess.run(finding.repair, shell=True, check=True)
    assert root_findings(root) == []


# -- item: rotate --drop-old with a staged rotation; prune within 90 s ----------------------


def test_advisory_drop_old_committed_the_staged_key(root: Root) -> None:
    """``rotate --drop-old`` while a rotation was staged silently committed the staged key,
    which sat next to the possibly compromised one.  Now the new key is always fresh,
    the staged one is deleted and unbound with the old one, and the result says so.
    """
    old = add_service(root, "orders")
    staged = stage_rotation(root, "orders")
    staged_file = root.services_path / "orders" / "key.next.pem"
    assert staged_file.exists()
    done = rotate(root, "orders", keep_old=False)
    assert done.kid not in (old.kid, staged)
    assert done.discarded_staged_kid == staged and not done.reused_staged
    assert set(done.removed_kids) == {old.kid, staged}
    assert bound(root, "orders") == [done.kid]
    assert not staged_file.exists()
    assert key_kid(root.services_path / "orders" / "key.pem") == done.kid

    # Keeping the old key still commits a staged key (it may have spread already).
    staged = stage_rotation(root, "orders")
    kept = rotate(root, "orders")
    assert kept.kid == staged and kept.reused_staged and kept.discarded_staged_kid is None


def test_advisory_drop_old_cli_says_what_it_did(root: Root) -> None:
    from click.testing import CliRunner

    from spiffile.cli import cli

    add_service(root, "orders")
    staged = stage_rotation(root, "orders")
    result = CliRunner().invoke(cli, ["rotate", "--root", str(root.path), "orders", "--drop-old"])
    assert result.exit_code == 0, result.output
    assert "fresh key" in result.output and f"staged kid {staged} discarded" in result.output


def test_advisory_prune_within_90_seconds_of_a_rotation(root: Root) -> None:
    """``prune`` retired a key that stopped signing moments ago, breaking tokens it had
    just signed (PROFILE.md §8.3: wait the longest lifetime plus the leeway, 90 s).  Now
    it refuses within 90 s of the switch unless forced, for one-step and two-phase
    rotations alike; the clock is the key file's write (or commit) time.
    """
    old = add_service(root, "orders")
    key_file = root.services_path / "orders" / "key.pem"
    new = rotate_service(root, "orders")
    before = root.bundle_path.read_bytes()
    with pytest.raises(PruneTooSoonError, match="90 s"):
        prune_service(root, "orders")
    assert root.bundle_path.read_bytes() == before
    past = time.time() - PRUNE_DELAY - 1
    os.utime(key_file, (past, past))
    assert prune_service(root, "orders") == [old.kid]

    # Two-phase: a key staged long ago starts signing at commit, not at staging.
    staged = stage_rotation(root, "orders")
    os.utime(root.services_path / "orders" / "key.next.pem", (past, past))
    commit_rotation(root, "orders")
    with pytest.raises(PruneTooSoonError):
        prune_service(root, "orders")
    assert prune_service(root, "orders", force=True) == [new]
    assert bound(root, "orders") == [staged]
    assert prune_service(root, "orders") == []  # Nothing to retire: never refused.


# -- item: producers never go back in spiffe_sequence -----------------------------------------


def foreign_rewrite(root: Root, *, sequence: int | None) -> None:
    """What another producer (or a script) does: rewrite bundle.json its own way."""
    document = json.loads(root.bundle_path.read_bytes())
    document.pop("spiffe_sequence", None)
    if sequence is not None:
        document["spiffe_sequence"] = sequence
    atomic_write(root.bundle_path, json.dumps(document).encode())


@pytest.mark.parametrize("foreign_sequence", [None, 1])
def test_advisory_sequence_restarts_after_a_foreign_rewrite(
    root: Root, foreign_sequence: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A bundle rewritten by another producer without ``spiffe_sequence`` (or with a low
    one) made our next write restart at 1, and every running consumer that had loaded a
    higher number refused all later bundles as a rollback: keys added or revoked by us
    stopped taking effect until restart.  The root now keeps a high-water mark, and a
    consumer accepts a document without the member (one warning) and refuses only a
    lower number.
    """
    add_service(root, "orders")
    add_service(root, "billing")
    billing = load_identity(root, "billing")
    published = billing.status().bundle_sequence
    assert published is not None and root.high_water() == published

    foreign_rewrite(root, sequence=foreign_sequence)
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        billing.bundle  # noqa: B018 - the reload happens on access.
    if foreign_sequence is None:
        assert billing.status().bundle.healthy  # Accepted...
        warnings = [r for r in caplog.records if "no spiffe_sequence" in r.getMessage()]
        assert len(warnings) == 1  # ...with one warning.
    else:
        assert not billing.status().bundle.healthy  # A lower number is a rollback.

    # Our next write is above everything this root published, so the running
    # consumer takes it: a new service becomes verifiable, a removal takes effect.
    add_service(root, "ledger")
    assert Bundle.parse(root.bundle_path.read_bytes()).sequence == published + 1
    ledger = load_identity(root, "ledger")
    assert str(billing.verify(ledger.token(str(billing.id))).id).endswith("/ledger")
    assert billing.status().healthy
    orders = load_identity(root, "orders")
    token = orders.token(str(billing.id))
    remove_service(root, "orders")
    with pytest.raises(UnknownIdentityError):
        billing.verify(token)


def test_advisory_high_water_survives_a_lower_bundle_and_refuses_garbage(root: Root) -> None:
    """The high-water mark, not the bundle, decides the next number; a damaged mark stops
    the producer with a clear error instead of guessing (guessing low is the bug)."""
    add_service(root, "orders")
    high = root.high_water()
    foreign_rewrite(root, sequence=None)
    rotate_service(root, "orders")
    assert Bundle.parse(root.bundle_path.read_bytes()).sequence == high + 1
    foreign_rewrite(root, sequence=high + 40)  # A higher foreign number is respected.
    rotate_service(root, "orders")
    assert root.high_water() == high + 41
    (root.path / ".sequence").write_text("twelve\n")
    before = root.bundle_path.read_bytes()
    with pytest.raises(ProvisionError, match="sequence number"):
        rotate_service(root, "orders")
    assert root.bundle_path.read_bytes() == before


def test_sequence_guard_rule() -> None:
    """The pure consumer rule behind Identity's reload (PROFILE.md §4.4)."""
    empty = Bundle.empty(TD)
    guard = SequenceGuard()
    assert guard.admit(empty) is None  # Nothing loaded yet: no sequence is fine.
    assert guard.admit(empty.with_sequence(5)) is None
    assert guard.admit(empty) is not None  # Accepted, with a warning to log.
    with pytest.raises(InvalidBundleError, match="rollback"):
        guard.admit(empty.with_sequence(4))
    assert guard.highest == 5
    assert guard.admit(empty.with_sequence(5)) is None


# -- item: a service directory never contains another service's ------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("team", "team/payments"), ("team/payments", "team"), ("a", "a/b/c"), ("a/b/c", "a")],
)
def test_advisory_nested_service_directory_holds_another_services_key(
    root: Root, first: str, second: str
) -> None:
    """``team/payments`` lived inside ``team``'s directory, so mounting team's directory
    mounted payments' private key.  Such pairs are now refused, in either order, and
    nothing is written for the refused one.
    """
    add_service(root, first)
    before = tree(root.path)
    with pytest.raises(NestedServiceError):
        add_service(root, second)
    assert tree(root.path) == before
    add_service(root, first)  # The existing service itself is still fine.
    assert root_findings(root) == []


def test_advisory_nested_pair_by_bundle_entry_only(root: Root) -> None:
    """An entry another tool wrote (no files here) still counts as a service."""
    add_service(root, "team")
    remove = root.services_path / "team"
    for name in ("key.pem", "id"):
        (remove / name).unlink()
    remove.rmdir()
    with pytest.raises(NestedServiceError):
        add_service(root, "team/payments")


def test_advisory_nested_pair_left_by_an_older_version_keeps_working(root: Root) -> None:
    """A root that already holds a pair is not locked out: both services keep working,
    and the doctor's finding names the pair with the command that undoes it."""
    add_service(root, "team/payments")
    team = root.services_path / "team"
    (team / "key.pem").write_bytes(private_key_to_pem(generate_private_key()))
    os.chmod(team / "key.pem", 0o600)
    (team / "id").write_text(f"spiffe://{TD}/team\n")
    add_service(root, "team")  # Registers the key found on disk, as an older version did.
    rotate_service(root, "team")
    rotate_service(root, "team/payments")
    assert root_findings(root) == []  # Nothing a write refuses...
    from spiffile.provision.doctor import survey

    nested = [f for f in survey(root).findings if f.code == "nested_service"]
    assert len(nested) == 1 and "team/payments" in nested[0].subject  # ...but the doctor warns.
