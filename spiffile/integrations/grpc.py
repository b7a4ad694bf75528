"""gRPC: JWT-SVIDs as call credentials, mutual TLS with X.509-SVIDs, per-method rules.

Install with ``pip install 'spiffile[grpc]'`` (grpcio).  Client::

    credentials = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(...),          # or grpc.local_channel_credentials()
        client_credentials(identity, "spiffe://example.org/billing"),
    )
    channel = grpc.secure_channel("billing:443", credentials)

gRPC sends call credentials only over a secure or local channel; on a
plaintext channel, pass ``metadata=call_metadata(identity, audience)`` per
call instead.  Server, sync or asyncio::

    server = grpc.server(executor, interceptors=[
        server_interceptor(identity, allow=["orders"], rules={"/billing.Billing/Refund": ["ops"]},
                           exempt=["/grpc.health.v1.Health/*"]),
    ])
    server = grpc.aio.server(interceptors=[aio_server_interceptor(identity, allow=["orders"])])

Patterns are full method names (``/package.Service/Method``) or prefixes
ending in ``*`` (``/package.Service/*``); the most specific wins, as for the
HTTP middleware, and *allow* applies where none matches (see
:func:`spiffile.authorize.coerce`; bare names are IDs in the identity's trust
domain).  A missing or invalid token ends the call with ``UNAUTHENTICATED``,
a verified caller the rule does not allow with ``PERMISSION_DENIED``; the
details are as coarse as the HTTP bodies (``invalid_token``, ...) and the
reason goes to the ``spiffile.integrations`` logger.  A refused request's
message is never deserialised.  Inside the handler, :func:`current_caller`
returns the verified :class:`~spiffile.Caller`.

**Mutual TLS with X.509-SVIDs** (an identity with X.509 files, or an
:class:`~spiffile.tls.X509Source`).  Server, sync or asyncio::

    server = grpc.server(executor, interceptors=[
        mtls_server_interceptor(identity, allow=["orders"], rules={...}, exempt=[...]),
    ], options=[("grpc.max_connection_age_ms", 600_000)])  # see "Rotation" below
    server.add_secure_port("[::]:8443", server_credentials(identity))
    # in a handler: current_peer_id() -> SpiffeId of the verified client

Client::

    with secure_channel(identity, "billing.internal:8443", allow="billing") as channel:
        stub = BillingStub(channel)

What is checked, and where:

- Server: gRPC's TLS presents our SVID and requires a client certificate
  chaining to one of the X.509 authorities we trust (all trust domains,
  pooled; expiry and signatures checked by gRPC in the handshake).  Then the
  interceptor, on every call and before the request is deserialised,
  re-verifies the client's chain with :func:`spiffile.svid.x509.verify_at`
  (the X.509-SVID rules; the chain must end at an authority of the client
  ID's *own* trust domain; validity at the time of the call) and applies the
  method's rule.  No or an invalid certificate: ``UNAUTHENTICATED``
  (``missing_certificate``, ``invalid_certificate``); a verified ID the rule
  refuses: ``PERMISSION_DENIED`` (``insufficient_scope``).  The reason goes
  to the ``spiffile.integrations`` logger, never a certificate or key.
  :func:`server_credentials` alone authorizes nobody: always add the
  interceptor.
- Client: gRPC's own channel TLS compares the target's host name with DNS
  names in the server certificate and never reads a URI SAN, so it cannot
  authenticate a SPIFFE server, and grpcio runs no Python check in its
  handshake.  :func:`secure_channel` therefore connects the channel, in
  plaintext, to a private Unix socket (``0700`` directory) served by a
  bridge thread of this process, which makes each connection to the target
  with :meth:`~spiffile.tls.X509Source.client_ssl_context`: the server's
  chain passes the X.509-SVID rules, ends at an authority of the server ID's
  trust domain, and *allow* accepts its SPIFFE ID, all in the TLS handshake,
  before a byte of the call is sent.  A refused server fails the call with
  ``UNAVAILABLE``.  *allow* takes anything ``allow=`` takes; bare names are
  in our trust domain.

Rotation: before each new connection the server asks for the newest SVID,
key and authorities (no restart); each new connection of a channel uses the
newest files.  An open HTTP/2 connection keeps the certificates of its
handshake, as with any TLS, and the server's per-call check refuses a
client certificate once it has expired.  So bound connection age on the
server well below the SVID lifetime (``grpc.max_connection_age_ms``; gRPC
then closes connections gracefully and clients reconnect with their
renewed SVID): ten minutes for the one-hour default.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, overload

try:
    import grpc
    import grpc.aio
except ImportError as exc:  # pragma: no cover - exercised in a child without the extra
    raise ImportError(
        f"spiffile.integrations.grpc needs grpcio: pip install 'spiffile[grpc]' ({exc})",
        name=exc.name,
    ) from exc

from spiffile import authorize
from spiffile.caller import Caller
from spiffile.integrations._audience import resolve_name
from spiffile.integrations._bearer import Rejection, admit, parse_audience
from spiffile.integrations._grpc_handlers import (
    Handler,
    behavior_of,
    rebuild,
    run_async_with,
    run_with,
)
from spiffile.integrations._grpc_mtls import (
    aio_mtls_server_interceptor,
    aio_secure_channel,
    current_peer,
    current_peer_id,
    mtls_server_interceptor,
    secure_channel,
    server_credentials,
)
from spiffile.integrations._rules import Rules
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import DEFAULT_TTL

if TYPE_CHECKING:
    from spiffile.identity import Identity


__all__ = [
    "aio_mtls_server_interceptor",
    "aio_secure_channel",
    "aio_server_interceptor",
    "call_metadata",
    "client_credentials",
    "current_caller",
    "current_peer",
    "current_peer_id",
    "mtls_server_interceptor",
    "secure_channel",
    "server_credentials",
    "server_interceptor",
]

_CALLER: Final[contextvars.ContextVar[Caller | None]] = contextvars.ContextVar(
    "spiffile_grpc_caller", default=None
)
_STATUS: Final = {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED}


# -- client ----------------------------------------------------------------------------------


class _TokenPlugin(grpc.AuthMetadataPlugin):
    """Adds ``authorization: Bearer <JWT-SVID>`` to each call (cached per audience)."""

    def __init__(self, identity: Identity, audience: str, ttl: int) -> None:
        self._identity = identity
        self._audience = audience
        self._ttl = ttl

    def __call__(
        self, context: grpc.AuthMetadataContext, callback: grpc.AuthMetadataPluginCallback
    ) -> None:
        try:
            token = self._identity.token(self._audience, ttl=self._ttl)
        except Exception as exc:  # gRPC fails the call with this error.
            callback((), exc)
            return
        callback((("authorization", f"Bearer {token}"),), None)


def client_credentials(
    identity: Identity, audience: str | SpiffeId, *, ttl: int = DEFAULT_TTL
) -> grpc.CallCredentials:
    """Call credentials that prove *identity* to *audience* (the server's SPIFFE ID or bare name).

    Compose them with channel credentials
    (:func:`grpc.composite_channel_credentials`).  A rotated key is used
    from the next call on; the audience is checked now, so a typo fails here.
    """
    return grpc.metadata_call_credentials(
        _TokenPlugin(identity, _required_audience(identity, audience), ttl), name="spiffile"
    )


def call_metadata(
    identity: Identity, audience: str | SpiffeId, *, ttl: int = DEFAULT_TTL
) -> tuple[tuple[str, str], ...]:
    """Per-call metadata carrying a token, for channels that take no call credentials."""
    token = identity.token(_required_audience(identity, audience), ttl=ttl)
    return (("authorization", f"Bearer {token}"),)


def _required_audience(identity: Identity, audience: str | SpiffeId) -> str:
    """The server's SPIFFE ID; a bare name is that name in the caller's trust domain."""
    return resolve_name(audience, identity.id.trust_domain)


# -- server ----------------------------------------------------------------------------------


@overload
def current_caller() -> Caller: ...
@overload
def current_caller(*, required: Literal[True]) -> Caller: ...
@overload
def current_caller(*, required: Literal[False]) -> Caller | None: ...


def current_caller(*, required: bool = True) -> Caller | None:
    """The verified caller of the RPC this handler serves.

    Raises :class:`LookupError` when there is none (an exempt method, an
    optional one called without a token, or a server without the
    interceptor), so a handler that needs a caller fails closed; pass
    ``required=False`` to get None instead.
    """
    caller = _CALLER.get()
    if caller is None and required:
        raise LookupError(
            "no verified spiffile caller: add spiffile.integrations.grpc.server_interceptor "
            "(or aio_server_interceptor) and do not exempt this method"
        )
    return caller


class _Gate:
    """What both interceptors share: the rules, and the decision for one call."""

    def __init__(
        self,
        identity: Identity,
        *,
        allow: authorize.Allow,
        rules: Mapping[str, authorize.Allow] | None,
        exempt: Iterable[str],
        optional: Iterable[str],
        audience: str | SpiffeId | None,
    ) -> None:
        self.identity = identity
        self.audience = parse_audience(audience)
        self.rules = Rules(
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
            trust_domain=identity.id.trust_domain,
        )

    def decide(self, details: grpc.HandlerCallDetails) -> Caller | Rejection | None:
        method: str = details.method
        metadata = details.invocation_metadata or ()
        authorization = [str(value) for key, value in metadata if key == "authorization"]
        return admit(
            self.identity,
            authorization,
            self.rules.match(method),
            audience=self.audience,
            method="RPC",
            path=method,
        )


class _SyncInterceptor(grpc.ServerInterceptor):
    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None  # Unknown method: gRPC answers UNIMPLEMENTED.
        result = self._gate.decide(handler_call_details)
        if isinstance(result, Rejection):
            code, message = _STATUS[result.status], result.error

            def refuse(request: Any, context: grpc.ServicerContext) -> Any:
                context.abort(code, message)

            return rebuild(handler, refuse, parse=False)
        behavior = run_with(_CALLER, result, behavior_of(handler), handler.response_streaming)
        return rebuild(handler, behavior)


class _AioInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        result = self._gate.decide(handler_call_details)
        if isinstance(result, Rejection):
            return rebuild(handler, _aio_refusal(handler, result), parse=False)
        return rebuild(handler, run_async_with(_CALLER, result, behavior_of(handler)))


def _aio_refusal(handler: Handler, rejection: Rejection) -> Callable[..., Any]:
    code, message = _STATUS[rejection.status], rejection.error
    if handler.response_streaming:

        async def refuse_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(code, message)
            yield  # pragma: no cover - abort raises; this makes an async generator.

        return refuse_stream

    async def refuse(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, message)

    return refuse


def server_interceptor(
    identity: Identity,
    allow: authorize.Allow = None,
    *,
    rules: Mapping[str, authorize.Allow] | None = None,
    exempt: Iterable[str] = (),
    optional: Iterable[str] = (),
    audience: str | SpiffeId | None = None,
) -> grpc.ServerInterceptor:
    """An interceptor for :func:`grpc.server` that admits only allowed, verified callers.

    *allow* applies to every method no pattern in *rules*, *exempt* or
    *optional* names; see the module docstring.  Everything is checked now,
    so a bad pattern or ID fails when the server is built.
    """
    return _SyncInterceptor(
        _Gate(
            identity,
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
            audience=audience,
        )
    )


def aio_server_interceptor(
    identity: Identity,
    allow: authorize.Allow = None,
    *,
    rules: Mapping[str, authorize.Allow] | None = None,
    exempt: Iterable[str] = (),
    optional: Iterable[str] = (),
    audience: str | SpiffeId | None = None,
) -> grpc.aio.ServerInterceptor:
    """The same as :func:`server_interceptor`, for :func:`grpc.aio.server`."""
    return _AioInterceptor(
        _Gate(
            identity,
            allow=allow,
            rules=rules,
            exempt=exempt,
            optional=optional,
            audience=audience,
        )
    )
