"""spiffile.integrations.health: the health endpoints under real servers on 127.0.0.1.

ASGI under uvicorn, WSGI under wsgiref; a refused bundle rewrite turns the
answer from 200 to 503 and back, as an operator polling during a rotation
would see it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from liveservers import serve_asgi, serve_wsgi

from spiffile.files import atomic_write
from spiffile.integrations.health import health_asgi, health_wsgi
from spiffile.provision import Root, add_service, init_root, load_identity, stage_rotation


@pytest.fixture
def root(tmp_path: Path) -> Root:
    root = init_root(tmp_path / "identity", "example.org")
    add_service(root, "orders")
    return root


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


SERVERS: list[tuple[str, Callable[..., Any], Callable[[Any], AbstractContextManager[str]]]] = [
    ("asgi", health_asgi, serve_asgi),
    ("wsgi", health_wsgi, serve_wsgi),
]


@pytest.fixture(params=SERVERS, ids=[name for name, _, _ in SERVERS])
def served(request: pytest.FixtureRequest, root: Root) -> Iterator[tuple[str, Root, Any]]:
    pytest.importorskip("uvicorn")
    _name, make, serve = request.param
    identity = load_identity(root, "orders")
    with serve(make(identity)) as url:
        yield url, root, identity


def test_healthy_identity_answers_200_with_kid_and_sequence(served: tuple[str, Root, Any]) -> None:
    url, root, identity = served
    code, headers, body = get(url + "/healthz")
    assert code == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    doc = json.loads(body)
    assert doc["healthy"] is True
    assert doc["kid"] == identity.kid
    assert doc["bundle_sequence"] == identity.bundle.sequence
    assert doc["id"] == "spiffe://example.org/orders"
    assert str(root.path) not in body.decode()


def test_a_staged_rotation_shows_up_as_a_new_sequence(served: tuple[str, Root, Any]) -> None:
    url, root, identity = served
    before = json.loads(get(url)[2])["bundle_sequence"]
    stage_rotation(root, "orders")
    after = json.loads(get(url)[2])
    # The staged key is published but not yet signing: same kid, newer bundle.
    assert after["bundle_sequence"] > before and after["kid"] == identity.kid
    assert after["healthy"] is True


def test_a_refused_bundle_answers_503_then_200_again(served: tuple[str, Root, Any]) -> None:
    url, root, _identity = served
    bundle = Path(root.path) / "bundle.json"
    good = bundle.read_bytes()
    atomic_write(bundle, b"{not json")
    code, _headers, body = get(url)
    assert code == 503
    doc = json.loads(body)
    assert doc["healthy"] is False and doc["bundle"]["healthy"] is False
    assert "error" not in doc["bundle"]  # detail=False: no messages to anyone
    atomic_write(bundle, good)
    assert get(url)[0] == 200


def test_head_and_other_methods(served: tuple[str, Root, Any]) -> None:
    url, _root, _identity = served
    code, _headers, body = get(url, "HEAD")
    assert code == 200 and body == b""
    code, headers, _body = get(url, "POST")
    assert code == 405 and headers["allow"] == "GET, HEAD"


def test_detail_shows_paths_and_errors(root: Root) -> None:
    identity = load_identity(root, "orders")
    bundle = Path(root.path) / "bundle.json"
    atomic_write(bundle, b"{not json")
    with serve_wsgi(health_wsgi(identity, detail=True)) as url:
        code, _headers, body = get(url)
    doc = json.loads(body)
    assert code == 503
    assert doc["bundle"]["path"] == str(bundle) and doc["bundle"]["error"]


def test_fastapi_route_serves_the_exact_path(root: Root) -> None:
    pytest.importorskip("fastapi")
    from fastapi import FastAPI
    from starlette.routing import Route

    identity = load_identity(root, "orders")
    app = FastAPI()
    app.routes.append(Route("/healthz", health_asgi(identity)))
    with serve_asgi(app) as url:
        code, _headers, body = get(url + "/healthz")
    assert code == 200 and json.loads(body)["kid"] == identity.kid
