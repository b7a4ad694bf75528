"""Authorizers: who, among the callers a token or certificate proved, may go on.

Verification says *who* is calling; an authorizer says whether that caller
may do this.  An authorizer is a plain callable ``SpiffeId -> bool``, so the
same object serves the JWT middleware, the framework integrations and TLS
peer checks.  The constructors mirror go-spiffe's ``tlsconfig`` authorizers
(``AuthorizeAny``, ``AuthorizeID``/``AuthorizeOneOf``,
``AuthorizeMemberOf``, ``AdaptMatcher``)::

    from spiffile import authorize

    authorize.one_of("spiffe://example.org/orders", "spiffe://example.org/reports")
    authorize.member_of("example.org")
    authorize.matching(re.compile(r"spiffe://example\\.org/batch/[a-z-]+"))
    authorize.coerce(["orders", "reports"], "example.org")  # what every ``allow=`` does

Authorizers fail closed: only a result that ``is True`` allows (a predicate
returning ``None`` or a truthy string denies), and one that raises denies
too, with the exception left to the caller's error handling.

This module is pure: no I/O, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

from spiffile.errors import ConfigurationError
from spiffile.spiffe_id import SCHEME, SpiffeId, TrustDomain

__all__ = [
    "Allow",
    "Authorizer",
    "all_of",
    "any_id",
    "any_of",
    "coerce",
    "matching",
    "member_of",
    "one_of",
]

#: What every authorizer is: given a verified SPIFFE ID, may it go on?
Authorizer: TypeAlias = Callable[[SpiffeId], bool]
#: What an ``allow=`` parameter accepts (see :func:`coerce`).
Allow: TypeAlias = (
    "Authorizer | str | SpiffeId | TrustDomain | Iterable[str | SpiffeId | Authorizer] | None"
)

_SCHEME_LENGTH: Final = len(SCHEME)


class _Named:
    """An authorizer with a readable ``repr``: it is what a 403 log line names."""

    __slots__ = ("_check", "_description")

    def __init__(self, check: Authorizer, description: str) -> None:
        self._check = check
        self._description = description

    def __call__(self, spiffe_id: SpiffeId) -> bool:
        return self._check(spiffe_id) is True

    def __repr__(self) -> str:
        return self._description


def any_id() -> Authorizer:
    """Allow every caller that verified (``AuthorizeAny``).

    Who that is stays bounded by verification: only identities the trust
    bundle binds a key to (or a federated domain vouches for) get this far.
    """
    return _Named(lambda _: True, "any_id()")


def one_of(*ids: str | SpiffeId) -> Authorizer:
    """Allow exactly these SPIFFE IDs (``AuthorizeOneOf``); parsed now, so a typo fails at start-up.

    Raises :class:`~spiffile.errors.InvalidSpiffeIdError` for an ID that does
    not parse and :class:`~spiffile.errors.ConfigurationError` when none is
    given (an empty allow-list is almost always a configuration slip).
    """
    parsed = frozenset(_parse_id(value) for value in ids)
    if not parsed:
        raise ConfigurationError("one_of() needs at least one SPIFFE ID")
    shown = ", ".join(sorted(str(value) for value in parsed))
    return _Named(parsed.__contains__, f"one_of({shown})")


def member_of(trust_domain: str | TrustDomain) -> Authorizer:
    """Allow every ID in *trust_domain* (``AuthorizeMemberOf``)."""
    domain = TrustDomain(trust_domain)
    name = domain.name
    return _Named(lambda spiffe_id: spiffe_id.trust_domain == name, f"member_of({name})")


def matching(predicate: Callable[[SpiffeId], bool] | re.Pattern[str]) -> Authorizer:
    """Allow the IDs *predicate* accepts (go-spiffe's ``AdaptMatcher``).

    A compiled regular expression must match the whole ID text
    (``fullmatch``), so ``spiffe://example.org/batch/.*`` cannot be
    satisfied by ``spiffe://example.org/batch/x`` hiding in a longer ID of
    another trust domain.
    """
    if isinstance(predicate, re.Pattern):
        pattern = predicate
        return _Named(
            lambda spiffe_id: pattern.fullmatch(str(spiffe_id)) is not None,
            f"matching({pattern.pattern!r})",
        )
    if not callable(predicate):
        raise TypeError(f"matching() takes a callable or a compiled regex, not {predicate!r}")
    if isinstance(predicate, _Named):
        return predicate
    return _Named(predicate, f"matching({getattr(predicate, '__qualname__', predicate)!r})")


def any_of(*authorizers: Authorizer) -> Authorizer:
    """Allow a caller that any of *authorizers* allows."""
    if not authorizers:
        raise ConfigurationError("any_of() needs at least one authorizer")
    checks = tuple(matching(each) for each in authorizers)
    if len(checks) == 1:
        return checks[0]
    shown = ", ".join(repr(check) for check in checks)
    return _Named(lambda spiffe_id: any(check(spiffe_id) for check in checks), f"any_of({shown})")


def all_of(*authorizers: Authorizer) -> Authorizer:
    """Allow a caller only if every one of *authorizers* allows it."""
    if not authorizers:
        raise ConfigurationError("all_of() needs at least one authorizer")
    checks = tuple(matching(each) for each in authorizers)
    if len(checks) == 1:
        return checks[0]
    shown = ", ".join(repr(check) for check in checks)
    return _Named(lambda spiffe_id: all(check(spiffe_id) for check in checks), f"all_of({shown})")


def coerce(allow: Allow, trust_domain: str | TrustDomain | None = None) -> Authorizer:
    """Turn anything an ``allow=`` parameter accepts into one :class:`Authorizer`.

    - ``None``: :func:`any_id` (every verified caller).
    - an authorizer (any callable): itself, made to fail closed.
    - a :class:`TrustDomain`: :func:`member_of` it.
    - a :class:`SpiffeId` or a string: that one ID.  A string starting with
      ``spiffe://`` is parsed as an ID; any other string is a *bare name*
      meaning that path in *trust_domain* (``"billing"`` is
      ``spiffe://<trust_domain>/billing``), usually the serving identity's
      own trust domain.
    - an iterable of the above: a caller any of them allows.  An empty one
      raises :class:`~spiffile.errors.ConfigurationError`: denying everyone
      is never what ``allow=[]`` read from a configuration meant.

    The result is built once, so a typo fails when the service starts, not
    on the first request.  A bare name without *trust_domain* raises
    :class:`~spiffile.errors.ConfigurationError`.
    """
    domain = None if trust_domain is None else TrustDomain(trust_domain)
    if allow is None:
        return any_id()
    if isinstance(allow, (str, SpiffeId)):
        return one_of(_resolve(allow, domain))
    if isinstance(allow, TrustDomain):
        return member_of(allow)
    if isinstance(allow, bytes):
        raise TypeError("allow= takes SPIFFE IDs as str, not bytes")
    if callable(allow):
        return matching(allow)
    if not isinstance(allow, Iterable):
        raise TypeError(f"allow= cannot be {type(allow).__name__}: {allow!r}")
    ids: list[SpiffeId] = []
    others: list[Authorizer] = []
    for item in allow:
        if isinstance(item, (str, SpiffeId)):
            ids.append(_resolve(item, domain))
        elif isinstance(item, TrustDomain):
            others.append(member_of(item))
        elif callable(item):
            others.append(matching(item))
        else:
            raise TypeError(f"allow= holds {type(item).__name__} {item!r}, not an ID or authorizer")
    if ids:
        others.insert(0, one_of(*ids))
    if not others:
        raise ConfigurationError("allow= is empty: it would refuse every caller")
    return any_of(*others)


def _parse_id(value: str | SpiffeId) -> SpiffeId:
    if isinstance(value, SpiffeId):
        return value
    if not isinstance(value, str):
        raise TypeError(f"a SPIFFE ID must be str or SpiffeId, not {type(value).__name__}")
    return SpiffeId.parse(value)


def _resolve(value: str | SpiffeId, domain: TrustDomain | None) -> SpiffeId:
    """A full ID as itself; a bare name as that path in *domain*."""
    if isinstance(value, SpiffeId) or value[:_SCHEME_LENGTH].lower() == SCHEME:
        return _parse_id(value)  # A mis-cased scheme is an error, not a bare name.
    if domain is None:
        raise ConfigurationError(
            f"bare name {value[:80]!r} in allow= needs a trust domain: "
            "write the full SPIFFE ID or pass the identity's trust domain"
        )
    return domain.id(value)
