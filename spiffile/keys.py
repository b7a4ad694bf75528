"""P-256 keys: generation, PEM, public JWKs and RFC 7638 thumbprints.

The profile allows exactly one key type (EC P-256, PKCS#8 PEM, unencrypted),
so everything else is a clear :class:`InvalidKeyError` rather than something
that loads and fails later at signing time.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spiffile import _wire
from spiffile._wire import b64url_encode
from spiffile.errors import InvalidBundleError, InvalidKeyError

__all__ = [
    "b64url_decode",
    "b64url_encode",
    "generate_private_key",
    "jwk_thumbprint",
    "kid_for",
    "load_private_key_pem",
    "private_key_to_pem",
    "public_jwk",
    "public_key_from_jwk",
]

_CURVE: Final = ec.SECP256R1()
_COORDINATE_BYTES: Final = 32
#: RFC 7638 §3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS: Final[Mapping[str, tuple[str, ...]]] = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
    "oct": ("k", "kty"),
}


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2), raising ``ValueError`` on anything else.

    One rule for keys and tokens alike: :func:`spiffile._wire.b64url_decode`.
    """
    return _wire.b64url_decode(text)


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 private key."""
    return ec.generate_private_key(_CURVE)


def load_private_key_pem(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PKCS#8 PEM P-256 private key.

    Raises :class:`InvalidKeyError` for anything else (RSA, P-384, encrypted,
    SEC1 "EC PRIVATE KEY", garbage), without echoing the input.
    """
    if not isinstance(data, bytes):
        raise TypeError("key data must be bytes")
    if b"-----BEGIN PRIVATE KEY-----" not in data:
        if b"ENCRYPTED PRIVATE KEY" in data:
            raise InvalidKeyError(
                "the private key is encrypted; the profile needs an unencrypted key"
            )
        raise InvalidKeyError("not a PKCS#8 PEM private key ('-----BEGIN PRIVATE KEY-----')")
    if data.count(b"-----BEGIN ") != 1:
        # cryptography loads the first block, whatever its type (a SEC1 key
        # before the PKCS#8 one passed the check above): one key, one block.
        raise InvalidKeyError("the key file must hold exactly one PEM block")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:
        raise InvalidKeyError("the private key is encrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKeyError("the private key PEM does not parse") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidKeyError(f"expected an EC P-256 key, found {type(key).__name__}")
    if not isinstance(key.curve, ec.SECP256R1):
        raise InvalidKeyError(f"expected curve P-256, found {key.curve.name}")
    return key


def private_key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the profile's key file format."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint: SHA-256 over the required members, sorted, no whitespace.

    Written by hand: neither PyJWT nor cryptography computes it (joserfc keeps
    the same function as a tiny module of its own).
    """
    kty = jwk.get("kty")
    members = _THUMBPRINT_MEMBERS.get(kty) if isinstance(kty, str) else None
    if members is None:
        raise ValueError(f"cannot compute a thumbprint for key type {kty!r}")
    required = {}
    for name in members:
        value = jwk.get(name)
        if not isinstance(value, str):
            raise ValueError(f"JWK member {name!r} is missing or not a string")
        required[name] = value
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _coordinates(public_key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    point = public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64url_encode(point[1:33]), b64url_encode(point[33:65])


def kid_for(public_key: ec.EllipticCurvePublicKey) -> str:
    """The profile's ``kid``: the RFC 7638 thumbprint of the public key."""
    x, y = _coordinates(public_key)
    return jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": x, "y": y})


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK producers write into the bundle (PROFILE.md §4.2)."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise TypeError("public_jwk needs a P-256 public key")
    x, y = _coordinates(public_key)
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": x,
        "y": y,
        "kid": jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
        "use": "jwt-svid",
        "alg": "ES256",
    }


def public_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """Build the public key of a bundle JWK, rejecting anything but a public P-256 point.

    Raises :class:`InvalidBundleError`.  Uses ``from_encoded_point``, which
    checks the point lies on the curve, and is cheaper than PyJWT's
    ``ECAlgorithm.from_jwk`` (no JSON round trip).
    """
    if not isinstance(jwk, Mapping):
        raise InvalidBundleError("a JWK must be a JSON object")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise InvalidBundleError("JWK is not kty EC, crv P-256")
    if "d" in jwk:
        raise InvalidBundleError("JWK holds a private key ('d'); bundles carry public keys only")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise InvalidBundleError("JWK 'x' and 'y' must be strings")
    try:
        raw_x, raw_y = b64url_decode(x), b64url_decode(y)
    except (ValueError, binascii.Error) as exc:
        raise InvalidBundleError("JWK 'x'/'y' are not canonical base64url") from exc
    if len(raw_x) != _COORDINATE_BYTES or len(raw_y) != _COORDINATE_BYTES:
        raise InvalidBundleError("JWK 'x'/'y' must be 32 bytes each")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, b"\x04" + raw_x + raw_y)
    except ValueError as exc:
        raise InvalidBundleError("JWK point is not on the P-256 curve") from exc
