"""A token forge for the hostile-input tests: every byte of a compact JWS under test control.

Not a test module.  The hostile-token tests must break exactly the rule they
target and nothing else, so the forge signs exactly the text that ends up in
the token: a padded or non-canonical segment, an extra header member or an
``aud`` array still carries a real, valid ES256 signature over itself, and
only the rule under test can reject it.  Signatures come from real keys
(P-256, P-384, RSA, HMAC) built with pyca/cryptography, never from fixtures
that could drift from what the verifier checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from spiffile.bundle import Bundle
from spiffile.keys import generate_private_key, kid_for, public_jwk

__all__ = [
    "BILLING",
    "DROP",
    "LEDGER",
    "MANY",
    "NOW",
    "ORDERS",
    "TRUST_DOMAIN",
    "Forge",
    "Realm",
    "b64",
    "b64json",
    "compact",
    "es256_raw",
    "make_realm",
    "sid",
]

TRUST_DOMAIN: Final = "example.org"
#: A fixed "now" (2025-06-15T15:06:40Z): time is a parameter of the core.
NOW: Final = 1_750_000_000

#: Marker for "remove this member" in :meth:`Forge.header` and :meth:`Forge.claims`.
DROP: Any = object()

Signer = Callable[[bytes], bytes]


def sid(name: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """``spiffe://<trust_domain>/<name>``."""
    return f"spiffe://{trust_domain}/{name}"


ORDERS: Final = sid("orders")
BILLING: Final = sid("billing")
LEDGER: Final = sid("ledger")
MANY: Final = sid("many")


def b64(data: bytes) -> str:
    """Unpadded base64url, as a producer writes it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: Any) -> str:
    """Compact JSON (no whitespace) of *value*, base64url-encoded."""
    return b64(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def es256_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """A JWS ECDSA signature (``r||s``, each padded to the curve size) over *data*."""
    der = key.sign(data, ec.ECDSA(_hash_for(key.curve)))
    r, s = decode_dss_signature(der)
    size = (key.curve.key_size + 7) // 8
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    if curve.key_size <= 256:
        return hashes.SHA256()
    if curve.key_size <= 384:
        return hashes.SHA384()
    return hashes.SHA512()


def rs256_raw(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """An RS256 (PKCS#1 v1.5, SHA-256) signature over *data*."""
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def hs256_raw(secret: bytes, data: bytes) -> bytes:
    """An HS256 MAC of *data* keyed with *secret* (the key-confusion attack's signature)."""
    return hmac.new(secret, data, hashlib.sha256).digest()


def compact(header: str, payload: str, signer: Signer | None) -> str:
    """``header.payload.signature`` where the signature covers exactly ``header.payload``."""
    signing_input = f"{header}.{payload}"
    signature = b"" if signer is None else signer(signing_input.encode("ascii"))
    return f"{signing_input}.{b64(signature)}"


@dataclass
class Realm:
    """Identities of one trust domain, their private keys, and the bundle binding them."""

    keys: dict[str, list[ec.EllipticCurvePrivateKey]]
    bundle: Bundle
    #: A P-256 key bound to no identity.
    stranger: ec.EllipticCurvePrivateKey = field(default_factory=generate_private_key)

    def key(self, spiffe_id: str, index: int = 0) -> ec.EllipticCurvePrivateKey:
        return self.keys[spiffe_id][index]

    def kid(self, spiffe_id: str, index: int = 0) -> str:
        return kid_for(self.key(spiffe_id, index).public_key())


def make_realm(
    layout: Mapping[str, int], *, trust_domain: str = TRUST_DOMAIN, extra: Mapping[str, Any] = {}
) -> Realm:
    """A realm with ``layout[spiffe_id]`` fresh P-256 keys bound to each identity.

    *extra* adds raw identity entries (e.g. malformed ones) to the document as is.
    """
    keys = {name: [generate_private_key() for _ in range(count)] for name, count in layout.items()}
    identities: dict[str, Any] = {
        name: {"keys": [public_jwk(key.public_key()) for key in private]}
        for name, private in keys.items()
    }
    identities.update(extra)
    document = {"trust_domain": trust_domain, "spiffile_version": 1, "identities": identities}
    return Realm(keys, Bundle.parse(json.dumps(document)))


def _apply(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for name, value in changes.items():
        if value is DROP:
            result.pop(name, None)
        else:
            result[name] = value
    return result


class Forge:
    """Builds tokens from *subject* (default orders) to *audience* (default billing) at NOW."""

    def __init__(
        self,
        realm: Realm,
        *,
        subject: str = ORDERS,
        audience: str = BILLING,
        now: int = NOW,
    ) -> None:
        self.realm = realm
        self.subject = subject
        self.audience = audience
        self.now = now

    def header(self, **changes: Any) -> dict[str, Any]:
        """The producer header ``{"alg":"ES256","kid":…,"typ":"JWT"}`` with *changes*."""
        base = {"alg": "ES256", "kid": self.realm.kid(self.subject), "typ": "JWT"}
        return _apply(base, changes)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Subject to audience, issued now, 60 s lifetime, with *changes*."""
        base = {"sub": self.subject, "aud": self.audience, "iat": self.now, "exp": self.now + 60}
        return _apply(base, changes)

    def es256(self, key: ec.EllipticCurvePrivateKey | None = None) -> Signer:
        """A signer with *key* (default: the subject's first key)."""
        chosen = key if key is not None else self.realm.key(self.subject)
        return lambda data: es256_raw(chosen, data)

    def token(
        self,
        header: Mapping[str, Any] | None = None,
        claims: Mapping[str, Any] | Sequence[Any] | str | int | None = None,
        *,
        signer: Signer | None = None,
        raw_header: str | None = None,
        raw_payload: str | None = None,
        unsigned: bool = False,
    ) -> str:
        """A token whose signature (ES256 by the subject's key unless *signer*) covers it exactly.

        ``raw_header``/``raw_payload`` are used verbatim as the encoded segments.
        """
        encoded_header = (
            raw_header
            if raw_header is not None
            else b64json(self.header() if header is None else header)
        )
        encoded_payload = (
            raw_payload
            if raw_payload is not None
            else b64json(self.claims() if claims is None else claims)
        )
        if unsigned:
            return compact(encoded_header, encoded_payload, None)
        return compact(encoded_header, encoded_payload, signer or self.es256())
