"""Rejections explain themselves: the safe fields svid.verify sets on errors (PROFILE.md §10)."""

from __future__ import annotations

import base64
import json

import pytest

from spiffile import svid
from spiffile.bundle import Bundle
from spiffile.errors import (
    AudienceError,
    ExpiredTokenError,
    InvalidTokenError,
    LifetimeError,
    MalformedTokenError,
    NotYetValidError,
    SignatureError,
    UnknownIdentityError,
)
from spiffile.keys import generate_private_key, kid_for, public_jwk

NOW = 1_750_000_000
ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"
KEY = generate_private_key()
KID = kid_for(KEY.public_key())
BUNDLE = Bundle.empty("example.org").with_keys(ORDERS, [public_jwk(KEY.public_key())])


def _reject(token: object, **options: object) -> InvalidTokenError | UnknownIdentityError:
    options.setdefault("audience", BILLING)
    options.setdefault("now", NOW)
    with pytest.raises((InvalidTokenError, UnknownIdentityError)) as info:
        svid.verify(token, BUNDLE, **options)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, InvalidTokenError | UnknownIdentityError)
    return error


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_wrong_audience_names_both_audiences() -> None:
    token = svid.mint(KEY, KID, ORDERS, "spiffe://example.org/reports", now=NOW)
    error = _reject(token)
    assert isinstance(error, AudienceError)
    assert error.audience == "spiffe://example.org/reports"
    assert error.expected_audience == BILLING
    assert error.subject == ORDERS and error.kid == KID
    line = error.explain()
    assert "aud='spiffe://example.org/reports'" in line
    assert "expected aud='spiffe://example.org/billing'" in line
    assert token not in line and token.split(".")[2] not in line


def test_expired_token_says_how_long_ago_and_the_leeway() -> None:
    token = svid.mint(KEY, KID, ORDERS, BILLING, now=NOW - 200, ttl=60)
    error = _reject(token, leeway=30)
    assert isinstance(error, ExpiredTokenError)
    assert error.expires == NOW - 140 and error.issued_at == NOW - 200
    assert error.now == NOW and error.leeway == 30
    line = error.explain()
    assert f"exp={NOW - 140} (140 s ago)" in line and "leeway=30 s" in line
    assert error.details()["expires"] == NOW - 140


def test_token_from_the_future_shows_iat_ahead_of_now() -> None:
    token = svid.mint(KEY, KID, ORDERS, BILLING, now=NOW + 600, ttl=60)
    error = _reject(token)
    assert isinstance(error, NotYetValidError)
    assert f"iat={NOW + 600} (in 600 s)" in error.explain()


def test_lifetime_cap_is_explained() -> None:
    token = svid.mint(KEY, KID, ORDERS, BILLING, now=NOW, ttl=7200)
    error = _reject(token)
    assert isinstance(error, LifetimeError)
    assert "max_lifetime=3600 s" in error.explain()


def test_unknown_identity_names_the_claimed_subject() -> None:
    stranger = generate_private_key()
    token = svid.mint(stranger, kid_for(stranger.public_key()), BILLING, BILLING, now=NOW)
    error = _reject(token)
    assert isinstance(error, UnknownIdentityError)
    assert error.subject == BILLING and error.kid == kid_for(stranger.public_key())


def test_bad_signature_keeps_sub_and_kid_but_never_the_signature() -> None:
    token = svid.mint(KEY, KID, ORDERS, BILLING, now=NOW)
    header, payload, signature = token.split(".")
    bad = f"{header}.{payload}.{signature[::-1]}"
    error = _reject(bad)
    assert isinstance(error, SignatureError | MalformedTokenError)
    assert error.subject == ORDERS and error.kid == KID
    assert signature[::-1] not in error.explain()


def test_hostile_text_is_truncated_and_quoted() -> None:
    header = _b64(json.dumps({"alg": "ES256", "kid": "k\n" * 300}).encode())
    claims = _b64(json.dumps({"sub": "spiffe://x/\x1b[31m" + "a" * 3000, "aud": BILLING}).encode())
    error = _reject(f"{header}.{claims}.AAAA")
    assert error.kid is not None and len(error.kid) <= 200
    assert error.subject is not None and len(error.subject) <= 200
    line = error.explain()
    assert "\n" not in line and "\x1b" not in line
    assert "\\x1b" in line


@pytest.mark.parametrize(
    "token",
    [
        "",
        "....",
        "a.b.c",
        "%%%.%%%.%%%",
        _b64(b"[1]") + "." + _b64(b"[[[[") + ".x",
        _b64(b"{}") + "." + _b64(b"[" * 5000 + b"]" * 5000) + ".x",
        _b64(b"{}") + "." + _b64(b'{"exp": 1' + b"0" * 5000 + b"}") + ".x",
        "x" * 10_000,
        b"bytes",
        None,
    ],
)
def test_unreadable_tokens_still_get_the_verifier_side(token: object) -> None:
    error = _reject(token)
    assert error.expected_audience == BILLING and error.now == NOW
    assert error.subject is None and error.kid is None
    assert "expected aud=" in error.explain()


def test_a_verified_token_costs_nothing_extra() -> None:
    token = svid.mint(KEY, KID, ORDERS, BILLING, now=NOW)
    assert svid.verify(token, BUNDLE, audience=BILLING, now=NOW).id == ORDERS


def test_the_explanation_is_read_from_the_one_parse() -> None:
    # A payload the strict parse refuses (a repeated member) claims nothing:
    # the rejection is not explained by a second, lenient parse of the token.
    header = _b64(json.dumps({"alg": "ES256", "kid": KID}).encode())
    payload = _b64(f'{{"sub":"{ORDERS}","sub":"{ORDERS}","aud":"{BILLING}"}}'.encode())
    error = _reject(f"{header}.{payload}.AAAA")
    assert isinstance(error, MalformedTokenError)
    assert error.kid == KID and error.subject is None and error.audience is None


def test_the_error_keeps_no_part_of_the_signature() -> None:
    token = svid.mint(KEY, KID, ORDERS, "spiffe://example.org/reports", now=NOW)
    signature = token.split(".")[2]
    error = _reject(token)
    kept = repr(vars(error)) + repr(error.args)
    assert signature not in kept and token not in kept


def test_a_long_audience_array_is_shown_cut() -> None:
    from spiffile.trust import TrustSet

    audiences = [f"spiffe://example.org/a{n}" for n in range(40)]
    header = _b64(json.dumps({"alg": "ES256", "kid": KID}).encode())
    payload = _b64(json.dumps({"sub": ORDERS, "aud": audiences, "exp": NOW + 60}).encode())
    with pytest.raises(InvalidTokenError) as info:
        svid.verify(
            f"{header}.{payload}.AAAA", TrustSet({"example.org": BUNDLE}), audience=BILLING, now=NOW
        )
    shown = info.value.audience
    assert shown is not None and len(shown) == 200 and shown == json.dumps(audiences)[:200]
