"""gRPC over mutual TLS with X.509-SVIDs: server credentials, peer interceptors, channels.

Re-exported by :mod:`spiffile.integrations.grpc`, whose docstring is the
usage tour.  The pieces and who checks what:

- :func:`server_credentials`: grpcio's dynamic TLS server credentials.  Its
  C core presents our current SVID and requires a client certificate that
  chains to one of the X.509 authorities we trust (every trust domain's,
  pooled); before each new connection it asks us for the newest files.
- :func:`mtls_server_interceptor` / :func:`aio_mtls_server_interceptor`: on
  every call, before the request is deserialised, the client's chain (from
  the call's auth context) is verified again with
  :func:`spiffile.svid.x509.verify_at` (the X.509-SVID rules, and the chain
  must end at an authority of the client ID's own trust domain), now, and
  the method's rule authorizes the SPIFFE ID.
- :func:`secure_channel` / :func:`aio_secure_channel`: the client side runs
  over :class:`~spiffile.integrations._grpc_bridge.TlsBridge`, since gRPC's
  own channel credentials cannot check a SPIFFE ID; the server's chain and
  ID are checked by :mod:`spiffile.tls` in the handshake.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, overload

import grpc
import grpc.aio
from cryptography import x509

from spiffile import authorize
from spiffile.errors import InvalidX509SvidError
from spiffile.integrations._bearer import Rejection
from spiffile.integrations._grpc_bridge import TlsBridge, split_target
from spiffile.integrations._grpc_handlers import (
    Handler,
    behavior_of,
    rebuild,
    run_async_with,
    run_with,
)
from spiffile.integrations._rules import Access, Rule, Rules
from spiffile.spiffe_id import SpiffeId
from spiffile.svid.x509 import MAX_CHAIN_CERTIFICATES, X509Svid, load_certificates, verify_at
from spiffile.tls import X509Source

if TYPE_CHECKING:
    from spiffile.identity import Identity

__all__ = [
    "aio_mtls_server_interceptor",
    "aio_secure_channel",
    "current_peer",
    "current_peer_id",
    "mtls_server_interceptor",
    "secure_channel",
    "server_credentials",
]

logger: Final = logging.getLogger("spiffile.integrations")

_PEER: Final[contextvars.ContextVar[X509Svid | None]] = contextvars.ContextVar(
    "spiffile_grpc_peer", default=None
)
#: The gRPC answers, as coarse as the HTTP ones: the reason goes to the log only.
NO_CERTIFICATE: Final = Rejection("missing_certificate", "")
INVALID_CERTIFICATE: Final = Rejection("invalid_certificate", "")
NOT_ALLOWED: Final = Rejection("insufficient_scope", "", 403, "Forbidden")
_STATUS: Final = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}
#: Verified client chains remembered per generation of the files (by their exact PEM).
_VERIFIED_CACHE_SIZE: Final = 256
#: A chain longer than this (PEM bytes) is verified on every call, never kept.
_CACHED_CHAIN_BYTES: Final = 64 * 1024
#: The auth context properties grpcio fills in for a TLS peer.
_CHAIN_PROPERTY: Final = "x509_pem_cert_chain"
_LEAF_PROPERTY: Final = "x509_pem_cert"


def _source(identity_or_source: Identity | X509Source) -> X509Source:
    if isinstance(identity_or_source, X509Source):
        return identity_or_source
    x509 = getattr(identity_or_source, "x509", None)
    if not isinstance(x509, X509Source):
        raise TypeError("expected a spiffile Identity or X509Source")
    return x509


# -- server credentials ----------------------------------------------------------------------


def server_credentials(identity_or_source: Identity | X509Source) -> grpc.ServerCredentials:
    """TLS credentials for :meth:`grpc.Server.add_secure_port` presenting our X.509-SVID.

    Clients must present a certificate chaining to an X.509 authority we
    trust.  The files are followed without a restart: before each new
    connection gRPC asks for the newest SVID, key and authorities (a stat of
    each file; a change is loaded once).  These credentials authenticate the
    connection only: add :func:`mtls_server_interceptor` (or
    :func:`aio_mtls_server_interceptor`) to the server, which verifies the
    client's SVID under the X.509-SVID rules and authorizes its SPIFFE ID.
    """
    source = _source(identity_or_source)
    material = source._current()
    lock = threading.Lock()
    served = [material.version]

    def configuration(current: Any) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(current.key_pem, current.chain_pem)],
            root_certificates=current.authorities_pem.encode("ascii"),
        )

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before every handshake; None keeps what it has.
        try:
            current = source._current()
            with lock:
                if current.version == served[0]:
                    return None
                served[0] = current.version
            return configuration(current)
        except Exception:  # Never break the server: keep serving the last good files.
            logger.exception("spiffile: cannot load the rotated X.509-SVID for gRPC")
            return None

    return grpc.dynamic_ssl_server_credentials(
        configuration(material),
        fetch,  # type: ignore[arg-type]  # grpcio documents None as "no change".
        require_client_authentication=True,
    )


# -- the verified peer -----------------------------------------------------------------------


@overload
def current_peer() -> X509Svid: ...
@overload
def current_peer(*, required: Literal[True]) -> X509Svid: ...
@overload
def current_peer(*, required: Literal[False]) -> X509Svid | None: ...


def current_peer(*, required: bool = True) -> X509Svid | None:
    """The verified X.509-SVID of the client of the RPC this handler serves.

    Raises :class:`LookupError` when there is none (an exempt method, or a
    server without :func:`mtls_server_interceptor`), so a handler that needs
    a peer fails closed; pass ``required=False`` to get None instead.
    """
    peer = _PEER.get()
    if peer is None and required:
        raise LookupError(
            "no verified spiffile TLS peer: add spiffile.integrations.grpc."
            "mtls_server_interceptor (or aio_mtls_server_interceptor) and do not exempt "
            "this method"
        )
    return peer


def current_peer_id() -> SpiffeId:
    """The verified SPIFFE ID of this RPC's client (see :func:`current_peer`)."""
    return current_peer().id


