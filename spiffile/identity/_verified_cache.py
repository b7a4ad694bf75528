"""The tokens an identity verified, remembered by their exact text against one bundle.

:meth:`Identity.verify` answers a token it verified before from here, after
checking again what depends on the call (audience, times, issuer); a reloaded
bundle empties the cache.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from typing import Any, Final

from spiffile.bundle import Bundle
from spiffile.caller import Caller

__all__ = ["_MAX_CACHED_TOKEN", "_Verified", "_VerifiedTokens"]

#: Longest token the verified-token cache keeps: a plain JWT-SVID is about 500
#: characters; the cap bounds each entry (token and claims) to a few KiB.
_MAX_CACHED_TOKEN: Final = 2048


class _Verified:
    """A token this identity verified: what every later call must still check."""

    __slots__ = (
        "audiences",
        "bundle",
        "claims",
        "expires",
        "id",
        "issued",
        "issuer",
        "nested",
        "not_before",
        "prepared",
        "trust",
    )

    audiences: tuple[object, ...]
    expires: int
    issued: int | None
    not_before: int | None
    issuer: object

    def __init__(self, bundle: Bundle, caller: Caller) -> None:
        # A copy of the claims: a caller that edits its mapping, or a list or
        # object inside it, must not change what the next request sees (each
        # hit hands out a copy too: a deep one only when a claim is a container).
        # (A loop rather than any() over a generator: this runs on every
        # verification of a new token, row "Identity.verify, token never seen".)
        claims = dict(caller.claims)
        nested = False
        for value in claims.values():
            kind = type(value)
            if kind is dict or kind is list:
                nested = True
                claims = copy.deepcopy(claims)
                break
        self.nested = nested
        self.bundle = bundle
        self.id = caller.id
        self.claims = claims
        self.trust = caller.trust
        # The fields the checks read are filled in by prepare(), on the
        # entry's first reuse: most tokens entering probation never come back.
        self.prepared = False

    def prepare(self) -> None:
        """Fill in what :meth:`still_valid` and the issuer check read; before the first hit."""
        claims = self.claims
        audience = claims.get("aud")
        # A tuple: one audience (the profile's), or a SPIFFE token's few.
        self.audiences = (audience,) if type(audience) is str else tuple(audience or ())
        # svid.verify accepted these as NumericDates (integers) or absent.
        self.expires = claims["exp"]
        self.issued = claims.get("iat")
        self.not_before = claims.get("nbf")
        self.issuer = claims.get("iss")
        self.prepared = True

    def copy_claims(self) -> dict[str, Any]:
        """The claims for one caller: its own copy, down to nested lists and objects."""
        return copy.deepcopy(self.claims) if self.nested else dict(self.claims)

    def still_valid(
        self, audience: str, now: float, leeway: float, max_lifetime: float | None
    ) -> bool:
        """The checks svid.verify makes that depend on the call, not on the token's bytes.

        Each states what passes, so a NaN now or leeway fails it (and the full
        verification then says why).
        """
        return (
            audience in self.audiences
            and self.expires > now - leeway
            and (self.not_before is None or self.not_before <= now + leeway)
            and (self.issued is None or self.issued <= now + leeway)
            and (max_lifetime is None or self.expires - now <= max_lifetime + leeway)
        )


class _VerifiedTokens:
    """Tokens verified against one bundle, by their exact text: a segmented LRU.

    A new entry goes to the probation segment; a second use promotes it to
    the protected one, whose least recently used entry drops back to
    probation when it is full.  A stream of distinct tokens (each needing a
    valid signature by a bound key to enter at all) only churns probation,
    so the tokens callers actually reuse stay.  Memory is bounded by the
    entry count and :data:`_MAX_CACHED_TOKEN`.
    """

    __slots__ = (
        "_bundle",
        "_lock",
        "_probation",
        "_probation_cap",
        "_protected",
        "_protected_cap",
    )

    def __init__(self, size: int) -> None:
        self._probation_cap = max(1, size // 4)
        self._protected_cap = max(0, size - self._probation_cap)
        self._probation: OrderedDict[str, _Verified] = OrderedDict()
        self._protected: OrderedDict[str, _Verified] = OrderedDict()
        self._lock = threading.Lock()
        self._bundle: Bundle | None = None

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)

    def get(self, token: str) -> _Verified | None:
        entry = self._protected.get(token)
        if entry is not None:
            with self._lock:
                if token in self._protected:
                    self._protected.move_to_end(token)
            return entry
        entry = self._probation.get(token)
        if entry is not None:
            with self._lock:
                if not entry.prepared:
                    entry.prepare()
                if self._probation.pop(token, None) is not None and self._protected_cap:
                    self._protected[token] = entry
                    if len(self._protected) > self._protected_cap:
                        demoted, value = self._protected.popitem(last=False)
                        self._probation[demoted] = value
                        self._trim()
        return entry

    def add(self, token: str, entry: _Verified) -> None:
        with self._lock:
            if entry.bundle is not self._bundle:
                # A reloaded bundle: every older entry is stale, and would
                # keep the old bundle (possibly large) alive.  Drop them.
                self._probation.clear()
                self._protected.clear()
                self._bundle = entry.bundle
            if token in self._protected:
                # Every protected entry is prepared: get() reads it unlocked.
                entry.prepare()
                self._protected[token] = entry
                return
            probation = self._probation
            probation[token] = entry
            probation.move_to_end(token)
            if len(probation) > self._probation_cap:
                probation.popitem(last=False)  # One in, at most one out.

    def clear(self) -> None:
        with self._lock:
            self._probation.clear()
            self._protected.clear()

    def _trim(self) -> None:
        while len(self._probation) > self._probation_cap:
            self._probation.popitem(last=False)
