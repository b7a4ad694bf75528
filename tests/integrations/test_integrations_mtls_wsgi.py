"""WSGI over mutual TLS: gunicorn (real worker processes) and wsgiref, the peer ID in environ."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spiffile import provision
from spiffile.errors import ConfigurationError
from spiffile.files import RECHECK_INTERVAL
from spiffile.identity import Identity
from spiffile.integrations.mtls import (
    ENVIRON_KEY,
    gunicorn_config,
    make_wsgi_server,
    wsgi_peer_id,
)
from spiffile.provision.x509 import enable_x509, issue_svid
from spiffile.spiffe_id import SpiffeId

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

TD = "example.org"
_REFUSED = (ssl.SSLError, ConnectionError, http.client.HTTPException, TimeoutError)


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Identity]]]:
    root = tmp_path_factory.mktemp("wsgi-mtls") / "identity"
    provision.init_root(root, trust_domain=TD)
    enable_x509(root)
    loaded = {}
    for name in ("orders", "billing", "intruder"):
        provision.add_service(root, name)
        loaded[name] = provision.load_identity(root, name)
    yield root, loaded
    for identity in loaded.values():
        identity.close()


def _leaf_der(path: Path) -> bytes:
    leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    return leaf.public_bytes(serialization.Encoding.DER)


def _get(
    port: int, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """GET / over *context*: the status, the body, and the server's leaf certificate (DER)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
    try:
        connection.request("GET", "/", headers=headers or {})
        sock = connection.sock  # Taken now: a server that closes after answering drops it.
        assert isinstance(sock, ssl.SSLSocket)
        server_leaf = sock.getpeercert(binary_form=True)
        assert server_leaf is not None
        response = connection.getresponse()
        return response.status, response.read().decode(), server_leaf
    finally:
        connection.close()


# -- the peer ID is never a guess --------------------------------------------------------


def test_wsgi_peer_id_without_a_verified_peer_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        wsgi_peer_id({})
    # Text under the key (what a confused server or app might put there) is not a peer.
    with pytest.raises(ConfigurationError):
        wsgi_peer_id({ENVIRON_KEY: f"spiffe://{TD}/orders"})
    peer = SpiffeId.parse(f"spiffe://{TD}/orders")
    assert wsgi_peer_id({ENVIRON_KEY: peer}) == peer


# -- gunicorn ----------------------------------------------------------------------------

_APP = """
import os
from spiffile.integrations.mtls import wsgi_peer_id

LOG = os.environ["WSGI_TEST_LOG"]


def app(environ, start_response):
    peer = str(wsgi_peer_id(environ))
    with open(LOG, "a") as log:
        log.write(peer + "\\n")
    body = peer.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

_CONFIG = """
import os
from spiffile import provision
from spiffile.integrations.mtls import gunicorn_config

globals().update(
    gunicorn_config(provision.load_identity(os.environ["WSGI_TEST_ROOT"], "billing"), ["orders"])
)
bind = ["fd://" + os.environ["WSGI_TEST_FD"]]
workers = 1
threads = 2
loglevel = "warning"
"""


@contextlib.contextmanager
def _gunicorn(root: Path, workdir: Path, worker: str) -> Iterator[tuple[int, Path]]:
    (workdir / "peerapp.py").write_text(textwrap.dedent(_APP))
    (workdir / "gunicorn_conf.py").write_text(textwrap.dedent(_CONFIG))
    log = workdir / "requests.log"
    log.write_text("")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    env = dict(
        os.environ,
        WSGI_TEST_ROOT=os.fspath(root),
        WSGI_TEST_FD=str(listener.fileno()),
        WSGI_TEST_LOG=os.fspath(log),
        PYTHONPATH=os.fspath(workdir),
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            os.fspath(workdir / "gunicorn_conf.py"),
            "--worker-class",
            worker,
            "peerapp:app",
        ],
        cwd=workdir,
        env=env,
        pass_fds=[listener.fileno()],
        stderr=subprocess.PIPE,
        text=True,
    )
    listener.close()
    try:
        yield port, log
    finally:
        process.terminate()
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        assert "Traceback" not in stderr, stderr


def _first_answer(port: int, context: ssl.SSLContext) -> tuple[int, str, bytes]:
    """The first answer of a server still starting: retry until its worker accepts."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return _get(port, context)
        except _REFUSED:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("worker", ["sync", "gthread"])
