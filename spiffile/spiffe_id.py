"""SPIFFE IDs as value objects (SPIFFE-ID standard §2, with the profile's length limits).

A SPIFFE ID is ``spiffe://`` + trust domain + optional path.  Parsing is strict
on purpose: anything a URL parser would normalise (case, percent-encoding,
dot segments, a port, userinfo, query, fragment) is rejected, so two strings
that name the same workload are always the same string, and a name can never
escape its trust domain or its provisioned directory.
"""

from __future__ import annotations

import re
from typing import Final

from spiffile.errors import InvalidSpiffeIdError

__all__ = ["MAX_ID_BYTES", "MAX_TRUST_DOMAIN_BYTES", "SpiffeId", "validate_trust_domain"]

SCHEME: Final = "spiffe://"
#: Profile clarification: the SPIFFE-ID standard caps a trust domain at 255 bytes.
MAX_TRUST_DOMAIN_BYTES: Final = 255
#: Profile clarification: the whole ID, scheme included, at most 2048 bytes.
MAX_ID_BYTES: Final = 2048

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
# One regex for the whole ID makes the common (valid) case a single C call;
# the detailed checks below only run to explain a failure or catch dot segments.
_WHOLE = re.compile(r"spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)*)")


class SpiffeId:
    """An immutable, validated SPIFFE ID.

    Equal IDs compare and hash equal; ``str(id)`` gives back the canonical text.
    """

    __slots__ = ("_path", "_text", "_trust_domain")

    _text: str
    _trust_domain: str
    _path: str

    def __init__(self, text: str) -> None:
        """Parse *text*; same as :meth:`parse`."""
        trust_domain, path = _split(text)
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_trust_domain", trust_domain)
        object.__setattr__(self, "_path", path)

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse *text* or raise :class:`InvalidSpiffeIdError` saying which rule it breaks."""
        return cls(text)

    @classmethod
    def from_parts(cls, trust_domain: str, path: str = "") -> SpiffeId:
        """Build ``spiffe://<trust_domain><path>``; *path* is ``""`` or starts with ``/``."""
        if not isinstance(trust_domain, str) or not isinstance(path, str):
            raise TypeError("trust_domain and path must be str")
        validate_trust_domain(trust_domain)  # Else "example.org/admin" would smuggle a path.
        if path and not path.startswith("/"):
            raise InvalidSpiffeIdError(f"path must start with '/': {path[:80]!r}")
        return cls(SCHEME + trust_domain + path)

    @property
    def trust_domain(self) -> str:
        """The trust domain name, e.g. ``example.org``."""
        return self._trust_domain

    @property
    def path(self) -> str:
        """The path, ``""`` for the trust domain's own ID, else ``/a/b``."""
        return self._path

    def member_of(self, trust_domain: str) -> bool:
        """Whether this ID lies in *trust_domain*."""
        return self._trust_domain == trust_domain

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"SpiffeId({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpiffeId):
            return self._text == other._text
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SpiffeId is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("SpiffeId is immutable")

    def __reduce__(self) -> tuple[type[SpiffeId], tuple[str]]:
        return (SpiffeId, (self._text,))


def validate_trust_domain(name: str) -> str:
    """Return *name* if it is a valid trust domain, else raise :class:`InvalidSpiffeIdError`."""
    if not isinstance(name, str):
        raise InvalidSpiffeIdError("trust domain must be a string")
    if not name:
        raise InvalidSpiffeIdError("trust domain is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_TRUST_DOMAIN_BYTES:
        raise InvalidSpiffeIdError(f"trust domain longer than {MAX_TRUST_DOMAIN_BYTES} bytes")
    if not _TRUST_DOMAIN.fullmatch(name):
        raise InvalidSpiffeIdError(
            f"trust domain {name[:80]!r} may hold only lowercase letters, digits, '.', '-' and '_'"
        )
    return name


def _split(text: str) -> tuple[str, str]:
    if not isinstance(text, str):
        raise InvalidSpiffeIdError(f"a SPIFFE ID must be a string, not {type(text).__name__}")
    if len(text) > MAX_ID_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        raise InvalidSpiffeIdError(f"SPIFFE ID longer than {MAX_ID_BYTES} bytes")
    match = _WHOLE.fullmatch(text)
    if match is not None:
        trust_domain, path = match.group(1), match.group(2)
        if len(trust_domain) > MAX_TRUST_DOMAIN_BYTES:
            raise InvalidSpiffeIdError(f"trust domain longer than {MAX_TRUST_DOMAIN_BYTES} bytes")
        if path and ("/./" in path + "/" or "/../" in path + "/"):
            raise InvalidSpiffeIdError(f"SPIFFE ID {text[:80]!r} has a '.' or '..' path segment")
        return trust_domain, path
    raise InvalidSpiffeIdError(_explain(text))


def _explain(text: str) -> str:
    """Say which rule a non-matching ID breaks (only runs on failure)."""
    shown = repr(text[:80])
    if not text.lower().startswith(SCHEME):
        return f"{shown} is not a SPIFFE ID: it must start with 'spiffe://'"
    if not text.startswith(SCHEME):
        return f"{shown}: the scheme must be lowercase 'spiffe://'"
    rest = text[len(SCHEME) :]
    authority, slash, path = rest.partition("/")
    for char, what in (("?", "a query"), ("#", "a fragment"), ("%", "percent-encoding")):
        if char in text:
            return f"SPIFFE ID {shown} must not contain {what}"
    if "@" in authority:
        return f"SPIFFE ID {shown} must not contain userinfo"
    if ":" in authority:
        return f"SPIFFE ID {shown} must not contain a port"
    if not authority:
        return f"SPIFFE ID {shown} has an empty trust domain"
    try:
        validate_trust_domain(authority)
    except InvalidSpiffeIdError as exc:
        return f"SPIFFE ID {shown}: {exc}"
    if slash and not path:
        return f"SPIFFE ID {shown} must not end with '/'"
    for segment in path.split("/"):
        if not segment:
            return f"SPIFFE ID {shown} has an empty path segment"
        if not _SEGMENT.fullmatch(segment):
            return (
                f"SPIFFE ID {shown}: path segments may hold only letters, digits, '.', '-' and '_'"
            )
    return f"{shown} is not a valid SPIFFE ID"
