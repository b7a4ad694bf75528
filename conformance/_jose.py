"""Hand-made JOSE for the vector generator and the runner.

The vectors must not be produced by the implementation they test, so this
module builds JWKs, RFC 7638 thumbprints and compact JWS tokens directly on
pyca/cryptography and the standard library. Hostile tokens need full control
over every byte (padding, member order, non-canonical base64url, foreign
algorithms), which no JWT library offers, so tokens are assembled by hand.

ECDSA signatures use RFC 6979 deterministic nonces, which makes every derived
file reproducible byte for byte from the committed inputs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "b64url",
    "b64url_decode",
    "compact",
    "dumps",
    "ec_jwk",
    "es256_raw_verify",
    "hs256",
    "load_private_pem",
    "private_key_pem",
    "public_key_from_jwk",
    "public_spki_pem",
    "rs256",
    "rsa_jwk",
    "sign_ecdsa_der",
    "sign_ecdsa_raw",
    "signing_input",
    "thumbprint",
]


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Lenient base64url decoding for the runner's own inspection of tokens."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def dumps(value: Any) -> bytes:
    """Compact JSON, member order kept, non-ASCII kept as UTF-8 (what a producer writes)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_private_pem(data: bytes, password: bytes | None = None) -> Any:
    """Load a PKCS#8 PEM private key of any type (the hostile keys are RSA and P-384)."""
    return serialization.load_pem_private_key(data, password=password)


def public_spki_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a key: the classic HS256 confusion secret."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _coordinate(value: int, size: int) -> str:
    return b64url(value.to_bytes(size, "big"))


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 §3: SHA-256 over the required members, sorted, no whitespace."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "RSA": ("e", "kty", "n"),
        "OKP": ("crv", "kty", "x"),
        "oct": ("k", "kty"),
    }[jwk["kty"]]
    canonical = json.dumps(
        {name: jwk[name] for name in required}, separators=(",", ":"), sort_keys=True
    )
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def ec_jwk(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK exactly as profile v0 producers write it (kid = RFC 7638 thumbprint)."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    numbers = public.public_numbers()
    size = (public.curve.key_size + 7) // 8
    crv = {"secp256r1": "P-256", "secp384r1": "P-384"}[public.curve.name]
    jwk = {
        "kty": "EC",
        "crv": crv,
        "x": _coordinate(numbers.x, size),
        "y": _coordinate(numbers.y, size),
    }
    jwk["kid"] = thumbprint(jwk)
    if crv == "P-256":
        jwk["use"] = "jwt-svid"
        jwk["alg"] = "ES256"
    return jwk


def rsa_jwk(key: rsa.RSAPrivateKey) -> dict[str, str]:
    """A public RSA JWK with its thumbprint as kid (for the RS256 hostile tokens)."""
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "e": b64url(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        "n": b64url(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
    }
    jwk["kid"] = thumbprint(jwk)
    return jwk


def signing_input(header: bytes, payload: bytes) -> bytes:
    """RFC 7515 §5.1: ASCII(BASE64URL(header) || '.' || BASE64URL(payload))."""
    return (b64url(header) + "." + b64url(payload)).encode("ascii")


def sign_ecdsa_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """JWS ECDSA signature (RFC 7518 §3.4): raw r||s, deterministic nonce (RFC 6979)."""
    hash_algorithm: hashes.HashAlgorithm = (
        hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
    )
    der = key.sign(data, ec.ECDSA(hash_algorithm, deterministic_signing=True))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def sign_ecdsa_der(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """The same signature in ASN.1 DER form, which JWS forbids."""
    raw = sign_ecdsa_raw(key, data)
    half = len(raw) // 2
    return encode_dss_signature(
        int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
    )


def es256_raw_verify(public: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """Check a raw r||s ES256 signature (the runner inspects minted tokens with it)."""
    if len(signature) != 64:
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a producer JWK (for checking minted tokens)."""
    x = int.from_bytes(b64url_decode(jwk["x"]), "big")
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """PKCS#8 PEM, unencrypted: the profile's key file format."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def rs256(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """RSASSA-PKCS1-v1_5 with SHA-256 (deterministic)."""
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256(secret: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256, for the algorithm-confusion tokens keyed with public key bytes."""
    return hmac.new(secret, data, hashlib.sha256).digest()


def compact(header: bytes, payload: bytes, signature: bytes) -> str:
    """Assemble a compact JWS from raw segment bytes."""
    return b64url(header) + "." + b64url(payload) + "." + b64url(signature)
