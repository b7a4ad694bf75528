"""Compact storage of identity entries: what keeps a 100k-identity bundle small.

The contract, and all a reader of :mod:`spiffile.bundle.document` needs:

- :class:`Compactor` is an ``object_hook`` for ``json.loads``.  While a
  document is parsed it turns every identity entry written in the producers'
  exact shape (PROFILE.md §4.2: one or more JWKs with exactly the members
  ``kty, crv, x, y, kid, use, alg`` in that order, ``EC``/``P-256``/
  ``jwt-svid``/``ES256``) into a *compact entry*: a flat tuple of strings,
  ``(kid, x, y)`` per key.  Everything else stays as parsed.
- :meth:`Compactor.accounted` says whether the result can be trusted; when it
  returns ``False`` the caller parses again without the hook.
- :func:`expand` gives back exactly the JSON the file held (same members,
  same order) and :func:`entry_json` writes exactly what ``json.dumps`` would
  write for it.  ``tests/bundle/test_bundle_compact.py`` holds both equalities
  as property tests.

Why: a parsed entry keeps a dict per entry, a list, a 7-member dict per JWK
and fresh copies of four constant strings; a tuple of strings is a third of
that and is not tracked by the garbage collector (rows "memory per identity"
and "Bundle.parse, 100k identities" in ``benchmarks/README.md``).  JSON never
yields a tuple, so inside a parsed bundle a tuple is always a compact entry;
:class:`~spiffile.bundle.document.Bundle` keeps callers' documents from
putting one there.
"""

from __future__ import annotations

import json
from typing import Any, Final

from spiffile._wire import json_string

__all__ = [
    "JWK_MEMBERS",
    "JWK_READ",
    "Compactor",
    "entry_json",
    "expand",
    "slim_entry",
    "slim_jwk",
    "stored",
]

#: The members a producer writes into each JWK, in order (PROFILE.md §4.2).
JWK_MEMBERS: Final = ("kty", "crv", "x", "y", "kid", "use", "alg")

#: Heads the parse-time stand-in for one producer-shaped JWK, ``(_JWK, kid, x,
#: y)``: a plain tuple that no compact entry (strings only) can be taken for.
_JWK: Final = object()


def _is_jwk(value: object) -> bool:
    return type(value) is tuple and value[0] is _JWK


def _jwk_dict(kid: str, x: str, y: str) -> dict[str, str]:
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": x,
        "y": y,
        "kid": kid,
        "use": "jwt-svid",
        "alg": "ES256",
    }


def expand(keys: tuple[str, ...]) -> dict[str, Any]:
    """The entry a compact entry stands for, exactly as the document held it."""
    return {"keys": [_jwk_dict(*keys[i : i + 3]) for i in range(0, len(keys), 3)]}


#: The members of a JWK that verification reads (PROFILE.md §4.2, §4.3).
JWK_READ: Final = ("kty", "crv", "x", "y", "kid", "use", "alg", "d")


def slim_entry(value: object) -> Any:
    """What verification reads of an identity entry; the rest is not kept.

    Consumers ignore an entry's other members and a JWK's other members
    (PROFILE.md §4.1, §4.2), so a consumer's bundle need not hold them: a
    hostile document made of them would otherwise cost memory in proportion
    to their parsed size.  Looking the slim entry up gives the same result
    and the same error as the entry: the checks read the other values only
    for their type or presence (a value that is not a string becomes ``0``,
    a ``keys`` that is not a list is dropped).
    """
    if type(value) is tuple:
        return value
    if type(value) is not dict:
        return 0
    keys = value.get("keys")
    if type(keys) is not list:
        return {}
    return {"keys": [slim_jwk(jwk) for jwk in keys]}


def slim_jwk(jwk: object) -> Any:
    """What verification reads of one JWK (see :func:`slim_entry`); a stand-in stays."""
    if type(jwk) is tuple:
        return jwk  # A producer-shaped JWK, already reduced while parsing.
    if type(jwk) is not dict:
        return 0
    return {name: _str_or_zero(jwk[name]) for name in JWK_READ if name in jwk}


def _str_or_zero(value: object) -> object:
    return value if type(value) is str else 0


def stored(value: object) -> Any:
    """An identity entry as the document holds it (a compact entry expanded)."""
    if type(value) is tuple:
        return expand(value)
    return value


def entry_json(value: object) -> str:
    """``json.dumps(stored(value))``; written directly for a compact entry.

    Serializing without expanding keeps ``Bundle.to_json`` near the cost of
    one ``json.dumps`` per entry (row "to_json" of ``benchmarks/README.md``).
    """
    if type(value) is not tuple:
        return json.dumps(value)
    jwks = ", ".join(
        f'{{"kty": "EC", "crv": "P-256", "x": {json_string(value[i + 1])}, '
        f'"y": {json_string(value[i + 2])}, "kid": {json_string(value[i])}, '
        f'"use": "jwt-svid", "alg": "ES256"}}'
        for i in range(0, len(value), 3)
    )
    return f'{{"keys": [{jwks}]}}'


class Compactor:
    """An ``object_hook`` for ``json.loads`` that stores producer-shaped entries compactly.

    The hook sees every JSON object, innermost first, without knowing where it
    sits; so it counts what it builds, and :meth:`accounted` checks that every
    JWK stand-in ended inside a compact entry (or was turned back into its
    dict) and every compact entry is a direct value of ``identities``.  When
    that does not hold (a JWK-shaped object elsewhere, duplicate member names,
    ...), the caller parses again without the hook.
    """

    __slots__ = ("entries", "jwks", "used")

    def __init__(self) -> None:
        self.jwks = 0
        self.used = 0
        self.entries = 0

    def hook(self, obj: dict[str, Any]) -> object:
        """Called by the JSON decoder with each object it completes."""
        size = len(obj)
        if size == 7 and tuple(obj) == JWK_MEMBERS:
            kty, crv, x, y, kid, use, alg = obj.values()
            if (
                kty == "EC"
                and crv == "P-256"
                and use == "jwt-svid"
                and alg == "ES256"
                and type(x) is str
                and type(y) is str
                and type(kid) is str
            ):
                self.jwks += 1
                return (_JWK, kid, x, y)
            return obj
        keys = obj.get("keys")
        if type(keys) is not list or not keys:
            return obj
        if size == 1:
            if len(keys) == 1:
                first = keys[0]
                if type(first) is tuple and first[0] is _JWK:
                    self.used += 1
                    self.entries += 1
                    return first[1:]
            elif all(map(_is_jwk, keys)):
                self.used += len(keys)
                self.entries += 1
                return tuple(item for jwk in keys for item in jwk[1:])
        # Not compacted: put back any JWK stand-in as the dict it was.
        for index, jwk in enumerate(keys):
            if _is_jwk(jwk):
                keys[index] = _jwk_dict(*jwk[1:])
                self.used += 1
        return obj

    def absorb(self, other: Compactor) -> None:
        """Add the counts of *other*, which compacted a slice of the same document."""
        self.jwks += other.jwks
        self.used += other.used
        self.entries += other.entries

    def accounted(self, document: object) -> bool:
        """Whether *document* (what the hooked parse returned) holds compact entries only
        where they belong: True means it can be used as it is."""
        if self.used != self.jwks:
            return False
        if not self.entries:
            return True
        if type(document) is not dict:
            return False
        identities = document.get("identities")
        if type(identities) is not dict:
            return False
        return list(map(type, identities.values())).count(tuple) == self.entries
