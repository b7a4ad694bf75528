"""The metrics hook: what an :class:`~spiffile.Identity` reports as it works.

An identity calls a :class:`MetricsRecorder` for every verification (by
result code), every minted token and every token served from its cache, and,
whenever it notices that its files changed (push reload through
:meth:`Identity.watch`, or a call to :meth:`Identity.status`), for every
reload and refused reload and with its new status (bundle sequence,
last-good state).  The default records nothing.
:class:`spiffile.integrations.prometheus.PrometheusMetrics` records into a
Prometheus registry; any object with these five methods will do::

    identity = Identity.from_env(metrics=PrometheusMetrics())

Recorders are called on the request path and from the watcher thread: they
must be cheap, thread-safe and must not raise.  They receive codes and file
roles only, never a token, a key or a SPIFFE ID from a request (PROFILE.md §10).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    from spiffile.identity import IdentityStatus

__all__ = ["NO_METRICS", "VERIFIED", "MetricsRecorder", "NoMetrics"]

#: The result code of a verification that succeeded; failures use the
#: error's ``code`` (``expired``, ``audience``, ``unknown_identity``, ...).
VERIFIED: Final = "ok"


@runtime_checkable
class MetricsRecorder(Protocol):
    """What an identity calls; every method returns quickly and never raises."""

    def verification(self, result: str) -> None:
        """One inbound token checked: :data:`VERIFIED`, or the rejection's error code."""

    def token_minted(self) -> None:
        """One token signed by this identity."""

    def token_cache_hit(self) -> None:
        """One token served from the identity's cache instead of being signed."""

    def reload(self, file: str, ok: bool) -> None:
        """*file* (``"key"`` or ``"bundle"``) changed: loaded (*ok*) or refused (last good kept)."""

    def state(self, status: IdentityStatus) -> None:
        """The identity's status after a change: health, kid, bundle sequence, per-file state."""


class NoMetrics:
    """The default recorder: records nothing."""

    __slots__ = ()

    def verification(self, result: str) -> None:
        """Record nothing."""

    def token_minted(self) -> None:
        """Record nothing."""

    def token_cache_hit(self) -> None:
        """Record nothing."""

    def reload(self, file: str, ok: bool) -> None:
        """Record nothing."""

    def state(self, status: IdentityStatus) -> None:
        """Record nothing."""


#: The shared no-op recorder.
NO_METRICS: Final = NoMetrics()
