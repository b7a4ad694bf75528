"""Tests for spiffile/identity/: loading, tokens, verification, reloads, status."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from spiffile import (
    AudienceError,
    Bundle,
    ConfigurationError,
    Identity,
    InvalidSpiffeIdError,
    SignatureError,
    UnknownIdentityError,
)
from spiffile.files import atomic_write
from spiffile.keys import generate_private_key, kid_for, private_key_to_pem, public_jwk

TD = "example.org"
ORDERS = f"spiffe://{TD}/orders"
BILLING = f"spiffe://{TD}/billing"


class World:
    """Two workloads sharing one bundle file, written the way producers do."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: dict[str, list[ec.EllipticCurvePrivateKey]] = {}
        self.bundle_path = root / "bundle.json"
        self.sequence = 0
        for name in ("orders", "billing"):
            key = generate_private_key()
            self.keys[name] = [key]
            (root / name).mkdir()
            atomic_write(root / name / "id", f"spiffe://{TD}/{name}\n".encode())
            atomic_write(root / name / "key.pem", private_key_to_pem(key), mode=0o600)
        self.publish()

    def publish(self, sequence: int | None = None) -> None:
        self.sequence = self.sequence + 1 if sequence is None else sequence
        bundle = Bundle.empty(TD)
        for name, keys in self.keys.items():
            bundle = bundle.with_keys(
                f"spiffe://{TD}/{name}", [public_jwk(k.public_key()) for k in keys]
            )
        atomic_write(self.bundle_path, bundle.with_sequence(self.sequence).to_json())

    def files(self, name: str) -> tuple[Path, Path, Path]:
        return self.root / name / "id", self.root / name / "key.pem", self.bundle_path

    def identity(self, name: str, **options: Any) -> Identity:
        return Identity.from_files(*self.files(name), **options)

    def rotate_in_place(self, name: str) -> ec.EllipticCurvePrivateKey:
        """New key published first, then the key file rewritten in place (same size)."""
        new = generate_private_key()
        self.keys[name].append(new)
        self.publish()
        key_path = self.root / name / "key.pem"
        pem = private_key_to_pem(new)
        assert len(pem) == os.path.getsize(key_path)
        with open(key_path, "r+b") as handle:
            handle.write(pem)
        return new


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_token_from_one_identity_verifies_at_the_other(world: World) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    caller = billing.verify(orders.token(audience=BILLING))
    assert str(caller.id) == ORDERS
    assert caller.claims["aud"] == BILLING
    assert caller.claims["exp"] - caller.claims["iat"] == 60
    assert str(orders.id) == ORDERS
    assert orders.kid == kid_for(world.keys["orders"][0].public_key())


def test_verify_defaults_the_audience_to_our_own_id(world: World) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    token_for_orders = billing.token(ORDERS)
    with pytest.raises(AudienceError):
        billing.verify(token_for_orders)
    assert str(billing.verify(token_for_orders, audience=ORDERS).id) == BILLING
    assert str(orders.verify(token_for_orders).id) == BILLING


def test_token_audience_must_be_a_spiffe_id(world: World) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        world.identity("orders").token("billing")


