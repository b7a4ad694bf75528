"""Why a request got its 401 or 403, shown by one line under uvicorn and gunicorn.

Each server runs as its own process, started the way its documentation says
(``python -m uvicorn``, ``python -m gunicorn``) on a socket this test bound
to 127.0.0.1, with a service that calls
``spiffile.integrations.log_rejections()``, and once without that line, to
show it is what makes the reasons visible.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("requests")

import requests
from servicerealm import Realm, provision_realm

from spiffile.provision import service_env

BILLING = "spiffe://example.org/billing"

FASTAPI_APP = """
import spiffile.integrations
from fastapi import FastAPI
from spiffile import Identity
from spiffile.integrations.asgi import SpiffileMiddleware
{line}
app = FastAPI()

@app.get("/invoices")
def invoices():
    return {{"ok": True}}

app.add_middleware(SpiffileMiddleware, identity=Identity.from_env(), allow=["orders"])
"""

FLASK_APP = """
import spiffile.integrations
from flask import Flask
from spiffile import Identity
from spiffile.integrations.flask import Spiffile, require_caller
{line}
app = Flask(__name__)
Spiffile(app, Identity.from_env())

@app.get("/invoices")
@require_caller(allow=["orders"])
def invoices():
    return {{"ok": True}}
"""

THE_LINE = "spiffile.integrations.log_rejections()"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Realm:
    return provision_realm(tmp_path_factory.mktemp("logging"))


def server_command(server: str, fd: int) -> list[str]:
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--fd", str(fd), "service:app"]
    return [sys.executable, "-m", "gunicorn", "--bind", f"fd://{fd}", "-w", "1", "service:app"]


@contextlib.contextmanager
def run_server(
    realm: Realm, tmp_path: Path, server: str, with_line: bool
) -> Iterator[tuple[str, Path]]:
    pytest.importorskip(server)
    pytest.importorskip("fastapi" if server == "uvicorn" else "flask")
    source = FASTAPI_APP if server == "uvicorn" else FLASK_APP
    (tmp_path / "service.py").write_text(source.format(line=THE_LINE if with_line else ""))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # Requests queue here until the server accepts them.
    stderr_path = tmp_path / "stderr.log"
    env = {**os.environ, **service_env(realm.root, "billing")}
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            server_command(server, sock.fileno()),
            cwd=tmp_path,
            env=env,
            pass_fds=[sock.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", stderr_path
    finally:
        process.terminate()
        process.wait(30)
        sock.close()


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
@pytest.mark.parametrize("with_line", [True, False], ids=["with-the-line", "without"])
def test_rejection_reasons_reach_the_server_log(
    realm: Realm, tmp_path: Path, server: str, with_line: bool
) -> None:
    from spiffile.provision import load_identity

    reports = load_identity(realm.root, "reports")
    tokens = {"unknown": realm.ghost.token(BILLING), "forbidden": reports.token(BILLING)}
    with run_server(realm, tmp_path, server, with_line) as (url, stderr_path):
        ok = requests.get(
            f"{url}/invoices",
            headers={"Authorization": f"Bearer {realm.orders.token(BILLING)}"},
            timeout=60,
        )
        assert ok.status_code == 200
        unknown = requests.get(
            f"{url}/invoices", headers={"Authorization": f"Bearer {tokens['unknown']}"}, timeout=60
        )
        forbidden = requests.get(
            f"{url}/invoices",
            headers={"Authorization": f"Bearer {tokens['forbidden']}"},
            timeout=60,
        )
        missing = requests.get(f"{url}/invoices", timeout=60)
        # The answer stays coarse whatever the log says.
        assert unknown.status_code == 401
        assert "ghost" not in unknown.text
        assert forbidden.status_code == 403
        assert "reports" not in forbidden.text
        assert missing.status_code == 401
    log = stderr_path.read_text()
    lines = [
        "401 GET '/invoices': unknown_identity: ",
        "spiffe://example.org/ghost",
        "403 GET '/invoices': not_allowed: caller spiffe://example.org/reports is not allowed"
        " by one_of(spiffe://example.org/orders)",
        "401 GET '/invoices': missing_token: no bearer token",
    ]
    for expected in lines:
        assert (expected in log) is with_line, (expected, log)
    for token in tokens.values():
        assert token not in log
        assert token.split(".")[2] not in log  # Not even the signature.