class _PeerGate:
    """The decision for one call: the method's rule, the client's chain, the authorizer."""

    def __init__(
        self,
        source: X509Source,
        *,
        allow: authorize.Allow,
        rules: Mapping[str, authorize.Allow] | None,
        exempt: Iterable[str],
        optional: Iterable[str],
    ) -> None:
        self.source = source
        self.rules = Rules(
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
            trust_domain=source.id.trust_domain,
        )
        self._verified: dict[tuple[int, bytes], tuple[X509Svid, float, float]] = {}
        self._lock = threading.Lock()

    def decide(self, method: str, context: Any) -> X509Svid | Rejection | None:
        rule = self.rules.match(method)
        if rule.access is Access.EXEMPT:
            return None
        chain = _presented_chain(context)
        if chain is None:
            if rule.access is Access.OPTIONAL:
                return None
            _log(
                401, method, "missing_certificate", "the call came without a TLS client certificate"
            )
            return NO_CERTIFICATE
        try:
            svid = self._verify(chain)
        except InvalidX509SvidError as exc:
            _log(401, method, exc.code, str(exc))
            return INVALID_CERTIFICATE
        return _authorize(svid, rule, method)

    def _verify(self, chain: bytes) -> X509Svid:
        material = self.source._current()
        now = self.source._clock()
        key = (material.version, chain)
        hit = self._verified.get(key)
        if hit is not None and hit[1] <= now <= hit[2]:
            return hit[0]
        svid = verify_at(_leaf_first(chain), material.authorities, now)
        start = max(c.not_valid_before_utc.timestamp() for c in svid.chain)
        end = min(c.not_valid_after_utc.timestamp() for c in svid.chain)
        if len(chain) <= _CACHED_CHAIN_BYTES:
            with self._lock:
                if len(self._verified) >= _VERIFIED_CACHE_SIZE:
                    self._verified.clear()
                self._verified[key] = (svid, start, end)
        return svid


def _presented_chain(context: Any) -> bytes | None:
    """The client's certificates gRPC's TLS accepted (PEM, leaf first), or None (no TLS peer).

    grpcio exposes the leaf as ``x509_pem_cert`` and, separately, the rest of
    the chain it saw as ``x509_pem_cert_chain`` (which may or may not repeat
    the leaf or include the authority).  Both are only hints here: the
    chain is verified again from the leaf.
    """
    properties = context.auth_context()
    if properties.get("transport_security_type") != [b"ssl"]:
        return None
    leaf = properties.get(_LEAF_PROPERTY)
    if not leaf:
        return None
    return b"".join(bytes(value) for value in (*leaf, *properties.get(_CHAIN_PROPERTY, ())))


