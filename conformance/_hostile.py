"""The hostile token vectors: every case a verifier must reject, built by hand.

Each token breaks one rule (its ``reason``, named after spiffile's error
codes) and is otherwise a token billing would accept: signed by a key bound to
its ``sub``, for billing, inside its lifetime at the fixed ``now``.  Where a
case cannot avoid breaking two rules (an unsigned ``alg: none`` token also has
an empty signature segment), the reason is the earlier rule in the check order
of PROFILE.md.  Runners compare only the outcome (``invalid_token`` or
``unknown_identity``); the reason is for people and for our own tests.

``level`` says where the rule comes from: ``v0`` for the wire facts all
implementations of profile v0 share, ``spiffile`` for the clarifications of our
PROFILE.md (header allow-list, canonical base64url, integer NumericDates,
size and lifetime caps).
"""

from __future__ import annotations

from typing import Any

from conformance import _jose
from conformance._forge import DROP, Forge
from conformance._shapes import (
    MAX_TOKEN_CHARS,
    nested,
    noncanonical,
    odd_length_json,
    padded,
    sized,
    stranger_certificate,
)

__all__ = ["invalid_vectors"]


class _Cases:
    """Collects vectors; one method call per hostile case."""

    def __init__(self, f: Forge) -> None:
        self.f = f
        self.vectors: list[dict[str, Any]] = []

    def add(
        self,
        vid: str,
        description: str,
        token: object,
        *,
        reason: str,
        level: str = "v0",
        error: str = "invalid_token",
        also: tuple[str, ...] = (),
        **verify: Any,
    ) -> None:
        expected: dict[str, Any] = {"ok": False, "error": error}
        if also:
            expected["also_accepted"] = list(also)
        self.vectors.append(
            {
                "id": vid,
                "description": description,
                "level": level,
                "reason": reason,
                "token": token,
                "verify": self.f.verify_params(**verify),
                "expected": expected,
            }
        )


def invalid_vectors(f: Forge) -> list[dict[str, Any]]:
    """All hostile token vectors, in a stable order."""
    cases = _Cases(f)
    _structure(cases)
    _encoding(cases)
    _algorithms(cases)
    _header_members(cases)
    _keys_and_signatures(cases)
    _audience(cases)
    _times(cases)
    _subjects(cases)
    return cases.vectors


