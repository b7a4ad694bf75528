"""SPIFFE-format bundles (SPIFFE Trust Domain and Bundle §4): a JWK Set per trust domain.

A standard SPIFFE bundle makes every key an authority for the whole trust
domain, which a spiffile bundle never does; this module is where the two
formats meet.  Today it exports one identity's keys as a standard JWT bundle
(:func:`spiffe_jwt_bundle`).
"""

from __future__ import annotations

from typing import Any

from spiffile.bundle.document import Bundle
from spiffile.spiffe_id import SpiffeId

__all__ = ["spiffe_jwt_bundle"]


def spiffe_jwt_bundle(bundle: Bundle, spiffe_id: str | SpiffeId) -> dict[str, Any]:
    """A standard SPIFFE JWT bundle (a JWK Set, SPIFFE Trust Domain and Bundle §4) for ONE identity.

    Standard JWT-SVID verifiers (py-spiffe, go-spiffe) accept any key of the
    set for any ``sub``.  Exporting only this identity's keys keeps the
    profile's binding, provided the verifier also checks that the verified
    ``sub`` equals *spiffe_id*: otherwise the holder of these keys could name
    any subject.  A merged, domain-wide set would let any workload mint
    tokens as any other (PROFILE.md §9).
    """
    keys = []
    for key in bundle.keys_for(spiffe_id):
        jwk = {name: key.jwk[name] for name in ("kty", "crv", "x", "y", "kid")}
        jwk["use"] = "jwt-svid"
        jwk["alg"] = "ES256"
        keys.append(jwk)
    return {"keys": keys}
