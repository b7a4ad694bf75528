"""``IdentityStatus``: what :meth:`Identity.status` reports, for health endpoints and logs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spiffile.files import FileStatus
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from spiffile.tls import X509Status

__all__ = ["IdentityStatus"]


@dataclass(frozen=True)
class IdentityStatus:
    """Health of an identity: ``healthy`` is false while any file serves a last good version."""

    id: SpiffeId
    kid: str
    healthy: bool
    key: FileStatus
    bundle: FileStatus
    key_bound: bool
    bundle_sequence: int | None
    #: Per federated trust domain (``SPIFFILE_TRUST_DIR``), the health of its document.
    #: A bad federated document does not make this identity unhealthy: it only
    #: affects callers from that trust domain.
    trust: Mapping[str, FileStatus] = field(default_factory=dict)
    #: The X.509-SVID's health and expiry, when the identity has X.509 files.
    x509: X509Status | None = None

    def as_dict(self, *, detail: bool = True) -> dict[str, Any]:
        """A JSON-ready form, for health endpoints and logs (no key material, no token).

        With ``detail=False`` file paths and error messages are left out:
        what an endpoint open to anyone may show.
        """

        def file(status: FileStatus) -> dict[str, Any]:
            out: dict[str, Any] = {
                "healthy": status.healthy,
                "reloads": status.reloads,
                "failures": status.failures,
                "loaded_at": status.loaded_at,
            }
            if detail:
                out["path"] = status.path
                out["error"] = status.error
            return out

        out: dict[str, Any] = {
            "id": str(self.id),
            "healthy": self.healthy,
            "kid": self.kid,
            "key_bound": self.key_bound,
            "bundle_sequence": self.bundle_sequence,
            "key": file(self.key),
            "bundle": file(self.bundle),
            "trust": {domain: file(status) for domain, status in self.trust.items()},
        }
        if self.x509 is not None:
            # Expiry is what a probe watches: an SVID nobody renews fails every
            # handshake once it passes notAfter (X.509-SVID §4.1).
            x509: dict[str, Any] = {
                "id": str(self.x509.id),
                "healthy": self.x509.healthy,
                "expires_at": self.x509.expires_at,
                "svid": file(self.x509.svid),
                "key": file(self.x509.key),
                "bundle": file(self.x509.bundle),
            }
            if detail:
                x509["error"] = self.x509.error
            out["x509"] = x509
        return out
