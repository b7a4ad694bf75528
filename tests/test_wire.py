"""Differential tests for spiffile/_wire.py: each hand-written rule against its named reference."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spiffile import _wire

# Integers whose text fits a token's number cap (_wire.MAX_JSON_NUMBER).
_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**22), max_value=10**23)
    | st.text(max_size=8)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)


def _reference_b64url(text: str) -> bytes:
    """The stdlib decoder, made strict the slow way: decode, then demand the same text back."""
    if not text.isascii() or len(text) % 4 == 1:
        raise ValueError("rejected")
    try:
        data = base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except binascii.Error:
        raise ValueError("rejected") from None
    if base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii") != text:
        raise ValueError("rejected")
    return data


@settings(max_examples=500)
@given(st.binary(max_size=80))
def test_b64url_encode_is_base64_without_padding(data: bytes) -> None:
    assert _wire.b64url_encode(data) == base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert _wire.b64url_decode(_wire.b64url_encode(data)) == data


@settings(max_examples=2000)
@given(st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgw0123456789-_+/=. \né", max_size=24))
def test_b64url_decode_agrees_with_the_strict_reference(text: str) -> None:
    try:
        expected: bytes | None = _reference_b64url(text)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(_wire.WireError):
            _wire.b64url_decode(text)
    else:
        assert _wire.b64url_decode(text) == expected
        assert _wire.b64url_decode(text.encode("ascii")) == expected


@given(st.text(max_size=40))
def test_json_string_is_what_json_dumps_writes(text: str) -> None:
    assert _wire.json_string(text) == json.dumps(text)


@settings(max_examples=500)
@given(st.dictionaries(st.text(max_size=8), _json_values, max_size=6))
def test_loads_object_equals_json_loads_on_valid_objects(value: dict[str, Any]) -> None:
    text = json.dumps(value)
    assume(_wire.too_nested(text) is False)
    assert _wire.loads_object(text) == json.loads(text)
    assert _wire.loads_claims(text.encode()) == json.loads(text)


def _outcome(function: Any, data: bytes) -> Any:
    try:
        return ("ok", function(data))
    except _wire.WireError:
        # Which of two problems a text has is reported may differ (a duplicate
        # member before a syntax error); that it is refused may not.
        return ("error", None)


@settings(max_examples=1500)
@given(
    st.lists(
        st.sampled_from(
            [
                "{",
                "}",
                "[",
                "]",
                '"a"',
                '"b"',
                ":",
                ",",
                "1",
                "1.5",
                "NaN",
                "null",
                '"x:y"',
                '"spiffe://t/x"',
                " ",
                "\n",
                "true",
                '"\\u0000"',
                "\xff",
            ]
        ),
        max_size=24,
    ).map("".join)
)
def test_loads_claims_fast_path_gives_the_strict_result(text: str) -> None:
    """The same value, or a refusal, exactly when the strict decoder gives them (any text)."""
    data = text.encode("utf-8", "surrogateescape")
    assert _outcome(_wire.loads_claims, data) == _outcome(_wire.loads_object, data)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"a": 1, "a": 2}', "duplicate"),
        ('{"a": {"b": 1, "b": 1}}', "duplicate"),
        ('{"a": NaN}', "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ("[1]", "not a JSON object"),
        ('{"a": 1} x', "not valid JSON"),
        ("[" * 65 + "]" * 65, "more than 64"),
    ],
)
def test_loads_object_refuses_what_json_loads_would_accept(text: str, reason: str) -> None:
    with pytest.raises(_wire.WireError, match=reason):
        _wire.loads_object(text)
    with pytest.raises(_wire.WireError, match=reason):
        _wire.loads_claims(text.encode())


def test_deep_documents_are_allowed_without_the_token_cap() -> None:
    text = '{"a": ' + "[" * 100 + "]" * 100 + "}"
    assert _wire.loads_object(text, cap_nesting=False) == json.loads(text)


@pytest.fixture(scope="module")
def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@settings(max_examples=300)
@given(st.binary(min_size=1, max_size=64))
def test_der_forms_agree_with_cryptography(p256: ec.EllipticCurvePrivateKey, data: bytes) -> None:
    der = p256.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = _wire.der_to_raw(der)
    assert raw == r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert _wire.raw_to_der(raw) == encode_dss_signature(r, s)


@given(st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1))
def test_raw_to_der_is_encode_dss_signature_for_every_integer(r: int, s: int) -> None:
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert _wire.raw_to_der(raw) == encode_dss_signature(r, s)
    assert _wire.der_to_raw(encode_dss_signature(r, s)) == raw


def test_other_curves_go_through_the_reference() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    der = key.sign(b"x", ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    raw = _wire.der_to_raw(der, 48)
    assert raw == r.to_bytes(48, "big") + s.to_bytes(48, "big")
    assert _wire.raw_to_der(raw) == der


@pytest.mark.parametrize("bad", [b"", b"\x30\x00", b"\x02\x01\x01", b"x" * 10])
def test_der_to_raw_rejects_what_is_not_der(bad: bytes) -> None:
    with pytest.raises(_wire.WireError):
        _wire.der_to_raw(bad)


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        ('{"a":[' + ",".join(["1"] * 66) + "]}", True),
        ('{"a":[' + ",".join(["1"] * 65) + "]}", False),
        ('{"a":"' + "," * 65 + '"}', True),
        ('{"a":' + "1" * 25 + "}", True),
        ('{"a":' + "1" * 24 + "}", False),
        ('{"a":-1.234567890123456e-300}', False),
        ('{"a":1.2345678901234567890e-300}', True),
        ('{"a":"' + "1" * 400 + '"}', False),
    ],
)
def test_token_values_and_numbers_are_capped(text: str, refused: bool) -> None:
    for parse in (_wire.loads_claims, _wire.loads_object):
        if refused:
            with pytest.raises(_wire.WireError):
                parse(text.encode())
        else:
            assert parse(text.encode()) == json.loads(text)
    # Documents (bundles) keep only their size cap.
    assert _wire.loads_object(text, cap_nesting=False) == json.loads(text)


# -- deferred floats: the verify path's parse, resolved, is the eager parse ------------

_float_texts = st.sampled_from(
    ["1.5", "-0.0", "1e400", "-1e400", "2.5E-3", "1.9999999999999999e-300", "4e-324", "0.1"]
) | st.floats(allow_nan=False, allow_infinity=False).map(repr)


def _typed(value: Any) -> str:
    """A text that tells 1 from 1.0 and keeps member order: json.dumps, floats by repr."""
    return json.dumps(value)


@settings(max_examples=800)
@given(
    st.lists(
        st.sampled_from(['{"a":', '{"b":', "[", "]", "}", ",", ":", '"x:y"', '"spiffe://t/x"'])
        | _float_texts
        | st.sampled_from(["1", "-7", "true", "null", '"s"']),
        max_size=24,
    ).map("".join)
)
def test_deferred_floats_resolve_to_the_eager_result(text: str) -> None:
    """Same value (types included) or the same refusal, for claims and for headers."""
    data = text.encode()
    for eager, deferred in (
        (_wire.loads_claims, lambda d: _wire.loads_claims(d, defer_floats=True)),
        (_wire.loads_object, lambda d: _wire.loads_object(d, defer_floats=True)),
    ):
        expected = _outcome(eager, data)
        got = _outcome(deferred, data)
        if expected[0] == "ok":
            assert got[0] == "ok"
            assert _typed(_wire.resolve_floats(got[1])) == _typed(expected[1])
        else:
            assert got == expected


def test_deferred_floats_stay_text_until_resolved() -> None:
    claims = _wire.loads_claims(
        b'{"sub":"s","f":1.9999999999999999e-300,"g":[2.5,{"h":1e400}],"i":1}', defer_floats=True
    )
    assert (
        type(claims["f"]) is _wire.DeferredFloat and claims["f"].text == "1.9999999999999999e-300"
    )
    assert _wire.type_name(claims["f"]) == "float" and _wire.type_name(claims["i"]) == "int"
    resolved = _wire.resolve_floats(claims)
    assert resolved is claims
    assert claims == {"sub": "s", "f": 2e-300, "g": [2.5, {"h": float("inf")}], "i": 1}


_show_values = st.recursive(
    _json_scalars | st.floats(allow_nan=False) | st.text(min_size=150, max_size=300),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=60), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=800)
@given(_show_values, st.integers(0, 220))
def test_json_prefix_is_a_prefix_of_json_dumps(value: Any, limit: int) -> None:
    assert _wire.json_prefix(value, limit) == json.dumps(value)[:limit]


@settings(max_examples=300)
@given(_show_values, st.integers(0, 220))
def test_json_prefix_shows_deferred_floats_as_their_floats(value: Any, limit: int) -> None:
    text = json.dumps({"v": value}, allow_nan=True)
    assume(_wire.too_nested(text) is False and "Infinity" not in text)
    try:
        deferred = _wire.loads_object(text, defer_floats=True)
    except _wire.WireError:
        return  # A number over the length cap: refused either way.
    assert _wire.json_prefix(deferred["v"], limit) == json.dumps(json.loads(text)["v"])[:limit]


def _two_pass_b64url(raw: bytes) -> bytes:
    """The former decoder (a deleting translate, then a mapping one): messages and all."""
    if raw.translate(None, _wire._ALPHABET):
        raise _wire.WireError("is not base64url (a character outside the alphabet)")
    rest = len(raw) & 3
    if rest == 1:
        raise _wire.WireError("has an impossible base64url length")
    if rest and raw[-1] not in _wire._CANONICAL_LAST[rest]:
        raise _wire.WireError("is not canonical base64url (non-zero trailing bits)")
    return binascii.a2b_base64(raw.translate(_wire._TO_STANDARD) + _wire._PADDING[rest])


@settings(max_examples=2000)
@given(
    st.binary(max_size=40)
    | st.text(alphabet="ABCDEFGHQgw048-_+/=!\x00\xff", max_size=40).map(
        lambda text: text.encode("latin-1")
    )
)
def test_b64url_decode_in_one_translate_is_the_two_pass_decoder(raw: bytes) -> None:
    def outcome(decode: Any) -> tuple[str, object]:
        try:
            return ("ok", decode(raw))
        except _wire.WireError as exc:
            return ("error", str(exc))

    assert outcome(_wire.b64url_decode) == outcome(_two_pass_b64url)
