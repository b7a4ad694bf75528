"""The server integrations in one process: a middleware call against a bare app call.

What ``SpiffileMiddleware`` adds to each request, without a server around
it: the ASGI middleware is called on a prepared ``http`` scope (the headers
a load generator sends, ``Authorization`` last) and its coroutine run to
the end; the WSGI middleware on a prepared environ.  The baseline is the
same trivial endpoint called bare on the same kind of scope or environ, so a
row's ratio is the middleware's share and its note the microseconds it
adds.  Scopes and environs are copied from a template per call (the
middleware writes into them), for the bare app as for the middleware.

Modes: a reused token (the receiver's verified-token cache answers), the
same with ``Identity.watch()``, and a token never seen before (one ECDSA
verify on top).  The end-to-end suite measures the same paths inside real
servers, where they cost more: see ``benchmarks/README.md``.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from benchmarks._fixtures import AUDIENCE, SENDER, KeyPool, bundle_bytes, identity_dir, settle
from benchmarks._report import Row
from benchmarks._timing import Op, calibrate, median_ratio, run_interleaved
from benchmarks.core import Settings
from spiffile.identity import Identity
from spiffile.integrations import asgi, wsgi

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["run"]

_Message = MutableMapping[str, Any]
_HEADERS: Final = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
#: Never-seen tokens per fresh-token sample set (ECDSA signatures are
#: randomised, so each text differs); far more than the verified-token cache
#: holds, so a cycle never meets a cached one.
_FRESH: Final = 4096
_TTL: Final = 1800


async def _endpoint(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[_Message]],
    send: Callable[[_Message], Awaitable[None]],
) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": b"ok\n"})


async def _send(message: _Message) -> None:
    return None


async def _receive() -> _Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _wsgi_endpoint(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\n"]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
    return None


def _discard(value: object) -> None:
    return None


def _scope(token: str) -> dict[str, Any]:
    """An ``http`` scope as uvicorn builds it for a wrk request."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"authorization", b"Bearer " + token.encode("ascii")),
        ],
        "state": {},
    }


def _environ(token: str) -> dict[str, Any]:
    """A WSGI environ as gunicorn builds it (the parts a middleware reads)."""
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_AUTHORIZATION": "Bearer " + token,
        "wsgi.url_scheme": "http",
    }


def _asgi_call(app: asgi.ASGIApp, next_token: Callable[[], str]) -> Callable[[], None]:
    def call() -> None:
        coroutine = app(_scope(next_token()), _receive, _send)
        try:
            coroutine.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            return
        raise RuntimeError("the app awaited something that is not ready")

    return call


def _wsgi_call(app: Any, next_token: Callable[[], str]) -> Callable[[], None]:
    def call() -> None:
        body = app(_environ(next_token()), _start_response)
        if body != [b"ok\n"]:
            raise RuntimeError(f"the app answered {body!r}")

    return call


def run(pool: KeyPool, settings: Settings, workdir: Path | None = None) -> list[Row]:
    """Measure the middleware rows; returns them in table order."""
    tmp = tempfile.TemporaryDirectory(prefix="spiffile-bench-", dir=workdir)
    base = Path(tmp.name)
    two = bundle_bytes(2, pool)
    sender_dir = identity_dir(base, "sender", SENDER, pool.private[0], two)
    receiver_dir = identity_dir(base, "receiver", AUDIENCE, pool.private[1], two)
    settle([sender_dir / "bundle.json", receiver_dir / "bundle.json"])
    sender = Identity.from_dir(sender_dir, token_cache_size=0)
    reused = sender.token(AUDIENCE, ttl=_TTL)
    fresh = [sender.token(AUDIENCE, ttl=_TTL) for _ in range(_FRESH)]
    receiver = Identity.from_dir(receiver_dir)
    watched = Identity.from_dir(receiver_dir).watch()

    same = itertools.repeat(reused).__next__
    # One cycle for both servers: a token is never seen twice before the
    # cycle wraps, by which time it has left the verified-token cache.
    next_fresh = itertools.cycle(fresh).__next__
    plan: dict[str, Callable[[], None]] = {
        "asgi_bare": _asgi_call(_endpoint, same),
        "asgi_reused": _asgi_call(asgi.SpiffileMiddleware(_endpoint, receiver), same),
        "asgi_reused_watched": _asgi_call(asgi.SpiffileMiddleware(_endpoint, watched), same),
        "asgi_fresh": _asgi_call(asgi.SpiffileMiddleware(_endpoint, receiver), next_fresh),
        "wsgi_bare": _wsgi_call(_wsgi_endpoint, same),
        "wsgi_reused": _wsgi_call(wsgi.SpiffileMiddleware(_wsgi_endpoint, receiver), same),
        "wsgi_reused_watched": _wsgi_call(wsgi.SpiffileMiddleware(_wsgi_endpoint, watched), same),
        "wsgi_fresh": _wsgi_call(wsgi.SpiffileMiddleware(_wsgi_endpoint, receiver), next_fresh),
        "verify_repeat": lambda: _discard(receiver.verify(reused)),
    }
    for fn in plan.values():
        fn()  # A wrong answer fails here, before anything is timed.
    ops = [Op(name, fn, calibrate(fn, settings.sample_seconds)) for name, fn in plan.items()]
    samples = run_interleaved(ops, settings.rounds)
    watched.close()
    tmp.cleanup()
    return _rows(samples)


_LABELS: Final = {
    "reused": "reused token",
    "reused_watched": "reused token, watch()",
    "fresh": "token never seen",
}


def _rows(samples: dict[str, list[float]]) -> list[Row]:
    def med(name: str) -> float:
        return statistics.median(samples[name])

    rows: list[Row] = []
    for kind in ("asgi", "wsgi"):
        base = f"{kind}_bare"
        rows.append(Row(f"mw_{base}", f"{kind.upper()} bare app call", med(base), "s"))
        for mode, label in _LABELS.items():
            key = f"{kind}_{mode}"
            extra_us = (med(key) - med(base)) * 1e6
            rows.append(
                Row(
                    key=f"mw_{key}",
                    label=f"{kind.upper()} middleware, {label}",
                    value=med(key),
                    unit="s",
                    baseline=f"{kind.upper()} bare app call",
                    baseline_value=med(base),
                    ratio=median_ratio(samples[key], samples[base]),
                    note=f"+{extra_us:.1f} us per request over the bare call",
                    extra={"added_us": round(extra_us, 2)},
                )
            )
    rows.append(
        Row("mw_verify_repeat", "Identity.verify, token verified before", med("verify_repeat"), "s")
    )
    return rows
