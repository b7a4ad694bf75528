"""Compact JWS (RFC 7515 §7.1) for the one shape the profile allows: ES256, raw r||s.

Written on :mod:`spiffile._wire` rather than through ``jwt.decode`` /
``jwt.encode`` because the profile is stricter than PyJWT (no padding, only
canonical base64url, a header allow-list, no duplicate JSON members) and the
verify path must cost little more than the ECDSA operation itself (rows
"svid.verify" and "reference: PyJWT decode ES256" of ``benchmarks/README.md``).
A token is split once and each segment decoded once; the header of a known
sender is served from a small cache.
"""

from __future__ import annotations

import binascii
import json
from functools import lru_cache
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from spiffile import _wire
from spiffile._quote import quote
from spiffile.errors import AlgorithmError, HeaderError, MalformedTokenError

__all__ = [
    "ES256",
    "SIGNATURE_BYTES",
    "Seen",
    "decode_json",
    "decode_segment",
    "encoded_header",
    "parse",
    "split_compact",
]

ES256: Final = ec.ECDSA(hashes.SHA256())
SIGNATURE_BYTES: Final = 64
_HEADER_MEMBERS: Final = frozenset(("alg", "kid", "typ"))
_TYPES: Final = ("JWT", "JOSE")
_NOT_COMPACT: Final = (
    "not a compact JWS: three base64url segments separated by '.', ASCII, no padding"
)


class Seen:
    """What a parse has read so far: the header's ``kid`` and the claims.

    A rejected token's error is explained from these (PROFILE.md §10) rather
    than by decoding the token again: hostile input is parsed once.  The
    signature is never kept.
    """

    __slots__ = ("claims", "kid")

    def __init__(self) -> None:
        self.kid: str | None = None
        self.claims: dict[str, Any] | None = None


def split_compact(token: str) -> tuple[bytes, bytes, bytes]:
    """The three encoded segments of a compact JWS (header, payload, signature), ASCII bytes.

    Exactly two separators and no empty segment (RFC 7515 §7.1); each segment's
    alphabet is checked when it is decoded (:func:`decode_segment`), so the
    token is scanned once.
    """
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedTokenError(_NOT_COMPACT) from None
    if raw.count(b".") != 2:
        raise MalformedTokenError(_NOT_COMPACT)
    header, payload, signature = raw.split(b".")
    if not header or not payload or not signature:
        raise MalformedTokenError(_NOT_COMPACT)
    return header, payload, signature


def decode_segment(data: bytes) -> bytes:
    """One segment's bytes, under the strict base64url rule of :mod:`spiffile._wire`."""
    try:
        return _wire.b64url_decode(data)
    except _wire.WireError as exc:
        raise MalformedTokenError(f"a token segment {exc}") from None


def decode_json(data: bytes, what: str, *, defer_floats: bool = False) -> dict[str, Any]:
    """The decoded header or payload (*what*) as a strict JSON object (PROFILE.md §5.4).

    *defer_floats*: numbers with a fraction or exponent stay
    :class:`~spiffile._wire.DeferredFloat` (the verify path, until the
    signature holds).
    """
    try:
        if what == "payload":
            return _wire.loads_claims(data, defer_floats=defer_floats)
        return _wire.loads_object(data, defer_floats=defer_floats)
    except _wire.WireError as exc:
        raise MalformedTokenError(f"the {what} {exc}") from None


def parse(
    token: str, seen: Seen | None = None, *, defer_floats: bool = False
) -> tuple[str, dict[str, Any], bytes, bytes]:
    """Split and decode a compact ES256 JWS once: ``(kid, claims, signing input, DER signature)``.

    Checks in the profile's order (PROFILE.md §6.1), each failure a
    :class:`MalformedTokenError` or the header's own errors: the compact
    shape, the header, the payload, then the signature's encoding and length.
    *seen*, when given, records the ``kid`` and the claims as they are read.
    With *defer_floats* the claims may hold
    :class:`~spiffile._wire.DeferredFloat` (:func:`~spiffile._wire.resolve_floats`).
    """
    if token.isascii():
        raw = token.encode("ascii")
        marked = raw.translate(_MARK_COMPACT)
        if b"!" not in marked and marked.count(b".") == 2:
            return _parse_canonical(raw, marked, seen, defer_floats)
    return _parse_checked(token, seen, defer_floats)


