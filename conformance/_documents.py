"""Non-token vectors: keys and thumbprints, SPIFFE IDs, bundle documents, mint requests."""

from __future__ import annotations

import copy
import json
from typing import Any

from conformance._forge import Forge

__all__ = [
    "bundle_document",
    "bundle_vectors",
    "key_vectors",
    "mint_vectors",
    "spiffe_id_vectors",
]

# RFC 7638 §3.1: the RSA key of RFC 7517 appendix A.1 and its thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
        "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
        "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
        "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def bundle_document(f: Forge) -> dict[str, Any]:
    """The bundle every token vector is verified against."""
    identities = {
        sid: {"keys": [f.jwks[name] for name in names]}
        for sid, names in f.inputs["identities"].items()
    }
    return {"trust_domain": f.trust_domain, "spiffile_version": 1, "identities": identities}


def key_vectors(f: Forge) -> dict[str, Any]:
    """``thumbprint`` (PEM -> JWK + kid) and ``jwk-thumbprint`` vectors."""
    thumbprints: list[dict[str, Any]] = []
    for name in sorted(f.p256):
        thumbprints.append(
            {
                "id": f"key-{name}",
                "description": f"Pinned P-256 key {name}: the producer JWK and its RFC 7638 kid.",
                "level": "v0",
                "input": {"pem": f.pems[name]},
                "expected": {"ok": True, "jwk": f.jwks[name], "kid": f.jwks[name]["kid"]},
            }
        )
    hostile = f.inputs["hostile_keys"]
    p256_public = f.p256["orders-1"].public_key().public_bytes(*_spki()).decode("ascii")
    rejected = [
        ("rsa", "An RSA-2048 PKCS#8 key.", f.pems[hostile["rsa"]]),
        ("p384", "A P-384 PKCS#8 key.", f.pems[hostile["p384"]]),
        ("encrypted", "An encrypted PKCS#8 P-256 key.", f.pems[hostile["encrypted"]]),
        ("public-key", "A public key PEM, not a private key.", p256_public),
        ("empty", "Empty input.", ""),
        ("garbage", "Text that is not PEM.", "not a key\n"),
        ("truncated", "A pinned key cut in half.", f.pems["orders-1"][:120]),
    ]
    for name, description, pem in rejected:
        thumbprints.append(
            {
                "id": f"key-rejected-{name}",
                "description": description + " The profile's key file is unencrypted PKCS#8 P-256.",
                "level": "v0",
                "input": {"pem": pem},
                "expected": {"ok": False, "error": "invalid_key"},
            }
        )
    jwk_thumbprints = [
        {
            "id": "rfc7638-section-3.1",
            "description": "RFC 7638's own example (an RSA key): proves the canonical form. "
            "Profile v0 itself only needs EC P-256 thumbprints.",
            "level": "spiffile",
            "input": {"jwk": RFC7638_JWK},
            "expected": {"ok": True, "kid": RFC7638_THUMBPRINT},
        }
    ]
    for name in sorted(f.p256):
        reordered = dict(reversed(list(f.jwks[name].items())))
        jwk_thumbprints.append(
            {
                "id": f"jwk-{name}-members-reordered",
                "description": "Member order and extra members (kid, use, alg) do not change it.",
                "level": "v0",
                "input": {"jwk": reordered},
                "expected": {"ok": True, "kid": f.jwks[name]["kid"]},
            }
        )
    return {"thumbprint": thumbprints, "jwk_thumbprint": jwk_thumbprints}


def _spki() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo


def mint_vectors(f: Forge) -> list[dict[str, Any]]:
    """Mint requests and the exact header and claims the token must carry."""
    vectors = []
    for key, sender, receiver, ttl in [
        ("orders-1", "orders", "billing", 60),
        ("orders-2", "orders", "billing", 60),
        ("billing", "billing", "orders", 300),
        ("audit", "team-a/audit.v2", "ledger", 1),
    ]:
        request = {
            "pem": f.pems[key],
            "kid": f.kid(key),
            "sub": f.sid(sender),
            "aud": f.sid(receiver),
            "now": f.now,
            "ttl": ttl,
        }
        vectors.append(
            {
                "id": f"mint-{key}-to-{receiver}-ttl-{ttl}",
                "description": "The token must carry exactly this header, these claims "
                "(iat optional but then equal to now), a raw 64-byte ES256 signature that "
                "verifies with the key's JWK, and must verify in the same implementation.",
                "level": "v0",
                "input": request,
                "expected": {
                    "header": {"alg": "ES256", "kid": f.kid(key), "typ": "JWT"},
                    "claims": {"sub": f.sid(sender), "aud": f.sid(receiver), "exp": f.now + ttl},
                    "optional_claims": {"iat": f.now},
                    "jwk": f.jwks[key],
                },
            }
        )
    return vectors


