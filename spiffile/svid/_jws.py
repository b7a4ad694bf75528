"""Compact JWS (RFC 7515 §7.1) for the one shape the profile allows: ES256, raw r||s.

Written by hand rather than through ``jwt.decode``/``jwt.encode`` because the
hot path must cost little more than the ECDSA operation itself:

* PyJWT's ES256 decode measured ~72 µs against ~46 µs for the raw
  ``cryptography`` verify on the reference machine (issue #5); it re-parses the
  header, builds option dicts, and tolerates inputs the profile forbids
  (padding, non-canonical base64url, extra header members).
* here a token is split once, each segment decoded once with a strict alphabet
  check, and the header of a known sender is served from a small cache.

The conversion between the JWS raw signature and the DER form
``cryptography`` signs and verifies is written by hand too, for the one
shape P-256 produces (PyJWT's ``jwt.utils`` goes through Python ints: 1.4 µs
against 0.4 µs each way); PyJWT's converter remains the fallback for any
other DER shape.  ``python -m benchmarks`` measures all of it.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.utils import der_to_raw_signature

from spiffile.errors import AlgorithmError, HeaderError, MalformedTokenError

ES256: Final = ec.ECDSA(hashes.SHA256())
_P256: Final = ec.SECP256R1()
SIGNATURE_BYTES: Final = 64
_HEADER_MEMBERS: Final = frozenset(("alg", "kid", "typ"))
_TYPES: Final = ("JWT", "JOSE")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate member names make a JSON object ambiguous (RFC 8259 §4): one
    # parser may take the first value, another the last.  Refuse them.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate member name")
    return obj


_json = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_members)

#: At most this many '[' and '{' characters in a header or payload (PROFILE.md
#: §5.4).  The JSON parser descends 50-80 ns per nesting level up to the
#: recursion limit, so a payload of ~1000 nested arrays cost about two valid
#: verifies to reject (issue #5); two ``str.count`` calls (~0.1 µs) bound the
#: depth, and with it the cost, before any parsing.  A JWT-SVID's claims are
#: flat: 64 leaves ample room for extra claims.
MAX_JSON_OPENERS: Final = 64


def _too_nested(text: str) -> bool:
    return text.count("[") + text.count("{") > MAX_JSON_OPENERS


# -- the verify hot path --------------------------------------------------------
#
# Measured on the reference machine (issue #5, ``python -m benchmarks``), per
# valid token: the regex split 0.66 µs and two ``urlsafe_b64decode`` calls
# 0.6 µs each became one ASCII encode, one ``translate`` and ``split`` (0.35 µs
# together) and ``binascii.a2b_base64`` (0.3 µs each); PyJWT's
# ``raw_to_der_signature`` (1.4 µs, through Python ints) became a byte
# concatenation (0.4 µs); the payload's strict JSON parse (1.6 µs, a Python
# ``object_pairs_hook`` call per object plus two whitespace regexes) has a
# fast path at 0.65 µs that proves the absence of duplicate members instead.
# Every rule is the same: each input gets the same result and the same error.

_NOT_COMPACT: Final = (
    "not a compact JWS: three base64url segments separated by '.', ASCII, no padding"
)
_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Segments are decoded with the standard-alphabet C decoder after mapping
# ``-_`` to ``+/`` (one-to-one, so lengths and positions are unchanged).
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_PADDING: Final = (b"", b"", b"==", b"=")
# The characters that may end a canonical segment, by length mod 4: the unused
# low bits of the last character must be zero (RFC 4648 §3.5).  None of them
# is affected by _TO_STANDARD.
_CANONICAL_LAST_BYTE: Final = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}
# The C scanner of a decoder without hooks (``scan_once`` is set in __init__).
_scan_plain: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_constant=_reject_constant
).scan_once  # type: ignore[attr-defined]


def _decode_standard(segment: bytes) -> bytes:
    """Decode one segment (standard alphabet, already checked) with the canonical-form rules."""
    rest = len(segment) & 3
    if rest:
        if rest == 1:
            raise MalformedTokenError("a token segment has an impossible base64url length")
        if segment[-1] not in _CANONICAL_LAST_BYTE[rest]:
            raise MalformedTokenError("a token segment is not canonical base64url")
        segment += _PADDING[rest]
    try:
        return binascii.a2b_base64(segment)
    except binascii.Error as exc:  # Not reachable after the checks above; kept as a guard.
        raise MalformedTokenError("a token segment is not base64url") from exc


def _parse_payload(data: bytes) -> dict[str, Any]:
    """:func:`parse_json_object` for the payload, with a fast path for the common shape.

    The fast path parses with the C scanner and no hook, then proves there
    was no duplicate member by counting: outside strings, every ':' of JSON
    text separates one member from its name, so the ':' in the text, less the
    ones known to sit inside strings (one per "spiffe://"), number at least
    all the members of all objects, duplicates and nested ones included.  When
    that count equals the size of the parsed dict, there were neither.  Any
    other colon, a nested object or trailing text takes the strict path, so
    results and errors are the same.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return parse_json_object(data, "payload")
    if _too_nested(text):
        raise MalformedTokenError(
            f"the payload holds more than {MAX_JSON_OPENERS} '[' and '{{' characters"
        )
    if text[:1] == "{":
        try:
            value, end = _scan_plain(text, 0)
        except (ValueError, RecursionError, StopIteration) as exc:
            # The strict decoder reads the same grammar (plus a duplicate
            # check), so it would fail too: no second, equally deep parse.
            raise MalformedTokenError("the payload is not valid JSON") from exc
        if end == len(text) and text.count(":") - text.count("spiffe://") == len(value):
            return value  # type: ignore[no-any-return]
    return parse_json_object(data, "payload")


