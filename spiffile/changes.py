"""Change notifications: what changed in an identity's files, pushed to subscribers.

:meth:`Identity.on_change` registers a callback and
:meth:`Identity.changes` yields the same events to ``async for``.  Both start
push reload (:meth:`Identity.watch`): the file watcher refreshes the views,
then the identity compares its status with the last one it reported and
sends one :class:`Change` naming what differs.  Comparing statuses rather
than hooking each read means a change first noticed on the request path (a
``get`` that re-read the file) is still reported, once.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from spiffile.metrics import NO_METRICS, MetricsRecorder

if TYPE_CHECKING:
    from spiffile.identity import IdentityStatus

__all__ = ["Change", "ChangeFeed", "ChangeKind"]

_log: Final = logging.getLogger("spiffile")


class ChangeKind(str, enum.Enum):
    """One thing that can change in an identity."""

    #: A new version of the key file was loaded (a rotation).
    KEY = "key"
    #: A new version of the bundle file was loaded.
    BUNDLE = "bundle"
    #: A changed key file was refused; the last good key keeps signing.
    KEY_REFUSED = "key_refused"
    #: A changed bundle file was refused (unparsable, rollback); the last good one serves.
    BUNDLE_REFUSED = "bundle_refused"
    #: The identity turned healthy or unhealthy (:attr:`IdentityStatus.healthy`).
    HEALTH = "health"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Change:
    """One notification: what changed, and the identity's state before and after."""

    what: frozenset[ChangeKind]
    kid: str
    previous_kid: str
    bundle_sequence: int | None
    previous_bundle_sequence: int | None
    healthy: bool
    #: The full status after the change (errors of refused files included).
    status: IdentityStatus


class ChangeFeed:
    """Compares successive statuses of one identity; tells subscribers and metrics."""

    def __init__(self, status: IdentityStatus, metrics: MetricsRecorder = NO_METRICS) -> None:
        """Start from *status*, the state already known to everyone."""
        self._lock = threading.Lock()
        self._last = status
        self._callbacks: list[Callable[[Change], None]] = []
        self.metrics = metrics

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call *callback* with every change; return a function that unsubscribes it."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return unsubscribe

    def observe(self, status: IdentityStatus) -> Change | None:
        """Record *status*; when it differs from the last one, notify and return the change."""
        with self._lock:
            last = self._last
            what: set[ChangeKind] = set()
            counts = (
                ("key", status.key.reloads - last.key.reloads, ChangeKind.KEY),
                ("key", status.key.failures - last.key.failures, ChangeKind.KEY_REFUSED),
                ("bundle", status.bundle.reloads - last.bundle.reloads, ChangeKind.BUNDLE),
                (
                    "bundle",
                    status.bundle.failures - last.bundle.failures,
                    ChangeKind.BUNDLE_REFUSED,
                ),
            )
            if any(delta < 0 for _file, delta, _kind in counts):
                # A status taken before the last one observed: already reported.
                return None
            for _file, delta, kind in counts:
                if delta > 0:
                    what.add(kind)
            if status.kid != last.kid:
                what.add(ChangeKind.KEY)
            if status.bundle_sequence != last.bundle_sequence:
                what.add(ChangeKind.BUNDLE)
            if status.healthy != last.healthy:
                what.add(ChangeKind.HEALTH)
            if not what:
                return None
            self._last = status
            callbacks = list(self._callbacks)
        for file, delta, kind in counts:
            ok = kind in (ChangeKind.KEY, ChangeKind.BUNDLE)
            for _ in range(max(0, delta)):
                self.metrics.reload(file, ok)
        self.metrics.state(status)
        change = Change(
            what=frozenset(what),
            kid=status.kid,
            previous_kid=last.kid,
            bundle_sequence=status.bundle_sequence,
            previous_bundle_sequence=last.bundle_sequence,
            healthy=status.healthy,
            status=status,
        )
        for callback in callbacks:
            try:
                callback(change)
            except Exception:
                # A subscriber's bug must not stop the watcher or the others.
                _log.exception("spiffile: a change callback failed")
        return change