def spiffe_id_vectors() -> dict[str, Any]:
    """SPIFFE IDs to accept (with their parts) and to reject."""
    td_255 = ".".join(["a" * 63] * 4)  # 4 * 63 + 3 dots = 255 bytes
    td_256 = td_255 + "a"
    prefix = "spiffe://example.org/"
    long_ok = prefix + "x" * (2048 - len(prefix))
    long_ok = long_ok[:1000] + "/" + long_ok[1001:]
    valid = [
        ("spiffe://example.org", "example.org", "", "v0"),
        ("spiffe://example.org/orders", "example.org", "/orders", "v0"),
        ("spiffe://example.org/a/b/c.d_e-f", "example.org", "/a/b/c.d_e-f", "v0"),
        ("spiffe://ex-ample_2.org/UPPER.case", "ex-ample_2.org", "/UPPER.case", "v0"),
        ("spiffe://1.2.3.4/x", "1.2.3.4", "/x", "v0"),
        ("spiffe://a/b", "a", "/b", "v0"),
        ("spiffe://example.org/...", "example.org", "/...", "v0"),
        ("spiffe://example.org/.hidden/..x/x..", "example.org", "/.hidden/..x/x..", "v0"),
        ("spiffe://example.org/-/_/9", "example.org", "/-/_/9", "v0"),
        (f"spiffe://{td_255}/x", td_255, "/x", "spiffile"),
        (long_ok, "example.org", long_ok[len("spiffe://example.org") :], "spiffile"),
    ]
    invalid = [
        ("", "empty", "v0"),
        ("spiffe://", "empty trust domain", "v0"),
        ("spiffe:///x", "empty trust domain with a path", "v0"),
        ("http://example.org/x", "other scheme", "v0"),
        ("SPIFFE://example.org/x", "uppercase scheme", "v0"),
        ("spiffe:/example.org/x", "one slash", "v0"),
        ("spiffe:example.org", "no authority", "v0"),
        ("example.org/x", "no scheme", "v0"),
        ("spiffe://Example.org/x", "uppercase trust domain", "v0"),
        ("spiffe://EXAMPLE.ORG", "uppercase trust domain, no path", "v0"),
        ("spiffe://example.org/", "trailing slash", "v0"),
        ("spiffe://example.org/x/", "trailing slash after a segment", "v0"),
        ("spiffe://example.org//x", "empty segment", "v0"),
        ("spiffe://example.org/a//b", "empty inner segment", "v0"),
        ("spiffe://example.org/.", "dot segment", "v0"),
        ("spiffe://example.org/./x", "leading dot segment", "v0"),
        ("spiffe://example.org/..", "dot-dot segment", "v0"),
        ("spiffe://example.org/a/../b", "inner dot-dot segment", "v0"),
        ("spiffe://example.org/a/..", "trailing dot-dot segment", "v0"),
        ("spiffe://example.org/a b", "space in path", "v0"),
        ("spiffe://example.org/bad~path", "tilde in path", "v0"),
        ("spiffe://example.org/a%20b", "percent-encoding in path", "v0"),
        ("spiffe://example.org/%2e%2e", "percent-encoded dot-dot", "v0"),
        ("spiffe://ex%41mple.org/x", "percent-encoding in trust domain", "v0"),
        ("spiffe://example.org:8443/x", "port", "v0"),
        ("spiffe://example.org:/x", "empty port", "v0"),
        ("spiffe://user@example.org/x", "userinfo", "v0"),
        ("spiffe://user:secret@example.org/x", "userinfo with password", "v0"),
        ("spiffe://example.org/x?q=1", "query", "v0"),
        ("spiffe://example.org/x?", "empty query", "v0"),
        ("spiffe://example.org/x#frag", "fragment", "v0"),
        ("spiffe://example.org#frag", "fragment on the trust domain", "v0"),
        ("spiffe://[::1]/x", "IP literal", "v0"),
        ("spiffe://exa mple.org/x", "space in trust domain", "v0"),
        ("spiffe://ex\u00e4mple.org/x", "non-ASCII trust domain", "v0"),
        ("spiffe://example.org/caf\u00e9", "non-ASCII path", "v0"),
        ("spiffe://example.org/a:b", "colon in path", "v0"),
        ("spiffe://example.org/a@b", "at sign in path", "v0"),
        ("spiffe://example.org/a+b", "plus in path", "v0"),
        ("spiffe://example.org\\x", "backslash", "v0"),
        ("spiffe://example.org/x\n", "trailing newline", "v0"),
        (" spiffe://example.org/x", "leading space", "v0"),
        ("spiffe://example.org/x ", "trailing space", "v0"),
        ("spiffe://example.org/x\u0000", "NUL byte", "v0"),
        (f"spiffe://{td_256}/x", "trust domain of 256 bytes (max 255)", "spiffile"),
        (long_ok + "x", "ID of 2049 bytes (max 2048)", "spiffile"),
        ("spiffe://example.org/" + "\u00e9" * 1100, "ID over 2048 bytes in UTF-8", "spiffile"),
    ]
    return {
        "valid": [
            {
                "id": text if len(text) < 80 else f"{text[:40]}...({len(text)} bytes)",
                "level": level,
                "input": {"id": text},
                "expected": {"ok": True, "id": text, "trust_domain": td, "path": path},
            }
            for text, td, path, level in valid
        ],
        "invalid": [
            {
                "id": why,
                "level": level,
                "input": {"id": text},
                "expected": {"ok": False, "error": "invalid_spiffe_id"},
            }
            for text, why, level in invalid
        ],
    }


