"""SPIFFE Verifiable Identity Documents: JWT-SVIDs today (``spiffile.svid.jwt``).

The functions that lived in the flat ``spiffile.svid`` module keep working
from here.
"""

from __future__ import annotations

from spiffile.svid.jwt import (
    DEFAULT_LEEWAY,
    DEFAULT_MAX_LIFETIME,
    DEFAULT_TTL,
    MAX_TOKEN_BYTES,
    Caller,
    mint,
    verify,
)

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_MAX_LIFETIME",
    "DEFAULT_TTL",
    "MAX_TOKEN_BYTES",
    "Caller",
    "mint",
    "verify",
]