def _leaf_first(pem: bytes) -> tuple[x509.Certificate, ...]:
    certificates = load_certificates(pem, limit=2 * MAX_CHAIN_CERTIFICATES)
    leaf = certificates[0]
    return (leaf, *(c for c in certificates[1:] if c != leaf))


def _authorize(svid: X509Svid, rule: Rule, method: str) -> X509Svid | Rejection:
    try:
        allowed = rule.allows(svid.id)
    except Exception as exc:  # An authorizer that raises denies (fail closed).
        _log(403, method, "not_allowed", f"the authorizer raised {type(exc).__name__}")
        return NOT_ALLOWED
    if allowed:
        return svid
    _log(
        403,
        method,
        "not_allowed",
        f"peer {svid.id} is not allowed by {rule.authorizer!r} (rule {rule.pattern:.200})",
    )
    return NOT_ALLOWED


def _log(status: int, method: str, code: str, reason: str) -> None:
    logger.info(
        "spiffile: %d RPC %.200r: %s: %.400s",
        status,
        method,
        code,
        reason,
        extra={"spiffile_status": status, "spiffile_code": code},
    )


def _parse_one(handler: Handler, request: Any, context: Any) -> Any:
    parse = handler.request_deserializer
    if parse is None:
        return request
    try:
        return parse(request)
    except Exception:
        return _DESERIALIZE_FAILED


_DESERIALIZE_FAILED: Final = object()
_DESERIALIZE_MESSAGE: Final = "Exception deserializing request!"  # What grpcio itself answers.


def _parse_stream(handler: Handler, requests: Iterator[Any], context: Any) -> Iterator[Any]:
    for request in requests:
        parsed = _parse_one(handler, request, context)
        if parsed is _DESERIALIZE_FAILED:
            context.abort(grpc.StatusCode.INTERNAL, _DESERIALIZE_MESSAGE)
        yield parsed


async def _aparse_stream(
    handler: Handler, requests: AsyncIterator[Any], context: Any
) -> AsyncIterator[Any]:
    async for request in requests:
        parsed = _parse_one(handler, request, context)
        if parsed is _DESERIALIZE_FAILED:
            await context.abort(grpc.StatusCode.INTERNAL, _DESERIALIZE_MESSAGE)
        yield parsed


class _SyncPeerInterceptor(grpc.ServerInterceptor):
    def __init__(self, gate: _PeerGate) -> None:
        self._gate = gate

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # Unknown method: gRPC answers UNIMPLEMENTED.
        method: str = handler_call_details.method
        gate, behavior = self._gate, behavior_of(handler)
        streams_out = handler.response_streaming

        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            result = gate.decide(method, context)
            if isinstance(result, Rejection):
                context.abort(_STATUS[result.status], result.error)
            if handler.request_streaming:
                request = _parse_stream(handler, request, context)
            else:
                request = _parse_one(handler, request, context)
                if request is _DESERIALIZE_FAILED:
                    context.abort(grpc.StatusCode.INTERNAL, _DESERIALIZE_MESSAGE)
            return run_with(_PEER, result, behavior, streams_out)(request, context)

        # parse=False: the request reaches a deserialiser only once the peer passed.
        return rebuild(handler, checked, parse=False)


