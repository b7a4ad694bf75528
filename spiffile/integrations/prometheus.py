"""Prometheus metrics for an identity (extra ``spiffile[prometheus]``, prometheus-client).

A :class:`~spiffile.metrics.MetricsRecorder` that writes into a Prometheus
registry::

    from prometheus_client import start_http_server
    from spiffile.integrations.prometheus import PrometheusMetrics

    identity = Identity.from_env(metrics=PrometheusMetrics())
    identity.watch()                       # reloads are counted as they happen
    start_http_server(9100, addr="127.0.0.1")

Metrics (with the default ``namespace="spiffile"``):

- ``spiffile_verifications_total{result}``: inbound tokens checked, by
  result (``ok`` or the error code: ``expired``, ``audience``, ``signature``,
  ``unknown_identity``, ...);
- ``spiffile_tokens_minted_total`` and ``spiffile_token_cache_hits_total``;
- ``spiffile_reloads_total{file}`` and ``spiffile_reload_failures_total{file}``
  (``file`` is ``key`` or ``bundle``);
- ``spiffile_bundle_sequence`` (NaN without ``spiffe_sequence``),
  ``spiffile_healthy``, ``spiffile_key_bound`` and
  ``spiffile_serving_last_good{file}`` (1 while a changed file was refused and
  its last good version serves, PROFILE.md §7.3).

Labels never hold a SPIFFE ID or anything from a request, so cardinality
stays fixed.  One recorder per registry: give each identity of a process its
own registry (or namespace).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "spiffile.integrations.prometheus needs prometheus-client: "
        f"pip install 'spiffile[prometheus]' ({exc})",
        name=exc.name,
    ) from exc

if TYPE_CHECKING:
    from spiffile.identity import IdentityStatus

__all__ = ["PrometheusMetrics"]


class PrometheusMetrics:
    """Records what an identity does into *registry* (the default one if not given)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "spiffile"
    ) -> None:
        """Create and register the metrics; a second recorder on one registry clashes."""
        target = REGISTRY if registry is None else registry
        self.verifications = Counter(
            "verifications",
            "Inbound tokens checked, by result code.",
            ["result"],
            namespace=namespace,
            registry=target,
        )
        self.tokens_minted = Counter(
            "tokens_minted", "Tokens signed.", namespace=namespace, registry=target
        )
        self.token_cache_hits = Counter(
            "token_cache_hits",
            "Tokens served from the identity's cache.",
            namespace=namespace,
            registry=target,
        )
        self.reloads = Counter(
            "reloads", "Changed files loaded.", ["file"], namespace=namespace, registry=target
        )
        self.reload_failures = Counter(
            "reload_failures",
            "Changed files refused (the last good version kept serving).",
            ["file"],
            namespace=namespace,
            registry=target,
        )
        self.bundle_sequence = Gauge(
            "bundle_sequence",
            "The bundle's spiffe_sequence (NaN when it has none).",
            namespace=namespace,
            registry=target,
        )
        self.healthy = Gauge(
            "healthy", "1 while the identity is healthy.", namespace=namespace, registry=target
        )
        self.key_bound = Gauge(
            "key_bound",
            "1 while the signing key is bound in the bundle.",
            namespace=namespace,
            registry=target,
        )
        self.serving_last_good = Gauge(
            "serving_last_good",
            "1 while a changed file was refused and its last good version serves.",
            ["file"],
            namespace=namespace,
            registry=target,
        )
        for file in ("key", "bundle"):
            # Present from the start, so that rate() and alerts see zeros.
            self.reloads.labels(file)
            self.reload_failures.labels(file)
            self.serving_last_good.labels(file)

    def verification(self, result: str) -> None:
        """Count one verification by result code."""
        self.verifications.labels(result).inc()

    def token_minted(self) -> None:
        """Count one signed token."""
        self.tokens_minted.inc()

    def token_cache_hit(self) -> None:
        """Count one token served from the cache."""
        self.token_cache_hits.inc()

    def reload(self, file: str, ok: bool) -> None:
        """Count one reload (or refused reload) of *file*."""
        (self.reloads if ok else self.reload_failures).labels(file).inc()

    def state(self, status: IdentityStatus) -> None:
        """Set the gauges from *status*."""
        sequence = status.bundle_sequence
        self.bundle_sequence.set(float("nan") if sequence is None else sequence)
        self.healthy.set(1 if status.healthy else 0)
        self.key_bound.set(1 if status.key_bound else 0)
        self.serving_last_good.labels("key").set(0 if status.key.healthy else 1)
        self.serving_last_good.labels("bundle").set(0 if status.bundle.healthy else 1)
