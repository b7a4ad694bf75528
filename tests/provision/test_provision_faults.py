"""Fault injection: a full disk, a permission taken away or a read-only file system at
every write of every producer operation leaves the root exactly as it was.

Every change the producer makes to a root goes through ``spiffile.files``
(atomic writes, renames, unlinks, directories, modes, times).  The test
hook ``files._faults`` makes the Nth of those changes fail with a real
``OSError`` (ENOSPC, EACCES, EROFS) before it happens; each operation is run
once to count its writes, then once per write and errno on a fresh copy of
the same root.  The failure must be one ``ProvisionError`` line naming the
cause, the root must be byte for byte, mode for mode as before (the
``spiffe_sequence`` high-water mark aside: a number once published stays
behind us), and running the operation again without the fault completes it.

The last tests do the same with a real full tmpfs and a real read-only
remount, in a private mount namespace, when the suite runs as root.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spiffile.errors import ProvisionError
from spiffile.files import safe as files
from spiffile.provision import (
    add_service,
    commit_rotation,
    export_kubernetes,
    init_root,
    prune_service,
    remove_service,
    revoke_key,
    rotate,
    service_info,
    stage_rotation,
)
from spiffile.provision.x509 import enable_x509, renew_svids, rotate_ca

TD = "example.org"
ERRORS = (errno.ENOSPC, errno.EACCES, errno.EROFS)
Setup = Callable[[Path], None]
Action = Callable[[Path], object]


def tree(path: Path) -> dict[str, tuple[object, ...]]:
    """Everything a consumer or a later producer could see under *path*."""
    if not os.path.lexists(path):
        return {}
    found: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            full = Path(dirpath, name)
            st = full.lstat()
            relative = str(full.relative_to(path))
            if name in (".lock", ".sequence"):
                continue
            if stat.S_ISREG(st.st_mode):
                stamp = st.st_mtime_ns if name.startswith("key") else None
                found[relative] = (full.read_bytes(), st.st_mode, st.st_gid, stamp)
            else:
                found[relative] = (None, st.st_mode, st.st_gid, None)
    return found


def high_water(path: Path) -> int:
    try:
        return int((path / ".sequence").read_text())
    except FileNotFoundError:
        return 0


@contextlib.contextmanager
def faults(at: int | None, error: int = errno.ENOSPC) -> Iterator[files._FaultPlan]:
    plan = files._FaultPlan(at, error)
    files._faults = plan
    try:
        yield plan
    finally:
        files._faults = None


def _kid(root: Path, name: str, *, staged: bool = False) -> str:
    info = service_info(root, name)
    kid = info.staged_kid if staged else info.bound_kids[0]
    assert kid is not None
    return kid


def _added(*names: str, stage: str | None = None, rotated: str | None = None) -> Setup:
    def setup(root: Path) -> None:
        init_root(root, TD)
        for name in names:
            add_service(root, name)
        if rotated:
            rotate(root, rotated)
        if stage:
            stage_rotation(root, stage)

    return setup


def _no_id(setup: Setup, name: str) -> Setup:
    def without(root: Path) -> None:
        setup(root)
        (root / "services" / name / "id").unlink()

    return without


def _x509(setup: Setup) -> Setup:
    def enabled(root: Path) -> None:
        setup(root)
        enable_x509(root)

    return enabled


CASES: dict[str, tuple[Setup, Action]] = {
    "init-new": (lambda root: None, lambda root: init_root(root, TD)),
    "add": (_added("billing"), lambda root: add_service(root, "orders")),
    "add-nested": (_added("billing"), lambda root: add_service(root, "team/a/orders")),
    "add-group": (
        _added("orders", stage="orders"),
        lambda root: add_service(root, "orders", group=os.getegid() + 1),
    ),
    "rotate": (_added("orders"), lambda root: rotate(root, "orders")),
    "rotate-staged": (_added("orders", stage="orders"), lambda root: rotate(root, "orders")),
    "rotate-drop-old": (
        _added("orders", stage="orders", rotated="orders"),
        lambda root: rotate(root, "orders", keep_old=False),
    ),
    "stage": (_added("orders"), lambda root: stage_rotation(root, "orders")),
    "commit": (_added("orders", stage="orders"), lambda root: commit_rotation(root, "orders")),
    "prune": (
        _added("orders", rotated="orders"),
        lambda root: prune_service(root, "orders", force=True),
    ),
    "revoke-old": (
        _added("orders", rotated="orders"),
        lambda root: revoke_key(root, "orders", _kid(root, "orders")),
    ),
    "revoke-staged": (
        _added("orders", stage="orders"),
        lambda root: revoke_key(root, "orders", _kid(root, "orders", staged=True)),
    ),
    "remove": (_added("orders", "billing", stage="orders"), lambda r: remove_service(r, "orders")),
    "remove-nested": (_added("team/a/orders"), lambda r: remove_service(r, "team/a/orders")),
    "export-writes-id": (
        _no_id(_added("orders"), "orders"),
        lambda root: export_kubernetes(root, "orders"),
    ),
    # The X.509 extension writes through the same undo log (PROFILE.md §13).
    "x509-enable": (_added("orders", "billing"), lambda root: enable_x509(root)),
    "x509-renew": (
        _x509(_added("orders", "billing")),
        lambda root: renew_svids(root, force=True),
    ),
    "x509-rotate-ca": (_x509(_added("orders")), lambda root: rotate_ca(root)),
    "x509-add": (_x509(_added("billing")), lambda root: add_service(root, "orders")),
}


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One prepared root per case, copied afresh for every run."""
    base = tmp_path_factory.mktemp("templates")
    built = {}
    for name, (setup, _action) in CASES.items():
        directory = base / name
        directory.mkdir()
        setup(directory / "identity")
        built[name] = directory
    return built