class _AioPeerInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, gate: _PeerGate) -> None:
        self._gate = gate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        gate = self._gate

        async def admit(request: Any, context: Any) -> tuple[X509Svid | None, Any]:
            result = gate.decide(method, context)
            if isinstance(result, Rejection):
                await context.abort(_STATUS[result.status], result.error)
                raise AssertionError("unreachable: abort raises")  # pragma: no cover
            if handler.request_streaming:
                return result, _aparse_stream(handler, request, context)
            parsed = _parse_one(handler, request, context)
            if parsed is _DESERIALIZE_FAILED:
                await context.abort(grpc.StatusCode.INTERNAL, _DESERIALIZE_MESSAGE)
            return result, parsed

        run = behavior_of(handler)
        if handler.response_streaming and _is_async_generator(run):

            async def checked_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                peer, parsed = await admit(request, context)
                async for item in run_async_with(_PEER, peer, run)(parsed, context):
                    yield item

            return rebuild(handler, checked_stream, parse=False)

        # grpc.aio runs a sync handler in a thread; behind this coroutine it would
        # run on the event loop and stall every other call while it blocks.
        sync = not (inspect.iscoroutinefunction(run) or inspect.isasyncgenfunction(run))

        async def checked(request: Any, context: Any) -> Any:
            peer, parsed = await admit(request, context)
            if sync:
                result = await _in_thread(peer, run, parsed, context)
            else:
                result = run_async_with(_PEER, peer, run)(parsed, context)
            if isinstance(result, Awaitable):
                result = await result
            if handler.response_streaming and hasattr(result, "__aiter__"):
                # A function returning an async iterator: write what it yields.
                async for item in result:
                    await context.write(item)
                return None
            if handler.response_streaming and result is not None:
                # A sync generator (grpc.aio runs those itself, but this wrapper is a
                # coroutine, whose return value it ignores): write what it yields.
                await _write_sync_stream(peer, result, context)
                return None
            return result

        return rebuild(handler, checked, parse=False)


def _is_async_generator(function: Callable[..., Any]) -> bool:
    return inspect.isasyncgenfunction(function)


_END: Final = object()