def parse(token: str) -> tuple[str, dict[str, Any], bytes, bytes]:
    """Split and decode a compact ES256 JWS once: ``(kid, claims, signing input, DER signature)``.

    Checks in the profile's order, each failure a :class:`MalformedTokenError`
    (or the header's own errors): the compact shape, the header, the payload,
    then the signature's encoding and length.
    """
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise MalformedTokenError(_NOT_COMPACT) from None
    # Deleting the alphabet must leave exactly the two separators.
    if raw.translate(None, _ALPHABET) != b"..":
        raise MalformedTokenError(_NOT_COMPACT)
    header, payload, signature = raw.translate(_TO_STANDARD).split(b".")
    if not header or not payload or not signature:
        raise MalformedTokenError(_NOT_COMPACT)
    kid = _header_kid_standard(header)
    claims = _parse_payload(_decode_standard(payload))
    raw_signature = _decode_standard(signature)
    if len(raw_signature) != SIGNATURE_BYTES:
        raise MalformedTokenError("an ES256 signature must be 64 bytes (r||s)")
    return kid, claims, raw[: len(header) + 1 + len(payload)], raw_to_der(raw_signature)


def encode_segment(data: bytes) -> str:
    """Unpadded base64url (through ``binascii`` directly: 0.30 µs against 0.38 µs)."""
    return (
        binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")
    )


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Strict JSON object: UTF-8, no NaN/Infinity, no duplicate members, no trailing data."""
    try:
        text = data.decode("utf-8")
        if _too_nested(text):
            raise ValueError(f"more than {MAX_JSON_OPENERS} '[' and '{{' characters")
        value = _json.decode(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedTokenError(f"the {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise MalformedTokenError(f"the {what} is not a JSON object")
    return value


@lru_cache(maxsize=512)
def _header_kid_standard(segment: bytes) -> str:
    """Validate a header segment (already mapped to the standard alphabet); return its ``kid``.

    Cached: a verifier sees the same few headers (one per sender key) again
    and again.  Failures raise and are not cached.
    """
    return _check_header(parse_json_object(_decode_standard(segment), "header"))


def _check_header(header: dict[str, Any]) -> str:
    if header.get("alg") != "ES256":
        alg = header.get("alg")
        shown = alg[:20] if isinstance(alg, str) else type(alg).__name__
        raise AlgorithmError(f"algorithm {shown!r} is not allowed; the profile allows ES256 only")
    unknown = header.keys() - _HEADER_MEMBERS
    if unknown:
        names = ", ".join(sorted(name[:20] for name in unknown)[:5])
        raise HeaderError(f"header members not allowed: {names}")
    if "typ" in header and header["typ"] not in _TYPES:
        raise HeaderError("header 'typ' must be 'JWT' or 'JOSE'")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise HeaderError("header 'kid' is missing or not a non-empty string")
    return kid


def _der_integer(value: bytes) -> bytes:
    # DER INTEGER body: no leading zero bytes, except one when the high bit
    # is set (else it would read as negative); zero is a single 0x00.
    if value[0] & 0x80:
        return b"\0" + value
    if value[0]:
        return value
    value = value.lstrip(b"\0")
    if not value or value[0] & 0x80:
        value = b"\0" + value
    return value


def raw_to_der(signature: bytes) -> bytes:
    """JWS ES256 signature (r||s, 32 bytes each) to the DER form cryptography verifies.

    By hand rather than PyJWT's ``raw_to_der_signature``, which goes through
    Python ints and ``encode_dss_signature``: 0.4 µs against 1.4 µs per
    verify (issue #5).  Same output: for P-256 every DER length fits in one byte.
    """
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("Invalid signature")
    r = _der_integer(signature[:32])
    s = _der_integer(signature[32:])
    return bytes((0x30, len(r) + len(s) + 4, 0x02, len(r))) + r + bytes((0x02, len(s))) + s


def der_to_raw(signature: bytes) -> bytes:
    """DER ECDSA signature to the JWS form (r||s, 32 bytes each).

    By hand for the shape ``cryptography`` produces for P-256 (short-form
    lengths, each integer at most 33 bytes): 0.3 µs against PyJWT's 1.4 µs
    per mint (issue #5).  Anything else goes through PyJWT.
    """
    size = len(signature)
    if 8 <= size <= 72 and signature[0] == 0x30 and signature[1] == size - 2 and signature[2] == 2:
        end_r = 4 + signature[3]
        if end_r + 2 <= size and signature[end_r] == 2 and end_r + 2 + signature[end_r + 1] == size:
            r = signature[4:end_r]
            s = signature[end_r + 2 :]
            if 0 < len(r) <= 33 and 0 < len(s) <= 33:
                return r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")
    return der_to_raw_signature(signature, _P256)


@lru_cache(maxsize=256)
def encoded_header(kid: str) -> str:
    """The encoded header a signer with *kid* puts on every token (built once per key)."""
    header = json.dumps({"alg": "ES256", "kid": kid, "typ": "JWT"}, separators=(",", ":"))
    return encode_segment(header.encode("utf-8"))
