"""The verified caller: who a verified token (or, later, a TLS peer) speaks for.

One type for every way a caller can be verified, so that authorization code
(``allow=`` rules, framework integrations) never depends on how the proof
arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spiffile.spiffe_id import SpiffeId

__all__ = ["Caller"]


@dataclass(frozen=True)
class Caller:
    """A verified caller: its SPIFFE ID and the token's claims."""

    id: SpiffeId
    claims: Mapping[str, Any]
