"""The middlewares' fast path for ``Authorization: Bearer <token>`` against the general one.

``SpiffileMiddleware`` (ASGI and WSGI) handles the one header form clients
send without building the header list that ``_bearer.admit`` reads; every
other form goes to ``admit``.  Each test here runs a hostile header set
through a middleware and through ``admit`` itself, on real provisioned
files and real tokens, and asserts the same answer: status, body, headers,
the caller handed to the app, and the lines logged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Iterable, MutableMapping
from typing import Any

import pytest
from servicerealm import Realm, provision_realm

from spiffile.caller import Caller
from spiffile.integrations import asgi, wsgi
from spiffile.integrations._bearer import (
    CALLER_KEY,
    Rejection,
    admit,
    bearer_header,
    canonical_bearer,
)

RULES: dict[str, Any] = {"/admin/*": ["reports"]}
EXEMPT = ["/healthz"]
OPTIONAL = ["/catalog/*"]
_NOW = re.compile(r"now=\d+")
PATHS = ["/", "/admin/x", "/healthz", "/catalog/a", "/healthz/../admin/x", "//admin/x", ""]


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("fastpath"))


def _values(realm: Realm) -> list[str]:
    """Authorization values: the canonical form and every near miss of it."""
    good = realm.orders.token("spiffe://example.org/billing")
    ghost = realm.ghost.token("spiffe://example.org/billing")
    other = realm.orders.token("spiffe://example.org/reports")
    return [
        f"Bearer {good}",
        f"bearer {good}",
        f"BEARER {good}",
        f"Bearer  {good}",
        f"Bearer {good} ",
        f" Bearer {good}",
        f"Bearer\t{good}",
        f"Bearer {good}\t",
        f"Bearer \t{good}",
        f"Bearer {good}\x85",
        f"Bearer {good}\xa0",
        f"Bearer {good} {good}",
        f"Bearer {good[:-4]}AAAA",
        f"Bearer {ghost}",
        f"Bearer {other}",
        "Bearer",
        "Bearer ",
        "Bearer  ",
        "",
        " ",
        "Basic b3JkZXJzOnNlY3JldA==",
        "Bearer \xff\xfe",
        "Bearer x",
    ]


def _header_sets(realm: Realm) -> list[list[tuple[bytes, bytes]]]:
    values = [v.encode("latin-1") for v in _values(realm)]
    good = values[0]
    sets: list[list[tuple[bytes, bytes]]] = [[], [(b"host", b"x")]]
    for name in (b"authorization", b"Authorization", b"AUTHORIZATION", b"authorisation"):
        sets += [[(b"host", b"x"), (name, value)] for value in values]
    sets += [
        [(b"authorization", good), (b"authorization", good)],
        [(b"authorization", good), (b"Authorization", b"")],
        [(b"Authorization", b"Basic x"), (b"authorization", good)],
        [(b"authorization", good), (b"x-other", good), (b"authorization", values[1])],
    ]
    return sets


def _expected(
    realm: Realm, headers: list[tuple[bytes, bytes]], path: str, method: str
) -> Caller | Rejection | None:
    middleware = asgi.SpiffileMiddleware(
        _never, realm.billing, rules=RULES, exempt_paths=EXEMPT, optional_paths=OPTIONAL
    )
    values = [v.decode("latin-1") for n, v in headers if n.lower() == b"authorization"]
    return admit(
        realm.billing,
        values,
        middleware.rules.match(path),
        audience=None,
        method=method,
        path=path,
    )


async def _never(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("not called")


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, Any]]:
    # The clock moves between the two runs: "now=" is the one part that may differ.
    lines = [
        (_NOW.sub("now=T", r.getMessage()), getattr(r, "spiffile_code", None))
        for r in caplog.records
    ]
    caplog.clear()
    return lines


def _run_asgi(
    middleware: asgi.SpiffileMiddleware, scope: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    sent: list[dict[str, Any]] = []
    reached: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    middleware.app = app
    asyncio.run(middleware(scope, receive, send))
    return sent, reached[0] if reached else None


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_asgi_fast_path_answers_as_admit_does(
    realm: Realm, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    middleware = asgi.SpiffileMiddleware(
        _never, realm.billing, rules=RULES, exempt_paths=EXEMPT, optional_paths=OPTIONAL
    )
    checked = 0
    for headers, path in itertools.product(_header_sets(realm), PATHS):
        scope: dict[str, Any] = {"type": kind, "path": path, "headers": headers}
        if kind == "http":
            scope["method"] = "GET"
        method = "GET" if kind == "http" else "WEBSOCKET"
        expected = _expected(realm, headers, path, method)
        wanted_log = _log_lines(caplog)
        sent, reached = _run_asgi(middleware, scope)
        assert _log_lines(caplog) == wanted_log, (headers, path)
        if isinstance(expected, Rejection):
            assert reached is None
            if kind == "http":
                assert sent[0]["status"] == expected.status
                assert sent[0]["headers"] == [(n.encode(), v.encode()) for n, v in expected.headers]
                assert sent[1]["body"] == expected.body
            else:
                assert sent == [{"type": "websocket.close", "code": asgi.POLICY_VIOLATION}]
        else:
            assert sent == [] and reached is not None, (headers, path)
            assert reached[asgi.IDENTITY_KEY] is realm.billing
            if expected is None:
                assert CALLER_KEY not in reached and "state" not in reached
            else:
                caller = reached[CALLER_KEY]
                assert (caller.id, dict(caller.claims), caller.trust) == (
                    expected.id,
                    dict(expected.claims),
                    expected.trust,
                )
                assert reached["state"][asgi.STATE_KEY] is caller
        checked += 1
    assert checked > 500


def _run_wsgi(
    middleware: wsgi.SpiffileMiddleware, environ: dict[str, Any]
) -> tuple[str | None, list[tuple[str, str]] | None, Iterable[bytes], dict[str, Any] | None]:
    reached: list[dict[str, Any]] = []
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def app(environ: Any, start_response: Any) -> list[bytes]:
        reached.append(environ)
        return [b"ok"]

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))

    middleware.app = app
    body = middleware(environ, start_response)
    status, headers = started[0] if started else (None, None)
    return status, headers, body, reached[0] if reached else None


def test_wsgi_fast_path_answers_as_admit_does(
    realm: Realm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="spiffile.integrations")
    middleware = wsgi.SpiffileMiddleware(
        lambda e, s: [], realm.billing, rules=RULES, exempt_paths=EXEMPT, optional_paths=OPTIONAL
    )
    for value, path in itertools.product([None, *_values(realm)], PATHS):
        environ: dict[str, Any] = {"REQUEST_METHOD": "POST", "PATH_INFO": path}
        if value is not None:
            environ["HTTP_AUTHORIZATION"] = value
        expected = admit(
            realm.billing,
            [] if value is None else [value],
            middleware.rules.match(path),
            audience=None,
            method="POST",
            path=path,
        )
        wanted_log = _log_lines(caplog)
        status, headers, body, reached = _run_wsgi(middleware, environ)
        assert _log_lines(caplog) == wanted_log, (value, path)
        if isinstance(expected, Rejection):
            assert reached is None
            assert status == f"{expected.status} {expected.reason}"
            assert headers == expected.headers
            assert body == [expected.body]
        else:
            assert reached is not None and status is None and body == [b"ok"]
            if expected is None:
                assert CALLER_KEY not in reached
            else:
                assert reached[CALLER_KEY].id == expected.id
                assert dict(reached[CALLER_KEY].claims) == dict(expected.claims)


def test_canonical_bearer_agrees_with_bearer_header(realm: Realm) -> None:
    """Where the fast parse finds a token, it is the token the general parse finds."""
    extra = ["Bearer a", "Bearer a b", "Bearer a\u2028", "Bearer \u3000a", "Bearer\u00a0a"]
    found = 0
    for value in [*_values(realm), *extra]:
        token = canonical_bearer(value)
        if token is not None:
            assert token == bearer_header([value]), repr(value)
            found += 1
    assert found >= 8  # The canonical forms above do take the fast path.
