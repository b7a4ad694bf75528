"""The wire rules, one implementation each: strict base64url, strict JSON, ECDSA signature forms.

Every rule that decides which bytes are a valid token or key lives here once,
so that a token header, a token payload, a JWK coordinate and a bundle obey
the same definition.  Each hand-written fast path names the reference it
must agree with, and ``tests/test_wire.py`` checks the agreement
differentially:

====================  ===============================================  ==========================
function              reference                                        why by hand
====================  ===============================================  ==========================
:func:`b64url_decode`  ``base64.urlsafe_b64decode`` + re-encoding      the stdlib accepts padding,
                                                                       foreign characters and
                                                                       non-zero trailing bits
:func:`json_string`    ``json.dumps`` of a ``str``                      alias of the C encoder
:func:`loads_object`   ``json.loads``                                   refuses duplicate members,
                                                                       NaN/Infinity, deep nesting
:func:`loads_claims`   :func:`loads_object`                             skips the duplicate hook
                                                                       when a count proves there
                                                                       is none (verify hot path)
:func:`raw_to_der`,    cryptography's ``encode_dss_signature`` /        no Python ints on the hot
:func:`der_to_raw`     ``decode_dss_signature``                        path (rows "svid.verify",
                                                                       "svid.mint")
====================  ===============================================  ==========================

Failures raise :class:`WireError` (a ``ValueError``); callers turn it into the
error of their layer (a malformed token, an invalid bundle or key).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "DeferredFloat",
    "WireError",
    "b64url_decode",
    "b64url_encode",
    "der_to_raw",
    "json_prefix",
    "json_string",
    "loads_claims",
    "loads_object",
    "raw_to_der",
    "resolve_floats",
    "too_nested",
    "type_name",
]


class WireError(ValueError):
    """Bytes that break a wire rule; the message says which rule, never the bytes."""


# -- base64url (RFC 4648 §5, unpadded as RFC 7515 §2 requires) -------------------------

_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Decoding maps ``-_`` to ``+/`` (one to one, so lengths and positions stay)
# and uses the standard-alphabet C decoder.
_TO_STANDARD: Final = bytes.maketrans(b"-_", b"+/")
# The same map, with every byte outside the alphabet (the standard one's
# "+/=" included) sent to "!": one translate both maps and marks, and a
# memchr for "!" replaces a deleting translate (a pass 3x slower: row
# "reject: deeply nested JSON payload" decodes 6 KB before refusing).
_TO_STANDARD_MARKED: Final = bytes(
    _TO_STANDARD[c] if c in _ALPHABET else ord("!") for c in range(256)
)
_PADDING: Final = (b"", b"", b"==", b"=")
# The characters that may end a canonical text, by length mod 4: the unused
# low bits of the last character must be zero (RFC 4648 §3.5).
_CANONICAL_LAST: Final = {2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode canonical unpadded base64url; anything else is a :class:`WireError`.

    Canonical means one text per byte string: no padding, no character outside
    the alphabet, no length of 1 mod 4, zero trailing bits.  Without that, two
    different tokens could carry the same bytes.
    """
    if isinstance(text, str):
        if not text.isascii():
            raise WireError("is not base64url (non-ASCII)")
        raw = text.encode("ascii")
    else:
        raw = text
    mapped = raw.translate(_TO_STANDARD_MARKED)
    if b"!" in mapped:
        raise WireError("is not base64url (a character outside the alphabet)")
    rest = len(raw) & 3
    if rest:
        if rest == 1:
            raise WireError("has an impossible base64url length")
        if raw[-1] not in _CANONICAL_LAST[rest]:
            raise WireError("is not canonical base64url (non-zero trailing bits)")
    return binascii.a2b_base64(mapped + _PADDING[rest])


# -- JSON (RFC 8259) -------------------------------------------------------------------

#: A JSON string literal exactly as ``json.dumps`` writes a ``str`` (ensure_ascii).
json_string: Final[Callable[[str], str]] = encode_basestring_ascii

#: At most this many ``[`` and ``{`` characters in a token header or payload
#: (PROFILE.md §5.4): counting them bounds the parser's depth, and so its
#: cost, before it starts (row "reject: deeply nested JSON payload").
MAX_JSON_OPENERS: Final = 64
#: At most this many ``,`` characters in a token header or payload (PROFILE.md
#: §5.4): with the opener cap, a count of the values before parsing, so the
#: dearest payload under the size cap (8 KiB of numbers) costs less to refuse
#: than a valid token to verify (row "reject: 8 KiB of floats, unknown sub").
MAX_JSON_SEPARATORS: Final = 64


