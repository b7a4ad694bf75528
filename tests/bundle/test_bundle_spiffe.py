"""SPIFFE bundles (spiffile.bundle.spiffe): what real producers write, and what is skipped."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from bundledocs import BILLING
from bundledocs import encode as _encode
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from spiffeforge import authority, jwk_of, rsa_key

from spiffile.bundle import Bundle, spiffe_jwt_bundle
from spiffile.bundle.spiffe import (
    MAX_SPIFFE_BUNDLE_BYTES,
    SpiffeBundle,
    is_bundle_map,
    parse_bundle_map,
)
from spiffile.errors import InvalidBundleError, UnknownIdentityError

TD = "spire.test"


def parse(document: Any, trust_domain: str = TD) -> SpiffeBundle:
    return SpiffeBundle.parse(json.dumps(document).encode(), trust_domain)


def test_spire_bundle_show_format_keeps_jwt_keys_and_ignores_x509_entries() -> None:
    jwt_key = authority("ES256", "jwt-1")
    document = {
        "keys": [
            {
                "use": "x509-svid",
                "kty": "EC",
                "crv": "P-256",
                "x": "ignored",
                "y": "ignored",
                "x5c": ["MIIB..."],
            },
            jwt_key.jwk(),
        ],
        "spiffe_sequence": 12,
        "spiffe_refresh_hint": 300,
    }
    bundle = parse(document)
    assert [a.kid for a in bundle] == ["jwt-1"]
    assert (bundle.sequence, bundle.refresh_hint, bundle.trust_domain) == (12, 300, TD)
    assert bundle.warnings == []
    assert bundle.authority("jwt-1") is not None and bundle.authority("x") is None
    assert bundle.to_document()["keys"] == [jwt_key.jwk()]


def test_agent_jwks_without_use_is_a_set_of_jwt_authorities() -> None:
    keys = [authority("ES256", "a"), authority("RS256", "b"), authority("ES384", "c")]
    bundle = parse({"keys": [k.jwk(use=None) for k in keys]})
    assert [a.kid for a in bundle.authorities()] == ["a", "b", "c"]
    assert bundle.authority("a").algorithms == {"ES256"}  # type: ignore[union-attr]
    assert bundle.authority("b").algorithms == {  # type: ignore[union-attr]
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
    }
    assert bundle.authority("c").algorithms == {"ES384"}  # type: ignore[union-attr]


def test_jwk_alg_narrows_the_algorithms() -> None:
    jwk = authority("RS256", "r").jwk()
    jwk["alg"] = "PS384"
    assert parse({"keys": [jwk]}).authority("r").algorithms == {"PS384"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"use": "something-else"}, "unknown 'use'"),
        ({"kid": ""}, "no 'kid'"),
        ({"kid": None}, "no 'kid'"),
        ({"kty": "OKP"}, "key type"),
        ({"crv": "secp256k1"}, "curve"),
        ({"x": "AAAA"}, "coordinates"),
        ({"x": "not base64!"}, "base64url"),
        ({"d": "AAAA"}, "private"),
        ({"alg": "RS256"}, "'alg'"),
        ({"alg": "HS256"}, "'alg'"),
    ],
)
def test_unusable_ec_keys_are_skipped_with_a_warning(
    change: dict[str, Any], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = authority("ES256", "good").jwk()
    bad = authority("ES256", "bad").jwk()
    bad.update(change)
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        bundle = parse({"keys": [bad, good]})
    assert [a.kid for a in bundle] == ["good"]
    assert len(bundle.warnings) == 1 and reason in bundle.warnings[0]
    assert reason in caplog.text


def test_point_off_the_curve_is_skipped() -> None:
    jwk = authority("ES256", "k").jwk()
    jwk["y"] = jwk["x"]  # (x, x) is almost surely not on P-256.
    bundle = parse({"keys": [jwk]})
    assert len(bundle) == 0 and "curve" in bundle.warnings[0]


def test_rsa_keys_below_2048_bits_and_even_exponents_are_skipped() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    even = jwk_of(rsa_key(), "even")
    even["e"] = "Ag"  # 2
    bundle = parse({"keys": [jwk_of(small, "small"), even, jwk_of(rsa_key(), "ok")]})
    assert [a.kid for a in bundle] == ["ok"]
    assert "modulus" in bundle.warnings[0] and "exponent" in bundle.warnings[1]


def test_p521_coordinates_are_66_bytes() -> None:
    key = ec.generate_private_key(ec.SECP521R1())
    bundle = parse({"keys": [jwk_of(key, "p521")]})
    assert bundle.authority("p521").algorithms == {"ES512"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"keys": "nope"},
        {"no_keys": []},
        {"keys": [], "spiffe_sequence": -1},
        {"keys": [], "spiffe_sequence": True},
        {"keys": [], "spiffe_refresh_hint": "300"},
    ],
)
def test_documents_that_are_not_spiffe_bundles_are_rejected(document: Any) -> None:
    with pytest.raises(InvalidBundleError):
        parse(document)


def test_two_jwt_keys_with_one_kid_reject_the_document() -> None:
    one, two = authority("ES256", "same"), authority("ES256", "same")
    with pytest.raises(InvalidBundleError, match="share the kid"):
        parse({"keys": [one.jwk(), two.jwk()]})


@pytest.mark.parametrize(
    "data",
    [
        b'{"keys": [], "keys": []}',
        b'{"keys": [NaN]}',
        b"\xff{}",
        b"[" * 5000,
        b'{"keys": []} trailing',
    ],
)
def test_strict_json(data: bytes) -> None:
    with pytest.raises(InvalidBundleError):
        SpiffeBundle.parse(data, TD)


def test_size_cap_before_parsing() -> None:
    with pytest.raises(InvalidBundleError, match="larger than"):
        SpiffeBundle.parse(b" " * (MAX_SPIFFE_BUNDLE_BYTES + 1), TD)


def test_bad_trust_domain_is_a_bundle_error() -> None:
    with pytest.raises(InvalidBundleError, match="trust domain"):
        SpiffeBundle.parse(b'{"keys": []}', "Not.Valid")


def test_bundle_for_serves_only_its_own_trust_domain() -> None:
    bundle = parse({"keys": []})
    assert bundle.bundle_for(TD) is bundle
    with pytest.raises(UnknownIdentityError):
        bundle.bundle_for("other.test")


def test_spiffe_helper_bundle_map() -> None:
    ours, theirs = authority("ES256", "ours"), authority("RS256", "theirs")

    def encode(document: Any) -> str:
        return base64.b64encode(json.dumps(document).encode()).decode()

    document = {
        "example.org": encode({"keys": [ours.jwk()]}),
        "partner.test": encode({"keys": [theirs.jwk()], "spiffe_sequence": 3}),
    }
    assert is_bundle_map(document)
    bundles = parse_bundle_map(document)
    assert sorted(bundles) == ["example.org", "partner.test"]
    assert [a.kid for a in bundles["example.org"]] == ["ours"]
    assert bundles["partner.test"].sequence == 3
    assert bundles["partner.test"].trust_domain == "partner.test"


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"example.org": 5},
        {"Example.org": "e30="},
        {"example.org": "not base64 at all!"},
        {"example.org": base64.b64encode(b"[]").decode()},
    ],
)
def test_bad_bundle_maps_are_rejected(document: Any) -> None:
    with pytest.raises(InvalidBundleError):
        parse_bundle_map(document)


def test_spiffe_jwt_bundle_holds_only_that_identity(good: dict[str, Any]) -> None:
    bundle = Bundle.parse(_encode(good))
    jwks = spiffe_jwt_bundle(bundle, BILLING)
    assert [k["kid"] for k in jwks["keys"]] == [
        k["kid"] for k in good["identities"][BILLING]["keys"]
    ]
    assert all(k["use"] == "jwt-svid" and "d" not in k for k in jwks["keys"])
    with pytest.raises(UnknownIdentityError):
        spiffe_jwt_bundle(bundle, "spiffe://example.org/nobody")