def _structure(c: _Cases) -> None:
    f = c.f
    good = f.token()
    h, p, s = good.split(".")
    c.add("empty-string", "The empty string.", "", reason="malformed")
    c.add("garbage", "Plain text, no segments.", "not a token", reason="malformed")
    for name, value in [
        ("null", None),
        ("number", 12345),
        ("bool", True),
        ("array", [h, p, s]),
        ("object", {"token": good}),
    ]:
        c.add(
            f"non-string-{name}",
            f"A JSON {name} where the token string belongs (the API must not crash).",
            value,
            reason="malformed",
            level="spiffile",
        )
    c.add("one-segment", "Header only.", h, reason="malformed")
    c.add(
        "two-segments", "Header and payload, no signature segment.", f"{h}.{p}", reason="malformed"
    )
    c.add(
        "four-segments", "A fourth segment after a valid token.", f"{good}.{s}", reason="malformed"
    )
    c.add(
        "five-segments-jwe-shape", "JWE compact shape.", f"{h}.{p}.{s}.{s}.{s}", reason="malformed"
    )
    c.add("trailing-dot", "A valid token followed by '.'.", f"{good}.", reason="malformed")
    c.add("empty-signature", "Signature segment empty.", f"{h}.{p}.", reason="malformed")
    c.add("empty-payload", "Payload segment empty.", f"{h}..{s}", reason="malformed")
    c.add("dots-only", "Two dots.", "..", reason="malformed")
    for name, data in [
        ("header-not-json", b"not json"),
        ("header-json-array", b'["ES256"]'),
        ("header-json-string", b'"ES256"'),
        ("header-json-null", b"null"),
        ("header-invalid-utf8", b'{"alg":"ES256","kid":"\xff","typ":"JWT"}'),
        ("header-trailing-data", _jose.dumps(f.header()) + b"{}"),
    ]:
        c.add(name, f"Header bytes {data[:24]!r}..., signed.", f.token(data), reason="malformed")
    body = _jose.dumps(f.claims())
    for name, data in [
        ("payload-not-json", b"not json"),
        ("payload-json-array", b'["spiffe://example.org/orders"]'),
        ("payload-json-string", b'"spiffe://example.org/orders"'),
        ("payload-json-number", b"1750000060"),
        ("payload-json-null", b"null"),
        ("payload-json-true", b"true"),
        ("payload-invalid-utf8", body[:-1] + b',"x":"\xff\xfe"}'),
        ("payload-utf8-bom", b"\xef\xbb\xbf" + body),
        ("payload-nan", body[:-1] + b',"x":NaN}'),
        ("payload-trailing-data", body + b"[]"),
        ("payload-truncated-json", body[:-1]),
    ]:
        # Strict JSON (RFC 8259: no NaN, no byte order mark) is a spiffile clarification.
        c.add(
            name,
            f"Payload bytes {data[:24]!r}..., signed.",
            f.token(None, data),
            reason="malformed",
            level="spiffile" if name in ("payload-nan", "payload-utf8-bom") else "v0",
        )
    kid = f.kid("orders-1").encode("ascii")
    orders, billing = f.sid("orders").encode(), f.sid("billing").encode()
    now = str(f.now).encode()
    tail = b',"iat":' + now + b',"exp":' + str(f.now + 60).encode() + b"}"
    duplicates: list[tuple[str, bytes | None, bytes | None]] = [
        (
            "header-duplicate-alg",
            b'{"alg":"none","alg":"ES256","kid":"' + kid + b'","typ":"JWT"}',
            None,
        ),
        (
            "header-duplicate-kid",
            b'{"alg":"ES256","kid":"'
            + f.kid("billing").encode()
            + b'","kid":"'
            + kid
            + b'","typ":"JWT"}',
            None,
        ),
        (
            "payload-duplicate-sub",
            None,
            b'{"sub":"' + billing + b'","sub":"' + orders + b'","aud":"' + billing + b'"' + tail,
        ),
        (
            "payload-duplicate-aud",
            None,
            b'{"sub":"'
            + orders
            + b'","aud":"spiffe://example.org/other","aud":"'
            + billing
            + b'"'
            + tail,
        ),
        (
            "payload-duplicate-exp",
            None,
            b'{"sub":"'
            + orders
            + b'","aud":"'
            + billing
            + b'","exp":'
            + str(f.now - 1000).encode()
            + tail,
        ),
    ]
    for name, header_bytes, payload_bytes in duplicates:
        c.add(
            name,
            "A JSON member twice (parsers disagree on which one wins: first, last, or error); "
            "signed by orders so that a last-wins parser sees a valid token.",
            f.token(header_bytes, payload_bytes),
            reason="malformed",
            level="spiffile",
        )
    depth = 2500
    c.add(
        "payload-deeply-nested",
        f"A claim nested {depth} arrays deep (under the size cap): no stack exhaustion.",
        f.token(None, nested(f, depth)),
        reason="malformed",
        level="spiffile",
    )
    header_nested = _jose.dumps(f.header())[:-1] + b',"x":' + b"[" * depth + b"]" * depth + b"}"
    c.add(
        "header-deeply-nested",
        f"A header member nested {depth} arrays deep.",
        f.token(header_nested),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "payload-65-openers",
        "A flat claim holding 64 empty arrays: 65 '[' and '{' in the payload, one over "
        "the cap of 64 that bounds nesting (and its cost) before parsing.",
        f.token(None, f.claims(x=[[] for _ in range(63)])),
        reason="malformed",
        level="spiffile",
    )
    for length in (MAX_TOKEN_CHARS + 1, 4 * MAX_TOKEN_CHARS):
        c.add(
            f"oversize-{length}",
            f"A validly signed token of {length} characters: over the {MAX_TOKEN_CHARS} cap, "
            "rejected before decoding.",
            sized(f, length),
            reason="too_large",
            level="spiffile",
        )


