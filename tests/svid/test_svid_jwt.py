"""Tests for spiffile/svid.py: mint/verify, and verification against hostile input.

Every hostile case of PROFILE.md §6.1 has its own named parametrized case that
asserts the exact error class.  Hostile tokens are crafted by hand with real
signatures from real keys (``tests/tokenforge.py``), so each one breaks exactly
the rule it targets: an ``aud`` array or an extra header member carries a valid
ES256 signature by the subject's own key, and only that rule can reject it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from tokenforge import (
    BILLING,
    DROP,
    LEDGER,
    MANY,
    NOW,
    ORDERS,
    Forge,
    Realm,
    b64,
    b64json,
    compact,
    es256_raw,
    hs256_raw,
    make_realm,
    rs256_raw,
    sid,
)

from spiffile import svid
from spiffile.bundle import BoundKey, Bundle
from spiffile.errors import (
    AlgorithmError,
    AudienceError,
    ClaimsError,
    ExpiredTokenError,
    HeaderError,
    InvalidTokenError,
    LifetimeError,
    MalformedTokenError,
    NotYetValidError,
    SignatureError,
    SpiffileError,
    TokenTooLargeError,
    UnknownIdentityError,
)
from spiffile.keys import generate_private_key, kid_for, public_jwk
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_TTL,
    MAX_TOKEN_BYTES,
    Caller,
    mint,
    verify,
)

#: 2100-01-01T00:00:00Z.
YEAR_2100 = 4_102_444_800


@pytest.fixture(scope="module")
def malformed_entry_realm() -> Realm:
    """orders and billing, plus an entry whose only key is off the curve."""
    good = public_jwk(generate_private_key().public_key())
    off_curve = dict(good, y=good["x"])
    return make_realm({ORDERS: 1, BILLING: 1}, extra={sid("broken"): {"keys": [off_curve]}})


@pytest.fixture
def forge(example_realm: Realm) -> Forge:
    return Forge(example_realm)


def check(token: object, bundle: Bundle, **options: Any) -> Caller:
    """``verify`` as the billing workload at :data:`NOW`, unless *options* say otherwise."""
    options.setdefault("audience", BILLING)
    options.setdefault("now", NOW)
    return verify(token, bundle, **options)


# -- round trip ------------------------------------------------------------------------------


def test_mint_verify_round_trip(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    caller = check(token, example_realm.bundle)
    assert caller.id == SpiffeId(ORDERS)
    assert isinstance(caller.id, SpiffeId)
    assert caller.claims == {"sub": ORDERS, "aud": BILLING, "iat": NOW, "exp": NOW + DEFAULT_TTL}


def test_minted_token_has_the_profile_shape(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    kid = kid_for(key.public_key())
    token = mint(key, kid, SpiffeId(ORDERS), SpiffeId(BILLING), now=NOW + 0.9, ttl=120)
    header, payload, signature = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {
        "alg": "ES256",
        "kid": kid,
        "typ": "JWT",
    }
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims == {"sub": ORDERS, "aud": BILLING, "iat": NOW, "exp": NOW + 120}
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64
    assert "=" not in token


def test_mint_extra_claims_are_returned(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    extra = {"jti": "abc", "scope": ["read", "write"], "nbf": NOW}
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW, extra_claims=extra)
    caller = check(token, example_realm.bundle)
    assert caller.claims["jti"] == "abc"
    assert caller.claims["scope"] == ["read", "write"]


@pytest.mark.parametrize("reserved", ["sub", "aud", "exp", "iat"])
def test_mint_refuses_to_override_reserved_claims(example_realm: Realm, reserved: str) -> None:
    key = example_realm.key(ORDERS)
    with pytest.raises(ValueError, match=reserved):
        mint(key, "kid", ORDERS, BILLING, now=NOW, extra_claims={reserved: "x"})


@pytest.mark.parametrize("ttl", [0, -1, 1.5, True])
def test_mint_refuses_a_bad_ttl(example_realm: Realm, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        mint(example_realm.key(ORDERS), "kid", ORDERS, BILLING, now=NOW, ttl=ttl)


def test_verify_accepts_a_spiffe_id_audience(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    assert check(token, example_realm.bundle, audience=SpiffeId(BILLING)).id == SpiffeId(ORDERS)


def test_verify_checks_against_the_given_audience(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    with pytest.raises(AudienceError):
        check(token, example_realm.bundle, audience=LEDGER)


def test_each_bound_key_of_a_rotating_identity_verifies(example_realm: Realm) -> None:
    for index in range(2):
        key = example_realm.key(LEDGER, index)
        token = mint(key, kid_for(key.public_key()), LEDGER, BILLING, now=NOW)
        assert check(token, example_realm.bundle).id == SpiffeId(LEDGER)


def test_the_kid_is_a_hint_for_identities_with_at_most_two_keys(forge: Forge) -> None:
    """With no kid match, the subject's own (one or two) keys are tried: the signer decides."""
    token = forge.token(forge.header(kid="not-a-kid-of-anyone"))
    assert check(token, forge.realm.bundle).id == SpiffeId(ORDERS)


def test_pyjwt_minted_token_verifies(example_realm: Realm) -> None:
    """A token minted with default settings by another implementation passes (PyJWT here)."""
    key = example_realm.key(ORDERS)
    claims = {"sub": ORDERS, "aud": BILLING, "iat": NOW, "exp": NOW + 60}
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid_for(key.public_key())})
    assert check(token, example_realm.bundle).id == SpiffeId(ORDERS)


