"""A token forge: every byte of a compact JWS under the generator's control.

Hostile vectors must break exactly the rule they target and nothing else, so
the forge signs exactly the text that ends up in the token: a padded or
non-canonical segment still carries a valid signature over itself, and only
the encoding rule can reject it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conformance import _jose

__all__ = ["DROP", "Forge", "Signer"]

#: Marker for "remove this member" in :meth:`Forge.header` / :meth:`Forge.claims`.
DROP: Any = object()

Signer = Callable[[bytes], bytes]


class Forge:
    """Pinned keys plus the defaults every vector starts from."""

    def __init__(self, inputs: Mapping[str, Any], keys_dir: Path) -> None:
        self.inputs = inputs
        self.trust_domain: str = inputs["trust_domain"]
        self.now: int = inputs["now"]
        self.leeway: int = inputs["leeway"]
        self.max_lifetime: int = inputs["max_lifetime"]
        self.pems: dict[str, str] = {
            path.stem: path.read_text(encoding="ascii") for path in sorted(keys_dir.glob("*.pem"))
        }
        hostile = inputs["hostile_keys"]
        password = hostile["encrypted_password"].encode("ascii")
        self.keys: dict[str, Any] = {}
        for name, pem in self.pems.items():
            secret = password if name == hostile["encrypted"] else None
            self.keys[name] = _jose.load_private_pem(pem.encode("ascii"), secret)
        hostile_names = {hostile["p384"], hostile["rsa"], hostile["encrypted"]}
        self.p256 = {
            name: key
            for name, key in self.keys.items()
            if name not in hostile_names
            and isinstance(key, ec.EllipticCurvePrivateKey)
            and key.curve.key_size == 256
        }
        self.jwks = {name: _jose.ec_jwk(key) for name, key in self.p256.items()}
        self.p384: ec.EllipticCurvePrivateKey = self.keys[hostile["p384"]]
        self.rsa: rsa.RSAPrivateKey = self.keys[hostile["rsa"]]

    # -- identities ------------------------------------------------------------

    def sid(self, name: str) -> str:
        """``spiffe://<trust domain>/<name>``."""
        return f"spiffe://{self.trust_domain}/{name}"

    def kid(self, key_name: str) -> str:
        return self.jwks[key_name]["kid"]

    # -- defaults --------------------------------------------------------------

    def header(self, signer: str = "orders-1", **changes: Any) -> dict[str, Any]:
        """The producer header ``{"alg":"ES256","kid":…,"typ":"JWT"}`` with *changes*."""
        header: dict[str, Any] = {"alg": "ES256", "kid": self.kid(signer), "typ": "JWT"}
        return _apply(header, changes)

    def claims(self, **changes: Any) -> dict[str, Any]:
        """orders -> billing, issued now, 60 s lifetime, with *changes*."""
        claims: dict[str, Any] = {
            "sub": self.sid("orders"),
            "aud": self.sid("billing"),
            "iat": self.now,
            "exp": self.now + 60,
        }
        return _apply(claims, changes)

    def verify_params(self, **changes: Any) -> dict[str, Any]:
        """The verify parameters of the protocol, billing verifying at the fixed ``now``."""
        params: dict[str, Any] = {
            "audience": self.sid("billing"),
            "now": self.now,
            "leeway": self.leeway,
            "max_lifetime": self.max_lifetime,
        }
        params.update(changes)
        return params

    # -- signers ---------------------------------------------------------------

    def es256(self, key_name: str = "orders-1") -> Signer:
        key = self.p256[key_name]
        return lambda data: _jose.sign_ecdsa_raw(key, data)

    def es384(self) -> Signer:
        return lambda data: _jose.sign_ecdsa_raw(self.p384, data)

    def rs256(self) -> Signer:
        return lambda data: _jose.rs256(self.rsa, data)

    @staticmethod
    def hs256(secret: bytes) -> Signer:
        return lambda data: _jose.hs256(secret, data)

    # -- tokens ----------------------------------------------------------------

    def token(
        self,
        header: Mapping[str, Any] | bytes | None = None,
        claims: Mapping[str, Any] | bytes | None = None,
        *,
        signer: Signer | None = None,
        header_text: Callable[[str], str] | None = None,
        payload_text: Callable[[str], str] | None = None,
        signature: Callable[[bytes], bytes] | None = None,
        signature_text: Callable[[str], str] | None = None,
    ) -> str:
        """Build a token; each hook rewrites one stage before it is signed or joined.

        The signature covers the header and payload text exactly as they
        appear in the token (after ``header_text`` / ``payload_text``).
        """
        header_bytes = header if isinstance(header, bytes) else _jose.dumps(header or self.header())
        payload_bytes = (
            claims if isinstance(claims, bytes) else _jose.dumps(claims or self.claims())
        )
        h = _jose.b64url(header_bytes)
        p = _jose.b64url(payload_bytes)
        if header_text is not None:
            h = header_text(h)
        if payload_text is not None:
            p = payload_text(p)
        sign = signer if signer is not None else self.es256()
        raw = sign(f"{h}.{p}".encode())
        if signature is not None:
            raw = signature(raw)
        s = _jose.b64url(raw)
        if signature_text is not None:
            s = signature_text(s)
        return f"{h}.{p}.{s}"


def _apply(base: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in changes.items():
        if value is DROP:
            base.pop(name, None)
        else:
            base[name] = value
    return base
