"""The pure X.509-SVID core beyond the conformance vectors: inputs, types, key matching."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from spiffile.errors import (
    InvalidKeyError,
    SpiffileError,
    X509ExpiredError,
    X509KeyMismatchError,
    X509MalformedError,
    X509UntrustedError,
)
from spiffile.svid import x509 as svid_x509
from spiffile.tls import verify_x509_svid

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conformance._x509 import CertForge, key_pem, pem, seeded_key  # noqa: E402

NOW = 1_750_000_000
TD = "example.org"
WID = f"spiffe://{TD}/orders"


@pytest.fixture(scope="module")
def forge() -> CertForge:
    return CertForge(NOW)


def test_verified_chain_ends_at_the_authority(forge: CertForge) -> None:
    root = forge.authority("t/root", TD)
    inter = forge.intermediate("t/inter", root, TD)
    leaf = forge.leaf("t/leaf", inter, WID)
    svid = svid_x509.verify_at([leaf.cert, inter.cert], {TD: [root.cert]}, NOW)
    assert str(svid.id) == WID
    assert svid.chain == (leaf.cert, inter.cert, root.cert)
    assert svid.expires_at == NOW + 3600
    assert WID in repr(svid)


def test_authorities_of_another_domain_are_never_consulted(forge: CertForge) -> None:
    """X.509-SVID §5: example.org's root cannot vouch for an other.example ID."""
    root = forge.authority("t/root", TD)
    other = forge.authority("t/other", "other.example")
    leaf = forge.leaf("t/cross", root, "spiffe://other.example/x")
    with pytest.raises(X509UntrustedError):
        svid_x509.verify_at(leaf.pem, {TD: [root.cert], "other.example": [other.cert]}, NOW)


def test_now_must_be_finite(forge: CertForge) -> None:
    root = forge.authority("t/root", TD)
    leaf = forge.leaf("t/leaf", root, WID)
    with pytest.raises(ValueError):
        svid_x509.verify_at(leaf.pem, {TD: [root.cert]}, math.nan)
    with pytest.raises(TypeError):
        svid_x509.verify_at(leaf.pem, {TD: [root.cert]}, "now")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        svid_x509.verify_at(["not a cert"], {TD: [root.cert]}, NOW)  # type: ignore[list-item]


def test_the_clocked_form_reads_the_wall_clock(forge: CertForge) -> None:
    # Certificates made around the real time: valid now, and not at NOW.
    live = CertForge(int(time.time()))
    root = live.authority("t/live-root", TD)
    leaf = live.leaf("t/live", root, WID)
    assert verify_x509_svid(leaf.pem, {TD: [root.cert]}).id == svid_x509.spiffe_id_of(leaf.cert)
    with pytest.raises(X509ExpiredError):
        svid_x509.verify_at(leaf.pem, {TD: [root.cert]}, time.time() + 7200)


def test_chain_length_is_capped(forge: CertForge) -> None:
    root = forge.authority("t/root", TD)
    leaf = forge.leaf("t/leaf", root, WID)
    too_many = pem(*[leaf.cert] * (svid_x509.MAX_CHAIN_CERTIFICATES + 1))
    with pytest.raises(X509MalformedError):
        svid_x509.verify_at(too_many, {TD: [root.cert]}, NOW)
    with pytest.raises(X509MalformedError):
        svid_x509.verify_at([], {TD: [root.cert]}, NOW)
    with pytest.raises(X509MalformedError):
        svid_x509.load_certificates(b"x" * (svid_x509.MAX_PEM_BYTES + 1))


def test_parse_svid_requires_the_leafs_key(forge: CertForge) -> None:
    root = forge.authority("t/root", TD)
    leaf = forge.leaf("t/leaf", root, WID)
    svid, key = svid_x509.parse_svid(leaf.pem + root.pem, leaf.key_pem)
    assert svid.id == svid_x509.spiffe_id_of(leaf.cert)
    assert key.public_key().public_numbers() == leaf.key.public_key().public_numbers()
    with pytest.raises(X509KeyMismatchError):
        svid_x509.parse_svid(leaf.pem, key_pem(seeded_key("t/other-key")))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"-----BEGIN PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----\n",
    ],
)
def test_bad_keys_raise_invalid_key_without_echoing_it(data: bytes) -> None:
    with pytest.raises(InvalidKeyError) as info:
        svid_x509.load_private_key(data)
    assert "AAAA" not in str(info.value)


def test_spiffe_id_of_a_certificate_without_extensions(forge: CertForge) -> None:
    bare = forge.certificate("t/bare", ca=None, usage=None, ekus=())
    assert isinstance(bare.cert, x509.Certificate)
    with pytest.raises(SpiffileError) as info:
        svid_x509.spiffe_id_of(bare.cert)
    assert info.value.code == "x509_uri_san"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_our_errors(data: bytes) -> None:
    root_pem = CertForge(NOW).authority("t/root", TD).cert
    for blob in (data, b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n"):
        with pytest.raises(SpiffileError):
            svid_x509.verify_at(blob, {TD: [root_pem]}, NOW)
