"""Mutual TLS with X.509-SVIDs from files: SSL contexts that authorize the peer's SPIFFE ID.

:class:`X509Source` holds a workload's X.509-SVID (``svid.pem``, leaf first),
its key (``svid_key.pem``) and its trust domain's authorities
(``svid_bundle.pem``), laid out as spiffe-helper writes them, and follows the
files as they rotate.  :meth:`X509Source.server_ssl_context` and
:meth:`X509Source.client_ssl_context` return :class:`ssl.SSLContext` objects
that present the current SVID, require the peer's, and admit only a peer
whose chain ends at an authority of *its own* trust domain and whose SPIFFE
ID the authorizer allows.

How, given that Python's :mod:`ssl` cannot run a Python verify callback:

1. OpenSSL verifies the peer's chain during the handshake against every
   authority we trust (``cadata``), with host name checking off, and requires
   a certificate from the peer (``CERT_REQUIRED`` on both sides).
2. Right after the handshake completes, inside ``do_handshake`` of the
   socket/object classes these contexts create, the peer's presented chain is
   verified again by :func:`spiffile.svid.x509.verify_at` (the X.509-SVID
   rules, and the chain must end at an authority of the peer ID's trust
   domain, which OpenSSL's pooled store cannot express), then the SPIFFE ID is
   authorized.  A refusal raises :class:`~spiffile.errors.TLSPeerRejectedError`
   (an :class:`ssl.SSLCertVerificationError`, so every client library treats
   it as a failed handshake) and the connection is closed.
3. ``read``/``recv``/``write``/``send`` on these connections first finish
   the checked handshake, so even a socket made with
   ``do_handshake_on_connect=False`` cannot exchange application data with an
   unchecked peer.  The guarantee: our application never reads or writes a
   byte on a connection whose peer was refused.  (TLS 1.3 finishes the
   client's handshake before the server has seen the client certificate, so a
   client the server refuses learns it on its first read, as with any mTLS
   server.)
4. Session tickets are disabled on servers: a resumed session would skip the
   certificate exchange.  Every connection gets the full check.

Rotation: the contexts handed out are façades.  Each new connection
(``wrap_socket``/``wrap_bio``, which asyncio, uvicorn, httpx and urllib3 call
per connection) is made from an inner context built from the files' current
contents; the inner context is rebuilt only when a file changed (one ``stat``
per file per connection otherwise).  Connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
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

from spiffile.authorize import Allow, Authorizer, coerce
from spiffile.errors import (
    ConfigurationError,
    InvalidSpiffeIdError,
    InvalidX509SvidError,
    PeerNotAllowedError,
    SpiffileError,
    TLSPeerRejectedError,
    X509MalformedError,
)
from spiffile.files import DirectoryView, FileStatus, FileView, Watcher, ephemeral_pem_paths
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

__all__ = [
    "ENV_X509_BUNDLE_FILE",
    "ENV_X509_KEY_FILE",
    "ENV_X509_SVID_FILE",
    "SPIFFE_HELPER_NAMES",
    "X509Source",
    "X509Status",
    "peer_id",
    "peer_svid",
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
_PEER_ATTRIBUTE: Final = "_spiffile_peer"


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


# -- contexts ----------------------------------------------------------------------------


#: Verified chains a context remembers (by their exact DER), so a peer that reconnects
#: is not verified again while every certificate of its path stays valid.
_VERIFIED_CACHE_SIZE: Final = 256


class _Check:
    """What runs after each handshake: the SPIFFE verification and the authorization.

    One per generation of the files: the authorities never change under it,
    so a chain verified once stays verified inside its validity windows.
    """

    __slots__ = ("allow", "authorities", "clock", "verified")

    def __init__(
        self,
        authorities: Mapping[str, tuple[x509.Certificate, ...]],
        allow: Authorizer,
        clock: Callable[[], float],
    ) -> None:
        self.authorities = authorities
        self.allow = allow
        self.clock = clock
        self.verified: dict[tuple[bytes, ...], tuple[X509Svid, float, float]] = {}

    def _verify(self, sslobj: Any, now: float) -> X509Svid:
        presented = _presented_der(sslobj)
        hit = self.verified.get(presented)
        if hit is not None and hit[1] <= now <= hit[2]:
            return hit[0]
        try:
            chain = [x509.load_der_x509_certificate(der) for der in presented]
        except ValueError:
            raise X509MalformedError("a presented certificate does not parse") from None
        svid = verify_at(chain, self.authorities, now)
        start = max(c.not_valid_before_utc.timestamp() for c in svid.chain)
        end = min(c.not_valid_after_utc.timestamp() for c in svid.chain)
        if len(self.verified) >= _VERIFIED_CACHE_SIZE:
            self.verified.clear()
        self.verified[presented] = (svid, start, end)
        return svid

    def __call__(self, sslobj: Any) -> X509Svid:
        try:
            svid = self._verify(sslobj, self.clock())
        except InvalidX509SvidError as exc:
            raise TLSPeerRejectedError(f"peer refused: {exc}", error=exc) from None
        try:
            allowed = self.allow(svid.id)
        except SpiffileError as exc:
            raise TLSPeerRejectedError(f"peer refused: {exc}", error=exc, peer=svid.id) from None
        except Exception as exc:
            # An authorizer that raises denies (fail closed); the cause stays chained.
            reason = PeerNotAllowedError(f"the authorizer raised {type(exc).__name__}")
            raise TLSPeerRejectedError(
                f"peer refused: {reason}", error=reason, peer=svid.id
            ) from exc
        if allowed is not True:
            reason = PeerNotAllowedError(f"{svid.id} is not allowed")
            raise TLSPeerRejectedError(f"peer refused: {reason}", error=reason, peer=svid.id)
        return svid


def _presented_der(sslobj: Any) -> tuple[bytes, ...]:
    """The chain the peer sent (leaf first), as DER; only the leaf on a resumed session."""
    getter = getattr(sslobj._sslobj, "get_unverified_chain", None)
    presented = getter() if getter is not None else None
    if presented:
        encoding = ssl._ssl.ENCODING_DER  # type: ignore[attr-defined]
        return tuple(certificate.public_bytes(encoding) for certificate in presented)
    leaf = sslobj.getpeercert(binary_form=True)
    if not leaf:
        raise X509MalformedError("the peer presented no certificate")
    return (leaf,)


def _finish(connection: Any) -> None:
    """Run the SPIFFE check once the TLS handshake of *connection* completed."""
    check: _Check = connection.context._spiffile_check
    setattr(connection, _PEER_ATTRIBUTE, check(connection))


class _CheckedSocket(ssl.SSLSocket):
    """An SSLSocket whose handshake ends with the SPIFFE check (blocking sockets)."""

    _spiffile_peer: X509Svid | None = None

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        if self._spiffile_peer is None:
            _finish(self)

    def _require_peer(self) -> None:
        if self._spiffile_peer is None and getattr(self, "_sslobj", None) is not None:
            self.do_handshake()

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._require_peer()
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        self._require_peer()
        return super().write(data)

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        self._require_peer()
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        self._require_peer()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._require_peer()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._require_peer()
        super().sendall(data, flags)


class _CheckedObject(ssl.SSLObject):
    """An SSLObject (asyncio, uvicorn) whose handshake ends with the SPIFFE check."""

    _spiffile_peer: X509Svid | None = None

    def do_handshake(self) -> None:
        super().do_handshake()
        if self._spiffile_peer is None:
            _finish(self)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        if self._spiffile_peer is None:
            self.do_handshake()
        return super().read(len, buffer)

    def write(self, data: Any) -> int:
        if self._spiffile_peer is None:
            self.do_handshake()
        return super().write(data)


class _InnerContext(ssl.SSLContext):
    """One generation of a façade: today's certificate, key and authorities."""

    sslsocket_class = _CheckedSocket
    sslobject_class = _CheckedObject
    _spiffile_check: _Check