def _doc_text(document: Any) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def bundle_vectors(f: Forge) -> dict[str, Any]:
    """Documents to reject, and documents whose malformed entries must be skipped."""
    good = bundle_document(f)
    survivors = {sid: [k["kid"] for k in e["keys"]] for sid, e in good["identities"].items()}

    def changed(**members: Any) -> str:
        document = copy.deepcopy(good)
        for name, value in members.items():
            if value is _DROP:
                document.pop(name, None)
            else:
                document[name] = value
        return _doc_text(document)

    deep = "[" * 100_000 + "]" * 100_000
    rejected: list[tuple[str, str, str]] = [
        ("not-json", "not a bundle\n", "v0"),
        ("empty", "", "v0"),
        ("json-array", "[]\n", "v0"),
        ("json-string", '"example.org"\n', "v0"),
        ("json-null", "null\n", "v0"),
        ("truncated", _doc_text(good)[:200], "v0"),
        ("deeply-nested", deep, "spiffile"),
        ("version-missing", changed(spiffile_version=_DROP), "v0"),
        ("version-2", changed(spiffile_version=2), "v0"),
        ("version-0", changed(spiffile_version=0), "v0"),
        ("version-string", changed(spiffile_version="1"), "v0"),
        ("version-true", changed(spiffile_version=True), "v0"),
        ("version-null", changed(spiffile_version=None), "v0"),
        ("version-float", changed(spiffile_version=1.5), "v0"),
        ("trust-domain-missing", changed(trust_domain=_DROP), "v0"),
        ("trust-domain-number", changed(trust_domain=7), "spiffile"),
        ("trust-domain-uppercase", changed(trust_domain="Example.org"), "spiffile"),
        ("trust-domain-with-scheme", changed(trust_domain="spiffe://example.org"), "spiffile"),
        ("trust-domain-empty", changed(trust_domain=""), "spiffile"),
        ("identities-missing", changed(identities=_DROP), "v0"),
        ("identities-array", changed(identities=[]), "v0"),
        ("identities-null", changed(identities=None), "v0"),
        ("identities-string", changed(identities="spiffe://example.org/orders"), "v0"),
        ("sequence-negative", changed(spiffe_sequence=-1), "spiffile"),
        ("sequence-string", changed(spiffe_sequence="3"), "spiffile"),
        ("sequence-float", changed(spiffe_sequence=2.5), "spiffile"),
        ("sequence-bool", changed(spiffe_sequence=True), "spiffile"),
    ]
    rejected_vectors = [
        {
            "id": f"bundle-rejected-{name}",
            "level": level,
            "input": {"document": text},
            "expected": {"ok": False, "error": "invalid_bundle"},
        }
        for name, text, level in rejected
    ]
    accepted_vectors = [
        {
            "id": f"bundle-{name}",
            "level": level,
            "description": description,
            "input": {"document": text},
            "expected": {"ok": True, "trust_domain": f.trust_domain, "identities": expected},
        }
        for name, description, text, expected, level in _accepted(f, good, survivors, changed)
    ]
    return {"rejected": rejected_vectors, "accepted": accepted_vectors}


_DROP: Any = object()


def _accepted(
    f: Forge, good: dict[str, Any], survivors: dict[str, list[str]], changed: Any
) -> list[tuple[str, str, str, dict[str, list[str]], str]]:
    """Documents that parse; malformed entries are skipped, the rest survive."""
    from conformance._bundle_entries import broken_entries

    cases: list[tuple[str, str, str, dict[str, list[str]], str]] = [
        (
            "reference",
            "The reference bundle of the token vectors.",
            _doc_text(good),
            survivors,
            "v0",
        ),
        (
            "unknown-top-level-member",
            "Unknown top-level members are ignored.",
            changed(x_note="hello", generator={"name": "x"}),
            survivors,
            "v0",
        ),
        (
            "with-sequence",
            "The optional spiffe_sequence extension.",
            changed(spiffe_sequence=7),
            survivors,
            "spiffile",
        ),
        ("no-identities", "An empty identities object.", changed(identities={}), {}, "v0"),
    ]
    for name, description, sid, entry, level, extra_survivor in broken_entries(f):
        document = copy.deepcopy(good)
        document["identities"][sid] = entry
        expected = dict(survivors)
        if extra_survivor is not None:
            expected[sid] = extra_survivor
        prefix = "skip" if extra_survivor is None else "keep"
        cases.append((f"{prefix}-{name}", description, _doc_text(document), expected, level))
    document = copy.deepcopy(good)
    for _name, _description, sid, entry, _level, extra_survivor in broken_entries(f):
        if extra_survivor is None:
            document["identities"][sid] = entry
    cases.append(
        (
            "skip-many-broken-entries",
            "Every broken entry at once: the good ones still survive.",
            _doc_text(document),
            survivors,
            "spiffile",
        )
    )
    return cases
