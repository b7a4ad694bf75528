"""``requests`` authentication: every request carries this workload's JWT-SVID.

::

    session = requests.Session()
    session.auth = SpiffileAuth(identity, "spiffe://example.org/billing")

The token comes from :meth:`Identity.token`, so it is cached per audience,
re-minted when half its lifetime is gone, and signed with the key on disk
now: a rotated key is picked up by a long-lived session without a restart.

A token names one receiver (its ``aud``).  For a session that calls several
services, give a resolver instead of one ID: a mapping keyed by origin,
``host:port`` or ``host``, or a callable ``url -> SPIFFE ID``; bare names are
IDs in the caller's trust domain::

    session.auth = SpiffileAuth(identity, {"billing:8000": "billing", "inventory": "inventory"})

A request to a destination the resolver does not know raises
:class:`~spiffile.errors.ConfigurationError` before it is sent.  requests
drops the ``Authorization`` header when a redirect leaves the host and does
not re-apply this auth there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import requests.auth

from spiffile.integrations._audience import Audience, AudienceResolver
from spiffile.svid import DEFAULT_TTL

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = ["SpiffileAuth"]


class SpiffileAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Bearer <JWT-SVID for audience>`` on each request."""

    def __init__(self, identity: Identity, audience: Audience, *, ttl: int = DEFAULT_TTL):
        """*audience*: the receiver's SPIFFE ID or bare name, or a resolver (see below)."""
        self.identity = identity
        self.resolver = AudienceResolver(audience, identity.id.trust_domain)
        #: The one audience when it is fixed, else None.
        self.audience = self.resolver.fixed
        self.ttl = ttl

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.identity.token(self.resolver(request.url or ""), ttl=self.ttl)
        request.headers["Authorization"] = f"Bearer {token}"
        return request

    def __repr__(self) -> str:
        return f"SpiffileAuth({self.identity!r}, {self.resolver!r})"