def too_nested(text: str) -> bool:
    """Whether *text* breaks a token's counts (strings included): openers or separators."""
    return _over_cap(text) is not None


def _over_cap(text: str) -> str | None:
    """Why *text* is refused before parsing, or ``None``."""
    if text.count("[") + text.count("{") > MAX_JSON_OPENERS:
        return f"holds more than {MAX_JSON_OPENERS} '[' and '{{' characters"
    if text.count(",") > MAX_JSON_SEPARATORS:
        return f"holds more than {MAX_JSON_SEPARATORS} ',' characters"
    return None


def _reject_constant(name: str) -> Any:
    raise WireError(f"holds {name}, which is not JSON")


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate member names make an object ambiguous (RFC 8259 §4): one parser
    # may take the first value, another the last.  Refuse them.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise WireError("holds a duplicate member name")
    return obj


#: Longest number a token's header or claims may write (PROFILE.md §5.4): any
#: float ``repr`` writes fits (17 digits, sign, point, exponent), and a
#: NumericDate has at most 12 digits.  Longer
#: ones are refused as they are met, before Python converts them (a converted
#: 4000-digit integer costs several ECDSA verifications).
MAX_JSON_NUMBER: Final = 24


def _token_int(text: str) -> int:
    if len(text) > MAX_JSON_NUMBER:
        raise WireError(f"holds a number longer than {MAX_JSON_NUMBER} characters")
    return int(text)


def _token_float(text: str) -> float:
    if len(text) > MAX_JSON_NUMBER:
        raise WireError(f"holds a number longer than {MAX_JSON_NUMBER} characters")
    return float(text)


