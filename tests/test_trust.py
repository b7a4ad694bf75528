"""spiffile.trust: documents recognised by their shape, trust sets, rollback refusal."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from spiffeforge import SpiffeRealm
from tokenforge import BILLING, ORDERS, make_realm

from spiffile.bundle import Bundle
from spiffile.bundle.spiffe import SpiffeBundle
from spiffile.errors import InvalidBundleError, UnknownIdentityError
from spiffile.trust import (
    TrustKind,
    TrustSet,
    kind_of,
    parse_trust_document,
    refuse_rollback,
)


def test_spiffile_bundle_is_recognised_and_must_name_the_trust_domain() -> None:
    realm = make_realm({ORDERS: 1, BILLING: 1})
    data = realm.bundle.to_json()
    document = parse_trust_document(data, "example.org")
    assert isinstance(document, Bundle) and kind_of(document) is TrustKind.SPIFFILE
    with pytest.raises(InvalidBundleError, match=r"is for 'example\.org'"):
        parse_trust_document(data, "other.test")


def test_jwks_is_a_spiffe_bundle_for_the_named_domain() -> None:
    spire = SpiffeRealm()
    document = parse_trust_document(spire.jwks_bytes(spiffe_sequence=2), "spire.test")
    assert isinstance(document, SpiffeBundle) and kind_of(document) is TrustKind.SPIFFE
    assert document.trust_domain == "spire.test" and document.sequence == 2


def test_helper_bundle_map_gives_the_member_for_the_domain() -> None:
    spire = SpiffeRealm()
    encoded = base64.b64encode(spire.jwks_bytes()).decode()
    data = json.dumps({"spire.test": encoded, "other.test": encoded})
    assert parse_trust_document(data, "spire.test").trust_domain == "spire.test"
    assert parse_trust_document(data, "other.test").trust_domain == "other.test"
    with pytest.raises(InvalidBundleError, match=r"no bundle for 'third\.test'"):
        parse_trust_document(data, "third.test")


def test_the_marker_inside_a_value_does_not_make_a_spiffile_bundle() -> None:
    spire = SpiffeRealm()
    document = spire.jwks()
    document["keys"][0]["kid"] = "spiffile_version"
    data = json.dumps(document).replace('"spiffile_version"', '"spiffile_version"')
    parsed = parse_trust_document(data, "spire.test")
    assert isinstance(parsed, SpiffeBundle) and parsed.authority("spiffile_version")


@pytest.mark.parametrize(
    "data",
    [b"[]", b'{"neither": 1}', b"not json", b'{"spiffile_version": 2, "trust_domain": "x"}'],
)
def test_anything_else_is_an_invalid_bundle(data: bytes) -> None:
    with pytest.raises(InvalidBundleError):
        parse_trust_document(data, "example.org")


def test_bad_trust_domain_name() -> None:
    with pytest.raises(InvalidBundleError):
        parse_trust_document(b'{"keys": []}', "../etc")


def test_trust_set() -> None:
    realm = make_realm({ORDERS: 1})
    spire = SpiffeBundle.parse(SpiffeRealm().jwks_bytes(), "spire.test")
    trust = TrustSet.of(realm.bundle, spire)
    assert trust.trust_domains == ["example.org", "spire.test"] == list(trust)
    assert trust.bundle_for("spire.test") is spire and "example.org" in trust and len(trust) == 2
    with pytest.raises(UnknownIdentityError):
        trust.bundle_for("nobody.test")
    with pytest.raises(ValueError, match="two documents"):
        TrustSet.of(spire, spire)
    with pytest.raises(ValueError, match="is for"):
        TrustSet({"other.test": spire})
    bad: Any = {"spire.test": "not a document"}
    with pytest.raises(TypeError):
        TrustSet(bad)
    assert "spire.test: spiffe" in repr(trust)


def test_a_bundle_is_a_trust_source_for_its_own_domain_only() -> None:
    realm = make_realm({ORDERS: 1})
    assert realm.bundle.bundle_for("example.org") is realm.bundle
    with pytest.raises(UnknownIdentityError):
        realm.bundle.bundle_for("spire.test")


def test_refuse_rollback() -> None:
    spire = SpiffeRealm()
    v5 = SpiffeBundle.parse(spire.jwks_bytes(spiffe_sequence=5), "spire.test")
    v4 = SpiffeBundle.parse(spire.jwks_bytes(spiffe_sequence=4), "spire.test")
    none = SpiffeBundle.parse(spire.jwks_bytes(), "spire.test")
    refuse_rollback(v4, v5)
    refuse_rollback(none, v4)
    refuse_rollback(v5, v5)
    with pytest.raises(InvalidBundleError, match="rollback"):
        refuse_rollback(v5, v4)
    with pytest.raises(InvalidBundleError, match="rollback"):
        refuse_rollback(v5, none)
    other = SpiffeBundle.parse(spire.jwks_bytes(), "other.test")
    with pytest.raises(InvalidBundleError, match="trust domain changed"):
        refuse_rollback(none, other)
