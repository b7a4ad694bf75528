"""Which receiver a client's request is for: the audience its token must name.

A JWT-SVID names one receiver (JWT-SVID §3, ``aud``), so a client that
talks to several services needs a token per service.  One auth object can
serve them all given an audience *resolver*:

- a SPIFFE ID (or a bare name, meaning that name in the caller's own trust
  domain): every request goes to that one receiver;
- a mapping from where a request goes to whom it is for, keyed by origin
  (``"https://billing.internal:8443"``), ``host:port`` or ``host``; the
  most specific key that matches wins;
- a callable ``url -> SPIFFE ID`` for anything else (service discovery).

A request to a destination the resolver does not know raises
:class:`~spiffile.errors.ConfigurationError` before anything is sent: a
token is never sent to a host nobody said to send it to.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Mapping
from typing import Final, TypeAlias

from spiffile.errors import ConfigurationError
from spiffile.spiffe_id import SCHEME, SpiffeId, TrustDomain

__all__ = ["Audience", "AudienceResolver", "resolve_name"]

#: What a client's ``audience=`` accepts.
Audience: TypeAlias = (
    "str | SpiffeId | Mapping[str, str | SpiffeId] | Callable[[str], str | SpiffeId | None]"
)

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def resolve_name(value: str | SpiffeId, trust_domain: str) -> str:
    """A SPIFFE ID's text; a bare name is that path in *trust_domain* (as ``allow=`` reads it)."""
    if isinstance(value, SpiffeId):
        return str(value)
    if not isinstance(value, str):
        raise TypeError(f"an audience must be a SPIFFE ID or a name, not {type(value).__name__}")
    if value[: len(SCHEME)].lower() == SCHEME:
        return str(SpiffeId.parse(value))
    return str(TrustDomain(trust_domain).id(value))


class AudienceResolver:
    """Maps a request URL to the audience of its token; everything static is checked now."""

    def __init__(self, audience: Audience, trust_domain: str) -> None:
        self._trust_domain = trust_domain
        self._fixed: str | None = None
        self._table: dict[str, str] = {}
        self._function: Callable[[str], str | SpiffeId | None] | None = None
        if isinstance(audience, (str, SpiffeId)):
            self._fixed = resolve_name(audience, trust_domain)
        elif isinstance(audience, Mapping):
            if not audience:
                raise ConfigurationError("the audience map is empty: it names no receiver")
            for key, value in audience.items():
                self._table[_normal_key(key)] = resolve_name(value, trust_domain)
        elif callable(audience):
            self._function = audience
        else:
            raise TypeError(f"audience cannot be {type(audience).__name__}")

    @property
    def fixed(self) -> str | None:
        """The one audience, when every request has the same."""
        return self._fixed

    def __call__(self, url: str) -> str:
        """The audience for a request to *url*."""
        if self._fixed is not None:
            return self._fixed
        if self._function is not None:
            found = self._function(url)
            if found is None:
                where = _where(url)
                raise ConfigurationError(f"the audience resolver knows no receiver for {where}")
            return resolve_name(found, self._trust_domain)
        for key in _candidates(url):
            audience = self._table.get(key)
            if audience is not None:
                return audience
        raise ConfigurationError(f"no audience is configured for {_where(url)}")

    def __repr__(self) -> str:
        if self._fixed is not None:
            return repr(self._fixed)
        if self._function is not None:
            return f"AudienceResolver({self._function!r})"
        return f"AudienceResolver({self._table!r})"


def _normal_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise TypeError(f"an audience map key must be a non-empty str, not {key!r}")
    if "://" in key:
        parts = urllib.parse.urlsplit(key)
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"audience map key {key!r}: an origin is scheme://host[:port]")
        scheme = parts.scheme.lower()
        port = parts.port or _DEFAULT_PORTS.get(scheme)
        return f"{scheme}://{parts.hostname}:{port}"
    return key.lower()


def _candidates(url: str) -> tuple[str, ...]:
    """The keys a request to *url* may match, most specific first."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    bracketed = f"[{host}]" if ":" in host else host  # IPv6 literals keep their brackets.
    return (f"{scheme}://{host}:{port}", f"{bracketed}:{port}", bracketed, host)


def _where(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return repr(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"[:200])
