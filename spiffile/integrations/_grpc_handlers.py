"""What the gRPC interceptors share: rebuilding a handler, and a context value around it.

grpcio hands an interceptor the method's handler; to run code before the
application's behavior (and to set a :mod:`contextvars` value it can read,
the verified caller or peer), the interceptor returns a new handler of the
same shape.  Both the JWT interceptors and the mutual TLS ones use these.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

import grpc

if TYPE_CHECKING:
    from typing import TypeAlias

    Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = Any

__all__ = ["Handler", "behavior_of", "rebuild", "run_async_with", "run_with", "shape"]

_T = TypeVar("_T")

_FACTORIES: Final = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def shape(handler: Handler) -> str:
    """``unary_unary``, ``unary_stream``, ``stream_unary`` or ``stream_stream``."""
    streaming = (handler.request_streaming, handler.response_streaming)
    return {
        (False, False): "unary_unary",
        (False, True): "unary_stream",
        (True, False): "stream_unary",
        (True, True): "stream_stream",
    }[streaming]


def rebuild(handler: Handler, behavior: Callable[..., Any], *, parse: bool = True) -> Handler:
    """A handler of *handler*'s shape running *behavior*.

    With ``parse=False`` the request is left as bytes: a refused caller's
    message is never handed to a deserialiser.
    """
    factory: Any = _FACTORIES[shape(handler)]
    return factory(  # type: ignore[no-any-return]
        behavior,
        request_deserializer=handler.request_deserializer if parse else None,
        response_serializer=handler.response_serializer,
    )


def behavior_of(handler: Handler) -> Callable[..., Any]:
    """The application's function behind *handler*."""
    return getattr(handler, shape(handler))  # type: ignore[no-any-return]


def run_with(
    variable: contextvars.ContextVar[_T | None],
    value: _T | None,
    behavior: Callable[..., Any],
    streams_out: bool,
) -> Callable[..., Any]:
    """*behavior* with *variable* set to *value* while it runs (and while its stream yields)."""

    def run(request: Any, context: grpc.ServicerContext) -> Any:
        token = variable.set(value)
        try:
            result = behavior(request, context)
        finally:
            variable.reset(token)
        return _iterate_with(variable, value, result) if streams_out else result

    return run


def _iterate_with(
    variable: contextvars.ContextVar[_T | None], value: _T | None, responses: Iterable[Any]
) -> Iterator[Any]:
    """Iterate a response stream with the value set around each step (generators run lazily)."""
    iterator = iter(responses)
    while True:
        token = variable.set(value)
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            variable.reset(token)
        yield item


def run_async_with(
    variable: contextvars.ContextVar[_T | None], value: _T | None, behavior: Callable[..., Any]
) -> Callable[..., Any]:
    """The asyncio form of :func:`run_with` (coroutines, async generators, sync functions)."""
    if inspect.isasyncgenfunction(behavior):

        async def run_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            # The server drives this generator inside the RPC's own task.
            token = variable.set(value)
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                variable.reset(token)

        return run_stream
    if inspect.iscoroutinefunction(behavior):

        async def run(request: Any, context: Any) -> Any:
            token = variable.set(value)
            try:
                return await behavior(request, context)
            finally:
                variable.reset(token)

        return run
    # A sync handler on an asyncio server (run in its thread pool), or a sync
    # function returning an async iterator: set the value around the call.
    return run_with(variable, value, behavior, streams_out=False)
