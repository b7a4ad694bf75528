"""One regression test per classic JWT/JOSE vulnerability, named for it (as PyJWT does).

Each test forges the attack against the real verifier with real keys and
asserts it is rejected with the right error.  The docstring names the
advisory or the published attack the test stands for.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
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
    make_realm,
    sid,
)

from spiffile.bundle import Bundle
from spiffile.errors import (
    AlgorithmError,
    AudienceError,
    ClaimsError,
    HeaderError,
    InvalidTokenError,
    MalformedTokenError,
    SignatureError,
    TokenTooLargeError,
    UnknownIdentityError,
)
from spiffile.keys import generate_private_key, kid_for, public_jwk
from spiffile.provision import add_service, init_root, load_identity
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import mint, verify

#: The order of the P-256 group.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@pytest.fixture
def forge(example_realm: Realm) -> Forge:
    return Forge(example_realm)


def check(token: object, bundle: Bundle, **options: Any) -> SpiffeId:
    options.setdefault("audience", BILLING)
    options.setdefault("now", NOW)
    return verify(token, bundle, **options).id


def test_baseline_the_honest_token_verifies(forge: Forge) -> None:
    """Every attack below starts from this token; it verifies, so only the attack can fail."""
    assert check(forge.token(), forge.realm.bundle) == SpiffeId(ORDERS)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signed", [False, True], ids=["stripped", "with_signature"])
def test_alg_none(forge: Forge, alg: str, signed: bool) -> None:
    """The ``none`` algorithm (T. McLean, "Critical vulnerabilities in JSON Web Token
    libraries", 2015): a verifier that honours the token's ``alg`` accepts an unsigned token.
    """
    token = forge.token(forge.header(alg=alg), unsigned=not signed)
    error = AlgorithmError if signed else MalformedTokenError
    with pytest.raises(error):
        check(token, forge.realm.bundle)


def test_signature_stripping(forge: Forge) -> None:
    """Dropping the signature segment, with or without its dot, never yields a token."""
    honest = forge.token()
    for token in (honest.rsplit(".", 1)[0], honest.rsplit(".", 1)[0] + "."):
        with pytest.raises(MalformedTokenError):
            check(token, forge.realm.bundle)


def _public_key_encodings(forge: Forge) -> dict[str, bytes]:
    public_key = forge.realm.key(ORDERS).public_key()
    return {
        "spki_pem": public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "spki_der": public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "openssh": public_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "x962_point": public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        "jwk_json": json.dumps(public_jwk(public_key)).encode(),
        "bundle_json": forge.realm.bundle.to_json(),
    }


ENCODINGS = ["spki_pem", "spki_der", "openssh", "x962_point", "jwk_json", "bundle_json"]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("alg", "digest", "error"),
    [
        ("HS256", hashlib.sha256, AlgorithmError),
        ("ES256", hashlib.sha256, MalformedTokenError),  # 32-byte MAC is no r||s.
        ("HS512", hashlib.sha512, AlgorithmError),
        ("ES256", hashlib.sha512, SignatureError),  # 64 bytes: reaches ECDSA, which says no.
    ],
    ids=["hs256", "es256_header_hs256_mac", "hs512", "es256_header_hs512_mac"],
)
def test_hmac_key_confusion_with_the_public_key(
    forge: Forge, encoding: str, alg: str, digest: Any, error: type[InvalidTokenError]
) -> None:
    """Algorithm confusion: HMAC keyed with the (public) verification key.

    McLean 2015; CVE-2016-10555 (jwt-simple), CVE-2017-11424 and CVE-2022-29217 (PyJWT): a
    verifier that lets the token pick HS256 checks a MAC keyed with the public
    key, which the attacker knows.  ES256 is fixed by the verifier, never taken
    from the token.
    """
    secret = _public_key_encodings(forge)[encoding]
    token = forge.token(
        forge.header(alg=alg), signer=lambda data: hmac.new(secret, data, digest).digest()
    )
    with pytest.raises(error):
        check(token, forge.realm.bundle)


@pytest.mark.parametrize("use_victim_kid", [False, True], ids=["attacker_kid", "victim_kid"])
def test_embedded_jwk_header_cve_2018_0114(forge: Forge, use_victim_kid: bool) -> None:
    """CVE-2018-0114 (node-jose): a verifier trusting a key embedded in the ``jwk`` header.

    The attacker signs with its own key and ships that key in the header.
    """
    attacker = generate_private_key()
    jwk = public_jwk(attacker.public_key())
    kid = forge.realm.kid(ORDERS) if use_victim_kid else jwk["kid"]
    token = forge.token(forge.header(kid=kid, jwk=jwk), signer=forge.es256(attacker))
    with pytest.raises(HeaderError):
        check(token, forge.realm.bundle)


@pytest.mark.parametrize(
    "member",
    [
        {"jku": "https://attacker.invalid/jwks.json"},
        {"x5u": "https://attacker.invalid/chain.pem"},
        {"x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]},
        {"x5t#S256": "AAAA"},
    ],
    ids=["jku", "x5u", "x5c", "x5t_s256"],
)
def test_key_url_and_certificate_header_injection(forge: Forge, member: dict[str, Any]) -> None:
    """``jku``/``x5u`` key-URL injection (SSRF, attacker keys) and ``x5c`` chain injection.

    Keys come from the bundle only; these members are refused outright.
    """
    attacker = generate_private_key()
    header = forge.header(kid=kid_for(attacker.public_key()), **member)
    with pytest.raises(HeaderError):
        check(forge.token(header, signer=forge.es256(attacker)), forge.realm.bundle)


@pytest.mark.parametrize(
    ("subject", "kid_owner"),
    [(ORDERS, BILLING), (ORDERS, ORDERS), (LEDGER, BILLING), (MANY, BILLING)],
    ids=["own_kid", "victim_kid", "two_key_victim", "fifty_key_victim"],
)
def test_kid_of_another_identity_cannot_impersonate(
    example_realm: Realm, subject: str, kid_owner: str
) -> None:
    """Key binding: a key vouches only for the identity it is bound to.

    A flat, domain-wide key set (what a standard SPIFFE JWT bundle is) lets any
    workload mint tokens as any other; here billing signs as orders, with its
    own kid or the victim's, and is refused.
    """
    forge = Forge(example_realm, subject=subject, audience=LEDGER)
    attacker = example_realm.key(BILLING)
    token = forge.token(
        forge.header(kid=example_realm.kid(kid_owner)), signer=forge.es256(attacker)
    )
    with pytest.raises(SignatureError):
        check(token, example_realm.bundle, audience=LEDGER)


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "' OR '1'='1", "*", "", "\u0000", "a" * 4000],
    ids=["path_traversal", "sql", "wildcard", "empty", "nul", "long"],
)
def test_kid_injection(forge: Forge, kid: str) -> None:
    """``kid`` injection (path traversal / SQL in key lookups): the kid is only compared."""
    attacker = generate_private_key()
    token = forge.token(forge.header(kid=kid), signer=forge.es256(attacker))
    with pytest.raises((SignatureError, HeaderError)):
        check(token, forge.realm.bundle)


@pytest.mark.parametrize(
    "aud",
    [[BILLING], [BILLING, LEDGER], [LEDGER, BILLING], [[BILLING]], {"0": BILLING}],
    ids=["just_us", "us_first", "us_last", "nested", "object"],
)
def test_aud_array_confusion(forge: Forge, aud: Any) -> None:
    """An ``aud`` array accepted if it *contains* us lets one token serve many audiences.

    The profile: ``aud`` is ONE string; an array is rejected even if it holds us.
    """
    with pytest.raises(AudienceError):
        check(forge.token(claims=forge.claims(aud=aud)), forge.realm.bundle)


def test_token_forwarding_to_another_audience(example_realm: Realm) -> None:
    """A receiver replaying a token it got to a third service (confused deputy) is refused."""
    key = example_realm.key(ORDERS)
    token = mint(key, kid_for(key.public_key()), ORDERS, BILLING, now=NOW)
    with pytest.raises(AudienceError):
        check(token, example_realm.bundle, audience=LEDGER)


@pytest.mark.parametrize(
    "exp",
    [str(NOW + 60), "9999999999", "Infinity", f"{NOW + 60}.0", float(NOW + 60), True, None, 10**20],
    ids=[
        "string",
        "string_far",
        "string_infinity",
        "string_float",
        "float",
        "bool",
        "null",
        "huge",
    ],
)
def test_exp_as_string_bypass(forge: Forge, exp: Any) -> None:
    """``exp`` type confusion: a string (compared as text, or parsed leniently), bool, float.

    Verifiers that skip a non-numeric ``exp``, or compare it as text, accept a
    token forever.  Only JSON integers count (PROFILE.md: NumericDate).
    """
    with pytest.raises(ClaimsError):
        check(forge.token(claims=forge.claims(exp=exp)), forge.realm.bundle)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
@pytest.mark.parametrize("value", ["0", 0.5, False, [NOW], {}])
def test_time_claim_type_confusion(forge: Forge, claim: str, value: Any) -> None:
    """The same for ``iat``/``nbf``: a wrong type is an error, never a skipped check."""
    with pytest.raises(ClaimsError):
        check(forge.token(claims=forge.claims(**{claim: value})), forge.realm.bundle)


@pytest.mark.parametrize(
    ("r", "s"),
    [(0, 0), (P256_N, P256_N), (0, 1), (1, 0), (P256_N, 1), (1, P256_N), (2**256 - 1, 2**256 - 1)],
    ids=["zero_zero", "n_n", "zero_one", "one_zero", "n_one", "one_n", "max_max"],
)
def test_psychic_signatures_cve_2022_21449(forge: Forge, r: int, s: int) -> None:
    """CVE-2022-21449 (Java 15-18 ECDSA): r = s = 0 verified for every message and key.

    Also the values that reduce to 0 mod n and out-of-range values.
    """
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    token = forge.token(signer=lambda data: signature)
    with pytest.raises(SignatureError):
        check(token, forge.realm.bundle)


def test_base64_padding_and_non_canonical_malleability(forge: Forge) -> None:
    """Base64 malleability: one signed token, many spellings (padding, trailing bits, alphabet).

    Lenient decoders (Python's own ``base64`` included) map all of these to the
    same bytes, so a replay cache or a deny list keyed on the token text can be
    bypassed.  Only the canonical spelling verifies.  (ECDSA itself stays
    malleable: ``(r, n - s)`` is a second valid signature, as in every JWS
    ES256 verifier, so such caches must key on claims, never on token text.)
    """
    honest = forge.token()
    header, payload, signature = honest.split(".")
    assert len(signature) % 4 == 2  # 64 bytes in 86 characters: 4 unused trailing bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    bumped = signature[:-1] + alphabet[alphabet.index(signature[-1]) + 1]
    spellings = {
        "padded": f"{header}.{payload}.{signature}==",
        "non_canonical_trailing_bits": f"{header}.{payload}.{bumped}",
        "standard_alphabet": honest.replace("-", "+").replace("_", "/"),
    }
    assert check(honest, forge.realm.bundle) == SpiffeId(ORDERS)
    for spelling in spellings.values():
        if spelling == honest:
            continue  # No '-' or '_' in this token: that spelling does not exist.
        with pytest.raises(MalformedTokenError):
            check(spelling, forge.realm.bundle)


def test_oversize_dos(forge: Forge) -> None:
    """Resource exhaustion: a huge or deeply nested token is refused before it is parsed."""
    bundle = forge.realm.bundle
    for token in (
        "A" * (64 * 1024 * 1024),
        forge.token(raw_payload=b64(b"[" * 100_000)),
        forge.token(claims=forge.claims(pad="x" * 100_000)),
    ):
        with pytest.raises(TokenTooLargeError):
            check(token, bundle)


def test_huge_integer_parsing_cve_2020_10735(forge: Forge) -> None:
    """CVE-2020-10735: quadratic-time int() of long digit strings; refused by the parser."""
    claims = f'{{"sub":"{ORDERS}","aud":"{BILLING}","exp":{"9" * 5000}}}'
    with pytest.raises(MalformedTokenError):
        check(forge.token(raw_payload=b64(claims.encode())), forge.realm.bundle)


def test_json_serialization_polyglot_cve_2022_39227(forge: Forge) -> None:
    """CVE-2022-39227 (python-jwt): a JSON-serialized JWS smuggling a compact one.

    The vulnerable library checked one part of the polyglot and returned the
    claims of another.  Only the compact serialization is accepted here.
    """
    header, payload, signature = forge.token().split(".")
    forged_payload = b64json(forge.claims(sub=LEDGER))
    polyglot = (
        f'{{"  {header}.{forged_payload}.":"","protected":"{header}",'
        f'"payload":"{payload}","signature":"{signature}"}}'
    )
    with pytest.raises(MalformedTokenError):
        check(polyglot, forge.realm.bundle)


def test_jwe_jws_confusion(forge: Forge) -> None:
    """JWE/JWS confusion (e.g. ``alg: dir`` or an encrypted token where a signed one is due)."""
    header = b64json({"alg": "dir", "enc": "A128GCM", "kid": forge.realm.kid(ORDERS)})
    with pytest.raises(MalformedTokenError):
        check(f"{header}..AAAAAAAAAAAAAAAA.AAAA.AAAAAAAAAAAAAAAAAAAAAA", forge.realm.bundle)
    with pytest.raises(AlgorithmError):
        check(forge.token(header=forge.header(alg="dir", enc="A128GCM")), forge.realm.bundle)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["spiffile"], [], "exp"])
def test_crit_header_must_be_understood(forge: Forge, crit: Any) -> None:
    """RFC 7515 §4.1.11: a ``crit`` extension the verifier does not understand must fail."""
    with pytest.raises(HeaderError):
        check(forge.token(forge.header(crit=crit)), forge.realm.bundle)


def test_unencoded_payload_b64_false(forge: Forge) -> None:
    """RFC 7797 ``b64: false``: the signature covers the raw payload; not in this profile."""
    header = b64json(forge.header(b64=False, crit=["b64"]))
    payload = json.dumps(forge.claims(), separators=(",", ":"))
    signing_input = f"{header}.{payload}".encode()
    signature = b64(forge.es256()(signing_input))
    for token in (f"{header}.{payload}.{signature}", f"{header}..{signature}"):
        with pytest.raises(InvalidTokenError):
            check(token, forge.realm.bundle)
    with pytest.raises(HeaderError):
        check(compact(header, b64json(forge.claims()), forge.es256()), forge.realm.bundle)


@pytest.mark.parametrize(
    "payload",
    [
        '{{"sub":"{billing}","sub":"{orders}","aud":"{billing}","exp":{exp}}}',
        '{{"sub":"{orders}","aud":"{ledger}","aud":"{billing}","exp":{exp}}}',
        '{{"sub":"{orders}","aud":"{billing}","exp":"never","exp":{exp}}}',
    ],
    ids=["sub", "aud", "exp"],
)
def test_duplicate_member_parser_differential(forge: Forge, payload: str) -> None:
    """Duplicate JSON members: one parser takes the first, another the last (RFC 8259 §4)."""
    text = payload.format(billing=BILLING, orders=ORDERS, ledger=LEDGER, exp=NOW + 60)
    with pytest.raises(MalformedTokenError):
        check(forge.token(raw_payload=b64(text.encode())), forge.realm.bundle)


def test_invalid_curve_key_in_the_bundle() -> None:
    """Invalid-curve attacks on JOSE libraries (A. Sanso, 2017): a JWK point off the curve.

    Such a key must never be used; its entry is skipped (with a warning), never trusted.
    """
    realm = make_realm({ORDERS: 1, BILLING: 1})
    good = public_jwk(realm.key(ORDERS).public_key())
    off_curve = dict(good, y=good["x"])
    document = json.loads(realm.bundle.to_json())
    document["identities"][ORDERS] = {"keys": [off_curve]}
    bundle = Bundle.parse(json.dumps(document))
    with pytest.raises(UnknownIdentityError):
        check(Forge(realm).token(), bundle)
    assert any("curve" in warning for warning in bundle.warnings)


@pytest.mark.parametrize(
    "subject",
    [
        sid("orders", "evil.org"),
        sid("orders", "example.org.evil.org"),
        "spiffe://example.org.evil/orders",
    ],
    ids=["other_domain", "suffix_domain", "prefix_domain"],
)
def test_cross_trust_domain_subject(forge: Forge, subject: str) -> None:
    """A ``sub`` in another trust domain (even one whose name starts with ours) is unknown."""
    token = forge.token(claims=forge.claims(sub=subject))
    with pytest.raises(UnknownIdentityError):
        check(token, forge.realm.bundle)


@pytest.mark.parametrize(
    "subject",
    [
        "spiffe://example.org/\u212arders",
        "spiffe://example.org/\uff4frders",
        "spiffe://example.org/orders\u200b",
    ],
    ids=["kelvin_sign", "fullwidth", "zero_width_space"],
)
def test_unicode_lookalike_subject(forge: Forge, subject: str) -> None:
    """Unicode look-alikes and invisible characters never normalize into a real identity."""
    with pytest.raises(ClaimsError):
        check(forge.token(claims=forge.claims(sub=subject)), forge.realm.bundle)


def test_typ_confusion(forge: Forge) -> None:
    """Cross-JWT confusion (RFC 8725 §3.11): only ``typ`` JWT or JOSE, as JWT-SVID requires."""
    for typ in ("at+jwt", "secevent+jwt", "dpop+jwt", "JWS"):
        with pytest.raises(HeaderError):
            check(forge.token(forge.header(typ=typ)), forge.realm.bundle)
    assert check(forge.token(forge.header(typ=DROP)), forge.realm.bundle) == SpiffeId(ORDERS)


@pytest.mark.parametrize(
    "key_format",
    [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL],
    ids=["pkcs8", "sec1"],
)
def test_private_key_given_as_identity_file_is_not_quoted(
    tmp_path: Any, key_format: serialization.PrivateFormat
) -> None:
    """Information exposure (CWE-209): swapped SPIFFILE_ID_FILE / SPIFFILE_KEY_FILE.

    The identity file's content went into the error (80 characters): 3 bytes
    of a PKCS#8 key's private scalar, 29 of a SEC1 key's 32, which leaves
    2^24 guesses.  Errors name the file and never quote what is not an ID.
    """
    from spiffile.errors import InvalidSpiffeIdError
    from spiffile.identity import Identity

    key = generate_private_key()
    pem = key.private_bytes(serialization.Encoding.PEM, key_format, serialization.NoEncryption())
    (tmp_path / "key.pem").write_bytes(pem)
    bundle = Bundle.empty("example.org").with_keys(ORDERS, [public_jwk(key.public_key())])
    (tmp_path / "bundle.json").write_bytes(bundle.to_json())
    env = {"SPIFFILE_DIR": str(tmp_path), "SPIFFILE_ID_FILE": str(tmp_path / "key.pem")}
    with pytest.raises(InvalidSpiffeIdError) as caught:
        Identity.from_env(env)
    shown = "".join(str(exc) for exc in (caught.value, caught.value.__cause__) if exc)
    body = b"".join(pem.splitlines()[1:-1]).decode()
    assert not [i for i in range(len(body) - 8) if body[i : i + 8] in shown], shown
    assert str(tmp_path / "key.pem") in str(caught.value)
    # An identity file that does hold a (wrong) ID is still quoted, to help.
    (tmp_path / "id").write_text("spiffe://Example.org/orders\n")
    with pytest.raises(InvalidSpiffeIdError, match=r"Example\.org"):
        Identity.from_dir(tmp_path)


@pytest.mark.parametrize("option", ["now", "leeway", "max_lifetime"])
def test_time_checks_fail_closed_on_nan(forge: Forge, option: str) -> None:
    """Fail-open comparison (CWE-1025 / CWE-697): NaN compares false with everything.

    Written as "reject if exp <= now - leeway", a NaN ``now``, ``leeway`` or
    ``max_lifetime`` (a config value parsed with float(), a broken clock)
    switched the expiry, not-before and lifetime checks off: a token expired
    for a year verified.  The checks now accept only what passes them.
    """
    stale = forge.claims(iat=NOW - 400 * 86400, exp=NOW - 365 * 86400)
    future = forge.claims(nbf=NOW + 86400, iat=NOW + 86400, exp=NOW + 2 * 86400)
    eternal = forge.claims(exp=253402300799)
    for claims in (stale, future, eternal):
        with pytest.raises(InvalidTokenError):
            check(forge.token(claims=claims), forge.realm.bundle, **{option: float("nan")})


@pytest.mark.parametrize("member", ["\x1b[2J\x1b[31mFORGED", "x\nERROR fake log line"])
def test_spiffe_trust_header_member_names_are_quoted(member: str) -> None:
    """Log injection (CWE-117): header member names under SPIFFE-bundle trust.

    The JWT-SVID-standard header check listed unknown member names as sent,
    so a token could put terminal escapes or a forged line into the
    verifier's logs.  They go through repr now, as on the profile's path.
    """
    from spiffeforge import SpiffeRealm

    from spiffile.bundle.spiffe import SpiffeBundle

    realm = SpiffeRealm()
    bundle = SpiffeBundle.parse(realm.jwks_bytes(), realm.trust_domain)
    token = realm.token(header={member: 1})
    with pytest.raises(HeaderError) as caught:
        verify(token, bundle, audience="spiffe://example.org/billing", now=NOW)
    message = str(caught.value)
    assert "\x1b" not in message and "\n" not in message
    assert repr(member[:20]) in message


@pytest.mark.parametrize(
    "extra",
    [
        {"f": [1.5e-7] * 600},
        {"note": "a:b", "f": [1.5e-7] * 600},
        {"n": int("9" * 4000)},
        {"x": float("1.2345678901234567e-300"), "y": "9" * 4000},
    ],
    ids=["floats", "floats-colon", "long-integer", "long-number-text"],
)
def test_costly_payload_refused_or_parsed_once(forge: Forge, extra: dict[str, Any]) -> None:
    """Denial of service by JSON conversion cost (CWE-400, as CPython's CVE-2020-10735).

    An 8 KiB payload of a thousand floats, or one 4000-digit integer, cost
    several ECDSA verifications to convert, and a rejection parsed the token
    a second time to explain itself.  The values are now counted before
    parsing (at most 64 ``,``), a number's text is at most 24 characters,
    and a rejection is explained from the one parse.  A long string is not a
    number and stays accepted.
    """
    claims = forge.claims(**extra)
    token = forge.token(claims=claims)
    if "y" in extra:
        caller = verify(token, forge.realm.bundle, audience=BILLING, now=NOW)
        assert caller.claims["y"] == extra["y"]
        return
    with pytest.raises(MalformedTokenError) as info:
        check(token, forge.realm.bundle)
    # The explanation is what the one parse read: a refused payload claims nothing.
    assert info.value.subject is None and info.value.kid == forge.realm.kid(ORDERS)


def test_verified_token_cache_shares_nested_claims(tmp_path: Path) -> None:
    """A handler that edited a list or object inside ``caller.claims`` changed what the
    next request presenting the same token saw (the verified-token cache copied the
    claims one level deep), e.g. a scope appended by one request reached the next."""
    root = init_root(tmp_path / "identity", trust_domain="example.org")
    add_service(root, "orders")
    add_service(root, "billing")
    with load_identity(root, "orders") as orders, load_identity(root, "billing") as billing:
        token = orders.token(
            audience=str(billing.id), claims={"scope": ["read"], "meta": {"tier": 1}}
        )
        first = billing.verify(token)
        first.claims["scope"].append("admin")
        first.claims["meta"]["tier"] = 0
        second = billing.verify(token)  # Served from the cache.
        second.claims["scope"].append("write")
        third = billing.verify(token)
    for caller in (second, third):
        assert caller.claims["meta"] == {"tier": 1}
    assert third.claims["scope"] == ["read"]
