"""SPIFFE IDs as value objects (SPIFFE-ID standard §2, with the profile's length limits).

A SPIFFE ID is ``spiffe://`` + trust domain + optional path.  Parsing is strict
on purpose: anything a URL parser would normalise (case, percent-encoding,
dot segments, a port, userinfo, query, fragment) is rejected, so two strings
that name the same workload are always the same string, and a name can never
escape its trust domain or its provisioned directory.

Because the text is canonical, a :class:`SpiffeId` equals the ``str`` of the
same ID: ``caller.id == "spiffe://example.org/orders"`` means what it says,
and ``caller.id in {"spiffe://example.org/orders"}`` works too (the hashes
agree).  Raising :class:`TypeError` instead was considered and rejected: it
would also break ``in`` over mixed lists, ``dict`` look-ups and dataclass
equality, while a text comparison cannot be wrong here, since no two
different strings name the same workload.
"""

from __future__ import annotations

import re
from typing import Final

from spiffile.errors import InvalidSpiffeIdError

__all__ = [
    "MAX_ID_BYTES",
    "MAX_TRUST_DOMAIN_BYTES",
    "SpiffeId",
    "TrustDomain",
    "validate_trust_domain",
]

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

    Equal IDs compare and hash equal; ``str(id)`` gives back the canonical text,
    and an ID compares equal to exactly that text (see the module docstring).
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

    def member_of(self, trust_domain: str | TrustDomain) -> bool:
        """Whether this ID lies in *trust_domain* (a name or a :class:`TrustDomain`)."""
        return self._trust_domain == str(trust_domain)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"SpiffeId({self._text!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SpiffeId):
            return self._text == other._text
        if isinstance(other, str):
            # The text is canonical, so text equality is ID equality.
            return self._text == other
        return NotImplemented

    def __hash__(self) -> int:
        # Equal to hash(str(self)), which equality with str requires.
        return hash(self._text)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("SpiffeId is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("SpiffeId is immutable")

    def __reduce__(self) -> tuple[type[SpiffeId], tuple[str]]:
        return (SpiffeId, (self._text,))


class TrustDomain:
    """A validated trust domain name, and a builder of the IDs inside it.

    ``TrustDomain("example.org").id("billing")`` is
    ``SpiffeId("spiffe://example.org/billing")``; ``.id()`` alone is the
    trust domain's own ID (SPIFFE-ID §2.1).  Like :class:`SpiffeId`, a
    trust domain equals its name as a ``str``.
    """

    __slots__ = ("_name",)

    _name: str

    def __init__(self, name: str | TrustDomain) -> None:
        """Validate *name*: raise :class:`InvalidSpiffeIdError` unless it is a trust domain name."""
        text = name._name if isinstance(name, TrustDomain) else validate_trust_domain(name)
        object.__setattr__(self, "_name", text)

    @classmethod
    def of(cls, spiffe_id: SpiffeId) -> TrustDomain:
        """The trust domain *spiffe_id* lies in."""
        return cls(spiffe_id.trust_domain)

    @property
    def name(self) -> str:
        """The name, e.g. ``example.org``."""
        return self._name

    def id(self, path: str = "") -> SpiffeId:
        """The SPIFFE ID of *path* in this trust domain.

        *path* is a workload name (``"billing"``, ``"team/billing"``) or a
        path with its leading slash (``"/billing"``); ``""`` gives the trust
        domain's own ID.  The result is parsed like any ID, so a path that
        is not a valid SPIFFE ID path raises :class:`InvalidSpiffeIdError`.
        """
        if not isinstance(path, str):
            raise TypeError(f"path must be str, not {type(path).__name__}")
        if path and not path.startswith("/"):
            path = "/" + path
        return SpiffeId(SCHEME + self._name + path)

    def __contains__(self, spiffe_id: object) -> bool:
        """``spiffe_id in trust_domain``: whether an ID (or its text) lies in this domain."""
        if isinstance(spiffe_id, str):
            try:
                spiffe_id = SpiffeId(spiffe_id)
            except InvalidSpiffeIdError:
                return False
        return isinstance(spiffe_id, SpiffeId) and spiffe_id.trust_domain == self._name

    def __str__(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"TrustDomain({self._name!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TrustDomain):
            return self._name == other._name
        if isinstance(other, str):
            return self._name == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._name)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("TrustDomain is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("TrustDomain is immutable")

    def __reduce__(self) -> tuple[type[TrustDomain], tuple[str]]:
        return (TrustDomain, (self._name,))


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
