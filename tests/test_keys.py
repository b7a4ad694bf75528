"""Tests for spiffile/keys.py: P-256 keys, PEM, public JWKs and RFC 7638 thumbprints."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from spiffile.errors import InvalidBundleError, InvalidKeyError
from spiffile.keys import (
    b64url_decode,
    b64url_encode,
    generate_private_key,
    jwk_thumbprint,
    kid_for,
    load_private_key_pem,
    private_key_to_pem,
    public_jwk,
    public_key_from_jwk,
)

VECTORS_DIR = Path(__file__).parent / "vectors"


def _load(name: str) -> Any:
    return json.loads((VECTORS_DIR / name).read_text("utf-8"))


THUMBPRINTS: list[dict[str, Any]] = _load("rfc7638.json")["vectors"]
BAD_JWKS: list[dict[str, Any]] = _load("jwk_invalid.json")["vectors"]
REDUCED_POINT: dict[str, str] = _load("jwk_invalid.json")["reduced_point"]
B64URL: dict[str, Any] = _load("b64url.json")


def _sha256_b64url(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# -- RFC 7638 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", THUMBPRINTS, ids=[v["name"] for v in THUMBPRINTS])
def test_rfc7638_thumbprint_vector(vector: dict[str, Any]) -> None:
    # The vector is self-consistent: the thumbprint is SHA-256 of the canonical JSON ...
    assert _sha256_b64url(vector["canonical"]) == vector["thumbprint"]
    # ... and jwk_thumbprint gets there from the full JWK (extra members ignored).
    assert jwk_thumbprint(vector["jwk"]) == vector["thumbprint"]


@pytest.mark.parametrize("vector", THUMBPRINTS, ids=[v["name"] for v in THUMBPRINTS])
def test_thumbprint_ignores_member_order_and_optional_members(vector: dict[str, Any]) -> None:
    jwk = dict(reversed(list(vector["jwk"].items())))
    jwk.update({"use": "sig", "key_ops": ["verify"], "x5c": ["MIIB"]})
    assert jwk_thumbprint(jwk) == vector["thumbprint"]


def test_rfc7638_rsa_example_n_is_the_rfc_value() -> None:
    """Guard against a mangled copy: n is the 2048-bit modulus of RFC 7517 A.1 / RFC 7638 §3.1."""
    rsa_vector = next(v for v in THUMBPRINTS if v["name"] == "rfc7638_section_3_1_rsa")
    n = b64url_decode(rsa_vector["jwk"]["n"])
    assert len(n) == 256
    assert rsa_vector["jwk"]["n"].startswith("0vx7agoebGcQSuu")
    assert rsa_vector["jwk"]["n"].endswith("JzKnqDKgw")


def test_rfc7517_ec_key_kid_for_matches_the_vector() -> None:
    vector = next(v for v in THUMBPRINTS if v["name"] == "rfc7517_appendix_a_1_ec_p256")
    public_key = public_key_from_jwk(vector["jwk"])
    assert kid_for(public_key) == vector["thumbprint"]
    # The private half (RFC 7517 A.2) derives the same public key.
    d = int.from_bytes(b64url_decode(vector["private_d"]), "big")
    private_key = ec.derive_private_key(d, ec.SECP256R1())
    assert private_key.public_key().public_numbers() == public_key.public_numbers()
    jwk = public_jwk(private_key.public_key())
    assert (jwk["x"], jwk["y"], jwk["kid"]) == (
        vector["jwk"]["x"],
        vector["jwk"]["y"],
        vector["thumbprint"],
    )


@pytest.mark.parametrize(
    "jwk",
    [
        {},
        {"kty": "EC", "crv": "P-256", "x": "AA"},
        {"kty": "RSA", "n": "AQAB"},
        {"kty": "EC", "crv": "P-256", "x": 1, "y": "AA"},
        {"kty": "XYZ"},
        {"kty": 1},
    ],
    ids=["empty", "ec_without_y", "rsa_without_e", "x_not_string", "unknown_kty", "kty_number"],
)
def test_thumbprint_refuses_incomplete_keys(jwk: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        jwk_thumbprint(jwk)


def test_thumbprint_of_other_key_types() -> None:
    """RFC 7638 §3.2 member sets for OKP and oct (hand-built canonical strings)."""
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    assert jwk_thumbprint(okp) == _sha256_b64url(
        '{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}'
    )
    oct_key = {"kty": "oct", "k": "GawgguFyGrWKav7AX4VKUg", "alg": "HS256"}
    assert jwk_thumbprint(oct_key) == _sha256_b64url('{"k":"GawgguFyGrWKav7AX4VKUg","kty":"oct"}')


# -- generate, PEM -------------------------------------------------------------------------------


def test_generate_is_p256_and_fresh(
    make_p256_keys: Callable[[int], list[ec.EllipticCurvePrivateKey]],
) -> None:
    keys = make_p256_keys(8)
    assert all(isinstance(key.curve, ec.SECP256R1) for key in keys)
    assert len({key.private_numbers().private_value for key in keys}) == 8
    assert len({kid_for(key.public_key()) for key in keys}) == 8


def test_pem_round_trip() -> None:
    key = generate_private_key()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert pem.rstrip().endswith(b"-----END PRIVATE KEY-----")
    loaded = load_private_key_pem(pem)
    assert loaded.private_numbers() == key.private_numbers()
    assert private_key_to_pem(loaded) == pem


@pytest.mark.parametrize(
    "transform",
    [
        lambda pem: pem.replace(b"\n", b"\r\n"),
        lambda pem: b"\n\n" + pem + b"\n\n",
        lambda pem: pem.rstrip(b"\n"),
    ],
    ids=["crlf", "surrounding_blank_lines", "no_final_newline"],
)
def test_pem_tolerates_harmless_whitespace(transform: Callable[[bytes], bytes]) -> None:
    key = generate_private_key()
    loaded = load_private_key_pem(transform(private_key_to_pem(key)))
    assert loaded.private_numbers() == key.private_numbers()


def _pkcs8(key: Any, encryption: Any = None) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            encryption or serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _bad_pems(rsa_key: rsa.RSAPrivateKey) -> dict[str, bytes]:
    p256 = generate_private_key()
    good = _pkcs8(p256)
    body = good.split(b"\n")
    return {
        "rsa": _pkcs8(rsa_key),
        "rsa_traditional": rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        "p384": _pkcs8(ec.generate_private_key(ec.SECP384R1())),
        "p521": _pkcs8(ec.generate_private_key(ec.SECP521R1())),
        "secp256k1": _pkcs8(ec.generate_private_key(ec.SECP256K1())),
        "ed25519": _pkcs8(ed25519.Ed25519PrivateKey.generate()),
        "encrypted_pkcs8": _pkcs8(p256, serialization.BestAvailableEncryption(b"secret")),
        "sec1_ec_private_key": p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        "sec1_encrypted": p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        "public_key_pem": p256.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "pkcs8_der": p256.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "garbage": b"this is not a key",
        "binary_garbage": bytes(range(256)),
        "empty": b"",
        "header_only": b"-----BEGIN PRIVATE KEY-----\n",
        "header_and_footer_only": b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
        "garbage_body": b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        "truncated": b"\n".join(body[:3]) + b"\n-----END PRIVATE KEY-----\n",
        "no_footer": b"\n".join(body[:-2]) + b"\n",
        "utf16": good.decode("ascii").encode("utf-16"),
        # The SEC1 block came first and was the one loaded, passing the
        # "BEGIN PRIVATE KEY" check thanks to the block after it.
        "sec1_then_pkcs8": p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        + good,
        # Which of two keys signs is anybody's guess: one key per key file.
        "two_pkcs8_keys": good + _pkcs8(generate_private_key()),
    }


BAD_PEM_NAMES = [
    "rsa",
    "rsa_traditional",
    "p384",
    "p521",
    "secp256k1",
    "ed25519",
    "encrypted_pkcs8",
    "sec1_ec_private_key",
    "sec1_encrypted",
    "public_key_pem",
    "pkcs8_der",
    "garbage",
    "binary_garbage",
    "empty",
    "header_only",
    "header_and_footer_only",
    "garbage_body",
    "truncated",
    "no_footer",
    "utf16",
    "sec1_then_pkcs8",
    "two_pkcs8_keys",
]


def test_bad_pem_names_cover_every_case(rsa_key: rsa.RSAPrivateKey) -> None:
    assert list(_bad_pems(rsa_key)) == BAD_PEM_NAMES


@pytest.mark.parametrize("name", BAD_PEM_NAMES)
def test_load_rejects_anything_but_pkcs8_p256(rsa_key: rsa.RSAPrivateKey, name: str) -> None:
    data = _bad_pems(rsa_key)[name]
    with pytest.raises(InvalidKeyError) as caught:
        load_private_key_pem(data)
    message = str(caught.value)
    # The message names the problem without echoing key material.
    assert message
    for line in data.splitlines():
        if len(line) > 20 and not line.startswith(b"-----"):
            assert line.decode("latin-1") not in message


@pytest.mark.parametrize(
    ("name", "needle"),
    [("encrypted_pkcs8", "encrypted"), ("p384", "P-256"), ("rsa", "EC")],
)
def test_load_errors_say_what_is_wrong(rsa_key: rsa.RSAPrivateKey, name: str, needle: str) -> None:
    with pytest.raises(InvalidKeyError, match=needle):
        load_private_key_pem(_bad_pems(rsa_key)[name])


@pytest.mark.parametrize("value", ["-----BEGIN PRIVATE KEY-----", None, 1])
def test_load_requires_bytes(value: Any) -> None:
    with pytest.raises(TypeError):
        load_private_key_pem(value)


# -- public JWK ----------------------------------------------------------------------------------


def test_public_jwk_shape() -> None:
    key = generate_private_key()
    jwk = public_jwk(key.public_key())
    assert list(jwk) == ["kty", "crv", "x", "y", "kid", "use", "alg"]
    assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == ("EC", "P-256", "jwt-svid", "ES256")
    assert "d" not in jwk
    numbers = key.public_key().public_numbers()
    assert b64url_decode(jwk["x"]) == numbers.x.to_bytes(32, "big")
    assert b64url_decode(jwk["y"]) == numbers.y.to_bytes(32, "big")
    assert len(jwk["x"]) == len(jwk["y"]) == 43
    json.dumps(jwk)  # Serializable as is.


def test_public_jwk_kid_is_the_rfc7638_thumbprint() -> None:
    public_key = generate_private_key().public_key()
    jwk = public_jwk(public_key)
    canonical = f'{{"crv":"P-256","kty":"EC","x":"{jwk["x"]}","y":"{jwk["y"]}"}}'
    assert jwk["kid"] == _sha256_b64url(canonical)
    assert jwk["kid"] == kid_for(public_key)
    assert jwk["kid"] == jwk_thumbprint(jwk)


def test_public_jwk_keeps_leading_zero_bytes() -> None:
    """Coordinates are fixed-width 32 bytes even when the integer is shorter."""
    for scalar in range(1, 100_000):
        public_key = ec.derive_private_key(scalar, ec.SECP256R1()).public_key()
        if public_key.public_numbers().x < 2**248:
            break
    else:
        raise AssertionError("no point with a short x found")
    jwk = public_jwk(public_key)
    raw_x = b64url_decode(jwk["x"])
    assert len(raw_x) == 32 and raw_x[0] == 0
    assert public_key_from_jwk(jwk).public_numbers() == public_key.public_numbers()


def test_jwk_round_trip() -> None:
    public_key = generate_private_key().public_key()
    restored = public_key_from_jwk(public_jwk(public_key))
    assert restored.public_numbers() == public_key.public_numbers()
    assert kid_for(restored) == kid_for(public_key)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP384R1()).public_key(),
        ec.generate_private_key(ec.SECP256K1()).public_key(),
        ed25519.Ed25519PrivateKey.generate().public_key(),
        generate_private_key(),
    ],
    ids=["p384", "secp256k1", "ed25519", "private_key"],
)
def test_public_jwk_refuses_other_keys(key: Any) -> None:
    with pytest.raises(TypeError):
        public_jwk(key)


# -- public_key_from_jwk -------------------------------------------------------------------------


def test_reduced_point_vector_is_valid() -> None:
    """The x = 5 point of jwk_invalid.json is on the curve (so x_not_reduced is its alias)."""
    public_key = public_key_from_jwk(REDUCED_POINT)
    assert public_key.public_numbers().x == 5


@pytest.mark.parametrize("vector", BAD_JWKS, ids=[v["name"] for v in BAD_JWKS])
def test_public_key_from_jwk_rejects(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidBundleError):
        public_key_from_jwk(vector["jwk"])


@pytest.mark.parametrize("value", [None, [], "jwk", 1, ["kty", "EC"]])
def test_public_key_from_jwk_rejects_non_objects(value: Any) -> None:
    with pytest.raises(InvalidBundleError):
        public_key_from_jwk(value)


def test_public_key_from_jwk_ignores_optional_members() -> None:
    vector = next(v for v in THUMBPRINTS if v["name"] == "rfc7517_appendix_a_1_ec_p256")
    assert kid_for(public_key_from_jwk(dict(vector["jwk"], kid="anything", ext=True)))


# -- base64url ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "vector", B64URL["valid"], ids=[v["text"] or "<empty>" for v in B64URL["valid"]]
)
def test_b64url_decode_valid(vector: dict[str, str]) -> None:
    assert b64url_decode(vector["text"]) == bytes.fromhex(vector["hex"])
    assert b64url_encode(bytes.fromhex(vector["hex"])) == vector["text"]


@pytest.mark.parametrize(
    "vector", B64URL["invalid"], ids=[v["why"] + ":" + ascii(v["text"]) for v in B64URL["invalid"]]
)
def test_b64url_decode_rejects(vector: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        b64url_decode(vector["text"])


@pytest.mark.parametrize("size", range(0, 70))
def test_b64url_round_trip_is_canonical(size: int) -> None:
    data = bytes((i * 37 + size) % 256 for i in range(size))
    text = b64url_encode(data)
    assert "=" not in text
    assert b64url_decode(text) == data
