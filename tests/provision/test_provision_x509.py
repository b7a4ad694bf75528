"""The producer's X.509 CA extension: enable, issue on add/rotate, renew, CA rotation, crashes."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from spiffile import provision
from spiffile.bundle import Bundle
from spiffile.errors import ProvisionError, ServiceNotFoundError
from spiffile.provision import x509 as px
from spiffile.svid.x509 import load_authorities, load_certificates, parse_svid, verify_at

TD = "example.org"


def authorities(root: Path) -> dict[str, tuple[x509.Certificate, ...]]:
    return {TD: load_authorities((root / "svid_bundle.pem").read_bytes())}


def svid_of(root: Path, name: str) -> x509.Certificate:
    directory = root / "services" / name
    svid, _ = parse_svid(
        (directory / "svid.pem").read_bytes(), (directory / "svid_key.pem").read_bytes()
    )
    return svid.leaf


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    provision.init_root(path, trust_domain=TD)
    provision.add_service(path, "orders")
    return path


def test_enable_creates_a_private_ca_and_publishes_it(root: Path) -> None:
    ca = px.enable_x509(root)
    assert mode(root / "x509" / "ca.pem") == 0o600
    assert mode(root / "x509") == 0o700
    assert load_authorities((root / "svid_bundle.pem").read_bytes()) == (ca,)
    document = json.loads((root / "bundle.json").read_bytes())
    member = document[px.BUNDLE_MEMBER]
    assert [x509.load_der_x509_certificate(base64.b64decode(m)) for m in member] == [ca]
    # Profile v0 readers keep working: the member is an extension they ignore.
    assert [str(i) for i in Bundle.parse((root / "bundle.json").read_bytes()).identities()] == [
        f"spiffe://{TD}/orders"
    ]
    # The existing service got its SVID at once.
    leaf = svid_of(root, "orders")
    assert mode(root / "services" / "orders" / "svid_key.pem") == 0o600
    svid = verify_at([leaf], authorities(root), time.time())
    assert str(svid.id) == f"spiffe://{TD}/orders"
    assert px.enable_x509(root) == ca  # Idempotent: the same CA.


def test_add_and_rotate_write_svids_and_one_hour_is_the_default(root: Path) -> None:
    px.enable_x509(root)
    provision.add_service(root, "team/billing")
    leaf = svid_of(root, "team/billing")
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.total_seconds() == px.DEFAULT_SVID_TTL + 60  # Backdated one minute.
    before = svid_of(root, "orders").serial_number
    provision.rotate_service(root, "orders")
    assert svid_of(root, "orders").serial_number != before
    env = provision.service_env(root, "orders")
    assert env["SPIFFILE_X509_BUNDLE_FILE"] == str(root / "svid_bundle.pem")
    with provision.load_identity(root, "orders") as identity:
        assert identity.x509.id == identity.id
        assert identity.status().x509 is not None


def test_the_lifetime_is_configurable(root: Path) -> None:
    px.enable_x509(root, svid_ttl=600)
    provision.add_service(root, "short")
    leaf = svid_of(root, "short")
    assert (leaf.not_valid_after_utc - leaf.not_valid_before_utc).total_seconds() == 660


def test_renew_reissues_only_past_half_life(root: Path) -> None:
    px.enable_x509(root)
    first = svid_of(root, "orders")
    start = first.not_valid_before_utc.timestamp()
    end = first.not_valid_after_utc.timestamp()
    (kept,) = px.renew_svids(root, now=start + (end - start) / 2 - 5)
    assert not kept.issued and svid_of(root, "orders") == first
    (renewed,) = px.renew_svids(root, ["orders"], now=start + (end - start) / 2 + 5)
    assert renewed.issued and svid_of(root, "orders") != first
    with pytest.raises(ServiceNotFoundError):
        px.renew_svids(root, ["nosuch"])


def test_renew_without_a_ca_is_an_error(root: Path) -> None:
    with pytest.raises(ProvisionError, match=r"no X\.509 CA"):
        px.renew_svids(root)


def test_ca_rotation_overlaps(root: Path) -> None:
    old_ca = px.enable_x509(root)
    old_leaf = svid_of(root, "orders")
    now = time.time()
    new_ca = px.rotate_ca(root, now=now)
    # Both published: SVIDs of either CA verify for every consumer.
    assert set(authorities(root)[TD]) == {old_ca, new_ca}
    verify_at([old_leaf], authorities(root), now)
    (renewed,) = px.renew_svids(root, now=now)
    assert renewed.issued  # Issued by the old CA: re-issued by the new one.
    new_leaf = svid_of(root, "orders")
    new_leaf.verify_directly_issued_by(new_ca)
    # Once every SVID of the old CA has expired, renew stops publishing it.
    px.renew_svids(root, now=now + px.DEFAULT_SVID_TTL + 120)
    assert authorities(root)[TD] == (new_ca,)


def test_remove_deletes_the_svid_files(root: Path) -> None:
    px.enable_x509(root)
    provision.remove_service(root, "orders")
    assert not (root / "services" / "orders").exists()


def test_a_service_name_cannot_collide_with_svid_files(root: Path) -> None:
    with pytest.raises(ProvisionError):
        provision.add_service(root, "orders/svid.pem")


WORKER = r"""
import sys
from spiffile import provision
from spiffile.provision import x509 as px
root, command = sys.argv[1], sys.argv[2]
if command == "enable":
    px.enable_x509(root)
elif command == "renew":
    px.renew_svids(root, force=True)
elif command == "rotate-ca":
    px.rotate_ca(root)
elif command == "add":
    provision.add_service(root, sys.argv[3])
"""


def run(root: Path, *args: str, crash_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SPIFFILE_TEST_CRASH_AT", None)
    if crash_at:
        env["SPIFFILE_TEST_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", WORKER, str(root), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def consistent(root: Path) -> None:
    """What a crash may leave: the CA published, every SVID verifying, keys private."""
    ca_file = (root / "x509" / "ca.pem").read_bytes()
    (ca,) = load_certificates(ca_file.split(b"-----BEGIN PRIVATE KEY-----")[0])
    assert ca in authorities(root)[TD]
    for directory in (root / "services").iterdir():
        if (directory / "svid.pem").exists():
            assert mode(directory / "svid_key.pem") == 0o600
            leaf = load_certificates((directory / "svid.pem").read_bytes())
            verify_at(leaf, authorities(root), time.time())
    for path in root.rglob("*"):
        if "key" in path.name or path.name == "ca.pem" or ".tmp" in path.name:
            if path.is_file():
                assert mode(path) & 0o077 == 0, path


@pytest.mark.parametrize(
    ("command", "step"),
    [
        ("enable", "x509:state-written"),
        ("enable", "x509:svid-bundle-written"),
        ("enable", "x509:bundle-written"),
        ("enable", "x509:ca-written"),
        ("renew", "x509:svid-key-written"),
        ("rotate-ca", "x509:svid-bundle-written"),
        ("rotate-ca", "x509:bundle-written"),
    ],
)
def test_killed_at_every_step_the_next_run_completes(root: Path, command: str, step: str) -> None:
    if command != "enable":
        assert run(root, "enable").returncode == 0
    killed = run(root, command, crash_at=step)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = run(root, command)
    assert done.returncode == 0, done.stderr
    assert run(root, "renew").returncode == 0
    consistent(root)
