"""Tests for spiffile/bundle.py: the bundle document."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from bundledocs import BILLING, ORDERS
from bundledocs import document as _document
from bundledocs import encode as _encode
from bundledocs import fresh_jwk as _jwk

from spiffile.bundle import Bundle
from spiffile.bundle import document as bundle_module
from spiffile.errors import InvalidBundleError, UnknownIdentityError


def test_parse_valid_bundle(good: dict[str, Any]) -> None:
    bundle = Bundle.parse(_encode(good))
    assert bundle.trust_domain == "example.org"
    assert bundle.sequence is None
    assert len(bundle) == 2
    assert [str(i) for i in bundle.identities()] == [BILLING, ORDERS]
    assert [k.kid for k in bundle.keys_for(ORDERS)] == [
        good["identities"][ORDERS]["keys"][0]["kid"]
    ]
    assert len(bundle.keys_for(BILLING)) == 2
    assert ORDERS in bundle and "spiffe://example.org/nobody" not in bundle
    assert bundle.warnings == []


def test_parse_accepts_str_and_ignores_unknown_top_level_members(good: dict[str, Any]) -> None:
    good["future_extension"] = {"anything": [1, 2]}
    bundle = Bundle.parse(json.dumps(good))
    assert len(bundle.identities()) == 2
    # Producers that rewrite the bundle keep members they do not know.
    assert bundle.to_document()["future_extension"] == {"anything": [1, 2]}


def test_key_objects_are_built_once_per_bundle_version(good: dict[str, Any]) -> None:
    bundle = Bundle.parse(_encode(good))
    first = bundle.keys_for(ORDERS)
    again = bundle.keys_for(ORDERS)
    assert first is again
    assert first[0].public_key is again[0].public_key


def test_unknown_identity_is_its_own_error(good: dict[str, Any]) -> None:
    bundle = Bundle.parse(_encode(good))
    with pytest.raises(UnknownIdentityError):
        bundle.keys_for("spiffe://example.org/nobody")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"not json", "garbage"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[]", "array"),
        (b'"x"', "string"),
        (b"{}", "no members"),
        (_encode({"trust_domain": "example.org", "spiffile_version": 2, "identities": {}}), "v2"),
        (_encode({"trust_domain": "example.org", "spiffile_version": "1", "identities": {}}), "s"),
        (_encode({"trust_domain": "example.org", "spiffile_version": True, "identities": {}}), "b"),
        (_encode({"trust_domain": "example.org", "spiffile_version": 1.0, "identities": {}}), "f"),
        (_encode({"trust_domain": "example.org", "identities": {}}), "no version"),
        (_encode({"trust_domain": "Example.org", "spiffile_version": 1, "identities": {}}), "td"),
        (_encode({"spiffile_version": 1, "identities": {}}), "no trust domain"),
        (_encode({"trust_domain": 7, "spiffile_version": 1, "identities": {}}), "td type"),
        (_encode({"trust_domain": "example.org", "spiffile_version": 1}), "no identities"),
        (_encode({"trust_domain": "example.org", "spiffile_version": 1, "identities": []}), "list"),
        (
            _encode(
                {
                    "trust_domain": "example.org",
                    "spiffile_version": 1,
                    "identities": {},
                    "spiffe_sequence": -1,
                }
            ),
            "negative sequence",
        ),
        (
            _encode(
                {
                    "trust_domain": "example.org",
                    "spiffile_version": 1,
                    "identities": {},
                    "spiffe_sequence": True,
                }
            ),
            "boolean sequence",
        ),
        (b"[" * 100_000, "deep nesting"),
    ],
)
def test_unusable_documents_are_rejected(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidBundleError):
        Bundle.parse(data)


def test_oversize_bundle_is_rejected_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_module, "MAX_BUNDLE_BYTES", 100)
    with pytest.raises(InvalidBundleError, match="larger than"):
        Bundle.parse(b" " * 101)


def _bad_entries() -> list[tuple[str, Any]]:
    jwk = _jwk()
    with_d = dict(jwk, d="AAAA")
    off_curve = dict(jwk, y=jwk["x"])
    return [
        ("not an object", ["keys"]),
        ("no keys", {}),
        ("keys not a list", {"keys": jwk}),
        ("empty keys", {"keys": []}),
        ("key not an object", {"keys": ["x"]}),
        ("missing kid", {"keys": [{k: v for k, v in jwk.items() if k != "kid"}]}),
        ("empty kid", {"keys": [dict(jwk, kid="")]}),
        ("RSA", {"keys": [dict(jwk, kty="RSA")]}),
        ("P-384", {"keys": [dict(jwk, crv="P-384")]}),
        ("private key", {"keys": [with_d]}),
        ("bad use", {"keys": [dict(jwk, use="sig")]}),
        ("bad alg", {"keys": [dict(jwk, alg="RS256")]}),
        ("padded x", {"keys": [dict(jwk, x=jwk["x"] + "=")]}),
        ("short x", {"keys": [dict(jwk, x=jwk["x"][:-4])]}),
        ("x not a string", {"keys": [dict(jwk, x=5)]}),
        ("off curve", {"keys": [off_curve]}),
        ("duplicate kid", {"keys": [jwk, dict(_jwk(), kid=jwk["kid"])]}),
    ]


@pytest.mark.parametrize(("reason", "entry"), _bad_entries(), ids=[r for r, _ in _bad_entries()])
def test_malformed_entry_is_skipped_with_one_warning(
    reason: str, entry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    good_key = _jwk()
    document = _document(**{ORDERS: {"keys": [good_key]}, BILLING: entry})
    with caplog.at_level(logging.WARNING, logger="spiffile"):
        bundle = Bundle.parse(_encode(document))
        assert [str(i) for i in bundle.identities()] == [ORDERS]
        with pytest.raises(UnknownIdentityError):
            bundle.keys_for(BILLING)
        with pytest.raises(UnknownIdentityError):
            bundle.keys_for(BILLING)
    assert bundle.keys_for(ORDERS)[0].kid == good_key["kid"]
    assert len(bundle.warnings) == 1
    assert sum("malformed" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize(
    "bad_id",
    [
        "spiffe://other.org/orders",
        "spiffe://example.org/",
        "spiffe://Example.org/x",
        "spiffe://example.org/a/../b",
        "not an id",
        "spiffe://example.org",
    ],
)
def test_entry_with_bad_or_foreign_id_is_skipped(bad_id: str) -> None:
    bundle = Bundle.parse(
        _encode(_document(**{bad_id: {"keys": [_jwk()]}, ORDERS: {"keys": [_jwk()]}}))
    )
    if bad_id == "spiffe://example.org":
        # The trust domain's own ID is a valid SPIFFE ID of the domain.
        assert len(bundle.identities()) == 2
        return
    assert [str(i) for i in bundle.identities()] == [ORDERS]
    assert len(bundle.warnings) == 1


def test_producer_derivations_round_trip() -> None:
    first, second = _jwk(), _jwk()
    bundle = Bundle.empty("example.org").with_keys(ORDERS, [first]).with_sequence(4)
    bundle = bundle.with_keys(BILLING, [second])
    again = Bundle.parse(bundle.to_json())
    assert again.sequence == 4
    assert [k.kid for k in again.keys_for(ORDERS)] == [first["kid"]]
    assert again.to_json() == bundle.to_json()
    removed = again.without_identity(ORDERS)
    assert [str(i) for i in removed.identities()] == [BILLING]
    # Derivations never change the bundle they come from.
    assert [str(i) for i in again.identities()] == [BILLING, ORDERS]


def test_with_keys_validates_what_producers_add() -> None:
    with pytest.raises(InvalidBundleError):
        Bundle.empty("example.org").with_keys("spiffe://other.org/x", [_jwk()])
    with pytest.raises(InvalidBundleError):
        Bundle.empty("example.org").with_keys(ORDERS, [dict(_jwk(), d="secret")])
    with pytest.raises(InvalidBundleError):
        Bundle.empty("example.org").with_keys(ORDERS, [])


def test_to_document_is_a_copy_whatever_the_entry_shape(good: dict[str, Any]) -> None:
    # ORDERS is in the producers' exact shape (stored compactly); BILLING's
    # keys carry an extra member (stored as parsed).  Editing the returned
    # document, as a producer building its next bundle does, must leave the
    # bundle itself alone for both, as it does for the compact one.
    good["identities"][BILLING]["keys"][0]["note"] = "extra member"
    good["identities"][BILLING]["comment"] = ["kept"]
    good["future_extension"] = {"anything": [1, 2]}
    bundle = Bundle.parse(_encode(good))
    before = bundle.to_json()
    document = bundle.to_document()
    for entry in document["identities"].values():
        entry["keys"].clear()
    document["identities"][BILLING]["comment"].append("edited")
    document["future_extension"]["anything"].append(3)
    assert bundle.to_json() == before
    assert bundle.to_document() == json.loads(before)
    assert len(bundle.keys_for(ORDERS)) == 1 and len(bundle.keys_for(BILLING)) == 2


@pytest.mark.parametrize("version", ["x" * 100_000, 10**4000, {"secret": "y" * 1000}])
def test_rejected_document_is_not_quoted_in_the_error(version: Any) -> None:
    # The error becomes a log line when a reloaded bundle is refused
    # (PROFILE.md 7.3: name the file and the reason, quote none of its
    # content): a huge value must not turn into a huge log line.
    document = _document()
    document["spiffile_version"] = version
    with pytest.raises(InvalidBundleError) as caught:
        Bundle.parse(_encode(document))
    assert len(str(caught.value)) < 200
    assert "unsupported spiffile_version" in str(caught.value)
