"""``httpx`` authentication: every request carries this workload's JWT-SVID.

::

    client = httpx.Client(auth=SpiffileAuth(identity, "spiffe://example.org/billing"))

The token comes from :meth:`Identity.token`, so it is cached per audience,
re-minted when half its lifetime is gone, and signed with the key on disk
now: a rotated key is picked up by a long-lived client without a restart.
One class serves ``httpx.Client`` and ``httpx.AsyncClient``; minting is
CPU-only work of microseconds, so it runs inline on the event loop.

A token names one receiver (its ``aud``), so use one auth object per
receiving service.  httpx drops the ``Authorization`` header when a redirect
leaves the origin, so the token does not follow a redirect elsewhere.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import httpx

from spiffile.integrations._bearer import parse_audience
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import DEFAULT_TTL

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["SpiffileAuth"]


class SpiffileAuth(httpx.Auth):
    """Sets ``Authorization: Bearer <JWT-SVID for audience>`` on each request."""

    def __init__(self, identity: Identity, audience: str | SpiffeId, *, ttl: int = DEFAULT_TTL):
        checked = parse_audience(audience)
        if checked is None:
            raise TypeError("audience is required: the receiver's SPIFFE ID")
        self.identity = identity
        self.audience = checked
        self.ttl = ttl

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.identity.token(self.audience, ttl=self.ttl)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    def __repr__(self) -> str:
        return f"SpiffileAuth({self.identity!r}, {self.audience!r})"
