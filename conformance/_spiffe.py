"""Vectors for ``verify-spiffe``: JWT-SVIDs under SPIFFE-bundle trust (PROFILE.md §12).

A verifier gets a token and its trust documents, one per trust domain (a
SPIFFE bundle, spiffe-helper's bundle map, or a spiffile bundle), and must
apply the JWT-SVID standard to domains served by a SPIFFE bundle and every
rule of profile v0 to domains served by a spiffile bundle.

Built on pyca/cryptography and the pinned inputs only: the EC authorities
come from fixed seeds with RFC 6979 deterministic signatures, the RSA
authority is the pinned ``keys/hostile-rsa2048.pem`` (PKCS#1 v1.5 signing is
deterministic).  PSS signatures are randomised, so PS256/384/512 are
covered by the test suite instead.  These are PUBLIC TEST KEYS.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

__all__ = ["spiffe_vectors"]

TD = "spire.test"
PEER = "spiffe://spire.test/frontend"
AUDIENCE = "spiffe://example.org/billing"
_CURVES: dict[str, tuple[ec.EllipticCurve, int, str, hashes.HashAlgorithm]] = {
    "ES256": (ec.SECP256R1(), 32, "P-256", hashes.SHA256()),
    "ES384": (ec.SECP384R1(), 48, "P-384", hashes.SHA384()),
    "ES512": (ec.SECP521R1(), 66, "P-521", hashes.SHA512()),
}
_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json(value: Any) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _seeded(curve: ec.EllipticCurve, seed: str) -> ec.EllipticCurvePrivateKey:
    # Any scalar below 2^(bits-1) is in range for P-256, P-384 and P-521.
    scalar = int.from_bytes(hashlib.sha512(seed.encode("utf-8")).digest(), "big")
    return ec.derive_private_key(scalar % (1 << (curve.key_size - 2)) + 1, curve)


class _Authorities:
    def __init__(self, keys_dir: Path) -> None:
        self.ec = {alg: _seeded(curve, f"spire-{alg}") for alg, (curve, *_r) in _CURVES.items()}
        key = serialization.load_pem_private_key(
            (keys_dir / "hostile-rsa2048.pem").read_bytes(), password=None
        )
        if not isinstance(key, rsa.RSAPrivateKey):  # pragma: no cover - pinned input
            raise TypeError("hostile-rsa2048.pem must be an RSA key")
        self.rsa = key

    def kid(self, alg: str) -> str:
        return "rsa-authority" if alg.startswith("RS") else f"ec-{alg.lower()}"

    def jwks(self, *, use: str | None = "jwt-svid") -> dict[str, Any]:
        keys: list[dict[str, Any]] = []
        for alg, key in self.ec.items():
            _curve, size, crv, _hash = _CURVES[alg]
            numbers = key.public_key().public_numbers()
            keys.append(
                {
                    "kty": "EC",
                    "kid": self.kid(alg),
                    "crv": crv,
                    "x": _b64(numbers.x.to_bytes(size, "big")),
                    "y": _b64(numbers.y.to_bytes(size, "big")),
                }
            )
        public = self.rsa.public_key().public_numbers()
        keys.append(
            {
                "kty": "RSA",
                "kid": self.kid("RS256"),
                "n": _b64(public.n.to_bytes((public.n.bit_length() + 7) // 8, "big")),
                "e": _b64(public.e.to_bytes(3, "big")),
            }
        )
        if use is not None:
            for jwk in keys:
                jwk["use"] = use
        return {"keys": keys, "spiffe_sequence": 7, "spiffe_refresh_hint": 300}

    def sign(self, alg: str, data: bytes) -> bytes:
        if alg in _CURVES:
            _curve, size, _crv, digest = _CURVES[alg]
            der = self.ec[alg].sign(data, ec.ECDSA(digest, deterministic_signing=True))
            r, s = decode_dss_signature(der)
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self.rsa.sign(data, padding.PKCS1v15(), _RSA_HASHES[alg])


def spiffe_vectors(keys_dir: Path, now: int, spiffile_bundle: dict[str, Any]) -> dict[str, Any]:
    """The ``spiffe-bundles.json`` content: trust documents, then valid and invalid tokens."""
    authorities = _Authorities(keys_dir)
    jwks = authorities.jwks()
    jwks_text = json.dumps(jwks)
    # The same trust in the three shapes producers write.
    x509_entry = {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x5c": ["MIIBpublic"]}
    spire_show = json.dumps({**jwks, "keys": [x509_entry, *jwks["keys"]]})
    agent_jwks = json.dumps({"keys": authorities.jwks(use=None)["keys"]})
    helper_map = json.dumps({TD: base64.b64encode(jwks_text.encode("utf-8")).decode("ascii")})
    trust = {TD: jwks_text, "example.org": json.dumps(spiffile_bundle)}

    def token(
        alg: str = "ES256",
        *,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        signer: str | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        body: dict[str, Any] = {"aud": [AUDIENCE], "exp": now + 300, "iat": now, "sub": PEER}
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        head: dict[str, Any] = {"alg": alg, "kid": authorities.kid(signer or alg), "typ": "JWT"}
        for member, value in (header or {}).items():
            if value is None:
                head.pop(member, None)
            else:
                head[member] = value
        signing_input = f"{_json(head)}.{_json(body)}"
        signature = authorities.sign(signer or alg, signing_input.encode("ascii"))
        return f"{signing_input}.{_b64(signature)}"

    def case(
        name: str,
        text: str,
        expected: dict[str, Any],
        *,
        documents: dict[str, str] | None = None,
        audience: str = AUDIENCE,
        issuer: str | None = None,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "token": text,
            "trust": documents or trust,
            "audience": audience,
            "now": now,
            "leeway": 30,
            "max_lifetime": 3600,
        }
        if issuer is not None:
            request["issuer"] = issuer
        vector: dict[str, Any] = {"id": name, "level": "spiffe"}
        if expected.get("ok") is False:
            # As in the other files: the outcome class is expected, the rule
            # broken is named (our `code`).
            vector["reason"] = expected["error"]
            if expected["error"] != "unknown_identity":
                expected = {"ok": False, "error": "invalid_token"}
        vector.update(input=request, expected=expected)
        return vector

    accepted = {"ok": True, "id": PEER, "trust": "spiffe"}

    def rejected(code: str) -> dict[str, Any]:
        return {"ok": False, "error": code}

    valid = [case(f"alg-{alg.lower()}", token(alg), accepted) for alg in (*_CURVES, *_RSA_HASHES)]
    valid += [
        case("aud-string", token(claims={"aud": AUDIENCE}), accepted),
        case("aud-array-of-several", token(claims={"aud": ["mys3", AUDIENCE]}), accepted),
        case("aud-not-a-spiffe-id", token(claims={"aud": ["mys3"]}), accepted, audience="mys3"),
        case(
            "issuer-asked-and-matching",
            token(claims={"iss": "https://oidc.spire.test"}),
            accepted,
            issuer="https://oidc.spire.test",
        ),
        case("typ-absent", token(header={"typ": None}), accepted),
        case("spire-bundle-show-with-x509-entries", token(), accepted, documents={TD: spire_show}),
        case("agent-jwks-without-use", token("RS256"), accepted, documents={TD: agent_jwks}),
        case("spiffe-helper-bundle-map", token("ES384"), accepted, documents={TD: helper_map}),
    ]
    signed = token()
    edited = token(claims={"exp": now + 200})
    tampered = ".".join((edited.split(".")[0], edited.split(".")[1], signed.split(".")[2]))
    invalid = [
        case("alg-none", token(header={"alg": "none"}), rejected("algorithm")),
        case("alg-hs256", token(header={"alg": "HS256"}), rejected("algorithm")),
        case("alg-eddsa", token(header={"alg": "EdDSA"}), rejected("algorithm")),
        case(
            "alg-es384-with-a-p256-authority",
            token("ES384", header={"kid": "ec-es256"}),
            rejected("algorithm"),
        ),
        case(
            "alg-es256-with-an-rsa-authority",
            token("ES256", header={"kid": "rsa-authority"}),
            rejected("algorithm"),
        ),
        case("kid-unknown", token(header={"kid": "nobody"}), rejected("signature")),
        case("payload-edited-after-signing", tampered, rejected("signature")),
        case("header-jwk-member", token(header={"jwk": {"kty": "EC"}}), rejected("header")),
        case("header-kid-missing", token(header={"kid": ""}), rejected("header")),
        case("aud-without-the-audience", token(claims={"aud": ["other"]}), rejected("audience")),
        case("aud-empty-array", token(claims={"aud": []}), rejected("audience")),
        case("aud-number", token(claims={"aud": 5}), rejected("audience")),
        case("exp-missing", token(drop=("exp",)), rejected("claims")),
        case("expired", token(claims={"exp": now - 31, "iat": now - 331}), rejected("expired")),
        case("over-the-lifetime-cap", token(claims={"exp": now + 7200}), rejected("lifetime")),
        case(
            "issuer-asked-and-absent", token(), rejected("claims"), issuer="https://oidc.spire.test"
        ),
        case(
            "sub-in-a-domain-without-trust",
            token(claims={"sub": "spiffe://elsewhere.test/x"}),
            rejected("unknown_identity"),
        ),
        case(
            # A SPIFFE authority never speaks for a spiffile domain: the subject's
            # own bound keys are the only ones tried (PROFILE.md §6.1 step 6).
            "spiffe-authority-signing-for-a-spiffile-domain",
            token(claims={"sub": "spiffe://example.org/orders", "aud": AUDIENCE}),
            rejected("signature"),
        ),
        case(
            "spiffile-domain-keeps-the-single-string-aud",
            token(claims={"sub": "spiffe://example.org/orders"}),
            rejected("audience"),
        ),
    ]
    return {
        "trust_domain": TD,
        "trust": trust,
        "valid": valid,
        "invalid": invalid,
    }
