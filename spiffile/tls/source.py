"""``X509Source``: a workload's X.509-SVID, key and authorities, following the files.

The files are laid out as spiffe-helper writes them (``svid.pem`` leaf first,
``svid_key.pem``, ``svid_bundle.pem``); a rotation caught half way keeps the
last pair that matched serving.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spiffile.authorize import Allow, coerce
from spiffile.errors import ConfigurationError, InvalidSpiffeIdError, SpiffileError
from spiffile.files import DirectoryView, FileStatus, FileView, Watcher
from spiffile.spiffe_id import SpiffeId, validate_trust_domain
from spiffile.svid.x509 import (
    Authorities,
    SvidPrivateKey,
    X509Svid,
    authorities_from_document,
    load_authorities,
    load_certificates,
    load_private_key,
    parse_svid,
    verify_at,
)
from spiffile.tls._contexts import _FacadeContext

__all__ = [
    "ENV_X509_BUNDLE_FILE",
    "ENV_X509_KEY_FILE",
    "ENV_X509_SVID_FILE",
    "SPIFFE_HELPER_NAMES",
    "X509Source",
    "X509Status",
    "_Material",
    "verify_x509_svid",
]

ENV_X509_SVID_FILE: Final = "SPIFFILE_X509_SVID_FILE"
ENV_X509_KEY_FILE: Final = "SPIFFILE_X509_KEY_FILE"
ENV_X509_BUNDLE_FILE: Final = "SPIFFILE_X509_BUNDLE_FILE"
#: The file names spiffe-helper writes (its defaults), used inside a directory.
SPIFFE_HELPER_NAMES: Final = {
    ENV_X509_SVID_FILE: "svid.pem",
    ENV_X509_KEY_FILE: "svid_key.pem",
    ENV_X509_BUNDLE_FILE: "svid_bundle.pem",
}


def verify_x509_svid(
    chain: bytes | Iterable[x509.Certificate], authorities: Authorities
) -> X509Svid:
    """Verify an X.509-SVID chain now (X.509-SVID §5); see :func:`spiffile.svid.x509.verify_at`.

    The clocked one-liner over the pure function, as ``Fernet.decrypt``
    wraps ``Fernet.decrypt_at_time``.
    """
    return verify_at(chain, authorities, time.time())


# -- files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pem:
    raw: bytes
    certificates: tuple[x509.Certificate, ...]


def _parse_chain(data: bytes) -> _Pem:
    return _Pem(data, load_certificates(data))


def _parse_bundle(data: bytes) -> _Pem:
    return _Pem(data, load_authorities(data))


@dataclass(frozen=True)
class _KeyPem:
    raw: bytes
    key: SvidPrivateKey


def _parse_key(data: bytes) -> _KeyPem:
    return _KeyPem(data, load_private_key(data))


@dataclass(frozen=True)
class _Material:
    """One consistent generation of the files: an SVID, its key and the authorities."""

    version: int
    svid: X509Svid
    chain_pem: bytes
    key_pem: bytes
    authorities: Mapping[str, tuple[x509.Certificate, ...]]
    authorities_pem: str


@dataclass(frozen=True)
class X509Status:
    """Health of the X.509 files: what is served, until when, and whether the files agree."""

    id: SpiffeId
    expires_at: float
    healthy: bool
    error: str | None
    svid: FileStatus
    key: FileStatus
    bundle: FileStatus


class X509Source:
    """A workload's X.509-SVID, key and trust domain authorities, following the files."""

    def __init__(
        self,
        svid_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
        bundle_file: str | os.PathLike[str],
        *,
        federated: Mapping[str, Iterable[x509.Certificate]] | None = None,
        trust_dir: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Load the three files; raise a :class:`SpiffileError` if they are unusable now.

        *federated* adds the X.509 authorities of other trust domains, by name.
        *trust_dir* adds those of every ``<trust-domain>.json`` document in a
        directory (PROFILE.md §12.3), followed as files come, change and go.
        """
        self._clock = clock
        self._lock = threading.Lock()
        self._watcher: Watcher | None = None
        self._federated = {td: tuple(certs) for td, certs in (federated or {}).items()}
        views: list[FileView[Any]] = []
        for path, parse, what in (
            (svid_file, _parse_chain, "X.509-SVID"),
            (key_file, _parse_key, "X.509-SVID key"),
            (bundle_file, _parse_bundle, "X.509 bundle"),
        ):
            try:
                views.append(FileView(path, parse, description=what, clock=clock))
            except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path.
                raise ConfigurationError(f"cannot read {what} file: {exc}") from exc
        self._svid_view: FileView[_Pem] = views[0]
        self._key_view: FileView[_KeyPem] = views[1]
        self._bundle_view: FileView[_Pem] = views[2]
        self._trust_dir: DirectoryView[tuple[x509.Certificate, ...]] | None = None
        if trust_dir is not None:
            try:
                self._trust_dir = DirectoryView(
                    trust_dir,
                    lambda _name, data: authorities_from_document(data),
                    suffix=".json",
                    description="trust document (X.509 authorities)",
                    accept_name=_is_trust_domain,
                    clock=clock,
                )
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"cannot read trust directory: {exc}") from exc
        self._seen: tuple[object, ...] | None = None
        self._error: str | None = None
        self._version = 0
        seen = self._observe()
        self._material = self._build(*seen)
        self._seen = seen

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_dir(cls, path: str | os.PathLike[str], **options: Any) -> X509Source:
        """The files spiffe-helper writes in *path*: svid.pem, svid_key.pem, svid_bundle.pem."""
        base = Path(path)
        names = SPIFFE_HELPER_NAMES
        return cls(
            base / names[ENV_X509_SVID_FILE],
            base / names[ENV_X509_KEY_FILE],
            base / names[ENV_X509_BUNDLE_FILE],
            **options,
        )

    @classmethod
    def find(
        cls,
        environ: Mapping[str, str],
        directory: str | None,
        **options: Any,
    ) -> X509Source | None:
        """The X.509 files named by *environ* (each variable wins over *directory*), if any.

        None when no variable is set and *directory* holds no ``svid.pem``: an
        identity without X.509 files works as before.  Once one variable is set
        or ``svid.pem`` exists, all three files must be usable.
        """
        paths: dict[str, str] = {}
        explicit = any(environ.get(variable) for variable in SPIFFE_HELPER_NAMES)
        if not explicit and (
            directory is None or not os.path.lexists(os.path.join(directory, "svid.pem"))
        ):
            return None
        for variable, name in SPIFFE_HELPER_NAMES.items():
            value = environ.get(variable)
            if value:
                paths[variable] = value
            elif directory:
                paths[variable] = os.path.join(directory, name)
            else:
                raise ConfigurationError(f"set {variable} too: the X.509 files come as three")
        return cls(
            paths[ENV_X509_SVID_FILE],
            paths[ENV_X509_KEY_FILE],
            paths[ENV_X509_BUNDLE_FILE],
            **options,
        )

    # -- the material ------------------------------------------------------------------

    def _observe(self) -> tuple[Any, ...]:
        """The current value of every file: compared by identity to notice a change."""
        seen: list[Any] = [self._svid_view.get(), self._key_view.get(), self._bundle_view.get()]
        if self._trust_dir is not None:
            view = self._trust_dir
            seen.append(tuple((name, view.get(name)) for name in view.names()))
        return tuple(seen)

    def _build(self, chain: _Pem, key: _KeyPem, bundle: _Pem, directory: Any = ()) -> _Material:
        svid, _ = parse_svid(chain.raw, key.raw)
        own = svid.id.trust_domain
        authorities: dict[str, tuple[x509.Certificate, ...]] = {}
        for name, certificates in directory:
            if certificates and name != own:
                authorities[name] = certificates
        authorities.update(self._federated)
        authorities[own] = bundle.certificates + self._federated.get(own, ())
        pem = "".join(
            c.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for certs in authorities.values()
            for c in certs
        )
        self._version += 1
        return _Material(self._version, svid, chain.raw, key.raw, authorities, pem)

    def _current(self) -> _Material:
        seen = self._observe()
        if _same(seen, self._seen):
            return self._material
        with self._lock:
            if not _same(seen, self._seen):
                try:
                    self._material = self._build(*seen)
                    self._error = None
                except SpiffileError as exc:
                    # A rotation caught between the certificate and the key:
                    # keep serving the last pair that matched (FileView's rule).
                    self._error = str(exc)
                self._seen = seen
            return self._material

    @property
    def svid(self) -> X509Svid:
        """This workload's current X.509-SVID (leaf first, as in the file)."""
        return self._current().svid

    @property
    def id(self) -> SpiffeId:
        """The SPIFFE ID of the current X.509-SVID."""
        return self._current().svid.id

    @property
    def paths(self) -> tuple[str, str, str]:
        """The SVID, key and bundle files this source follows, in that order."""
        return (self._svid_view.path, self._key_view.path, self._bundle_view.path)

    @property
    def authorities(self) -> Mapping[str, tuple[x509.Certificate, ...]]:
        """The X.509 authorities trusted now, by trust domain."""
        return self._current().authorities

    def status(self) -> X509Status:
        """The SVID served, when it expires, and whether every file is what is served."""
        material = self._current()
        files = (self._svid_view.status(), self._key_view.status(), self._bundle_view.status())
        expires = material.svid.expires_at
        healthy = all(f.healthy for f in files) and self._error is None and expires > self._clock()
        return X509Status(
            id=material.svid.id,
            expires_at=expires,
            healthy=healthy,
            error=self._error,
            svid=files[0],
            key=files[1],
            bundle=files[2],
        )

    def verify(self, chain: bytes | Iterable[x509.Certificate]) -> X509Svid:
        """Verify a peer's X.509-SVID chain against the current authorities, now."""
        return verify_at(chain, self._current().authorities, self._clock())

    # -- TLS ---------------------------------------------------------------------------

    def server_ssl_context(self, allow: Allow) -> ssl.SSLContext:
        """A server context presenting our SVID and admitting only peers *allow* accepts.

        *allow* is anything :func:`spiffile.authorize.coerce` takes; bare
        names are in our own trust domain.  ``None`` admits every peer with a
        valid SVID of a trusted domain: say so explicitly.
        """
        authorizer = coerce(allow, self.id.trust_domain)
        return _FacadeContext(self, authorizer, server=True)

    def client_ssl_context(self, allow: Allow) -> ssl.SSLContext:
        """A client context presenting our SVID and accepting only servers *allow* accepts."""
        authorizer = coerce(allow, self.id.trust_domain)
        return _FacadeContext(self, authorizer, server=False)

    # -- push reload -------------------------------------------------------------------

    def watch(self) -> X509Source:
        """Reload the files as soon as they change (watchfiles), off the handshake path."""
        if self._watcher is None:
            self._watcher = Watcher([self._svid_view, self._key_view, self._bundle_view])  # type: ignore[list-item]
            # The trust directory is checked on every new connection (one stat).
        return self

    def close(self) -> None:
        """Stop the watcher started by :meth:`watch`."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def __enter__(self) -> X509Source:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"X509Source({str(self._material.svid.id)!r})"


def _same(seen: tuple[Any, ...], before: tuple[Any, ...] | None) -> bool:
    # Identity, not equality: a view returns the same object until its file changes.
    if before is None or len(seen) != len(before):
        return False
    for now, then in zip(seen[:3], before[:3], strict=True):
        if now is not then:
            return False
    if len(seen) == 3:
        return True
    listed, previous = seen[3], before[3]
    return len(listed) == len(previous) and all(
        a[0] == b[0] and a[1] is b[1] for a, b in zip(listed, previous, strict=True)
    )


def _is_trust_domain(name: str) -> bool:
    try:
        validate_trust_domain(name)
    except InvalidSpiffeIdError:
        return False
    return True