#: :data:`spiffile._wire`'s base64url map over a whole compact token: ``.`` stays
#: ``.``, every byte outside the alphabet becomes ``!``.
_MARK_COMPACT: Final = bytes(
    ord(".") if c == ord(".") else _wire._TO_STANDARD_MARKED[c] for c in range(256)
)
# A 64-byte signature is 86 base64url characters, the last of "AQgw" (RFC 4648 §3.5).
_SIGNATURE_CHARS: Final = 86
_SIGNATURE_LAST: Final = frozenset(b"AQgw")


def _parse_canonical(
    raw: bytes, marked: bytes, seen: Seen | None, defer_floats: bool
) -> tuple[str, dict[str, Any], bytes, bytes]:
    """:func:`parse` of a token whose alphabet and two separators one scan proved.

    The same checks in the same order as :func:`_parse_checked`, with the
    base64url already mapped for the whole token (*marked*).  Anything else
    odd (an empty segment, a non-canonical length or last character) is left
    to :func:`_parse_checked`'s code, so every error is the same
    (``tests/svid/test_jws_parse.py``).
    """
    first = raw.index(b".")
    second = raw.index(b".", first + 1)
    if not first or second == first + 1 or second == len(raw) - 1:
        raise MalformedTokenError(_NOT_COMPACT)
    kid = _header_kid(raw[:first])
    if seen is not None:
        seen.kid = kid
    rest = (second - first - 1) & 3
    if rest == 1 or (rest and raw[second - 1] not in _wire._CANONICAL_LAST[rest]):
        decode_segment(raw[first + 1 : second])  # Raises: says which rule.
    try:
        claims = _wire.loads_claims(
            binascii.a2b_base64(marked[first + 1 : second] + _wire._PADDING[rest]),
            defer_floats=defer_floats,
        )
    except _wire.WireError as exc:
        raise MalformedTokenError(f"the payload {exc}") from None
    if seen is not None:
        seen.claims = claims
    if len(raw) - second - 1 == _SIGNATURE_CHARS and raw[-1] in _SIGNATURE_LAST:
        raw_signature = binascii.a2b_base64(marked[second + 1 :] + b"==")
    else:
        raw_signature = decode_segment(raw[second + 1 :])
        if len(raw_signature) != SIGNATURE_BYTES:
            raise MalformedTokenError("an ES256 signature must be 64 bytes (r||s)")
    return kid, claims, raw[:second], _wire.raw_to_der(raw_signature)


def _parse_checked(
    token: str, seen: Seen | None, defer_floats: bool
) -> tuple[str, dict[str, Any], bytes, bytes]:
    """:func:`parse` one check at a time: any token, every error in the profile's order."""
    header, payload, signature = split_compact(token)
    kid = _header_kid(header)
    if seen is not None:
        seen.kid = kid
    claims = decode_json(decode_segment(payload), "payload", defer_floats=defer_floats)
    if seen is not None:
        seen.claims = claims
    raw_signature = decode_segment(signature)
    if len(raw_signature) != SIGNATURE_BYTES:
        raise MalformedTokenError("an ES256 signature must be 64 bytes (r||s)")
    signing_input = token[: len(header) + 1 + len(payload)].encode("ascii")
    return kid, claims, signing_input, _wire.raw_to_der(raw_signature)


@lru_cache(maxsize=512)
def _header_kid(segment: bytes) -> str:
    """Validate an encoded header; return its ``kid``.

    Cached: a verifier sees the same few headers (one per sender key) again
    and again.  Failures raise and are not cached.  Floats stay deferred: a
    header that holds one is refused, and never needs its value.
    """
    return _check_header(decode_json(decode_segment(segment), "header", defer_floats=True))


def _check_header(header: dict[str, Any]) -> str:
    if header.get("alg") != "ES256":
        alg = header.get("alg")
        shown = alg[:20] if isinstance(alg, str) else _wire.type_name(alg)
        raise AlgorithmError(f"algorithm {shown!r} is not allowed; the profile allows ES256 only")
    unknown = header.keys() - _HEADER_MEMBERS
    if unknown:
        # Member names are the sender's text: repr keeps escapes out of logs.
        names = ", ".join(sorted(quote(name, 20) for name in unknown)[:5])
        raise HeaderError(f"header members not allowed: {names}")
    if "typ" in header and header["typ"] not in _TYPES:
        raise HeaderError("header 'typ' must be 'JWT' or 'JOSE'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HeaderError("header 'kid' is missing or not a non-empty string")
    return kid


@lru_cache(maxsize=256)
def encoded_header(kid: str) -> str:
    """The encoded header a signer with *kid* puts on every token (built once per key)."""
    header = json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}, separators=(",", ":"))
    return _wire.b64url_encode(header.encode("utf-8"))