def _encoding(c: _Cases) -> None:
    f = c.f
    good = f.token()
    for name, token in [
        ("trailing-space", good + " "),
        ("trailing-newline", good + "\n"),
        ("trailing-crlf", good + "\r\n"),
        ("leading-space", " " + good),
        ("inner-space", good.replace(".", ". ", 1)),
        ("trailing-nul", good + "\x00"),
    ]:
        c.add(f"whitespace-{name}", f"A valid token with {name}.", token, reason="malformed")
    h, p, s = good.split(".")
    for name, token in [
        ("e-acute-in-payload", f"{h}.{p[:10]}\u00e9{p[11:]}.{s}"),
        ("fullwidth-letter", f"{h}.{p}.{s[:-1]}\uff21"),
        ("zero-width-space", f"{h}\u200b.{p}.{s}"),
    ]:
        c.add(
            f"non-ascii-{name}",
            f"Non-ASCII character ({name}) inside the compact form.",
            token,
            reason="malformed",
        )
    odd_header = odd_length_json(f.header())
    odd_claims = odd_length_json(f.claims())
    c.add(
        "padded-signature",
        "Signature segment with '==' padding (JWS base64url has none).",
        f.token(signature_text=padded),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "padded-header",
        "Header segment padded; the signature covers the padded text.",
        f.token(odd_header, header_text=padded),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "padded-payload",
        "Payload segment padded; the signature covers the padded text.",
        f.token(None, odd_claims, payload_text=padded),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "noncanonical-signature",
        "Signature segment whose last character has non-zero unused bits: the same bytes "
        "to a lenient decoder, so only the canonical-encoding rule rejects it.",
        f.token(signature_text=noncanonical),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "noncanonical-header",
        "Header segment with non-zero unused bits, signed as shown.",
        f.token(odd_header, header_text=noncanonical),
        reason="malformed",
        level="spiffile",
    )
    c.add(
        "noncanonical-payload",
        "Payload segment with non-zero unused bits, signed as shown.",
        f.token(None, odd_claims, payload_text=noncanonical),
        reason="malformed",
        level="spiffile",
    )
    std = f.token(signature_text=lambda t: t.replace("-", "+").replace("_", "/"))
    if std == good:
        raise ValueError("signature has no '-' or '_' to turn into standard base64")
    c.add(
        "standard-base64-alphabet",
        "Signature in the standard base64 alphabet ('+', '/') instead of base64url.",
        std,
        reason="malformed",
    )
    c.add(
        "invalid-base64-character",
        "A '*' inside the payload segment.",
        f"{h}.{p[:5]}*{p[6:]}.{s}",
        reason="malformed",
    )
    c.add(
        "impossible-base64-length",
        "A payload segment of length 4n+1, which no byte string encodes to.",
        f.token(payload_text=lambda t: t + "A" * ((1 - len(t)) % 4)),
        reason="malformed",
    )
    for name, sig in [
        ("signature-63-bytes", lambda raw: raw[:63]),
        ("signature-65-bytes", lambda raw: raw + b"\x00"),
        ("signature-32-bytes", lambda raw: raw[:32]),
        ("signature-128-bytes", lambda raw: raw + raw),
    ]:
        c.add(
            name,
            "A signature that is not 64 bytes (r||s).",
            f.token(signature=sig),
            reason="malformed",
        )
    der = f.token(signer=lambda data: _jose.sign_ecdsa_der(f.p256["orders-1"], data))
    c.add(
        "signature-der-encoded",
        "A valid ECDSA signature by orders' key, but ASN.1 DER-encoded instead of raw r||s.",
        der,
        reason="malformed",
    )
    c.add(
        "signature-p384-96-bytes",
        "alg ES256, but a 96-byte P-384 signature.",
        f.token(signer=f.es384()),
        reason="malformed",
    )


