"""What the ASGI and WSGI middleware share: read a Bearer token, verify it, shape the 401.

The answer to a remote caller is deliberately coarse.  Every rejected token,
whether forged, expired, for another audience or from an identity the bundle
does not know, gets the same ``401`` and the same body, so bundle membership
cannot be probed from outside (PROFILE.md §10, *information exposure*).  The
precise reason goes to the ``spiffile.integrations`` logger at INFO, without
the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from spiffile.errors import SpiffileError
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from spiffile.caller import Caller
    from spiffile.identity import Identity

__all__ = [
    "CALLER_KEY",
    "Rejection",
    "authenticate",
    "bearer_header",
    "parse_audience",
]

#: Where the middleware puts the verified :class:`~spiffile.Caller`: the ASGI
#: scope key and the WSGI environ key (PEP 3333 extension keys are dotted).
CALLER_KEY: Final = "spiffile.caller"

logger: Final = logging.getLogger("spiffile.integrations")

# RFC 6750 §3: no error code when the request carried no credentials at all,
# `invalid_token` for every token we refuse.
_CHALLENGE: Final = "Bearer"
_INVALID_CHALLENGE: Final = 'Bearer error="invalid_token"'
_MISSING_BODY: Final = b'{"error": "missing_token"}'
_INVALID_BODY: Final = b'{"error": "invalid_token"}'


@dataclass(frozen=True)
class Rejection:
    """A 401 answer: the same for every refused token, by design."""

    challenge: str
    body: bytes

    status: int = 401
    reason: str = "Unauthorized"

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Response headers (latin-1 safe) for this rejection."""
        return [
            ("content-type", "application/json"),
            ("content-length", str(len(self.body))),
            ("www-authenticate", self.challenge),
            ("cache-control", "no-store"),
        ]


MISSING: Final = Rejection(_CHALLENGE, _MISSING_BODY)
INVALID: Final = Rejection(_INVALID_CHALLENGE, _INVALID_BODY)


def parse_audience(audience: str | SpiffeId | None) -> str | None:
    """The audience as text, checked once at construction so a typo fails at start-up."""
    if audience is None or isinstance(audience, SpiffeId):
        return None if audience is None else str(audience)
    return str(SpiffeId.parse(audience))


def bearer_header(values: list[str]) -> str | None:
    """The token of the one ``Authorization: Bearer`` header, or None if there is none.

    The scheme is case-insensitive (RFC 7235 §2.1).  Several ``Authorization``
    headers are ambiguous and yield ``""``, which no token verification accepts.
    """
    if not values:
        return None
    if len(values) > 1:
        return ""
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip(" ")


def authenticate(
    identity: Identity,
    authorization: list[str],
    *,
    audience: str | None,
    method: str,
    path: str,
) -> Caller | Rejection:
    """Verify the request's Bearer token with *identity*: the caller, or how to say no."""
    token = bearer_header(authorization)
    if token is None:
        logger.info("spiffile: no bearer token on %s %.200r", method, path)
        return MISSING
    try:
        return identity.verify(token, audience)
    except SpiffileError as exc:
        # The reason stays here: messages never hold keys or tokens, only
        # codes, claim names and (truncated) SPIFFE IDs.
        logger.info("spiffile: rejected %s %.200r: %s: %.300r", method, path, exc.code, str(exc))
        return INVALID
