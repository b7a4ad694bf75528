"""Per-path (or per-gRPC-method) access rules, shared by every server integration.

A pattern is an exact path (``/healthz``) or a prefix ending in ``*``
(``/static/*`` matches ``/static/app.js``, not ``/static``).  The most
specific pattern wins: an exact pattern over any prefix, a longer prefix over
a shorter one, so ``{"/admin/*": ["ops"], "/admin/status": None}`` reads as
it is written.  Each rule says whether a caller is needed and, if so, which
callers are allowed (an :mod:`spiffile.authorize` authorizer).

Paths are matched as the server hands them over.  A path that is not in
normal form (``//``, ``.`` or ``..`` segments) may be normalised by the
application or a proxy after matching, so it gets the rule of its raw form
and of its normalised form combined, the stricter access and both
authorizers: ``/public/../admin`` can never borrow ``/public/*``'s rule.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from spiffile import authorize
from spiffile.spiffe_id import SpiffeId, TrustDomain

__all__ = ["Access", "DeferredAllow", "Rule", "Rules"]


class Access(enum.IntEnum):
    """How much a rule asks of a request; a higher value is stricter."""

    #: No token is read and no caller is attached (health checks, API docs).
    EXEMPT = 0
    #: A valid token attaches its caller; a request without one goes on; a bad one is a 401.
    OPTIONAL = 1
    #: A valid token from an allowed caller, else 401 (no or bad token) or 403 (not allowed).
    REQUIRED = 2


@dataclass(frozen=True)
class Rule:
    """What one request must bring: *access* and, for a caller, *authorizer*."""

    pattern: str
    access: Access
    authorizer: authorize.Authorizer

    def allows(self, spiffe_id: SpiffeId) -> bool:
        """Whether a verified *spiffe_id* may go on under this rule."""
        return self.authorizer(spiffe_id) is True


_ANY: Final = authorize.any_id()
_DEFAULT: Final = "<default>"


class Rules:
    """A compiled table of patterns; :meth:`match` picks the rule for one path."""

    def __init__(
        self,
        *,
        allow: authorize.Allow = None,
        rules: Mapping[str, authorize.Allow] | None = None,
        exempt: Iterable[str] = (),
        optional: Iterable[str] = (),
        trust_domain: str | TrustDomain | None = None,
    ) -> None:
        """Build the table once; a bad pattern, ID or a pattern listed twice fails here.

        *allow* is the rule of every path no pattern names; *rules* maps
        patterns to their own ``allow=``; *exempt* and *optional* list
        patterns that need no caller or take one if it comes.  Bare names in
        an ``allow=`` are IDs in *trust_domain*.
        """
        for name, given in (("exempt", exempt), ("optional", optional), ("rules", rules)):
            if isinstance(given, str):
                raise TypeError(f"{name} must be a collection of patterns, not one string")
        self.default = Rule(_DEFAULT, Access.REQUIRED, authorize.coerce(allow, trust_domain))
        table: dict[str, Rule] = {}

        def add(pattern: str, rule: Rule) -> None:
            _check_pattern(pattern)
            if pattern in table:
                raise ValueError(f"pattern {pattern!r} is listed twice")
            table[pattern] = rule

        for pattern in exempt:
            add(pattern, Rule(pattern, Access.EXEMPT, _ANY))
        for pattern in optional:
            add(pattern, Rule(pattern, Access.OPTIONAL, _ANY))
        for pattern, allowed in (rules or {}).items():
            add(pattern, Rule(pattern, Access.REQUIRED, authorize.coerce(allowed, trust_domain)))
        self._exact = {p: r for p, r in table.items() if not p.endswith("*")}
        # Longest prefix first: the first hit is the most specific.
        self._prefixes = sorted(
            ((p[:-1], r) for p, r in table.items() if p.endswith("*")),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def match(self, path: str) -> Rule:
        """The rule for *path*: its own, combined with its normal form's when they differ."""
        rule = self._lookup(path)
        if "//" in path or "/." in path:
            normal = _normalise(path)
            if normal != path:
                rule = _stricter(rule, self._lookup(normal))
        return rule

    def _lookup(self, path: str) -> Rule:
        exact = self._exact.get(path)
        if exact is not None:
            return exact
        for prefix, rule in self._prefixes:
            if path.startswith(prefix):
                return rule
        return self.default


def _check_pattern(pattern: object) -> None:
    if not isinstance(pattern, str):
        raise TypeError(f"a path pattern must be str, not {type(pattern).__name__}")
    if not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r} must start with '/'")
    if "*" in pattern[:-1]:
        raise ValueError(f"path pattern {pattern!r}: '*' may only end a pattern (a prefix)")


def _normalise(path: str) -> str:
    """*path* with empty, ``.`` and ``..`` segments resolved (RFC 3986 §5.2.4, roughly)."""
    segments: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    return "/" + "/".join(segments)


def _stricter(first: Rule, second: Rule) -> Rule:
    """One rule that passes only what both pass."""
    if first is second:
        return first
    access = max(first.access, second.access)
    checks = [r.authorizer for r in (first, second) if r.access is Access.REQUIRED]
    combined = authorize.all_of(*checks) if checks else _ANY
    return Rule(f"{first.pattern} & {second.pattern}", access, combined)


class DeferredAllow:
    """An ``allow=`` whose bare names wait for the serving identity's trust domain.

    A decorator or dependency is built before the application knows its
    identity (``@require_caller(allow=["orders"])`` at import time).  The
    value is still checked at once, against a stand-in trust domain, so a
    malformed ID fails at import; the real authorizer is built on first use
    per trust domain.
    """

    _PROBE: Final = "probe.invalid"

    def __init__(self, allow: authorize.Allow, trust_domain: str | TrustDomain | None = None):
        if isinstance(allow, Iterable) and not isinstance(allow, (str, SpiffeId, TrustDomain)):
            allow = tuple(allow)  # A generator must survive being read twice.
        self._allow = allow
        authorize.coerce(allow, self._PROBE if trust_domain is None else trust_domain)
        self._built: dict[str, authorize.Authorizer] = {}

    def authorizer(self, trust_domain: str) -> authorize.Authorizer:
        """The authorizer for an identity in *trust_domain* (built once)."""
        built = self._built.get(trust_domain)
        if built is None:
            built = authorize.coerce(self._allow, trust_domain)
            self._built[trust_domain] = built
        return built

    def rule(self, pattern: str, trust_domain: str) -> Rule:
        """A rule requiring a caller this ``allow=`` admits."""
        return Rule(pattern, Access.REQUIRED, self.authorizer(trust_domain))
