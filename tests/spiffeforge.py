"""A SPIFFE-authority forge for tests: domain-wide JWT authorities and the tokens they sign.

Not a test module.  Plays the part SPIRE plays in production (a trust
domain's JWT signing keys, published as a JWK Set) with real keys built by
pyca/cryptography, so the verifier under test checks real signatures of
every algorithm the JWT-SVID standard allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from tokenforge import NOW, b64, b64json, compact, es256_raw

__all__ = ["ALGORITHMS", "Authority", "SpiffeRealm", "jwk_of"]

#: Every JWT-SVID algorithm (JWT-SVID §3), with the key each needs.
ALGORITHMS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
_CURVES: Final[dict[str, Callable[[], ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_CRV: Final = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _uint(value: int, size: int | None = None) -> str:
    length = size if size is not None else max(1, (value.bit_length() + 7) // 8)
    return b64(value.to_bytes(length, "big"))


def jwk_of(key: PrivateKey, kid: str, *, use: str | None = "jwt-svid") -> dict[str, Any]:
    """The public JWK of *key* as SPIRE writes it (``use`` omitted when None)."""
    jwk: dict[str, Any] = {}
    if use is not None:
        jwk["use"] = use
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        jwk.update(kty="RSA", kid=kid, n=_uint(numbers.n), e=_uint(numbers.e))
    else:
        point = key.public_key().public_numbers()
        size = (key.curve.key_size + 7) // 8
        jwk.update(
            kty="EC",
            kid=kid,
            crv=_CRV[key.curve.name],
            x=_uint(point.x, size),
            y=_uint(point.y, size),
        )
    return jwk


def sign(key: PrivateKey, alg: str, data: bytes) -> bytes:
    """A JWS signature with *alg* (RFC 7518 §3) by *key* over *data*."""
    digest = _HASHES[alg[2:]]()
    if isinstance(key, rsa.RSAPrivateKey):
        if alg.startswith("PS"):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            return key.sign(data, pss, digest)
        return key.sign(data, padding.PKCS1v15(), digest)
    return es256_raw(key, data)


@dataclass
class Authority:
    """One JWT authority: a kid, a private key, the algorithm it signs with."""

    kid: str
    key: PrivateKey
    alg: str

    def jwk(self, *, use: str | None = "jwt-svid") -> dict[str, Any]:
        return jwk_of(self.key, self.kid, use=use)


_RSA_CACHE: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """An RSA key of *bits* (one per size per test session: generation is slow)."""
    if bits not in _RSA_CACHE:
        _RSA_CACHE[bits] = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return _RSA_CACHE[bits]


def authority(alg: str, kid: str | None = None) -> Authority:
    """A fresh authority for *alg* (RSA keys are shared per size, EC keys are fresh)."""
    key: PrivateKey = ec.generate_private_key(_CURVES[alg]()) if alg in _CURVES else rsa_key()
    return Authority(kid or f"kid-{alg.lower()}", key, alg)


@dataclass
class SpiffeRealm:
    """A trust domain run by JWT authorities, as SPIRE runs one."""

    trust_domain: str = "spire.test"
    authorities: list[Authority] = field(default_factory=lambda: [authority("ES256")])

    def sid(self, path: str) -> str:
        return f"spiffe://{self.trust_domain}/{path}"

    def jwks(self, **extra: Any) -> dict[str, Any]:
        document: dict[str, Any] = {"keys": [a.jwk() for a in self.authorities]}
        document.update(extra)
        return document

    def jwks_bytes(self, **extra: Any) -> bytes:
        return json.dumps(self.jwks(**extra)).encode("utf-8")

    def token(
        self,
        subject: str = "workload",
        audience: str | list[str] = "spiffe://example.org/billing",
        *,
        by: Authority | None = None,
        alg: str | None = None,
        now: int = NOW,
        ttl: int = 300,
        claims: Mapping[str, Any] | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> str:
        """A JWT-SVID for *subject* (a path in this domain, or a full ID) signed by *by*."""
        signer = by or self.authorities[0]
        sub = subject if subject.startswith("spiffe://") else self.sid(subject)
        body: dict[str, Any] = {"aud": audience, "exp": now + ttl, "iat": now, "sub": sub}
        body.update(claims or {})
        head = {"alg": alg or signer.alg, "kid": signer.kid, "typ": "JWT"}
        head.update(header or {})
        return compact(
            b64json(head), b64json(body), lambda data: sign(signer.key, alg or signer.alg, data)
        )
