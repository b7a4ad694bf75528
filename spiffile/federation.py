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

A changed document is parsed off the request path (PROFILE.md §7.2): a
spiffile bundle in slices that give the interpreter away, keeping only what
verification reads; meanwhile every caller is served the previous document,
and a token only the new one can verify waits for it.  With :meth:`watch`
a large changed document is parsed by a thread of its own, never by a caller.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Final

from spiffile.caller import Caller
from spiffile.errors import (
    ConfigurationError,
    InvalidSpiffeIdError,
    SignatureError,
    UnknownIdentityError,
)
from spiffile.files import DirectoryView, FileStatus, Watcher, give_way
from spiffile.spiffe_id import SpiffeId, validate_trust_domain
from spiffile.svid import jwt as _jwt
from spiffile.trust import TrustDocument, parse_trust_document, refuse_rollback

__all__ = ["ENV_TRUST_DIR", "SUFFIX", "Served", "TrustDirectory"]

ENV_TRUST_DIR: Final = "SPIFFILE_TRUST_DIR"
#: Each trust domain's document is ``<trust-domain>.json``.
SUFFIX: Final = ".json"


def _is_trust_domain(name: str) -> bool:
    try:
        validate_trust_domain(name)
    except InvalidSpiffeIdError:
        return False
    return True


def _parse(name: str, data: bytes) -> TrustDocument:
    # In slices, giving the GIL away between them, and slim: the threads
    # verifying against the current document keep running, and members no
    # verifier reads are never kept (PROFILE.md §7.2, §4.5).
    return parse_trust_document(data, name, pause=give_way, slim=True)


def _unknown(trust_domain: str, path: str) -> UnknownIdentityError:
    return UnknownIdentityError(
        f"no trust document for trust domain {trust_domain[:255]!r} in {path}"
    )


class Served:
    """A trust source for one verification that remembers the document it served.

    A token refused by that document may be one only the document being
    loaded can verify (a key rotated in a moment ago): :meth:`replaced`
    waits for that load, and says whether a retry could verify otherwise.
    Only such tokens wait; the document is held no longer than the call.
    """

    __slots__ = ("_document", "_trust_domain", "_view")

    def __init__(self, view: DirectoryView[TrustDocument]) -> None:
        self._view = view
        self._trust_domain: str | None = None
        self._document: TrustDocument | None = None

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        """The trust-source protocol: the current document, remembered."""
        name = self._trust_domain = str(trust_domain)
        document = self._document = self._view.get(name)
        if document is None:
            raise _unknown(name, self._view.path)
        return document

    def replaced(self) -> bool:
        """Whether, once a load under way is done, the domain has another document than served."""
        name = self._trust_domain
        if name is None:
            return False  # Refused before any document was consulted.
        return self._view.latest(name) is not self._document


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
                _parse,
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
            raise _unknown(str(trust_domain), self._view.path)
        return document

    def served(self) -> Served:
        """A trust source over these documents for one verification (see :class:`Served`)."""
        return Served(self._view)

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
        """Verify *token* for *audience* against these documents, at *now* (default: the clock).

        While a changed document is loaded, the token is checked against the
        previous one; only when that refuses it (unknown identity or key, bad
        signature) does the call wait for the load and check it once more.
        """
        at = self._clock() if now is None else now
        served = Served(self._view)
        try:
            return _jwt.verify(
                token,
                served,
                audience=audience,
                now=at,
                leeway=leeway,
                max_lifetime=max_lifetime,
                issuer=issuer,
            )
        except (UnknownIdentityError, SignatureError):
            if not served.replaced():
                raise
        return _jwt.verify(
            token,
            self,
            audience=audience,
            now=at,
            leeway=leeway,
            max_lifetime=max_lifetime,
            issuer=issuer,
        )

    def watch(self) -> TrustDirectory:
        """Reload as soon as the directory changes (watchfiles), off the request path."""
        if self._watcher is None:
            self._watcher = Watcher([self._view])
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
