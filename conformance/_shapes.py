"""Shapes for the token vectors: odd encodings, exact sizes, nesting, certificates."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from conformance import _jose
from conformance._forge import Forge

__all__ = [
    "MAX_TOKEN_CHARS",
    "claims_of",
    "nested",
    "noncanonical",
    "odd_length_json",
    "padded",
    "sized",
    "stranger_certificate",
]

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
MAX_TOKEN_CHARS = 8192


def noncanonical(segment: str) -> str:
    """Set the unused low bits of the last character (same bytes for a lenient decoder)."""
    rest = len(segment) % 4
    if rest not in (2, 3):
        raise ValueError("segment has no unused bits")
    # The lowest bit of the last character is always unused when length % 4 is 2 or 3.
    value = _ALPHABET.index(segment[-1]) | 1
    return segment[:-1] + _ALPHABET[value]


def padded(segment: str) -> str:
    padding = "=" * (-len(segment) % 4)
    if not padding:
        raise ValueError("segment needs no padding")
    return segment + padding


def odd_length_json(value: dict[str, Any]) -> bytes:
    """JSON whose byte length is not a multiple of 3, so its base64url has spare bits."""
    data = _jose.dumps(value)
    while len(data) % 3 == 0:
        data += b" "
    return data


def stranger_certificate(f: Forge) -> str:
    """A self-signed certificate for the stranger key claiming orders' ID (for ``x5c``)."""
    key = f.p256["stranger"]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conformance stranger")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc))
        .not_valid_after(datetime.datetime(2099, 1, 1, tzinfo=datetime.timezone.utc))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f.sid("orders"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(der).decode("ascii")


def sized(f: Forge, length: int) -> str:
    """A valid orders -> billing token of exactly *length* characters."""
    for spaces in range(3):
        header = _jose.dumps(f.header()) + b" " * spaces
        base = len(f.token(header, f.claims(pad="")))
        guess = (length - base) * 3 // 4
        for extra in range(max(0, guess - 4), guess + 5):
            token = f.token(header, f.claims(pad="A" * extra))
            if len(token) == length:
                return token
    raise ValueError(f"cannot build a token of {length} characters")


def nested(f: Forge, depth: int) -> bytes:
    body = _jose.dumps(f.claims())[:-1]
    return body + b',"x":' + b"[" * depth + b"]" * depth + b"}"


def claims_of(token: str) -> dict[str, Any]:
    """The decoded claims of a token the forge built."""
    value: dict[str, Any] = json.loads(_jose.b64url_decode(token.split(".")[1]))
    return value