def test_from_dir(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    id_file, key_file, bundle_file = world.files("orders")
    (directory / "id").write_bytes(id_file.read_bytes())
    (directory / "key.pem").write_bytes(key_file.read_bytes())
    (directory / "bundle.json").write_bytes(bundle_file.read_bytes())
    assert str(Identity.from_dir(directory).id) == ORDERS


def test_from_env_with_directory_and_per_variable_precedence(world: World, tmp_path: Path) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    id_file, key_file, bundle_file = world.files("orders")
    (directory / "id").write_bytes(id_file.read_bytes())
    (directory / "key.pem").write_bytes(key_file.read_bytes())
    (directory / "bundle.json").write_bytes(bundle_file.read_bytes())
    assert str(Identity.from_env({"SPIFFILE_DIR": str(directory)}).id) == ORDERS

    # The explicit key variable wins for the key only; id and bundle still come from the dir.
    billing_key = world.files("billing")[1]
    mixed = Identity.from_env(
        {"SPIFFILE_DIR": str(directory), "SPIFFILE_KEY_FILE": str(billing_key)}
    )
    assert str(mixed.id) == ORDERS
    assert mixed.kid == kid_for(world.keys["billing"][0].public_key())

    # The explicit id variable wins for the id only.
    billing_id = world.files("billing")[0]
    other = Identity.from_env({"SPIFFILE_DIR": str(directory), "SPIFFILE_ID_FILE": str(billing_id)})
    assert str(other.id) == BILLING
    assert other.kid == kid_for(world.keys["orders"][0].public_key())


def test_from_env_with_three_file_variables(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    id_file, key_file, bundle_file = world.files("billing")
    monkeypatch.delenv("SPIFFILE_DIR", raising=False)
    monkeypatch.setenv("SPIFFILE_ID_FILE", str(id_file))
    monkeypatch.setenv("SPIFFILE_KEY_FILE", str(key_file))
    monkeypatch.setenv("SPIFFILE_BUNDLE_FILE", str(bundle_file))
    assert str(Identity.from_env().id) == BILLING


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"SPIFFILE_ID_FILE": "x", "SPIFFILE_KEY_FILE": "y"},
        {"SPIFFILE_DIR": ""},
    ],
)
def test_from_env_without_enough_configuration(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        Identity.from_env(env)


def test_missing_files_are_configuration_errors(world: World, tmp_path: Path) -> None:
    id_file, key_file, bundle_file = world.files("orders")
    with pytest.raises(ConfigurationError):
        Identity.from_files(tmp_path / "nope", key_file, bundle_file)
    with pytest.raises(ConfigurationError):
        Identity.from_files(id_file, tmp_path / "nope", bundle_file)
    with pytest.raises(ConfigurationError):
        Identity.from_files(id_file, key_file, tmp_path / "nope")


def test_identity_outside_the_bundle_trust_domain_is_refused(world: World, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign-id"
    foreign.write_text("spiffe://other.org/orders\n")
    _, key_file, bundle_file = world.files("orders")
    with pytest.raises(ConfigurationError):
        Identity.from_files(foreign, key_file, bundle_file)


def test_tokens_are_cached_per_audience_while_most_of_the_lifetime_remains(world: World) -> None:
    now = [1_800_000_000.0]
    orders = world.identity("orders", clock=lambda: now[0])
    first = orders.token(BILLING)
    assert orders.token(BILLING) is first
    assert orders.token(ORDERS) != first
    now[0] += 29
    assert orders.token(BILLING) is first
    now[0] += 1  # Half of the 60 s lifetime is gone: mint afresh.
    second = orders.token(BILLING)
    assert second != first
    assert orders.token(BILLING, ttl=120) != second


def test_token_cache_is_bounded(world: World) -> None:
    orders = world.identity("orders", token_cache_size=3)
    tokens = [orders.token(f"spiffe://{TD}/peer{i}") for i in range(5)]
    assert orders.token(f"spiffe://{TD}/peer4") is tokens[4]
    assert orders.token(f"spiffe://{TD}/peer0") is not tokens[0]
    assert len(orders._cache) == 3


def test_rotated_key_same_size_within_a_millisecond_is_used_by_senders_and_receivers(
    world: World,
) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    old_token = orders.token(BILLING)
    assert billing.verify(old_token)
    new_key = world.rotate_in_place("orders")
    # The long-lived sender signs with the new key at once (cache invalidated) ...
    assert orders.kid == kid_for(new_key.public_key())
    new_token = orders.token(BILLING)
    assert new_token != old_token
    # ... and the long-lived receiver knows both keys from the reloaded bundle.
    assert str(billing.verify(new_token).id) == ORDERS
    assert str(billing.verify(old_token).id) == ORDERS
    # Revocation: the old key leaves the bundle and its tokens stop verifying.
    world.keys["orders"] = [new_key]
    world.publish()
    with pytest.raises(SignatureError):
        billing.verify(old_token)
    assert billing.verify(new_token)


def test_removed_identity_becomes_unknown(world: World) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    token = orders.token(BILLING)
    del world.keys["orders"]
    world.publish()
    with pytest.raises(UnknownIdentityError):
        billing.verify(token)


@pytest.mark.parametrize("damage", ["corrupt", "delete", "empty", "rollback", "foreign"])
def test_a_damaged_bundle_never_breaks_a_working_identity(
    world: World, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        if damage == "corrupt":
            atomic_write(world.bundle_path, b'{"trust_domain": "example.org", "spiff')
        elif damage == "delete":
            world.bundle_path.unlink()
        elif damage == "empty":
            atomic_write(world.bundle_path, b"")
        elif damage == "rollback":
            world.publish(sequence=0)
        elif damage == "foreign":
            atomic_write(world.bundle_path, Bundle.empty("other.org").with_sequence(99).to_json())
        for _ in range(3):
            assert str(billing.verify(orders.token(BILLING)).id) == ORDERS
    status = billing.status()
    assert not status.healthy and not status.bundle.healthy
    assert status.bundle.error
    assert status.key.healthy
    # One warning for this change, however many calls met it.
    assert sum(r.levelno == logging.WARNING for r in caplog.records) == 1
    world.publish(sequence=50)
    assert billing.verify(orders.token(BILLING))
    assert billing.status().healthy
    assert billing.status().bundle_sequence == 50


@pytest.mark.parametrize("damage", ["corrupt", "delete", "rsa-like"])
def test_a_damaged_key_never_breaks_a_working_sender(world: World, damage: str) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    key_path = world.files("orders")[1]
    kid = orders.kid
    if damage == "corrupt":
        atomic_write(key_path, b"-----BEGIN PRIVATE KEY-----\nAAAA\n", mode=0o600)
    elif damage == "delete":
        key_path.unlink()
    else:
        atomic_write(key_path, b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n", mode=0o600)
    assert orders.kid == kid
    assert str(billing.verify(orders.token(BILLING)).id) == ORDERS
    status = orders.status()
    assert not status.healthy and not status.key.healthy and status.key.error


def test_status_reports_a_key_missing_from_the_bundle(world: World) -> None:
    orders = world.identity("orders")
    assert orders.status().key_bound
    world.keys["orders"] = [generate_private_key()]
    world.publish()
    status = orders.status()
    assert not status.key_bound and not status.healthy


def test_lifetime_cap_is_configurable(world: World) -> None:
    orders = world.identity("orders", max_lifetime=None)
    long_token = orders.token(BILLING, ttl=7200)
    with pytest.raises(ValueError, match="lifetime cap"):
        world.identity("orders").token(BILLING, ttl=7200)
    from spiffile import LifetimeError

    with pytest.raises(LifetimeError):
        world.identity("billing").verify(long_token)
    assert world.identity("billing", max_lifetime=None).verify(long_token)
    assert world.identity("billing").verify(long_token, max_lifetime=None)
    assert world.identity("billing").verify(long_token, max_lifetime=7200)


def test_concurrent_tokens_and_verifies_during_rotation(world: World) -> None:
    orders, billing = world.identity("orders"), world.identity("billing")
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        try:
            while not stop.is_set():
                billing.verify(orders.token(BILLING))
        except BaseException as exc:  # Collected and re-raised by the test below.
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):
            world.rotate_in_place("orders")
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []


def test_watch_reloads_in_the_background(world: World) -> None:
    with world.identity("billing").watch() as billing:
        time.sleep(0.3)
        world.publish(sequence=7)
        deadline = time.monotonic() + 10
        while billing._bundle_view.status().reloads == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert billing._bundle_view.status().reloads == 1
        assert billing.bundle.sequence == 7


@pytest.mark.parametrize("which", [0, 1, 2])
def test_a_path_with_a_nul_byte_is_a_configuration_error(world: World, which: int) -> None:
    files = [str(path) for path in world.files("orders")]
    files[which] += "\x00"
    with pytest.raises(ConfigurationError):
        Identity.from_files(*files)
