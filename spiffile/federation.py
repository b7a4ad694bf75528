"""Federation from files: a directory of trust documents, one per trust domain.

``SPIFFILE_TRUST_DIR`` names a directory holding ``<trust-domain>.json``
files, the layout a Kubernetes ConfigMap of bundles gives when mounted (one
key per trust domain).  Each file is a spiffile bundle, a SPIFFE bundle or
spiffe-helper's bundle map, recognised by its shape (``spiffile.trust``), and
is hot-reloaded like the bundle of an identity (PROFILE.md §7): a bad or
rolled-back rewrite keeps the last good version, adding a file adds its
trust domain, removing it removes the domain.  A token whose ``sub`` lies in
a trust domain with no file is an unknown identity.

:class:`TrustDirectory` is a trust source (``spiffile.trust.TrustSource``)
and also verifies on its own, for services that only check callers::

    trust = TrustDirectory("/etc/spiffe/trust")
    caller = trust.verify(token, audience="spiffe://example.org/billing")
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final

from spiffile.caller import Caller
from spiffile.errors import ConfigurationError, InvalidSpiffeIdError, UnknownIdentityError
from spiffile.files import DirectoryView, FileStatus, Watcher
from spiffile.spiffe_id import SpiffeId, validate_trust_domain
from spiffile.svid import jwt as _jwt
from spiffile.trust import TrustDocument, parse_trust_document, refuse_rollback

__all__ = ["ENV_TRUST_DIR", "SUFFIX", "TrustDirectory"]

ENV_TRUST_DIR: Final = "SPIFFILE_TRUST_DIR"
#: Each trust domain's document is ``<trust-domain>.json``.
SUFFIX: Final = ".json"


def _is_trust_domain(name: str) -> bool:
    try:
        validate_trust_domain(name)
    except InvalidSpiffeIdError:
        return False
    return True


class TrustDirectory:
    """A hot-reloading trust source over a directory of ``<trust-domain>.json`` documents."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """List *path* and load every document now; a bad one is reported, not fatal.

        Raises :class:`ConfigurationError` when *path* is not a readable directory.
        """
        self._clock = clock
        self._watcher: Watcher | None = None
        try:
            self._view: DirectoryView[TrustDocument] = DirectoryView(
                path,
                lambda name, data: parse_trust_document(data, name),
                suffix=SUFFIX,
                description="trust document",
                accept_name=_is_trust_domain,
                accept=refuse_rollback,
                clock=clock,
            )
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path.
            raise ConfigurationError(f"cannot read trust directory: {exc}") from exc

    @property
    def path(self) -> str:
        """The directory."""
        return self._view.path

    @property
    def trust_domains(self) -> list[str]:
        """The trust domains with a usable document now, sorted."""
        return self._view.names()

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        """The trust-source protocol: the current document of *trust_domain*."""
        document = self._view.get(str(trust_domain))
        if document is None:
            raise UnknownIdentityError(
                f"no trust document for trust domain {str(trust_domain)[:255]!r} "
                f"in {self._view.path}"
            )
        return document

    def status(self) -> dict[str, FileStatus]:
        """Per trust domain, whether its file on disk is what is being served."""
        return self._view.status()

    def verify(
        self,
        token: object,
        audience: str | SpiffeId,
        *,
        now: float | None = None,
        leeway: float = _jwt.DEFAULT_LEEWAY,
        max_lifetime: float | None = _jwt.DEFAULT_MAX_LIFETIME,
        issuer: str | None = None,
    ) -> Caller:
        """Verify *token* for *audience* against these documents, at *now* (default: the clock)."""
        return _jwt.verify(
            token,
            self,
            audience=audience,
            now=self._clock() if now is None else now,
            leeway=leeway,
            max_lifetime=max_lifetime,
            issuer=issuer,
        )

    def watch(self) -> TrustDirectory:
        """Reload as soon as the directory changes (watchfiles), off the request path."""
        if self._watcher is None:
            self._watcher = Watcher([self._view])  # type: ignore[list-item]
        return self

    def close(self) -> None:
        """Stop the watcher started by :meth:`watch`."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def __enter__(self) -> TrustDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TrustDirectory({self._view.path!r})"