class DeferredFloat:
    """A JSON number with a fraction or exponent, kept as its text until the token is trusted.

    Converting such a number exactly costs up to 1 us near the subnormal
    range (``strtod``'s exact rounding), 20 times an integer's: a hostile
    token of 61 of them cost 1.7 valid verifications to refuse (row "reject:
    long floats at the caps, ':'").  The verify path parses with floats
    deferred and converts them (:func:`resolve_floats`) only once the
    signature holds; an error shows them (:func:`json_prefix`,
    :func:`type_name`) as the float they stand for.  The profile's own
    claims never hold one that is accepted: a NumericDate is an integer
    (PROFILE.md §5.2).
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _deferred_float(text: str) -> DeferredFloat:
    if len(text) > MAX_JSON_NUMBER:
        raise WireError(f"holds a number longer than {MAX_JSON_NUMBER} characters")
    return DeferredFloat(text)


_strict: Final = json.JSONDecoder(
    parse_constant=_reject_constant, object_pairs_hook=_unique_members
)
_strict_token: Final = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_members,
    parse_int=_token_int,
    parse_float=_token_float,
)
_strict_deferred: Final = json.JSONDecoder(
    parse_constant=_reject_constant,
    object_pairs_hook=_unique_members,
    parse_int=_token_int,
    parse_float=_deferred_float,
)
# The C scanners of the token decoders without the duplicate hook
# (``scan_once`` is set in __init__).
_scan_plain: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_token_int, parse_float=_token_float
).scan_once  # type: ignore[attr-defined]
_scan_deferred: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_token_int, parse_float=_deferred_float
).scan_once  # type: ignore[attr-defined]


def loads_object(
    text: str | bytes, *, cap_nesting: bool = True, defer_floats: bool = False
) -> dict[str, Any]:
    """Strict JSON object: UTF-8, no NaN/Infinity, no duplicate members, no trailing data.

    With *cap_nesting* (tokens), more than :data:`MAX_JSON_OPENERS` openers
    or :data:`MAX_JSON_SEPARATORS` separators are refused before parsing, and
    a number longer than :data:`MAX_JSON_NUMBER` as it is met; documents
    (bundles) pass ``False`` and rely on their size cap.  With
    *defer_floats* (tokens only), a number with a fraction or exponent is a
    :class:`DeferredFloat`.
    """
    try:
        decoded = text.decode("utf-8") if isinstance(text, bytes) else text
    except UnicodeDecodeError:
        raise WireError("is not UTF-8") from None
    if cap_nesting:
        refused = _over_cap(decoded)
        if refused is not None:
            raise WireError(refused)
    return _decode_object(
        decoded,
        (_strict_deferred if defer_floats else _strict_token) if cap_nesting else _strict,
    )


def _decode_object(text: str, decoder: json.JSONDecoder) -> dict[str, Any]:
    try:
        value = decoder.decode(text)
    except RecursionError:
        raise WireError("is nested too deeply") from None
    except WireError:
        raise
    except ValueError as exc:
        raise WireError(f"is not valid JSON ({exc.args[0] if exc.args else exc})") from None
    if not isinstance(value, dict):
        raise WireError("is not a JSON object")
    return value


def loads_claims(data: bytes, *, defer_floats: bool = False) -> dict[str, Any]:
    """:func:`loads_object` for a token payload, with a fast path for the common shape.

    The fast path parses with the C scanner and no hook, then proves there
    was no duplicate member by counting: outside strings, every ``:`` of JSON
    text separates a member from its name, so the ``:`` in the text, less the
    ones known to sit inside strings (one per ``spiffe://``), number at least
    all the members of all objects, duplicates and nested ones included.  When
    that count equals the size of the parsed dict, there were neither.  The
    path is taken only when the text already looks like one flat object whose
    count will hold (one ``{``, no ``[``, as many ``:`` as ``,`` plus one), so
    any other text is parsed once, by the strict decoder; the result or error
    is the same as :func:`loads_object`'s (``tests/test_wire.py``).  The
    counts before parsing are taken once, whichever path parses.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise WireError("is not UTF-8") from None
    # _over_cap's counts, each taken once and kept for the shape test.
    braces = text.count("{")
    brackets = text.count("[")
    if braces + brackets > MAX_JSON_OPENERS:
        raise WireError(f"holds more than {MAX_JSON_OPENERS} '[' and '{{' characters")
    commas = text.count(",")
    if commas > MAX_JSON_SEPARATORS:
        raise WireError(f"holds more than {MAX_JSON_SEPARATORS} ',' characters")
    if (
        braces == 1
        and not brackets
        and text[:1] == "{"
        and (colons := text.count(":") - text.count("spiffe://")) == commas + 1
    ):
        try:
            value, end = (_scan_deferred if defer_floats else _scan_plain)(text, 0)
        except RecursionError:  # pragma: no cover - one '{' and no '['
            raise WireError("is nested too deeply") from None
        except WireError:
            raise
        except StopIteration:
            raise WireError("is not valid JSON (Expecting value)") from None
        except ValueError as exc:
            # The strict decoder reads the same grammar (plus a duplicate
            # check), so it fails too: no second, equally long parse.
            raise WireError(f"is not valid JSON ({exc})") from None
        if end == len(text) and colons == len(value):
            return value  # type: ignore[no-any-return]
        # A repeated member, or ':' and ',' inside strings in equal numbers:
        # the strict parse says which (at most 129 values, by the caps).
    return _decode_object(text, _strict_deferred if defer_floats else _strict_token)


def resolve_floats(claims: dict[str, Any]) -> dict[str, Any]:
    """*claims* with every :class:`DeferredFloat` converted to its float, in place.

    The usual claims (strings and integers) are only looked at; anything
    else is walked (at most 64 levels deep, by the opener cap).
    """
    for value in claims.values():
        kind = type(value)
        if kind is not str and kind is not int:
            _resolve(claims)
            break
    return claims


def _resolve(container: dict[str, Any] | list[Any]) -> None:
    items = container.items() if isinstance(container, dict) else enumerate(container)
    for key, value in items:
        kind = type(value)
        if kind is DeferredFloat:
            container[key] = float(value.text)  # type: ignore[index]
        elif kind is dict or kind is list:
            _resolve(value)


def type_name(value: object) -> str:
    """The JSON-parsed type's name an error shows: a deferred float is a ``float``."""
    return "float" if type(value) is DeferredFloat else type(value).__name__


class _PrefixFullError(Exception):
    """Raised inside :func:`json_prefix` once the prefix is long enough."""


def _float_text(value: float) -> str:
    # What json.dumps writes for a float (allow_nan, as by default).
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)


def json_prefix(value: Any, limit: int) -> str:
    """``json.dumps(value)[:limit]`` for a value a token parse returned, deferred floats included.

    Written as it goes and stopped once *limit* characters are there, so a
    long hostile value costs no more than its start: a string is encoded
    from its first *limit* characters, and a float is converted only when
    it is reached.
    """
    parts: list[str] = []
    room = [limit]

    def emit(text: str) -> None:
        parts.append(text)
        room[0] -= len(text)
        if room[0] < 0:
            raise _PrefixFullError

    def write(item: Any) -> None:
        kind = type(item)
        if kind is str:
            emit(json_string(item if len(item) <= limit else item[:limit]))
        elif item is None:
            emit("null")
        elif item is True:
            emit("true")
        elif item is False:
            emit("false")
        elif kind is int:
            emit(int.__repr__(item))
        elif kind is float:
            emit(_float_text(item))
        elif kind is DeferredFloat:
            emit(_float_text(float(item.text)))
        elif kind is list:
            emit("[")
            for index, element in enumerate(item):
                if index:
                    emit(", ")
                write(element)
            emit("]")
        elif kind is dict:
            emit("{")
            for index, (key, element) in enumerate(item.items()):
                name = json_string(key if len(key) <= limit else key[:limit])
                emit(f", {name}: " if index else f"{name}: ")
                write(element)
            emit("}")
        else:
            raise TypeError(f"not a parsed JSON value: {kind.__name__}")

    try:
        write(value)
    except _PrefixFullError:
        pass
    return "".join(parts)[:limit]


# -- ECDSA signatures: JWS raw r||s (RFC 7518 §3.4) and DER (what cryptography uses) ---


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


# The DER before r (SEQUENCE header, INTEGER header, a 0x00 when r's high bit
# is set), by r's and s's high bits; and the DER between r and s, by s's.
_P256_HEAD: Final = tuple(
    tuple(
        bytes((0x30, 68 + r_high + s_high, 0x02, 32 + r_high)) + b"\0" * r_high for s_high in (0, 1)
    )
    for r_high in (0, 1)
)
_P256_MIDDLE: Final = tuple(bytes((0x02, 32 + s_high)) + b"\0" * s_high for s_high in (0, 1))


def raw_to_der(signature: bytes) -> bytes:
    """A JWS ECDSA signature (r||s, two equal halves) as DER; reference ``encode_dss_signature``.

    By hand for P-256 (every DER length fits in one byte); other sizes go
    through the reference.
    """
    size = len(signature)
    if size == 0 or size & 1:
        raise WireError("an ECDSA signature must be r||s of two equal halves")
    if size == 64 and signature[0] and signature[32]:
        # P-256 with no leading zero byte in r or s (all but about 1 in 128
        # signatures): each integer is its 32 bytes, after a 0x00 when its
        # high bit is set; the headers for the four cases are built once.
        return (
            _P256_HEAD[signature[0] >> 7][signature[32] >> 7]
            + signature[:32]
            + _P256_MIDDLE[signature[32] >> 7]
            + signature[32:]
        )
    half = size // 2
    if half != 32:
        r = int.from_bytes(signature[:half], "big")
        s = int.from_bytes(signature[half:], "big")
        return encode_dss_signature(r, s)
    r_der = _der_integer(signature[:32])
    s_der = _der_integer(signature[32:])
    return (
        bytes((0x30, len(r_der) + len(s_der) + 4, 0x02, len(r_der)))
        + r_der
        + bytes((0x02, len(s_der)))
        + s_der
    )


def der_to_raw(signature: bytes, half: int = 32) -> bytes:
    """A DER ECDSA signature as JWS r||s of *half* bytes each; reference ``decode_dss_signature``.

    By hand for the shape ``cryptography`` produces for P-256 (short-form
    lengths, each integer at most 33 bytes); anything else through the
    reference.
    """
    size = len(signature)
    if (
        half == 32
        and 8 <= size <= 72
        and signature[0] == 0x30
        and signature[1] == size - 2
        and signature[2] == 2
    ):
        end_r = 4 + signature[3]
        if end_r + 2 <= size and signature[end_r] == 2 and end_r + 2 + signature[end_r + 1] == size:
            r = signature[4:end_r]
            s = signature[end_r + 2 :]
            if 0 < len(r) <= 33 and 0 < len(s) <= 33:
                return r[-32:].rjust(32, b"\0") + s[-32:].rjust(32, b"\0")
    try:
        r_int, s_int = decode_dss_signature(signature)
    except ValueError:
        raise WireError("not a DER ECDSA signature") from None
    if r_int.bit_length() > half * 8 or s_int.bit_length() > half * 8:
        raise WireError("a signature integer is larger than the curve allows")
    return r_int.to_bytes(half, "big") + s_int.to_bytes(half, "big")