def _algorithms(c: _Cases) -> None:
    f = c.f
    claims = f.claims()
    none = {"alg": "none", "typ": "JWT"}
    c.add(
        "alg-none-unsigned",
        "alg none, empty signature segment.",
        f.token(none, claims, signer=lambda data: b""),
        reason="malformed",
    )
    for name, alg in [("none", "none"), ("None", "None"), ("NONE", "NONE")]:
        c.add(
            f"alg-{name}-with-signature",
            f"alg {alg!r} with kid, carrying a valid ES256 signature by orders.",
            f.token(f.header(alg=alg), claims),
            reason="algorithm",
        )
    for name, alg in [
        ("missing", DROP),
        ("null", None),
        ("empty", ""),
        ("lowercase", "es256"),
        ("trailing-space", "ES256 "),
        ("array", ["ES256"]),
        ("number", 256),
    ]:
        c.add(
            f"alg-{name}",
            f"alg {name}, otherwise a valid ES256 token by orders.",
            f.token(f.header(alg=alg), claims),
            reason="algorithm",
        )
    orders = f.p256["orders-1"]
    secrets = [
        ("spki-pem", _jose.public_spki_pem(orders)),
        ("jwk-json", _jose.dumps(f.jwks["orders-1"])),
        ("x-coordinate", f.jwks["orders-1"]["x"].encode("ascii")),
        ("raw-point", orders.public_key().public_bytes(*_uncompressed())),
    ]
    for name, secret in secrets:
        c.add(
            f"alg-hs256-keyed-with-public-{name}",
            f"HS256 whose HMAC key is orders' public key ({name}): the algorithm-confusion attack.",
            f.token(f.header(alg="HS256"), claims, signer=f.hs256(secret)),
            reason="algorithm",
        )
    p384_kid = _jose.ec_jwk(f.p384)["kid"]
    c.add(
        "alg-es384-p384-key",
        "ES384 signed with a P-384 key (its own kid).",
        f.token(f.header(alg="ES384", kid=p384_kid), claims, signer=f.es384()),
        reason="algorithm",
    )
    c.add(
        "alg-es384-header-es256-signature",
        "Header says ES384, the signature is a valid ES256 one by orders: "
        "alg is checked, not ignored.",
        f.token(f.header(alg="ES384"), claims),
        reason="algorithm",
    )
    c.add(
        "alg-es512-header-es256-signature",
        "Header says ES512 over a valid ES256 signature by orders.",
        f.token(f.header(alg="ES512"), claims),
        reason="algorithm",
    )
    rsa_kid = _jose.rsa_jwk(f.rsa)["kid"]
    c.add(
        "alg-rs256-rsa-key",
        "RS256 signed with an RSA-2048 key (its own kid).",
        f.token(f.header(alg="RS256", kid=rsa_kid), claims, signer=f.rs256()),
        reason="algorithm",
    )
    c.add(
        "alg-rs256-orders-kid",
        "RS256 signed with an RSA key, claiming orders' kid.",
        f.token(f.header(alg="RS256"), claims, signer=f.rs256()),
        reason="algorithm",
    )
    c.add(
        "alg-eddsa",
        "EdDSA header over a valid ES256 signature by orders (64 bytes, like an Ed25519 one).",
        f.token(f.header(alg="EdDSA"), claims),
        reason="algorithm",
    )
    c.add(
        "alg-ps256",
        "PS256 header over an RS256 signature.",
        f.token(f.header(alg="PS256", kid=rsa_kid), claims, signer=f.rs256()),
        reason="algorithm",
    )


def _uncompressed() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint


