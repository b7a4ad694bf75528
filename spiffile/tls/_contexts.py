"""The SSL contexts spiffile hands out, and the sockets and objects that check each peer.

Python's :mod:`ssl` runs no Python verify callback, so the SPIFFE check runs
right after the handshake, inside ``do_handshake`` of the socket and object
classes these contexts create, and every read or write first finishes it
(see :mod:`spiffile.tls`, steps 2 to 4).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from cryptography import x509

from spiffile.authorize import Authorizer
from spiffile.errors import (
    InvalidX509SvidError,
    PeerNotAllowedError,
    SpiffileError,
    TLSPeerRejectedError,
    X509MalformedError,
)
from spiffile.files import ephemeral_pem_paths
from spiffile.svid.x509 import X509Svid, verify_at

if TYPE_CHECKING:
    from spiffile.tls.source import X509Source, _Material

__all__ = ["_PEER_ATTRIBUTE", "_FacadeContext"]

#: Where a checked connection keeps its verified peer (read by :mod:`spiffile.tls.peer`).
_PEER_ATTRIBUTE: Final = "_spiffile_peer"

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
