"""Federation from files (spiffile.federation): a directory of trust documents per trust domain."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest
from spiffeforge import SpiffeRealm, authority
from tokenforge import BILLING, NOW, ORDERS, Forge, make_realm

from spiffile.caller import TrustKind
from spiffile.errors import (
    ConfigurationError,
    SignatureError,
    UnknownIdentityError,
)
from spiffile.federation import TrustDirectory
from spiffile.files import atomic_write
from spiffile.identity import Identity
from spiffile.provision import add_service, init_root, service_env

PARTNER = SpiffeRealm(trust_domain="partner.test")


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    atomic_write(path, data)
    return path


def test_each_file_serves_its_trust_domain_by_its_own_kind(tmp_path: Path) -> None:
    realm = make_realm({ORDERS: 1, BILLING: 1})
    write(tmp_path, "example.org.json", realm.bundle.to_json())
    write(tmp_path, "partner.test.json", PARTNER.jwks_bytes())
    helper = SpiffeRealm(trust_domain="helper.test")
    helper_map = {"helper.test": base64.b64encode(helper.jwks_bytes()).decode()}
    write(tmp_path, "helper.test.json", json.dumps(helper_map).encode())
    trust = TrustDirectory(tmp_path, clock=lambda: NOW)
    assert trust.trust_domains == ["example.org", "helper.test", "partner.test"]

    ours = trust.verify(Forge(realm).token(), BILLING)
    assert (str(ours.id), ours.trust) == (ORDERS, TrustKind.SPIFFILE)
    theirs = trust.verify(PARTNER.token(audience=[BILLING]), BILLING)
    assert theirs.trust is TrustKind.SPIFFE
    assert trust.verify(helper.token(audience="mys3"), "mys3").trust is TrustKind.SPIFFE
    with pytest.raises(UnknownIdentityError, match=r"nobody\.test"):
        trust.verify(SpiffeRealm(trust_domain="nobody.test").token(), BILLING)


def test_names_that_are_not_trust_domains_are_ignored(tmp_path: Path) -> None:
    for name in ("Upper.json", ".hidden.json", "partner.test.json.tmp", "notes.txt", ".json"):
        write(tmp_path, name, PARTNER.jwks_bytes())
    (tmp_path / "sub.json").mkdir()
    os.symlink("nowhere.json", tmp_path / "dangling.test.json")
    assert TrustDirectory(tmp_path).trust_domains == []


def test_adding_and_removing_files_adds_and_removes_domains(tmp_path: Path) -> None:
    trust = TrustDirectory(tmp_path, clock=lambda: NOW)
    token = PARTNER.token(audience=BILLING)
    with pytest.raises(UnknownIdentityError):
        trust.verify(token, BILLING)
    write(tmp_path, "partner.test.json", PARTNER.jwks_bytes())
    assert trust.verify(token, BILLING).trust is TrustKind.SPIFFE
    os.unlink(tmp_path / "partner.test.json")
    with pytest.raises(UnknownIdentityError):
        trust.verify(token, BILLING)
    assert trust.trust_domains == []


def test_rewrites_reload_and_a_bad_rewrite_keeps_the_last_good(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = SpiffeRealm(trust_domain="partner.test", authorities=[authority("ES256", "old")])
    new = SpiffeRealm(trust_domain="partner.test", authorities=[authority("RS256", "new")])
    path = write(tmp_path, "partner.test.json", old.jwks_bytes(spiffe_sequence=1))
    trust = TrustDirectory(tmp_path, clock=lambda: NOW)
    assert trust.verify(old.token(), "spiffe://example.org/billing")
    atomic_write(path, new.jwks_bytes(spiffe_sequence=2))
    assert trust.verify(new.token(), "spiffe://example.org/billing")
    with pytest.raises(SignatureError):
        trust.verify(old.token(), "spiffe://example.org/billing")
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        atomic_write(path, b"{ torn")
        assert trust.verify(new.token(), "spiffe://example.org/billing")
        atomic_write(path, old.jwks_bytes(spiffe_sequence=1))  # A rollback.
        assert trust.verify(new.token(), "spiffe://example.org/billing")
    assert "rollback refused" in caplog.text
    status = trust.status()["partner.test"]
    assert not status.healthy and "rollback" in (status.error or "")


def test_a_new_file_that_does_not_parse_is_retried_until_it_does(tmp_path: Path) -> None:
    path = write(tmp_path, "partner.test.json", b"{ half")
    trust = TrustDirectory(tmp_path, clock=lambda: NOW)
    assert trust.trust_domains == []
    assert not trust.status()["partner.test"].healthy
    with pytest.raises(UnknownIdentityError):
        trust.verify(PARTNER.token(), BILLING)
    atomic_write(path, PARTNER.jwks_bytes())
    assert trust.verify(PARTNER.token(audience=BILLING), BILLING)
    assert trust.status()["partner.test"].healthy


def test_a_spiffile_bundle_must_match_its_file_name(tmp_path: Path) -> None:
    realm = make_realm({ORDERS: 1})
    write(tmp_path, "other.test.json", realm.bundle.to_json())
    trust = TrustDirectory(tmp_path)
    assert trust.trust_domains == []
    assert "is for 'example.org'" in (trust.status()["other.test"].error or "")


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        TrustDirectory(tmp_path / "missing")
    write(tmp_path, "file", b"")
    with pytest.raises(ConfigurationError):
        TrustDirectory(tmp_path / "file")


def test_directory_removed_keeps_the_last_good(tmp_path: Path) -> None:
    directory = tmp_path / "trust"
    directory.mkdir()
    write(directory, "partner.test.json", PARTNER.jwks_bytes())
    trust = TrustDirectory(directory, clock=lambda: NOW)
    os.unlink(directory / "partner.test.json")
    directory.rmdir()
    # The listing cannot be read: the domains loaded stay (PROFILE.md §7.3).
    assert trust.verify(PARTNER.token(audience=BILLING), BILLING)


# -- an Identity with SPIFFILE_TRUST_DIR -----------------------------------------------------------


@pytest.fixture
def provisioned(tmp_path: Path) -> dict[str, str]:
    root = init_root(tmp_path / "root", trust_domain="example.org")
    add_service(root, "billing")
    add_service(root, "orders")
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    env = dict(service_env(root, "billing"))
    env["SPIFFILE_TRUST_DIR"] = str(trust_dir)
    return env


def test_identity_from_env_trusts_its_bundle_and_the_trust_dir(
    provisioned: dict[str, str], tmp_path: Path
) -> None:
    billing = Identity.from_env(provisioned, clock=lambda: NOW)
    orders_env = {k: v for k, v in provisioned.items() if k != "SPIFFILE_TRUST_DIR"}
    orders_env["SPIFFILE_ID_FILE"] = str(tmp_path / "root" / "services" / "orders" / "id")
    orders_env["SPIFFILE_KEY_FILE"] = str(tmp_path / "root" / "services" / "orders" / "key.pem")
    orders = Identity.from_env(orders_env, clock=lambda: NOW)
    # The trust dir is not consulted for the identity's own domain...
    write(Path(provisioned["SPIFFILE_TRUST_DIR"]), "example.org.json", PARTNER.jwks_bytes())
    own = billing.verify(orders.token(BILLING))
    assert (str(own.id), own.trust) == (ORDERS, TrustKind.SPIFFILE)
    # ...and serves the others, as they appear.
    token = PARTNER.token(audience=[BILLING, "other"])
    with pytest.raises(UnknownIdentityError):
        billing.verify(token)
    write(Path(provisioned["SPIFFILE_TRUST_DIR"]), "partner.test.json", PARTNER.jwks_bytes())
    assert billing.verify(token).trust is TrustKind.SPIFFE
    assert billing.trust_dir is not None
    status = billing.status()
    assert status.healthy and sorted(status.trust) == ["example.org", "partner.test"]


def test_identity_issuer_check(provisioned: dict[str, str]) -> None:
    write(Path(provisioned["SPIFFILE_TRUST_DIR"]), "partner.test.json", PARTNER.jwks_bytes())
    billing = Identity.from_env(provisioned, clock=lambda: NOW)
    token = PARTNER.token(audience=BILLING, claims={"iss": "https://issuer.test"})
    assert billing.verify(token, issuer="https://issuer.test")
    with pytest.raises(Exception, match="iss"):
        billing.verify(token, issuer="https://other.test")


def test_identity_trust_dir_that_does_not_exist_is_a_configuration_error(
    provisioned: dict[str, str], tmp_path: Path
) -> None:
    provisioned["SPIFFILE_TRUST_DIR"] = str(tmp_path / "nope")
    with pytest.raises(ConfigurationError):
        Identity.from_env(provisioned)


def test_spiffile_key_for_another_domain_only_through_its_own_file(tmp_path: Path) -> None:
    """A partner running spiffile publishes its bundle: per-identity binding still holds."""
    partner = make_realm(
        {"spiffe://partner.test/a": 1, "spiffe://partner.test/b": 1}, trust_domain="partner.test"
    )
    write(tmp_path, "partner.test.json", partner.bundle.to_json())
    trust = TrustDirectory(tmp_path, clock=lambda: NOW)
    forge = Forge(partner, subject="spiffe://partner.test/a", audience=BILLING)
    assert trust.verify(forge.token(), BILLING).trust is TrustKind.SPIFFILE
    impostor = Forge(partner, subject="spiffe://partner.test/b", audience=BILLING)
    stolen = impostor.token(
        header=impostor.header(kid=partner.kid("spiffe://partner.test/a")), signer=forge.es256()
    )
    with pytest.raises(SignatureError):
        trust.verify(stolen, BILLING)