def _header_members(c: _Cases) -> None:
    f = c.f
    claims = f.claims()
    stranger = f.es256("stranger")
    stranger_jwk = f.jwks["stranger"]
    certificate = stranger_certificate(f)
    embedded: list[tuple[str, str, Any]] = [
        ("jwk", "jwk", stranger_jwk),
        ("jku", "jku", "https://attacker.invalid/jwks.json"),
        ("x5u", "x5u", "https://attacker.invalid/cert.pem"),
        ("x5c", "x5c", [certificate]),
    ]
    for name, member, value in embedded:
        c.add(
            f"header-{name}-stranger-signed",
            f"Embedded {member} naming the attacker's key, signed by that unbound key "
            "(kid of the stranger): a verifier must only trust keys bound in the bundle.",
            f.token(f.header("stranger", **{member: value}), claims, signer=stranger),
            reason="header",
        )
        c.add(
            f"header-{name}-bound-signed",
            f"Embedded {member}, otherwise a valid token signed by orders: only the header "
            "allow-list (alg, kid, typ) rejects it.",
            f.token(f.header(**{member: value}), claims),
            reason="header",
            level="spiffile",
        )
    extras: list[tuple[str, dict[str, Any]]] = [
        ("crit-exp", {"crit": ["exp"]}),
        ("crit-unknown-extension", {"crit": ["urn:example:x"], "urn:example:x": 1}),
        ("crit-empty", {"crit": []}),
        ("b64-false-crit", {"b64": False, "crit": ["b64"]}),
        ("b64-true", {"b64": True}),
        ("cty", {"cty": "JWT"}),
        ("zip", {"zip": "DEF"}),
        ("x5t-s256", {"x5t#S256": _jose.b64url(b"\x00" * 32)}),
        ("enc", {"enc": "A256GCM"}),
        ("extra-member", {"foo": "bar"}),
        ("iss-in-header", {"iss": f.sid("orders")}),
        ("nonce-null", {"nonce": None}),
    ]
    for name, members in extras:
        c.add(
            f"header-{name}",
            f"Header with {sorted(members)}, otherwise a valid token signed by orders.",
            f.token(f.header(**members), claims),
            reason="header",
            level="spiffile",
        )
    for name, typ in [
        ("jws", "JWS"),
        ("lowercase-jwt", "jwt"),
        ("at-jwt", "at+jwt"),
        ("application-jwt", "application/jwt"),
        ("empty", ""),
        ("trailing-space", "JWT "),
        ("number", 1),
        ("null", None),
    ]:
        c.add(
            f"typ-{name}",
            f"typ {typ!r}: the JWT-SVID standard allows only JWT or JOSE.",
            f.token(f.header(typ=typ), claims),
            reason="header",
            level="spiffile",
        )
    for name, kid in [
        ("missing", DROP),
        ("empty", ""),
        ("null", None),
        ("number", 7),
        ("array", [f.kid("orders-1")]),
    ]:
        c.add(
            f"kid-{name}",
            f"kid {name}, otherwise a valid token signed by orders.",
            f.token(f.header(kid=kid), claims),
            reason="header",
            level="spiffile",
        )


def _keys_and_signatures(c: _Cases) -> None:
    f = c.f
    claims = f.claims()
    c.add(
        "kid-of-other-identity-signed-by-it",
        "sub orders, but kid and signature of billing's key: billing impersonating orders. "
        "A key may only vouch for the identity it is bound to.",
        f.token(f.header("billing"), claims, signer=f.es256("billing")),
        reason="signature",
    )
    c.add(
        "signature-by-other-bound-identity",
        "sub orders and orders' kid, signed by billing's key.",
        f.token(f.header("orders-1"), claims, signer=f.es256("billing")),
        reason="signature",
    )
    c.add(
        "signature-by-unbound-key-orders-kid",
        "sub orders and orders' kid, signed by a key bound to nobody.",
        f.token(f.header("orders-1"), claims, signer=f.es256("stranger")),
        reason="signature",
    )
    c.add(
        "signature-by-unbound-key-own-kid",
        "sub orders, signed by a key bound to nobody, with that key's kid.",
        f.token(f.header("stranger"), claims, signer=f.es256("stranger")),
        reason="signature",
    )
    c.add(
        "kid-names-other-key-of-same-identity",
        "sub orders, kid of orders-1, signed by orders-2: the key the kid names must verify.",
        f.token(f.header("orders-1"), claims, signer=f.es256("orders-2")),
        reason="signature",
        level="spiffile",
    )
    ledger = f.claims(sub=f.sid("ledger"))
    c.add(
        "kid-unknown-three-bound-keys",
        "sub ledger (three bound keys), unknown kid, signed by ledger-3: with more than two "
        "bound keys the verifier does not try them all (a hostile token costs at most two "
        "signature checks).",
        f.token(f.header("ledger-3", kid="not-a-bound-kid"), ledger, signer=f.es256("ledger-3")),
        reason="signature",
        level="spiffile",
    )
    good = f.token()
    h, p, s = good.split(".")
    tampered_claims = _jose.b64url(_jose.dumps(f.claims(exp=f.now + 3000)))
    c.add(
        "tampered-payload",
        "Payload changed after signing (exp extended).",
        f"{h}.{tampered_claims}.{s}",
        reason="signature",
    )
    tampered_header = _jose.b64url(_jose.dumps(f.header(typ="JOSE")))
    c.add(
        "tampered-header",
        "Header changed after signing (typ JWT -> JOSE).",
        f"{tampered_header}.{p}.{s}",
        reason="signature",
    )
    c.add(
        "signature-bit-flip",
        "One bit of the signature flipped.",
        f.token(signature=lambda raw: raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]),
        reason="signature",
    )
    c.add(
        "signature-zeros",
        "64 zero bytes (r = s = 0).",
        f.token(signature=lambda raw: bytes(64)),
        reason="signature",
    )
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    c.add(
        "signature-r-equals-order",
        "r = n (the P-256 group order), s = 1: out of range.",
        f.token(signature=lambda raw: order.to_bytes(32, "big") + (1).to_bytes(32, "big")),
        reason="signature",
    )
    c.add(
        "signature-all-ones",
        "r = s = 2^256 - 1: larger than the group order.",
        f.token(signature=lambda raw: b"\xff" * 64),
        reason="signature",
    )
    c.add(
        "signature-of-other-token",
        "The signature of the reference token pasted onto a token with other claims.",
        f"{h}.{_jose.b64url(_jose.dumps(f.claims(iat=f.now + 1)))}.{s}",
        reason="signature",
    )