def _inner(
    material: _Material, check: _Check, server: bool, alpn: list[str] | None
) -> _InnerContext:
    context = _InnerContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False  # A SPIFFE ID is not a host name; step 2 checks it.
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=material.authorities_pem)
    with ephemeral_pem_paths(material.chain_pem, material.key_pem) as (cert_path, key_path):
        context.load_cert_chain(cert_path, key_path)
    if server:
        context.options |= ssl.OP_NO_TICKET
        context.num_tickets = 0
    if alpn:
        context.set_alpn_protocols(alpn)
    context._spiffile_check = check
    return context


class _FacadeContext(ssl.SSLContext):
    """The context handed out: each new connection comes from the newest inner context."""

    _spiffile_source: X509Source
    _spiffile_allow: Authorizer
    _spiffile_server: bool

    def __new__(cls, source: X509Source, allow: Authorizer, *, server: bool) -> _FacadeContext:
        protocol = ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT
        return super().__new__(cls, protocol)

    def __init__(self, source: X509Source, allow: Authorizer, *, server: bool) -> None:
        super().__init__()
        self._spiffile_source = source
        self._spiffile_allow = allow
        self._spiffile_server = server
        self._spiffile_alpn: list[str] | None = None
        self._spiffile_inner: tuple[int, tuple[str, ...] | None, _InnerContext] | None = None
        self._spiffile_lock = threading.Lock()
        # What a caller inspecting this façade sees matches what every connection does.
        self.check_hostname = False
        self.verify_mode = ssl.CERT_REQUIRED
        self._current()  # Fail now, not on the first connection, if the files are unusable.

    def _current(self) -> _InnerContext:
        material = self._spiffile_source._current()
        alpn = tuple(self._spiffile_alpn) if self._spiffile_alpn else None
        cached = self._spiffile_inner
        if cached is not None and cached[0] == material.version and cached[1] == alpn:
            return cached[2]
        with self._spiffile_lock:
            cached = self._spiffile_inner
            if cached is None or cached[0] != material.version or cached[1] != alpn:
                check = _Check(
                    material.authorities, self._spiffile_allow, self._spiffile_source._clock
                )
                context = _inner(material, check, self._spiffile_server, self._spiffile_alpn)
                cached = (material.version, alpn, context)
                self._spiffile_inner = cached
            return cached[2]

    def set_alpn_protocols(self, alpn_protocols: Iterable[str]) -> None:
        protocols = list(alpn_protocols)
        super().set_alpn_protocols(protocols)
        self._spiffile_alpn = protocols

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self._current().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        return self._current().wrap_bio(*args, **kwargs)

    def __reduce__(self) -> Any:
        raise TypeError("a spiffile SSL context cannot be pickled")


# -- the verified peer -------------------------------------------------------------------


def peer_svid(connection: object) -> X509Svid:
    """The verified X.509-SVID of the peer of *connection*.

    *connection* is an :class:`ssl.SSLSocket` or :class:`ssl.SSLObject` made
    by a spiffile context, or an asyncio transport or stream writer over one.
    Raises :class:`~spiffile.errors.ConfigurationError` when the connection
    did not come from a spiffile context or its handshake has not completed.
    """
    target: object = connection
    if isinstance(target, asyncio.StreamWriter):
        target = target.transport
    if isinstance(target, asyncio.BaseTransport):
        target = target.get_extra_info("ssl_object")
    svid = getattr(target, _PEER_ATTRIBUTE, None)
    if not isinstance(svid, X509Svid):
        raise ConfigurationError(
            "no verified SPIFFE peer: the connection is not from a spiffile SSL context "
            "or its handshake has not completed"
        )
    return svid


def peer_id(connection: object) -> SpiffeId:
    """The verified SPIFFE ID of the peer of *connection* (see :func:`peer_svid`)."""
    return peer_svid(connection).id
