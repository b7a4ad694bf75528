"""What the server integrations share: read a Bearer token, verify it, apply a rule.

The answer to a remote caller is deliberately coarse.  Every rejected token,
whether forged, expired, for another audience or from an identity the bundle
does not know, gets the same ``401`` and the same body, so bundle membership
cannot be probed from outside (PROFILE.md §10, *information exposure*); a
verified caller that the rule does not allow gets one ``403``.  The precise
reason goes to the ``spiffile.integrations`` logger at INFO, without the
token: the error's code and message, the SPIFFE IDs involved, the rule, and
the token's claimed ``sub``, ``kid``, audience and times against now and the
leeway (:class:`spiffile.errors.TokenContext`; also on the record as
``spiffile_details``).
:func:`spiffile.integrations.log_rejections` shows these lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from spiffile.errors import SpiffileError, TokenContext
from spiffile.integrations._rules import Access, Rule
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from spiffile.caller import Caller
    from spiffile.identity import Identity

__all__ = [
    "CALLER_KEY",
    "FORBIDDEN",
    "INVALID",
    "MISSING",
    "Rejection",
    "admit",
    "admit_token",
    "authenticate",
    "bearer_header",
    "canonical_bearer",
    "check_caller",
    "details",
    "explain",
    "forbid",
    "parse_audience",
    "refuse",
]

#: Where the middleware puts the verified :class:`~spiffile.Caller`: the ASGI
#: scope key and the WSGI environ key (PEP 3333 extension keys are dotted).
CALLER_KEY: Final = "spiffile.caller"

logger: Final = logging.getLogger("spiffile.integrations")

# RFC 6750 §3: no error code when the request carried no credentials at all,
# `invalid_token` for every token we refuse, `insufficient_scope` (§3.1) when
# the token is fine but its caller lacks the privilege.
_CHALLENGE: Final = "Bearer"


@dataclass(frozen=True)
class Rejection:
    """A 401 or 403 answer: the same for every refused token, by design."""

    #: RFC 6750 §3.1 error code, also the body's ``error`` (``missing_token`` for none).
    error: str
    challenge: str
    status: int = 401
    reason: str = "Unauthorized"

    @property
    def body(self) -> bytes:
        """The JSON body, ``{"error": "<code>"}``."""
        return b'{"error": "' + self.error.encode("ascii") + b'"}'

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Response headers (latin-1 safe) for this rejection."""
        return [
            ("content-type", "application/json"),
            ("content-length", str(len(self.body))),
            ("www-authenticate", self.challenge),
            ("cache-control", "no-store"),
        ]


MISSING: Final = Rejection("missing_token", _CHALLENGE)
INVALID: Final = Rejection("invalid_token", 'Bearer error="invalid_token"')
FORBIDDEN: Final = Rejection(
    "insufficient_scope", 'Bearer error="insufficient_scope"', 403, "Forbidden"
)


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
        logger.info(
            "spiffile: 401 %s %.200r: missing_token: no bearer token",
            method,
            path,
            extra={"spiffile_status": 401, "spiffile_code": "missing_token"},
        )
        return MISSING
    return _verify(identity, token, audience=audience, method=method, path=path)


def canonical_bearer(value: str) -> str | None:
    """The token of a header value written ``Bearer <token>``, or None for any other form.

    The servers' fast path: for the one form clients send, this is the token
    :func:`bearer_header` reads from ``[value]``, found with two character
    tests instead of a strip, a partition, a lower-casing and a strip.  None
    says nothing about the value (it may still be a Bearer header, written
    in another case or with other spaces): the caller then asks
    :func:`bearer_header`.
    """
    # "Bearer " + t, t non-empty: t[-1] not whitespace leaves the whole value
    # as str.strip() finds it, and t[0] != " " leaves t as strip(" ") finds it.
    if value[:7] == "Bearer " and len(value) > 7 and value[7] != " " and not value[-1].isspace():
        return value[7:]
    return None


def _verify(
    identity: Identity, token: str, *, audience: str | None, method: str, path: str
) -> Caller | Rejection:
    try:
        return identity.verify(token, audience)
    except SpiffileError as exc:
        return refuse(exc, method=method, path=path)


def refuse(exc: SpiffileError, *, method: str, path: str) -> Rejection:
    """The 401 for a token *exc* refused, its reason logged (never the token)."""
    # The reason stays here: messages never hold keys or tokens, only
    # codes, claim names and (truncated) SPIFFE IDs.
    logger.info(
        "spiffile: 401 %s %.200r: %s: %.400r%s",
        method,
        path,
        exc.code,
        str(exc),
        explain(exc),
        extra={
            "spiffile_status": 401,
            "spiffile_code": exc.code,
            "spiffile_details": details(exc),
        },
    )
    return INVALID


def explain(exc: BaseException) -> str:
    """`` (sub=... kid=... aud=...)``: the error's safe facts for a log line, or ``""``."""
    if isinstance(exc, TokenContext):
        text = exc.explain()
        if text:
            return f" ({text})"
    return ""


def details(exc: BaseException) -> dict[str, str | int | float]:
    """The error's safe facts as a mapping (a log record's ``spiffile_details``)."""
    return exc.details() if isinstance(exc, TokenContext) else {}


def admit(
    identity: Identity,
    authorization: list[str],
    rule: Rule,
    *,
    audience: str | None,
    method: str,
    path: str,
) -> Caller | Rejection | None:
    """Apply *rule* to one request: its caller, None (no caller and none needed), or a no.

    An exempt rule reads nothing.  An optional rule lets a request without a
    token go on, but a token that is there must verify: a client that sends
    a bad one learns it (RFC 6750 §3.1) rather than being silently served
    as anonymous.
    """
    if rule.access is Access.EXEMPT:
        return None
    token = bearer_header(authorization)
    if token is None and rule.access is Access.OPTIONAL:
        return None
    if token is None:
        return authenticate(identity, authorization, audience=audience, method=method, path=path)
    return admit_token(identity, token, rule, audience=audience, method=method, path=path)


def admit_token(
    identity: Identity,
    token: str,
    rule: Rule,
    *,
    audience: str | None,
    method: str,
    path: str,
) -> Caller | Rejection:
    """Verify *token* and apply *rule*: the caller, or the 401/403 explained in the log.

    What :func:`admit` does once it has the one Bearer token; the servers'
    fast path calls it directly when the header is in the form every client
    sends (:func:`canonical_bearer`).
    """
    try:
        caller = identity.verify(token, audience)
    except SpiffileError as exc:
        return refuse(exc, method=method, path=path)
    return check_caller(caller, rule, method=method, path=path)


def check_caller(caller: Caller, rule: Rule, *, method: str, path: str) -> Caller | Rejection:
    """*caller* if *rule* allows it, else the 403, explained in the log."""
    if rule.allows(caller.id):
        return caller
    return forbid(caller, rule, method=method, path=path)


def forbid(caller: Caller, rule: Rule, *, method: str, path: str) -> Rejection:
    """The 403 for a verified *caller* that *rule* does not allow, explained in the log."""
    logger.info(
        "spiffile: 403 %s %.200r: not_allowed: caller %s is not allowed by %r (rule %.200r)",
        method,
        path,
        caller.id,
        rule.authorizer,
        rule.pattern,
        extra={"spiffile_status": 403, "spiffile_code": "not_allowed"},
    )
    return FORBIDDEN