def _audience(c: _Cases) -> None:
    f = c.f
    billing = f.sid("billing")
    for name, aud, reason in [
        ("array-with-us", [billing], "audience"),
        ("array-us-and-other", [billing, f.sid("other")], "audience"),
        ("array-empty", [], "audience"),
        ("missing", DROP, "audience"),
        ("null", None, "audience"),
        ("number", 1, "audience"),
        ("object", {"aud": billing}, "audience"),
        ("empty-string", "", "audience"),
        ("other-service", f.sid("team-a/audit.v2"), "audience"),
        ("case-differs", "spiffe://example.org/Billing", "audience"),
        ("trailing-slash", billing + "/", "audience"),
        ("prefix", "spiffe://example.org/bill", "audience"),
        ("extension", billing + "ing", "audience"),
    ]:
        c.add(
            f"aud-{name}",
            f"aud {name}; billing verifies (aud must be ONE string equal to the audience).",
            f.token(None, f.claims(aud=aud)),
            reason=reason,
        )
    c.add(
        "aud-for-billing-verified-by-orders",
        "A valid token for billing presented to orders.",
        f.token(),
        reason="audience",
        audience=f.sid("orders"),
    )


def _times(c: _Cases) -> None:
    f = c.f
    now = f.now
    lifted: dict[str, Any] = {"max_lifetime": None}
    cases: list[tuple[str, dict[str, Any], str, str, dict[str, Any]]] = [
        ("exp-missing", {"exp": DROP}, "claims", "v0", {}),
        ("exp-expired", {"iat": now - 120, "exp": now - 60}, "expired", "v0", {}),
        ("exp-at-leeway-boundary", {"exp": now - 30}, "expired", "spiffile", {}),
        ("exp-zero", {"iat": DROP, "exp": 0}, "expired", "v0", {}),
        ("exp-string", {"exp": str(now + 60)}, "claims", "spiffile", {}),
        ("exp-float", {"exp": now + 60.5}, "claims", "spiffile", {}),
        ("exp-float-integral", {"exp": float(now + 60)}, "claims", "spiffile", {}),
        ("exp-bool", {"exp": True}, "claims", "spiffile", {}),
        ("exp-null", {"exp": None}, "claims", "spiffile", {}),
        ("exp-array", {"exp": [now + 60]}, "claims", "spiffile", {}),
        ("exp-object", {"exp": {"t": now + 60}}, "claims", "spiffile", {}),
        ("exp-negative", {"iat": DROP, "exp": -1}, "claims", "spiffile", {}),
        ("exp-huge", {"exp": 10**20}, "claims", "spiffile", lifted),
        ("exp-beyond-9999", {"exp": 253402300800}, "claims", "spiffile", lifted),
        ("exp-beyond-uint64", {"exp": 2**64 + 1}, "claims", "spiffile", lifted),
        ("exp-leeway-zero", {"exp": now - 5}, "expired", "v0", {"leeway": 0}),
        ("iat-future", {"iat": now + 31}, "not_yet_valid", "v0", {}),
        ("iat-far-future", {"iat": now + 86400, "exp": now + 86460}, "not_yet_valid", "v0", lifted),
        ("iat-string", {"iat": str(now)}, "claims", "spiffile", {}),
        ("iat-float", {"iat": now + 0.5}, "claims", "spiffile", {}),
        ("iat-bool", {"iat": False}, "claims", "spiffile", {}),
        ("iat-null", {"iat": None}, "claims", "spiffile", {}),
        ("iat-negative", {"iat": -1}, "claims", "spiffile", {}),
        ("nbf-future", {"nbf": now + 31}, "not_yet_valid", "v0", {}),
        ("nbf-string", {"nbf": str(now)}, "claims", "spiffile", {}),
        ("nbf-float", {"nbf": now - 0.5}, "claims", "spiffile", {}),
        ("nbf-bool", {"nbf": True}, "claims", "spiffile", {}),
        ("nbf-huge", {"nbf": 10**20}, "claims", "spiffile", {}),
        ("lifetime-until-2100-default-cap", {"exp": 4102444800}, "lifetime", "spiffile", {}),
        ("lifetime-just-over-cap", {"exp": now + 3631}, "lifetime", "spiffile", {}),
        ("lifetime-custom-cap", {"exp": now + 120}, "lifetime", "spiffile", {"max_lifetime": 60}),
    ]
    for name, changes, reason, level, extra in cases:
        c.add(
            name,
            f"Claims {_describe(changes)}; verified at now={now} "
            f"with {_describe(extra) or 'defaults'}.",
            f.token(None, f.claims(**changes)),
            reason=reason,
            level=level,
            **extra,
        )