def test_gunicorn_serves_the_verified_peer_refuses_others_and_rotates(
    realm: tuple[Path, dict[str, Identity]], tmp_path: Path, worker: str
) -> None:
    pytest.importorskip("gunicorn")
    root, identities = realm
    orders = identities["orders"].client_ssl_context(allow="billing")
    with _gunicorn(root, tmp_path, worker) as (port, log):
        status, body, served = _first_answer(port, orders)
        assert (status, body) == (200, f"spiffe://{TD}/orders")
        assert served == _leaf_der(root / "services" / "billing" / "svid.pem")

        # A header naming another identity changes nothing: the ID is the connection's.
        status, body, _ = _get(
            port, orders, {"Spiffile-Peer-Id": f"spiffe://{TD}/admin", "X-Peer": "admin"}
        )
        assert body == f"spiffe://{TD}/orders"

        # A peer that is not allowed, and one with no certificate, never reach the app.
        intruder = identities["intruder"].client_ssl_context(allow="billing")
        with pytest.raises(_REFUSED):
            _get(port, intruder)
        anonymous = ssl.create_default_context()
        anonymous.check_hostname = False
        anonymous.verify_mode = ssl.CERT_NONE
        with pytest.raises(_REFUSED):
            _get(port, anonymous)
        assert log.read_text().splitlines() == [f"spiffe://{TD}/orders"] * 2

        # The server's SVID is re-issued: the next handshake presents it, same process.
        before = served
        issue_svid(root, "billing", force=True)
        after = _leaf_der(root / "services" / "billing" / "svid.pem")
        assert after != before
        time.sleep(RECHECK_INTERVAL)  # The worker, another process, looks every 50 ms.
        status, body, served = _get(port, orders)
        assert (status, body, served) == (200, f"spiffe://{TD}/orders", after)


# -- wsgiref -----------------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[SpiffeId, str]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        peer = wsgi_peer_id(environ)
        self.seen.append((peer, environ["wsgi.url_scheme"]))
        body = str(peer).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]


@contextlib.contextmanager
def _wsgiref(app: Any, context: ssl.SSLContext) -> Iterator[int]:
    server = make_wsgi_server("127.0.0.1", 0, app, context)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_wsgiref_server_hands_the_app_the_verified_peer(
    realm: tuple[Path, dict[str, Identity]],
) -> None:
    root, identities = realm
    app = _Recorder()
    context = identities["billing"].server_ssl_context(allow=["orders"])
    orders = identities["orders"].client_ssl_context(allow="billing")
    with _wsgiref(app, context) as port:
        status, body, served = _get(port, orders, {"Spiffile-Peer-Id": f"spiffe://{TD}/admin"})
        assert (status, body) == (200, f"spiffe://{TD}/orders")
        assert app.seen == [(SpiffeId.parse(f"spiffe://{TD}/orders"), "https")]

        intruder = identities["intruder"].client_ssl_context(allow="billing")
        with pytest.raises(_REFUSED):
            _get(port, intruder)
        assert len(app.seen) == 1

        issue_svid(root, "billing", force=True)
        after = _leaf_der(root / "services" / "billing" / "svid.pem")
        assert after != served
        assert _get(port, orders)[2] == after


def test_wsgiref_server_wants_a_context() -> None:
    with pytest.raises(TypeError):
        make_wsgi_server("127.0.0.1", 0, _Recorder(), None)  # type: ignore[arg-type]


def test_gunicorn_config_fails_at_configuration_time_without_x509(tmp_path: Path) -> None:
    root = tmp_path / "identity"
    provision.init_root(root, trust_domain=TD)
    provision.add_service(root, "plain")
    with provision.load_identity(root, "plain") as identity, pytest.raises(ConfigurationError):
        gunicorn_config(identity, ["orders"])
