"""Identity entries a bundle reader must skip (or keep), one rule broken per entry."""

from __future__ import annotations

from typing import Any

from conformance import _jose
from conformance._forge import Forge

__all__ = ["broken_entries"]

Entry = tuple[str, str, str, Any, str, "list[str] | None"]


def _b64int(value: int, size: int) -> str:
    return _jose.b64url(value.to_bytes(size, "big"))


def broken_entries(f: Forge) -> list[Entry]:
    """(name, description, SPIFFE ID, entry, level, surviving kids or None when skipped).

    The stranger's key is used for the broken entries, so a reader that keeps
    one by mistake binds a key nobody else uses.
    """
    good = f.jwks["stranger"]

    def jwk(**changes: Any) -> dict[str, Any]:
        value: dict[str, Any] = dict(good)
        for name, member in changes.items():
            if member is None:
                value.pop(name, None)
            else:
                value[name] = member
        return value

    numbers = f.p256["stranger"].public_key().public_numbers()
    off_curve_y = _b64int((numbers.y + 1) % 2**256, 32)
    private_d = _b64int(f.p256["stranger"].private_numbers().private_value, 32)
    p384 = _jose.ec_jwk(f.p384)
    p384.update({"use": "jwt-svid", "alg": "ES256"})
    rsa = _jose.rsa_jwk(f.rsa)
    rsa.update({"use": "jwt-svid", "alg": "ES256"})
    skip: list[tuple[str, str, Any, str]] = [
        ("entry-not-object", "The entry is a bare list of JWKs.", [good], "v0"),
        ("entry-null", "The entry is null.", None, "v0"),
        ("entry-no-keys-member", "The entry has no 'keys'.", {}, "v0"),
        ("entry-keys-empty", "The entry's 'keys' is empty.", {"keys": []}, "v0"),
        ("entry-keys-object", "'keys' is one JWK, not a list.", {"keys": good}, "v0"),
        ("entry-keys-null", "'keys' is null.", {"keys": None}, "v0"),
        ("jwk-not-object", "A key is a string.", {"keys": ["stranger"]}, "spiffile"),
        ("jwk-kty-rsa", "An RSA key.", {"keys": [rsa]}, "spiffile"),
        ("jwk-crv-p384", "A P-384 key.", {"keys": [p384]}, "spiffile"),
        ("jwk-kty-missing", "No kty.", {"keys": [jwk(kty=None)]}, "spiffile"),
        ("jwk-x-not-base64url", "'x' is not base64url.", {"keys": [jwk(x="!!!!")]}, "spiffile"),
        ("jwk-x-padded", "'x' with '=' padding.", {"keys": [jwk(x=good["x"] + "=")]}, "spiffile"),
        (
            "jwk-x-31-bytes",
            "'x' is 31 bytes.",
            {"keys": [jwk(x=_jose.b64url(bytes(31)))]},
            "spiffile",
        ),
        ("jwk-y-missing", "No 'y'.", {"keys": [jwk(y=None)]}, "spiffile"),
        (
            "jwk-point-off-curve",
            "(x, y+1) is not on P-256.",
            {"keys": [jwk(y=off_curve_y)]},
            "spiffile",
        ),
        ("jwk-kid-missing", "No 'kid' (required).", {"keys": [jwk(kid=None)]}, "v0"),
        ("jwk-kid-empty", "'kid' is empty.", {"keys": [jwk(kid="")]}, "spiffile"),
        ("jwk-kid-number", "'kid' is a number.", {"keys": [jwk(kid=1)]}, "spiffile"),
        (
            "jwk-private-d",
            "A private key ('d'): bundles carry public keys only.",
            {"keys": [jwk(d=private_d)]},
            "spiffile",
        ),
        ("jwk-use-sig", "'use' is 'sig', not 'jwt-svid'.", {"keys": [jwk(use="sig")]}, "spiffile"),
        ("jwk-alg-es384", "'alg' is 'ES384'.", {"keys": [jwk(alg="ES384")]}, "spiffile"),
        (
            "jwk-duplicate-kid",
            "Two different keys with one kid.",
            {"keys": [good, dict(f.jwks["billing"], kid=good["kid"])]},
            "spiffile",
        ),
        (
            "one-good-one-bad-key",
            "A valid key next to an off-curve one: the whole entry is skipped.",
            {"keys": [good, jwk(y=off_curve_y, kid="second")]},
            "spiffile",
        ),
    ]
    entries: list[Entry] = []
    for name, description, entry, level in skip:
        sid = f.sid(f"broken-{name}")
        entries.append((name, description + " The entry is skipped.", sid, entry, level, None))
    for name, description, sid in [
        ("id-invalid", "An entry whose ID has '~'.", "spiffe://example.org/bad~path"),
        (
            "id-uppercase-trust-domain",
            "An entry whose ID is not a SPIFFE ID.",
            "spiffe://Example.org/x",
        ),
        ("id-trailing-slash", "An entry whose ID ends with '/'.", "spiffe://example.org/x/"),
        ("id-other-trust-domain", "An entry of another trust domain.", "spiffe://other.org/x"),
        ("id-not-spiffe", "An entry keyed by a bare name.", "orders"),
    ]:
        entries.append(
            (name, description + " The entry is skipped.", sid, {"keys": [good]}, "v0", None)
        )
    kept: list[tuple[str, str, Any, list[str]]] = [
        (
            "kid-not-thumbprint",
            "A kid that is not the RFC 7638 thumbprint is still a kid: kept.",
            {"keys": [jwk(kid="stranger-2025")]},
            ["stranger-2025"],
        ),
        (
            "entry-extra-member",
            "Unknown members of an entry are ignored: kept.",
            {"keys": [good], "comment": "added by hand"},
            [good["kid"]],
        ),
    ]
    for name, description, entry, kids in kept:
        entries.append((name, description, f.sid(f"kept-{name}"), entry, "v0", kids))
    return entries