def fresh(template: Path, into: Path) -> Path:
    if into.exists():
        shutil.rmtree(into)
    shutil.copytree(template, into, symlinks=True)
    return into / "identity"


@pytest.mark.parametrize("case", sorted(CASES))
def test_fault_at_every_write_leaves_the_root_as_it_was(
    case: str, templates: dict[str, Path], tmp_path: Path
) -> None:
    if case == "add-group" and os.geteuid() != 0:
        pytest.skip("giving a directory a group the producer is not in needs root")
    _setup, action = CASES[case]
    root = fresh(templates[case], tmp_path / "run")
    with faults(None) as counting:
        action(root)
    writes = counting.count
    assert writes >= 1, counting.paths
    for at in range(1, writes + 1):
        for error in ERRORS:
            root = fresh(templates[case], tmp_path / "run")
            before, mark = tree(root), high_water(root)
            with faults(at, error) as plan, pytest.raises(ProvisionError) as caught:
                action(root)
            where = f"{case}: write {at}/{writes} ({plan.paths[at - 1]}), {errno.errorcode[error]}"
            message = str(caught.value)
            assert "\n" not in message and os.strerror(error) in message, (where, message)
            assert tree(root) == before, where
            assert high_water(root) >= mark, where
            action(root)  # Without the fault, the same command completes.


def test_a_failed_rotation_through_the_cli_is_one_line(
    templates: dict[str, Path], tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from spiffile.cli import cli

    root = fresh(templates["rotate-staged"], tmp_path / "run")
    before = tree(root)
    for at in (1, 2):
        with faults(at, errno.ENOSPC):
            result = CliRunner().invoke(cli, ["rotate", "--root", str(root), "orders"])
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert "No space left on device" in lines[0] and "Traceback" not in result.output
        assert tree(root) == before


def test_the_fault_hook_is_inert_by_default(tmp_path: Path) -> None:
    assert files._faults is None
    init_root(tmp_path / "identity", TD)
    add_service(tmp_path / "identity", "orders")


# -- real file systems: a full tmpfs, a read-only remount (root only) ------------------------

REAL_WORKER = r"""
import errno, json, os, subprocess, sys
from spiffile.errors import ProvisionError
from spiffile.provision import add_service, init_root, rotate

mount = sys.argv[1]
def run(command):
    subprocess.run(command, check=True)

def snapshot(path):
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in sorted(filenames):
            if name not in (".lock", ".sequence"):
                full = os.path.join(dirpath, name)
                with open(full, "rb") as handle:
                    out[full] = (handle.read().hex(), os.lstat(full).st_mode)
    return out

run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", mount])
root = os.path.join(mount, "identity")
init_root(root, "example.org")
for name in ("orders", "billing"):
    add_service(root, name)
results = {}
# Fill the file system to the last block.
fd = os.open(os.path.join(mount, "fill"), os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, b"\0" * 4096)
except OSError as exc:
    assert exc.errno == errno.ENOSPC
os.close(fd)
before = snapshot(root)
for label, action in (
    ("rotate", lambda: rotate(root, "orders")),
    ("add", lambda: add_service(root, "ledger")),
):
    try:
        action()
        results[label] = "succeeded"
    except ProvisionError as exc:
        results[label] = str(exc)
    results[label + "-unchanged"] = snapshot(root) == before
os.unlink(os.path.join(mount, "fill"))
run(["mount", "-o", "remount,ro", mount])
try:
    rotate(root, "orders")
    results["readonly"] = "succeeded"
except ProvisionError as exc:
    results["readonly"] = str(exc)
results["readonly-unchanged"] = snapshot(root) == before
print(json.dumps(results))
"""


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private mount namespace",
)
def test_real_full_disk_and_read_only_file_system(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode()[:200]}")
    result = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            REAL_WORKER,
            os.fspath(mount),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import json

    results = json.loads(result.stdout)
    for label in ("rotate", "add"):
        assert "No space left on device" in results[label], results
        assert "\n" not in results[label]
        assert results[f"{label}-unchanged"], results
    assert "Read-only file system" in results["readonly"], results
    assert results["readonly-unchanged"], results
