"""``requests`` authentication: every request carries this workload's JWT-SVID.

::

    session = requests.Session()
    session.auth = SpiffileAuth(identity, "spiffe://example.org/billing")

The token comes from :meth:`Identity.token`, so it is cached per audience,
re-minted when half its lifetime is gone, and signed with the key on disk
now: a rotated key is picked up by a long-lived session without a restart.

A token names one receiver (its ``aud``), so use one auth object per
receiving service.  requests drops the ``Authorization`` header when a
redirect leaves the host and does not re-apply this auth there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests.auth

from spiffile.integrations._bearer import parse_audience
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import DEFAULT_TTL

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["SpiffileAuth"]


class SpiffileAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <JWT-SVID for audience>`` on each request."""

    def __init__(self, identity: Identity, audience: str | SpiffeId, *, ttl: int = DEFAULT_TTL):
        checked = parse_audience(audience)
        if checked is None:
            raise TypeError("audience is required: the receiver's SPIFFE ID")
        self.identity = identity
        self.audience = checked
        self.ttl = ttl

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.identity.token(self.audience, ttl=self.ttl)
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def __repr__(self) -> str:
        return f"SpiffileAuth({self.identity!r}, {self.audience!r})"
