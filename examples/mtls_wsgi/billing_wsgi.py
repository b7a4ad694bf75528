"""billing: a WSGI app that answers with the verified SPIFFE ID of its TLS client.

Served by gunicorn with ``gunicorn.conf.py`` beside it; the ID comes from
the connection's checked handshake, never from a header.
"""

from collections.abc import Callable, Iterable
from typing import Any

from spiffile.integrations.mtls import wsgi_peer_id


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"billing serves {wsgi_peer_id(environ)}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