async def _in_thread(peer: X509Svid | None, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)`` in a worker thread, seeing *peer* as the call's peer.

    Sync handler code may block (it is written for a thread pool), so it does
    not run on the event loop; :func:`asyncio.to_thread` copies this task's
    context, the peer included.
    """
    token = _PEER.set(peer)
    try:
        return await asyncio.to_thread(function, *args)
    finally:
        _PEER.reset(token)


async def _write_sync_stream(peer: X509Svid | None, responses: Iterable[Any], context: Any) -> None:
    """Write what a sync response iterator yields, each step in a worker thread."""
    iterator = iter(responses)
    while True:
        item = await _in_thread(peer, next, iterator, _END)
        if item is _END:
            return
        await context.write(item)


def mtls_server_interceptor(
    identity_or_source: Identity | X509Source,
    allow: authorize.Allow = None,
    *,
    rules: Mapping[str, authorize.Allow] | None = None,
    exempt: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> grpc.ServerInterceptor:
    """An interceptor for :func:`grpc.server` admitting only clients with an allowed X.509-SVID.

    Pair it with :func:`server_credentials`.  Each call's client chain is
    verified (X.509-SVID rules; it must end at an authority of the client
    ID's trust domain) and its SPIFFE ID authorized by the method's rule
    before the request is deserialised: ``UNAUTHENTICATED`` for no or an
    invalid certificate, ``PERMISSION_DENIED`` for a verified ID the rule
    refuses.  *allow*, *rules*, *exempt* and *optional* work as for
    :func:`server_interceptor`; bare names are IDs in our trust domain.
    The handler reads the peer with :func:`current_peer_id`.
    """
    return _SyncPeerInterceptor(
        _PeerGate(
            _source(identity_or_source),
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
        )
    )


def aio_mtls_server_interceptor(
    identity_or_source: Identity | X509Source,
    allow: authorize.Allow = None,
    *,
    rules: Mapping[str, authorize.Allow] | None = None,
    exempt: Iterable[str] = (),
    optional: Iterable[str] = (),
) -> grpc.aio.ServerInterceptor:
    """The same as :func:`mtls_server_interceptor`, for :func:`grpc.aio.server`."""
    return _AioPeerInterceptor(
        _PeerGate(
            _source(identity_or_source),
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
        )
    )


# -- channels --------------------------------------------------------------------------------


def _bridge(
    identity_or_source: Identity | X509Source, target: str, allow: authorize.Allow
) -> TlsBridge:
    split_target(target)  # A bad target fails before anything starts.
    context = _source(identity_or_source).client_ssl_context(allow)
    return TlsBridge(context, target)


def _bridged(
    make: Callable[..., Any],
    identity_or_source: Identity | X509Source,
    target: str,
    allow: authorize.Allow,
    options: Iterable[tuple[str, Any]],
    compression: grpc.Compression | None,
    call_credentials: grpc.CallCredentials | None,
) -> tuple[Any, TlsBridge]:
    """A channel made by *make* (sync or asyncio) to a new bridge to *target*, and the bridge."""
    bridge = _bridge(identity_or_source, target, allow)
    try:
        credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
        if call_credentials is not None:
            credentials = grpc.composite_channel_credentials(credentials, call_credentials)
        inner = make(
            bridge.target,
            credentials,
            options=_channel_options(target, options),
            compression=compression,
        )
    except BaseException:
        bridge.close()
        raise
    return inner, bridge


def _channel_options(target: str, options: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    given = list(options)
    if not any(name == "grpc.default_authority" for name, _ in given):
        # The server sees the real target as :authority, not the bridge's socket path.
        given.append(("grpc.default_authority", target))
    return given


def secure_channel(
    identity_or_source: Identity | X509Source,
    target: str,
    allow: authorize.Allow,
    *,
    options: Iterable[tuple[str, Any]] = (),
    compression: grpc.Compression | None = None,
    call_credentials: grpc.CallCredentials | None = None,
) -> grpc.Channel:
    """A :class:`grpc.Channel` to *target* (``host:port``) over mutual TLS with X.509-SVIDs.

    Each connection presents our current SVID and admits the server only if
    its chain passes the X.509-SVID rules, ends at an authority of the
    server ID's trust domain, and *allow* (bare names: our trust domain)
    accepts its SPIFFE ID (``None``: any server with a valid SVID; say so
    explicitly), all checked in the TLS handshake before a byte of
    the call is sent; a refused server fails the call with ``UNAVAILABLE``
    and the reason goes to the ``spiffile.integrations`` logger.  Every new
    connection uses the newest files.  *call_credentials* (such as
    :func:`client_credentials`) are added to every call.  Close the channel
    (or use it as a context manager) to stop its local bridge.
    """
    inner, bridge = _bridged(
        grpc.secure_channel,
        identity_or_source,
        target,
        allow,
        options,
        compression,
        call_credentials,
    )
    return _BridgedChannel(inner, bridge)


def aio_secure_channel(
    identity_or_source: Identity | X509Source,
    target: str,
    allow: authorize.Allow,
    *,
    options: Iterable[tuple[str, Any]] = (),
    compression: grpc.Compression | None = None,
    call_credentials: grpc.CallCredentials | None = None,
) -> grpc.aio.Channel:
    """The same as :func:`secure_channel`, as a :class:`grpc.aio.Channel`."""
    inner, bridge = _bridged(
        grpc.aio.secure_channel,
        identity_or_source,
        target,
        allow,
        options,
        compression,
        call_credentials,
    )
    return _AioBridgedChannel(inner, bridge)


class _BridgedChannel(grpc.Channel):
    """A grpcio channel whose connections go through a :class:`TlsBridge`; closes both."""

    def __init__(self, inner: grpc.Channel, bridge: TlsBridge) -> None:
        self._inner = inner
        self._bridge = bridge
        # A channel dropped without close() still stops its bridge.
        self._finalizer = weakref.finalize(self, bridge.close)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._inner.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._inner.unsubscribe(callback)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_unary(method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_stream(method, *args, **kwargs)

    def close(self) -> None:
        self._inner.close()
        self._finalizer()

    def __enter__(self) -> _BridgedChannel:
        return self

    def __exit__(self, *exc_info: object) -> Literal[False]:
        self.close()
        return False


class _AioBridgedChannel(grpc.aio.Channel):
    """The asyncio form of :class:`_BridgedChannel`."""

    def __init__(self, inner: grpc.aio.Channel, bridge: TlsBridge) -> None:
        self._inner = inner
        self._bridge = bridge
        self._finalizer = weakref.finalize(self, bridge.close)

    async def __aenter__(self) -> _AioBridgedChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        await self._inner.close(grace)
        self._finalizer()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._inner.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._inner.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._inner.channel_ready()

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_unary(method, *args, **kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.unary_stream(method, *args, **kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._inner.stream_stream(method, *args, **kwargs)
