"""Small builders of spiffile bundle documents shared by the tests of ``spiffile.bundle``."""

from __future__ import annotations

import json
from typing import Any

from spiffile.keys import generate_private_key, public_jwk

ORDERS = "spiffe://example.org/orders"
BILLING = "spiffe://example.org/billing"


def fresh_jwk() -> dict[str, str]:
    """The public JWK of a fresh P-256 key, as a producer writes it."""
    return public_jwk(generate_private_key().public_key())


def document(**identities: Any) -> dict[str, Any]:
    """A version-1 example.org document holding *identities*."""
    return {"trust_domain": "example.org", "spiffile_version": 1, "identities": identities}


def encode(doc: dict[str, Any]) -> bytes:
    """The document as the bytes of a file."""
    return json.dumps(doc).encode()
