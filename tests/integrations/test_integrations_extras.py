"""The core and the pure middleware work with none of the framework extras installed.

A child interpreter refuses to import every optional framework (as if the
extras were never installed), then uses the core, the authorizers and the
ASGI/WSGI middleware; each framework module fails with a plain ImportError
naming what to install.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from servicerealm import provision_realm

OPTIONAL = (
    "fastapi",
    "flask",
    "grpc",
    "gunicorn",
    "httpx",
    "prometheus_client",
    "requests",
    "starlette",
    "uvicorn",
    "werkzeug",
    "websockets",
)

CHILD = textwrap.dedent(
    """
    import asyncio, importlib.abc, json, sys

    BLOCKED = set(sys.argv[2].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Block())

    from spiffile import Identity, SpiffeId, TrustDomain, authorize
    from spiffile.integrations import asgi, log_rejections, wsgi
    from spiffile.provision import load_identity, open_root

    root = open_root(sys.argv[1])
    billing, orders = load_identity(root, "billing"), load_identity(root, "orders")
    token = orders.token(billing.id)
    assert billing.verify(token).id == TrustDomain("example.org").id("orders")
    assert authorize.coerce(["orders"], billing.id.trust_domain)(SpiffeId(str(orders.id)))

    statuses = []
    def start_response(status, headers):
        statuses.append(status)
    app = wsgi.SpiffileMiddleware(lambda e, s: s("200 OK", []) or [b""], billing, allow="orders")
    app({"PATH_INFO": "/", "HTTP_AUTHORIZATION": "Bearer " + token}, start_response)
    app({"PATH_INFO": "/"}, start_response)

    async def inner(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
    sent = []
    async def send(message):
        sent.append(message.get("status"))
    middleware = asgi.SpiffileMiddleware(inner, billing, allow=["reports"])
    headers = [(b"authorization", b"Bearer " + token.encode())]
    asyncio.run(middleware({"type": "http", "path": "/", "headers": headers}, None, send))

    missing = {}
    from spiffile.integrations import health
    health_answer = health.health_response(billing)[0]
    for name in ("fastapi", "flask", "grpc", "httpx", "prometheus", "requests"):
        try:
            __import__("spiffile.integrations." + name)
        except ImportError as exc:
            missing[name] = [exc.name, "spiffile[" in str(exc)]
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"wsgi": statuses, "asgi": sent, "missing": missing, "leaked": leaked,
                      "health": health_answer}))
    """
)


def test_core_and_pure_middleware_without_any_extra(tmp_path: Path) -> None:
    realm = provision_realm(tmp_path)
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-c", CHILD, str(realm.root.path), ",".join(OPTIONAL)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    import json

    result = json.loads(completed.stdout)
    assert result["wsgi"] == ["200 OK", "401 Unauthorized"]
    assert result["asgi"] == [403, None]
    # The modules with their own extra say how to install it.
    assert result["missing"] == {
        "fastapi": ["fastapi", True],
        "flask": ["flask", True],
        "grpc": ["grpc", True],
        "httpx": ["httpx", False],
        "prometheus": ["prometheus_client", True],
        "requests": ["requests", False],
    }
    assert result["health"] == 200
    assert result["leaked"] == []