def _describe(changes: dict[str, Any]) -> str:
    parts = []
    for name, value in changes.items():
        parts.append(f"{name} removed" if value is DROP else f"{name}={value!r}")
    return ", ".join(parts)


def _subjects(c: _Cases) -> None:
    f = c.f
    for name, sub in [
        ("missing", DROP),
        ("null", None),
        ("number", 42),
        ("array", [f.sid("orders")]),
        ("object", {"id": f.sid("orders")}),
        ("empty", ""),
        ("bare-name", "orders"),
        ("http-scheme", "http://example.org/orders"),
        ("trailing-slash", f.sid("orders") + "/"),
        ("uppercase-trust-domain", "spiffe://EXAMPLE.org/orders"),
        ("trailing-space", f.sid("orders") + " "),
        ("percent-encoded", "spiffe://example.org/%6Frders"),
        ("dot-dot-segment", "spiffe://example.org/x/../orders"),
        ("port", "spiffe://example.org:443/orders"),
        ("query", f.sid("orders") + "?admin=1"),
    ]:
        c.add(
            f"sub-{name}",
            f"sub {name}: not a SPIFFE ID string; signed by orders with orders' kid.",
            f.token(None, f.claims(sub=sub)),
            reason="claims",
        )
    c.add(
        "sub-other-trust-domain",
        "sub spiffe://other.org/orders, signed by orders: a valid SPIFFE ID that is not in the "
        "bundle (profile step 2: unknown identity); rejecting it as an invalid token is also safe.",
        f.token(None, f.claims(sub="spiffe://other.org/orders")),
        reason="unknown_identity",
        error="unknown_identity",
        also=("invalid_token",),
    )
    for name, sub, key in [
        ("unknown-stranger-signed", f.sid("ghost"), "stranger"),
        ("unknown-orders-signed", f.sid("ghost"), "orders-1"),
        ("trust-domain-only", "spiffe://example.org", "orders-1"),
        ("child-of-bound", f.sid("orders/admin"), "orders-1"),
        ("case-variant-of-bound", "spiffe://example.org/Orders", "orders-1"),
        ("prefix-of-bound", "spiffe://example.org/order", "orders-1"),
        ("parent-of-nested", f.sid("team-a"), "audit"),
    ]:
        c.add(
            f"sub-{name}",
            f"sub {sub} is a valid SPIFFE ID with no entry in the bundle (signed by {key}).",
            f.token(f.header(key), f.claims(sub=sub), signer=f.es256(key)),
            reason="unknown_identity",
            error="unknown_identity",
        )