def test_minted_token_verifies_with_pyjwt(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    decoded = jwt.decode(
        token,
        key.public_key(),
        algorithms=["ES256"],
        audience=BILLING,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded["sub"] == ORDERS


# -- hostile input: one named case each -------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """A hostile input built from a :class:`Forge` and the exact error it must raise."""

    build: Callable[[Forge], object]
    error: type[SpiffileError]


def _flip_first_bit(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 1]) + signature[1:]


def _padded(segment: str) -> str:
    assert len(segment) % 4, "the case needs a segment whose length is not a multiple of 4"
    return segment + "=" * (-len(segment) % 4)


def _non_canonical(segment: str) -> str:
    """The same bytes to a lenient decoder, but with non-zero unused trailing bits."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert len(segment) % 4 in (2, 3), "the case needs a segment with unused trailing bits"
    changed = segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]
    lenient = base64.urlsafe_b64decode
    assert lenient(_padded(changed)) == lenient(_padded(segment))
    return changed


def _claims_with_padding(forge: Forge) -> dict[str, Any]:
    """Claims whose encoded payload needs base64 padding."""
    for size in range(3):
        claims = forge.claims(pad="x" * size)
        if len(b64json(claims)) % 4:
            return claims
    raise AssertionError("unreachable: one of three lengths needs padding")


def _claims_with_url_alphabet(forge: Forge) -> dict[str, Any]:
    """Claims whose encoded payload holds '-' or '_' (so the standard alphabet differs)."""
    for size in range(200):
        claims = forge.claims(pad="~" * size + "?>?")
        encoded = b64json(claims)
        if "-" in encoded and "_" in encoded:
            return claims
    raise AssertionError("no payload with both '-' and '_' found")


def _standard_alphabet(forge: Forge) -> str:
    """A token signed over segments in the standard (``+/``) base64 alphabet."""
    header = b64json(forge.header()).replace("-", "+").replace("_", "/")
    payload = b64json(_claims_with_url_alphabet(forge)).replace("-", "+").replace("_", "/")
    return compact(header, payload, forge.es256())


def _hs256_with_public_pem(forge: Forge) -> str:
    pem = (
        forge.realm.key(ORDERS)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return forge.token(forge.header(alg="HS256"), signer=lambda data: hs256_raw(pem, data))


def _es256_header_hmac_signature(forge: Forge) -> str:
    pem = (
        forge.realm.key(ORDERS)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return forge.token(signer=lambda data: hs256_raw(pem, data))


def _p384(forge: Forge) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa(forge: Forge) -> rsa.RSAPrivateKey:
    return _RSA_KEY


_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _embedded_jwk(forge: Forge) -> str:
    attacker = generate_private_key()
    jwk = public_jwk(attacker.public_key())
    header = forge.header(kid=jwk["kid"], jwk=jwk)
    return forge.token(header, signer=forge.es256(attacker))


def _deep_nesting_in_claims(forge: Forge) -> str:
    # Stays under the size cap; a stranger signs, so if the JSON parsed the
    # signature check would still reject it.
    claims = json.dumps(forge.claims())[:-1] + ',"deep":' + "[" * 5000 + "]" * 5000 + "}"
    return forge.token(raw_payload=b64(claims.encode()), signer=forge.es256(forge.realm.stranger))


def _raw_claims(text: str) -> Callable[[Forge], str]:
    return lambda forge: forge.token(raw_payload=b64(text.encode("utf-8")))


def _raw_header(text: str) -> Callable[[Forge], str]:
    return lambda forge: forge.token(raw_header=b64(text.encode("utf-8")))


def _header(**changes: Any) -> Callable[[Forge], str]:
    return lambda forge: forge.token(forge.header(**changes))


def _claims(**changes: Any) -> Callable[[Forge], str]:
    return lambda forge: forge.token(claims=forge.claims(**changes))


def _segment_swap(forge: Forge) -> str:
    header, payload, signature = forge.token().split(".")
    return f"{payload}.{header}.{signature}"


def _replace_signature(raw: bytes) -> Callable[[Forge], str]:
    return lambda forge: forge.token(signer=lambda data: raw)


HOSTILE: dict[str, Hostile] = {
    # Not a token at all.
    "empty_string": Hostile(lambda f: "", MalformedTokenError),
    "garbage": Hostile(lambda f: "this is not a token", MalformedTokenError),
    "garbage_three_dots": Hostile(lambda f: "...", MalformedTokenError),
    "non_string_none": Hostile(lambda f: None, MalformedTokenError),
    "non_string_bytes": Hostile(lambda f: f.token().encode("ascii"), MalformedTokenError),
    "non_string_int": Hostile(lambda f: 42, MalformedTokenError),
    "non_string_list": Hostile(lambda f: f.token().split("."), MalformedTokenError),
    "two_segments": Hostile(lambda f: f.token().rsplit(".", 1)[0], MalformedTokenError),
    "four_segments": Hostile(lambda f: f.token() + ".AAAA", MalformedTokenError),
    "jwe_five_segments": Hostile(
        lambda f: "eyJhbGciOiJkaXIifQ..AAAA.AAAA.AAAA", MalformedTokenError
    ),
    "empty_signature_segment": Hostile(lambda f: f.token(unsigned=True), MalformedTokenError),
    "segments_swapped": Hostile(_segment_swap, AlgorithmError),
    "json_serialization_instead_of_compact": Hostile(
        lambda f: json.dumps(
            dict(zip(("protected", "payload", "signature"), f.token().split("."), strict=True))
        ),
        MalformedTokenError,
    ),
    # Algorithms.
    "alg_none_unsigned": Hostile(
        lambda f: f.token(f.header(alg="none"), unsigned=True), MalformedTokenError
    ),
    "alg_none_with_signature": Hostile(_header(alg="none"), AlgorithmError),
    "alg_None_capitalised": Hostile(_header(alg="None"), AlgorithmError),
    "alg_lowercase_es256": Hostile(_header(alg="es256"), AlgorithmError),
    "alg_missing": Hostile(_header(alg=DROP), AlgorithmError),
    "alg_null": Hostile(_header(alg=None), AlgorithmError),
    "alg_list": Hostile(_header(alg=["ES256"]), AlgorithmError),
    "alg_hs256_keyed_with_public_key_pem": Hostile(_hs256_with_public_pem, AlgorithmError),
    "alg_es256_with_hmac_signature": Hostile(_es256_header_hmac_signature, MalformedTokenError),
    "alg_es384_with_p384_key": Hostile(
        lambda f: f.token(f.header(alg="ES384"), signer=f.es256(_p384(f))), AlgorithmError
    ),
    "alg_es256_signed_with_p384_key": Hostile(
        lambda f: f.token(signer=f.es256(_p384(f))), MalformedTokenError
    ),
    "alg_rs256_with_rsa_key": Hostile(
        lambda f: f.token(f.header(alg="RS256"), signer=lambda d: rs256_raw(_rsa(f), d)),
        AlgorithmError,
    ),
    "alg_ps256": Hostile(_header(alg="PS256"), AlgorithmError),
    "alg_eddsa": Hostile(_header(alg="EdDSA"), AlgorithmError),
    # Header members.
    "header_embedded_jwk": Hostile(_embedded_jwk, HeaderError),
    "header_jku": Hostile(_header(jku="https://attacker.invalid/jwks.json"), HeaderError),
    "header_x5u": Hostile(_header(x5u="https://attacker.invalid/cert.pem"), HeaderError),
    "header_x5c": Hostile(_header(x5c=["MIIB"]), HeaderError),
    "header_x5t": Hostile(_header(x5t="AAAA"), HeaderError),
    "header_crit": Hostile(_header(crit=["exp"]), HeaderError),
    "header_crit_empty": Hostile(_header(crit=[]), HeaderError),
    "header_b64_false": Hostile(_header(b64=False, crit=["b64"]), HeaderError),
    "header_b64_alone": Hostile(_header(b64=True), HeaderError),
    "header_cty": Hostile(_header(cty="JWT"), HeaderError),
    "header_extra_member": Hostile(_header(foo="bar"), HeaderError),
    "header_extra_member_null": Hostile(_header(zzz=None), HeaderError),
    "header_typ_lowercase_jwt": Hostile(_header(typ="jwt"), HeaderError),
    "header_typ_at_jwt": Hostile(_header(typ="at+jwt"), HeaderError),
    "header_typ_empty": Hostile(_header(typ=""), HeaderError),
    "header_typ_null": Hostile(_header(typ=None), HeaderError),
    "header_typ_number": Hostile(_header(typ=1), HeaderError),
    "header_kid_missing": Hostile(_header(kid=DROP), HeaderError),
    "header_kid_empty": Hostile(_header(kid=""), HeaderError),
    "header_kid_number": Hostile(_header(kid=1), HeaderError),
    "header_kid_null": Hostile(_header(kid=None), HeaderError),
    "header_not_an_object": Hostile(_raw_header('["ES256"]'), MalformedTokenError),
    "header_not_json": Hostile(_raw_header('{"alg":"ES256",'), MalformedTokenError),
    "header_not_utf8": Hostile(
        lambda f: f.token(raw_header=b64(b'{"alg":"ES256","kid":"\xff"}')), MalformedTokenError
    ),
    # Keys and signatures.
    "kid_of_another_identity_signed_by_it": Hostile(
        lambda f: f.token(f.header(kid=f.realm.kid(BILLING)), signer=f.es256(f.realm.key(BILLING))),
        SignatureError,
    ),
    "signature_by_another_bound_identity": Hostile(
        lambda f: f.token(signer=f.es256(f.realm.key(BILLING))), SignatureError
    ),
    "signature_by_unbound_key_with_its_own_kid": Hostile(
        lambda f: f.token(
            f.header(kid=kid_for(f.realm.stranger.public_key())),
            signer=f.es256(f.realm.stranger),
        ),
        SignatureError,
    ),
    "signature_by_another_identity_for_two_key_subject": Hostile(
        lambda f: Forge(f.realm, subject=LEDGER).token(
            f.header(kid=f.realm.kid(BILLING)), signer=f.es256(f.realm.key(BILLING))
        ),
        SignatureError,
    ),
    "unknown_kid_for_fifty_key_subject": Hostile(
        lambda f: Forge(f.realm, subject=MANY).token(
            f.header(kid="unknown"), signer=f.es256(f.realm.key(MANY, 7))
        ),
        SignatureError,
    ),
    # One signature with one bit flipped.  (Flipping a bit of one signature
    # and taking the rest from a second one made a genuine signature whenever
    # the two first bytes happened to differ in that bit only: 1 run in 256.)
    "signature_bit_flipped": Hostile(
        lambda f: f.token(signer=lambda d: _flip_first_bit(es256_raw(f.realm.key(ORDERS), d))),
        SignatureError,
    ),
    "signature_all_zero": Hostile(_replace_signature(bytes(64)), SignatureError),
    "signature_all_ones": Hostile(_replace_signature(b"\xff" * 64), SignatureError),
    "signature_63_bytes": Hostile(_replace_signature(bytes(63)), MalformedTokenError),
    "signature_65_bytes": Hostile(_replace_signature(bytes(65)), MalformedTokenError),
    "signature_der_encoded": Hostile(
        lambda f: f.token(signer=lambda d: f.realm.key(ORDERS).sign(d, ec.ECDSA(hashes.SHA256()))),
        MalformedTokenError,
    ),
    # aud.
    "aud_array_containing_us": Hostile(_claims(aud=[BILLING, ORDERS]), AudienceError),
    "aud_array_of_just_us": Hostile(_claims(aud=[BILLING]), AudienceError),
    "aud_wrong": Hostile(_claims(aud=LEDGER), AudienceError),
    "aud_missing": Hostile(_claims(aud=DROP), AudienceError),
    "aud_null": Hostile(_claims(aud=None), AudienceError),
    "aud_empty_string": Hostile(_claims(aud=""), AudienceError),
    "aud_object": Hostile(_claims(aud={"aud": BILLING}), AudienceError),
    "aud_prefix_of_us": Hostile(_claims(aud=BILLING[:-1]), AudienceError),
    # exp.
    "exp_missing": Hostile(_claims(exp=DROP), ClaimsError),
    "exp_expired": Hostile(_claims(iat=NOW - 3600, exp=NOW - 3540), ExpiredTokenError),
    "exp_string": Hostile(_claims(exp=str(NOW + 60)), ClaimsError),
    "exp_float": Hostile(_claims(exp=NOW + 60.5), ClaimsError),
    "exp_float_integral": Hostile(_claims(exp=float(NOW + 60)), ClaimsError),
    "exp_boolean": Hostile(_claims(exp=True), ClaimsError),
    "exp_null": Hostile(_claims(exp=None), ClaimsError),
    # Over the 24-character number cap (PROFILE.md §5.4): refused by the parse.
    "exp_huge": Hostile(_claims(exp=10**30), MalformedTokenError),
    "exp_huge_under_the_number_cap": Hostile(_claims(exp=10**20), ClaimsError),
    "exp_past_year_9999": Hostile(_claims(exp=253_402_300_800), ClaimsError),
    "exp_negative": Hostile(_claims(exp=-1), ClaimsError),
    "exp_exponent_notation": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":1.75e9}}'), ClaimsError
    ),
    "exp_overflowing_float": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":1e400}}'), ClaimsError
    ),
    "exp_nan": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":NaN}}'), MalformedTokenError
    ),
    "exp_infinity": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":Infinity}}'), MalformedTokenError
    ),
    "exp_5000_digits": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{"9" * 5000}}}'),
        MalformedTokenError,
    ),
    "exp_absurd_lifetime": Hostile(_claims(exp=YEAR_2100), LifetimeError),
    # iat and nbf.
    "iat_in_future_beyond_leeway": Hostile(_claims(iat=NOW + 31, exp=NOW + 91), NotYetValidError),
    "nbf_in_future_beyond_leeway": Hostile(_claims(nbf=NOW + 31), NotYetValidError),
    "iat_string": Hostile(_claims(iat=str(NOW)), ClaimsError),
    "iat_float": Hostile(_claims(iat=NOW + 0.5), ClaimsError),
    "iat_boolean": Hostile(_claims(iat=False), ClaimsError),
    "iat_null": Hostile(_claims(iat=None), ClaimsError),
    "nbf_string": Hostile(_claims(nbf=str(NOW)), ClaimsError),
    "nbf_float": Hostile(_claims(nbf=NOW - 0.5), ClaimsError),
    "nbf_boolean": Hostile(_claims(nbf=True), ClaimsError),
    "nbf_list": Hostile(_claims(nbf=[NOW]), ClaimsError),
    # sub.
    "sub_missing": Hostile(_claims(sub=DROP), ClaimsError),
    "sub_null": Hostile(_claims(sub=None), ClaimsError),
    "sub_number": Hostile(_claims(sub=7), ClaimsError),
    "sub_list": Hostile(_claims(sub=[ORDERS]), ClaimsError),
    "sub_not_a_spiffe_id": Hostile(_claims(sub="orders"), ClaimsError),
    "sub_with_trailing_slash": Hostile(_claims(sub=ORDERS + "/"), ClaimsError),
    "sub_with_dot_segment": Hostile(_claims(sub=sid("x/../orders")), ClaimsError),
    "sub_uppercase_trust_domain": Hostile(_claims(sub="spiffe://EXAMPLE.org/orders"), ClaimsError),
    "sub_percent_encoded": Hostile(_claims(sub=sid("%6frders")), ClaimsError),
    # Profile step 2: an ID the bundle does not hold is unknown, whatever its trust domain.
    "sub_other_trust_domain": Hostile(_claims(sub=sid("orders", "evil.org")), UnknownIdentityError),
    "sub_unknown": Hostile(_claims(sub=sid("nobody")), UnknownIdentityError),
    "sub_unknown_case_variant": Hostile(_claims(sub=sid("Orders")), UnknownIdentityError),
    "sub_trust_domain_itself": Hostile(_claims(sub="spiffe://example.org"), UnknownIdentityError),
    # Duplicate members: one parser takes the first, another the last (RFC 8259 §4).
    "header_duplicate_alg": Hostile(
        _raw_header('{"alg":"none","alg":"ES256","kid":"k","typ":"JWT"}'), MalformedTokenError
    ),
    "claims_duplicate_sub": Hostile(
        _raw_claims(f'{{"sub":"{BILLING}","sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60}}}'),
        MalformedTokenError,
    ),
    "claims_duplicate_aud": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{LEDGER}","aud":"{BILLING}","exp":{NOW + 60}}}'),
        MalformedTokenError,
    ),
    "claims_duplicate_exp": Hostile(
        _raw_claims(f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":"x","exp":{NOW + 60}}}'),
        MalformedTokenError,
    ),
    # Payload.
    "payload_array": Hostile(lambda f: f.token(claims=[f.claims()]), MalformedTokenError),
    "payload_string": Hostile(lambda f: f.token(claims=ORDERS), MalformedTokenError),
    "payload_number": Hostile(lambda f: f.token(claims=NOW), MalformedTokenError),
    "payload_null": Hostile(_raw_claims("null"), MalformedTokenError),
    "payload_true": Hostile(_raw_claims("true"), MalformedTokenError),
    "payload_empty": Hostile(lambda f: f.token(raw_payload=""), MalformedTokenError),
    "payload_not_json": Hostile(_raw_claims("sub=orders"), MalformedTokenError),
    "payload_trailing_data": Hostile(
        lambda f: f.token(raw_payload=b64((json.dumps(f.claims()) + "{}").encode())),
        MalformedTokenError,
    ),
    "payload_not_utf8": Hostile(
        lambda f: f.token(raw_payload=b64(json.dumps(f.claims()).encode()[:-1] + b',"x":"\xc3"}')),
        MalformedTokenError,
    ),
    "payload_deeply_nested_arrays": Hostile(
        _raw_claims("[" * 2900 + "]" * 2900), MalformedTokenError
    ),
    "payload_deeply_nested_unclosed": Hostile(_raw_claims("[" * 5000), MalformedTokenError),
    "payload_deeply_nested_objects": Hostile(
        _raw_claims('{"":' * 1150 + "1" + "}" * 1150), MalformedTokenError
    ),
    "payload_100000_levels": Hostile(_raw_claims("[" * 100_000), TokenTooLargeError),
    "header_deeply_nested": Hostile(_raw_header("[" * 2900 + "]" * 2900), MalformedTokenError),
    # Encoding.
    "trailing_space": Hostile(lambda f: f.token() + " ", MalformedTokenError),
    "trailing_newline": Hostile(lambda f: f.token() + "\n", MalformedTokenError),
    "trailing_crlf": Hostile(lambda f: f.token() + "\r\n", MalformedTokenError),
    "trailing_tab": Hostile(lambda f: f.token() + "\t", MalformedTokenError),
    "trailing_nul": Hostile(lambda f: f.token() + "\x00", MalformedTokenError),
    "leading_space": Hostile(lambda f: " " + f.token(), MalformedTokenError),
    "bearer_prefix": Hostile(lambda f: "Bearer " + f.token(), MalformedTokenError),
    "space_after_dot": Hostile(lambda f: f.token().replace(".", ". ", 1), MalformedTokenError),
    "non_ascii_letter": Hostile(
        lambda f: f.token().replace(".", "\u00e9.", 1), MalformedTokenError
    ),
    "non_ascii_fullwidth_letter": Hostile(lambda f: "\uff21" + f.token()[1:], MalformedTokenError),
    "non_ascii_arabic_indic_digit": Hostile(
        lambda f: f.token()[:-1] + "\u0663", MalformedTokenError
    ),
    "non_ascii_lone_surrogate": Hostile(lambda f: f.token() + "\ud800", MalformedTokenError),
    "padded_header": Hostile(
        lambda f: f.token(raw_header=_padded(b64json(f.header(typ="JOSE")))), MalformedTokenError
    ),
    "padded_payload": Hostile(
        lambda f: f.token(raw_payload=_padded(b64json(_claims_with_padding(f)))),
        MalformedTokenError,
    ),
    "padded_signature": Hostile(lambda f: _padded(f.token()), MalformedTokenError),
    "non_canonical_payload": Hostile(
        lambda f: f.token(raw_payload=_non_canonical(b64json(_claims_with_padding(f)))),
        MalformedTokenError,
    ),
    "non_canonical_signature": Hostile(
        lambda f: _non_canonical(f.token().rsplit(".", 1)[1]).join(
            [f.token().rsplit(".", 1)[0] + ".", ""]
        ),
        MalformedTokenError,
    ),
    "impossible_segment_length": Hostile(
        lambda f: f.token(raw_payload=b64json(f.claims()) + "A"), MalformedTokenError
    ),
    "standard_base64_alphabet": Hostile(_standard_alphabet, MalformedTokenError),
    "deep_nesting_in_claims_value": Hostile(_deep_nesting_in_claims, InvalidTokenError),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_input_is_rejected_with_the_exact_error(forge: Forge, case: str) -> None:
    hostile = HOSTILE[case]
    token = hostile.build(forge)
    with pytest.raises(SpiffileError) as caught:
        check(token, forge.realm.bundle)
    assert type(caught.value) is hostile.error or (
        hostile.error is InvalidTokenError and isinstance(caught.value, InvalidTokenError)
    ), f"{case}: expected {hostile.error.__name__}, got {type(caught.value).__name__}"


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_input_error_does_not_echo_the_token(forge: Forge, case: str) -> None:
    """Errors may be logged: they never carry the whole token (errors.py)."""
    token = HOSTILE[case].build(forge)
    with pytest.raises(SpiffileError) as caught:
        check(token, forge.realm.bundle)
    if isinstance(token, str) and len(token) > 100:
        assert token not in str(caught.value)
        signature = token.rsplit(".", 1)[-1]
        assert not signature or signature not in str(caught.value)


def test_the_padded_header_case_is_otherwise_valid(forge: Forge) -> None:
    """Guard for the encoding cases: the same content, canonically encoded, verifies."""
    assert check(forge.token(forge.header(typ="JOSE")), forge.realm.bundle).id == SpiffeId(ORDERS)
    assert check(forge.token(claims=_claims_with_padding(forge)), forge.realm.bundle)
    assert check(forge.token(claims=_claims_with_url_alphabet(forge)), forge.realm.bundle)
    assert check(forge.token(forge.header(typ=DROP)), forge.realm.bundle)


_CLAIMS_TEXT = f'"sub":"{ORDERS}","aud":"{BILLING}","exp":{NOW + 60}'

#: Payload texts (signed by orders) and whether the strict JSON rules accept them.
PAYLOAD_SPELLINGS: dict[str, tuple[str, bool]] = {
    "compact": ("{" + _CLAIMS_TEXT + "}", True),
    "whitespace_everywhere": (
        ' \n{ "sub" : "' + ORDERS + '" ,\t"aud":"' + BILLING + f'", "exp" : {NOW + 60} }}\r\n',
        True,
    ),
    "escaped_member_name": (
        '{"s\\u0075b":"' + ORDERS + '","aud":"' + BILLING + f'","exp":{NOW + 60}}}',
        True,
    ),
    "escaped_value": ("{" + _CLAIMS_TEXT + ',"x":"\\u00e9\\n"}', True),
    "colons_in_strings": ("{" + _CLAIMS_TEXT + ',"a:b":"c:d:e"}', True),
    "nested_object": ("{" + _CLAIMS_TEXT + ',"x":{"a":1,"b":{"c":[1,2]}}}', True),
    "duplicate_top_level": ("{" + _CLAIMS_TEXT + ',"x":1,"x":1}', False),
    "duplicate_escaped_name": (
        '{"sub":"'
        + BILLING
        + '","s\\u0075b":"'
        + ORDERS
        + '","aud":"'
        + BILLING
        + f'","exp":{NOW + 60}}}',
        False,
    ),
    "duplicate_nested": ("{" + _CLAIMS_TEXT + ',"x":{"a":1,"a":2}}', False),
    "duplicate_in_list": ("{" + _CLAIMS_TEXT + ',"l":[{"a":1,"a":1}]}', False),
    "duplicate_with_whitespace": ("{" + _CLAIMS_TEXT + ', "x" :1,\n"x": 2}', False),
    "trailing_comma": ("{" + _CLAIMS_TEXT + ",}", False),
    "single_quotes": ("{'sub':'" + ORDERS + "'}", False),
    "raw_control_character": ("{" + _CLAIMS_TEXT + ',"x":"a\tb"}', False),
    "utf8_bom": ("\ufeff{" + _CLAIMS_TEXT + "}", False),
    "two_objects": ("{" + _CLAIMS_TEXT + "}{}", False),
    "comment": ("{" + _CLAIMS_TEXT + "}/**/", False),
}


@pytest.mark.parametrize("case", list(PAYLOAD_SPELLINGS), ids=list(PAYLOAD_SPELLINGS))
def test_payload_json_spelling(forge: Forge, case: str) -> None:
    """Strict JSON: any spelling of the same object verifies; duplicates anywhere never do."""
    text, accepted = PAYLOAD_SPELLINGS[case]
    token = forge.token(raw_payload=b64(text.encode("utf-8")))
    if accepted:
        assert check(token, forge.realm.bundle).claims["sub"] == ORDERS
    else:
        with pytest.raises(MalformedTokenError):
            check(token, forge.realm.bundle)


def test_sub_with_a_malformed_bundle_entry_is_unknown(malformed_entry_realm: Realm) -> None:
    forge = Forge(malformed_entry_realm, subject=ORDERS)
    token = forge.token(claims=forge.claims(sub=sid("broken")))
    with pytest.raises(UnknownIdentityError):
        check(token, malformed_entry_realm.bundle)
    # The rest of the bundle keeps working.
    assert check(forge.token(), malformed_entry_realm.bundle).id == SpiffeId(ORDERS)


def test_revoked_identity_is_unknown(example_realm: Realm) -> None:
    forge = Forge(example_realm)
    with pytest.raises(UnknownIdentityError):
        check(forge.token(), example_realm.bundle.without_identity(ORDERS))


# -- order of checks ---------------------------------------------------------------------------


def test_unknown_subject_is_reported_before_the_signature(forge: Forge) -> None:
    token = forge.token(
        claims=forge.claims(sub=sid("nobody")), signer=forge.es256(forge.realm.stranger)
    )
    with pytest.raises(UnknownIdentityError):
        check(token, forge.realm.bundle)


@pytest.mark.parametrize(
    "changes",
    [{"aud": LEDGER}, {"exp": NOW - 3600}, {"nbf": NOW + 3600}, {"exp": YEAR_2100}],
    ids=["wrong_aud", "expired", "not_yet_valid", "absurd_lifetime"],
)
def test_forged_tokens_learn_nothing_about_time_or_audience(
    forge: Forge, changes: dict[str, Any]
) -> None:
    """The signature is checked before aud/exp/nbf: a forger gets SignatureError only."""
    token = forge.token(claims=forge.claims(**changes), signer=forge.es256(forge.realm.stranger))
    with pytest.raises(SignatureError):
        check(token, forge.realm.bundle)


# -- size cap ------------------------------------------------------------------------------------

ONE_MB = 1024 * 1024


@pytest.mark.parametrize(
    "token",
    [
        "A" * ONE_MB,
        "!" * ONE_MB,
        "\x00" * ONE_MB,
        "\u00e9" * ONE_MB,
        ("eyJ" + "A" * (ONE_MB // 2)) + "." + "A" * (ONE_MB // 2) + ".AAAA",
        "." * ONE_MB,
        "\ud800" * ONE_MB,
    ],
    ids=[
        "base64_chars",
        "invalid_chars",
        "nul",
        "non_ascii",
        "three_segments",
        "dots",
        "surrogates",
    ],
)
def test_one_megabyte_token_is_too_large(example_bundle: Bundle, token: str) -> None:
    """Rejected before decoding: even characters that cannot be a token give TokenTooLargeError."""
    with pytest.raises(TokenTooLargeError):
        check(token, example_bundle)


def test_size_cap_applies_before_any_parsing(example_bundle: Bundle) -> None:
    """Just over the cap: too large; at the cap, the same junk reaches the parser (malformed)."""
    with pytest.raises(TokenTooLargeError):
        check("!" * (MAX_TOKEN_BYTES + 1), example_bundle)
    with pytest.raises(MalformedTokenError):
        check("!" * MAX_TOKEN_BYTES, example_bundle)


def _token_of_length(forge: Forge, length: int) -> str:
    for typ in ("JWT", DROP):
        for size in range(length):
            token = forge.token(forge.header(typ=typ), forge.claims(pad="x" * size))
            if len(token) == length:
                return token
            if len(token) > length:
                break
    raise AssertionError(f"no token of exactly {length} characters")


def test_valid_token_of_exactly_the_cap_is_accepted(forge: Forge) -> None:
    token = _token_of_length(forge, MAX_TOKEN_BYTES)
    assert check(token, forge.realm.bundle).id == SpiffeId(ORDERS)


def test_valid_token_one_over_the_cap_is_too_large(forge: Forge) -> None:
    token = _token_of_length(forge, MAX_TOKEN_BYTES + 1)
    with pytest.raises(TokenTooLargeError):
        check(token, forge.realm.bundle)


# -- lifetime cap ------------------------------------------------------------------------------


def test_token_valid_until_2100_is_rejected_by_default(forge: Forge) -> None:
    token = forge.token(claims=forge.claims(exp=YEAR_2100))
    with pytest.raises(LifetimeError):
        check(token, forge.realm.bundle)


def test_token_valid_until_2100_is_accepted_with_the_cap_lifted(forge: Forge) -> None:
    token = forge.token(claims=forge.claims(exp=YEAR_2100))
    assert check(token, forge.realm.bundle, max_lifetime=None).id == SpiffeId(ORDERS)


def test_lifetime_cap_boundary(forge: Forge) -> None:
    edge = NOW + DEFAULT_MAX_LIFETIME + DEFAULT_LEEWAY
    assert check(forge.token(claims=forge.claims(exp=edge)), forge.realm.bundle)
    with pytest.raises(LifetimeError):
        check(forge.token(claims=forge.claims(exp=edge + 1)), forge.realm.bundle)


def test_lifetime_cap_is_configurable(forge: Forge) -> None:
    token = forge.token(claims=forge.claims(exp=NOW + 91))
    with pytest.raises(LifetimeError):
        check(token, forge.realm.bundle, max_lifetime=60)
    assert check(
        forge.token(claims=forge.claims(exp=NOW + 90)), forge.realm.bundle, max_lifetime=60
    )


@pytest.mark.parametrize("elapsed", [0, 1, 30, DEFAULT_TTL - 1, DEFAULT_TTL, DEFAULT_TTL + 29])
@pytest.mark.parametrize("max_lifetime", [DEFAULT_MAX_LIFETIME, DEFAULT_TTL, None])
def test_default_ttl_tokens_pass(
    example_realm: Realm, elapsed: int, max_lifetime: float | None
) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    caller = check(token, example_realm.bundle, now=NOW + elapsed, max_lifetime=max_lifetime)
    assert caller.id == SpiffeId(ORDERS)


def test_default_ttl_token_from_a_clock_30_seconds_ahead_passes(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW + DEFAULT_LEEWAY)
    assert check(token, example_realm.bundle, now=NOW).id == SpiffeId(ORDERS)


# -- leeway boundaries --------------------------------------------------------------------------


@pytest.mark.parametrize("leeway", [0, 5, DEFAULT_LEEWAY])
def test_exp_exactly_at_now_minus_leeway_is_rejected(forge: Forge, leeway: int) -> None:
    token = forge.token(claims=forge.claims(iat=NOW - 120, exp=NOW - leeway))
    with pytest.raises(ExpiredTokenError):
        check(token, forge.realm.bundle, leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 5, DEFAULT_LEEWAY])
def test_exp_just_after_now_minus_leeway_is_accepted(forge: Forge, leeway: int) -> None:
    token = forge.token(claims=forge.claims(iat=NOW - 120, exp=NOW - leeway + 1))
    assert check(token, forge.realm.bundle, leeway=leeway).id == SpiffeId(ORDERS)


def test_exp_boundary_with_a_fractional_now(forge: Forge) -> None:
    token = forge.token(claims=forge.claims(iat=NOW - 120, exp=NOW - DEFAULT_LEEWAY))
    # Half a second before the boundary the token is still valid; at and after it, expired.
    assert check(token, forge.realm.bundle, now=NOW - 0.5).id == SpiffeId(ORDERS)
    for now in (NOW, NOW + 0.5):
        with pytest.raises(ExpiredTokenError):
            check(token, forge.realm.bundle, now=now)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_and_iat_at_now_plus_leeway_are_accepted(forge: Forge, claim: str) -> None:
    token = forge.token(claims=forge.claims(**{claim: NOW + DEFAULT_LEEWAY}, exp=NOW + 90))
    assert check(token, forge.realm.bundle).id == SpiffeId(ORDERS)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_and_iat_one_past_now_plus_leeway_are_rejected(forge: Forge, claim: str) -> None:
    token = forge.token(claims=forge.claims(**{claim: NOW + DEFAULT_LEEWAY + 1}, exp=NOW + 90))
    with pytest.raises(NotYetValidError):
        check(token, forge.realm.bundle)


# -- at most two signature checks ---------------------------------------------------------------


class CountingKey:
    """A public key proxy counting ``verify`` calls."""

    def __init__(self, inner: ec.EllipticCurvePublicKey) -> None:
        self.inner = inner
        self.calls = 0

    def verify(self, signature: bytes, data: bytes, algorithm: ec.ECDSA) -> None:
        self.calls += 1
        self.inner.verify(signature, data, algorithm)


@pytest.fixture
def counted(
    make_example_realm: Callable[[dict[str, int]], Realm],
) -> Iterator[tuple[Realm, Callable[[str], int]]]:
    """A fresh realm (one key per identity, two for ledger, 50 for many) whose keys count."""
    realm = make_example_realm({ORDERS: 1, BILLING: 1, LEDGER: 2, MANY: 50})
    proxies: dict[str, list[CountingKey]] = {}
    for spiffe_id in (ORDERS, BILLING, LEDGER, MANY):
        bound: tuple[BoundKey, ...] = realm.bundle.keys_for(spiffe_id)
        proxies[spiffe_id] = []
        for key in bound:
            proxy = CountingKey(key.public_key)
            key.public_key = proxy  # type: ignore[assignment]
            proxies[spiffe_id].append(proxy)
        # The bundle must hand verify the very objects we wrapped.
        assert all(a is b for a, b in zip(realm.bundle.keys_for(spiffe_id), bound, strict=True))

    def total(spiffe_id: str) -> int:
        return sum(proxy.calls for proxy in proxies[spiffe_id])

    yield realm, total


def test_fifty_keys_and_an_unknown_kid_cost_zero_verifications(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    realm, total = counted
    forge = Forge(realm, subject=MANY)
    token = forge.token(forge.header(kid="unknown-kid"), signer=forge.es256(realm.key(MANY, 49)))
    with pytest.raises(SignatureError):
        check(token, realm.bundle)
    assert total(MANY) == 0


def test_fifty_keys_and_a_matching_kid_cost_exactly_one(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    realm, total = counted
    forge = Forge(realm, subject=MANY)
    token = forge.token(
        forge.header(kid=realm.kid(MANY, 30)), signer=forge.es256(realm.key(MANY, 30))
    )
    assert check(token, realm.bundle).id == SpiffeId(MANY)
    assert total(MANY) == 1


def test_fifty_keys_matching_kid_wrong_signer_cost_exactly_one(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    realm, total = counted
    forge = Forge(realm, subject=MANY)
    token = forge.token(
        forge.header(kid=realm.kid(MANY, 30)), signer=forge.es256(realm.key(MANY, 31))
    )
    with pytest.raises(SignatureError):
        check(token, realm.bundle)
    assert total(MANY) == 1


def test_two_keys_and_an_unknown_kid_cost_at_most_two(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    realm, total = counted
    forge = Forge(realm, subject=LEDGER)
    token = forge.token(forge.header(kid="unknown-kid"), signer=forge.es256(realm.stranger))
    with pytest.raises(SignatureError):
        check(token, realm.bundle)
    assert 1 <= total(LEDGER) <= 2


def test_two_keys_unknown_kid_right_signer_is_accepted_within_two(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    realm, total = counted
    forge = Forge(realm, subject=LEDGER)
    token = forge.token(forge.header(kid="unknown-kid"), signer=forge.es256(realm.key(LEDGER, 1)))
    assert check(token, realm.bundle).id == SpiffeId(LEDGER)
    assert 1 <= total(LEDGER) <= 2


def test_matching_kid_costs_exactly_one(counted: tuple[Realm, Callable[[str], int]]) -> None:
    realm, total = counted
    forge = Forge(realm, subject=LEDGER)
    token = forge.token(
        forge.header(kid=realm.kid(LEDGER, 1)), signer=forge.es256(realm.key(LEDGER, 1))
    )
    assert check(token, realm.bundle).id == SpiffeId(LEDGER)
    assert total(LEDGER) == 1


def test_kid_of_another_identity_never_reaches_its_key(
    counted: tuple[Realm, Callable[[str], int]],
) -> None:
    """Key binding: billing's kid on a token for orders is never checked with billing's key."""
    realm, total = counted
    forge = Forge(realm)
    token = forge.token(
        forge.header(kid=realm.kid(BILLING)), signer=forge.es256(realm.key(BILLING))
    )
    with pytest.raises(SignatureError):
        check(token, realm.bundle)
    assert total(BILLING) == 0
    assert total(ORDERS) == 1


def test_module_constants_match_the_contract() -> None:
    """The documented defaults are what the contract says."""
    assert (svid.DEFAULT_TTL, svid.DEFAULT_LEEWAY) == (60, 30)
    assert svid.DEFAULT_MAX_LIFETIME == 3600
    assert svid.MAX_TOKEN_BYTES == 8192


# -- the cap on '[' and '{' (PROFILE.md §5.4) -------------------------------------------------


def test_a_payload_with_64_openers_is_accepted(example_realm: Realm) -> None:
    key = example_realm.key(ORDERS)
    # 1 '{' + 63 '[' = 64, nested (62 sibling arrays would pass the 64 ',' cap).
    nested: list[Any] = []
    for _ in range(62):
        nested = [nested]
    extra: dict[str, Any] = {"x": nested}
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW, extra_claims=extra)
    assert check(token, example_realm.bundle).claims["x"] == extra["x"]


@pytest.mark.parametrize(
    "extra",
    [
        {"x": [[] for _ in range(63)]},
        {"x": "[" * 64},
        {"x": {"y": [{} for _ in range(70)]}},
    ],
    ids=["65-arrays", "brackets-in-a-string", "objects"],
)
def test_a_payload_with_more_than_64_openers_is_malformed(
    example_realm: Realm, extra: dict[str, Any]
) -> None:
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW, extra_claims=extra)
    with pytest.raises(MalformedTokenError, match="64"):
        check(token, example_realm.bundle)
