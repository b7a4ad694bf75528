"""A bounded replay cache: accept each one-time token once.

A JWT-SVID is a bearer credential, replayable to its audience until it
expires (PROFILE.md §10).  A receiver that needs one-time use has senders
mint with ``identity.token(audience, jti=True)`` and checks every verified
caller here::

    replays = ReplayCache()
    caller = identity.verify(token)
    replays.check(caller)          # ReplayedTokenError the second time

Entries are keyed on the claims, never on the token text: ECDSA signatures
are malleable, so one token has several valid encodings (PROFILE.md §10).
The key is the ``sub`` and ``jti`` (and ``iss`` when present); a token
without ``jti`` is refused unless ``require_jti=False``, in which case its
whole claim set is the key.  An entry lives until the token's ``exp`` plus
the leeway (after that, verification refuses the token anyway), so memory
is bounded by the number of tokens accepted per lifetime; past *max_entries*
live entries new tokens are refused rather than old ones forgotten (failing
closed).  Safe to share between threads.  One process only: replicas behind
a load balancer each keep their own.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from spiffile.caller import Caller
from spiffile.errors import ClaimsError, ReplayCacheFullError, ReplayedTokenError
from spiffile.svid import DEFAULT_LEEWAY

__all__ = ["DEFAULT_MAX_ENTRIES", "ReplayCache"]

#: Live entries kept at most (about 200 bytes each).
DEFAULT_MAX_ENTRIES: Final = 100_000
_MAX_JTI: Final = 256


class ReplayCache:
    """Remembers the one-time tokens already accepted, until they expire."""

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        leeway: float = DEFAULT_LEEWAY,
        require_jti: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """*leeway* must be the verifier's: an entry lives until ``exp + leeway``."""
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self._max_entries = max_entries
        self._leeway = leeway
        self._require_jti = require_jti
        self._clock = clock
        self._lock = threading.Lock()
        self._expiry: dict[tuple[str, ...], float] = {}
        self._heap: list[tuple[float, tuple[str, ...]]] = []

    def __len__(self) -> int:
        """The number of entries held (expired ones go on the next check)."""
        return len(self._expiry)

    def check(self, caller: Caller | Mapping[str, Any], *, now: float | None = None) -> None:
        """Accept a verified token's claims once; raise :class:`ReplayedTokenError` after.

        *caller* is what :meth:`Identity.verify` returned (or its claims).
        Call it only after verification: an unverified token would spend a
        real sender's ``jti``.
        """
        claims = caller.claims if isinstance(caller, Caller) else caller
        key = self._key(claims)
        expires = claims.get("exp")
        if type(expires) is not int:
            raise ClaimsError("claim 'exp' must be an integer NumericDate")
        moment = self._clock() if now is None else now
        with self._lock:
            self._expire(moment)
            if key in self._expiry:
                error = ReplayedTokenError("this one-time token was already accepted")
                error.subject = key[1][:200]
                raise error
            if len(self._expiry) >= self._max_entries:
                raise ReplayCacheFullError(
                    f"the replay cache holds {self._max_entries} unexpired tokens"
                )
            until = expires + self._leeway
            self._expiry[key] = until
            heapq.heappush(self._heap, (until, key))

    def _key(self, claims: Mapping[str, Any]) -> tuple[str, ...]:
        subject = claims.get("sub")
        if not isinstance(subject, str):
            raise ClaimsError("claim 'sub' is missing or not a string")
        issuer = claims.get("iss")
        issuer_text = issuer if isinstance(issuer, str) else ""
        jti = claims.get("jti")
        if isinstance(jti, str) and 0 < len(jti) <= _MAX_JTI:
            return ("jti", subject, issuer_text, jti)
        if jti is not None or self._require_jti:
            raise ClaimsError(
                f"claim 'jti' must be a string of 1 to {_MAX_JTI} characters for a one-time token"
            )
        # No jti: the whole claim set, canonically encoded, is the token's identity.
        canonical = json.dumps(dict(claims), sort_keys=True, separators=(",", ":"))
        return ("claims", subject, issuer_text, hashlib.sha256(canonical.encode()).hexdigest())

    def _expire(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            until, key = heapq.heappop(heap)
            if self._expiry.get(key) == until:
                del self._expiry[key]
