"""Run billing (FastAPI, uvicorn) and inventory (Flask, gunicorn); call them as orders.

Each service runs as its own server process, started the way its server's
documentation says, with its own identity from the ``SPIFFILE_*``
variables that ``spiffile env NAME`` prints.  The two call each other:
billing's /summary asks inventory for stock (httpx), inventory's /reorder
asks billing for invoices (requests).  orders calls both through one httpx
client whose auth knows which receiver is where.

    pip install 'spiffile[fastapi,flask,httpx,requests]' uvicorn gunicorn
    python examples/two_services/run.py            # a temporary identity root
    python examples/two_services/run.py ./identity # one holding orders, billing, inventory
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from spiffile import Identity
from spiffile.integrations.httpx import SpiffileAuth
from spiffile.provision import add_service, init_root, open_root, service_env

HERE = Path(__file__).resolve().parent


def listening_socket() -> socket.socket:
    """A socket on an ephemeral 127.0.0.1 port, handed to the server process."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # Requests wait here until the server accepts them.
    return sock


def url_of(sock: socket.socket) -> str:
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def start(
    command: list[str], env: dict[str, str], sock: socket.socket, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            command,
            cwd=HERE,
            env={**os.environ, **env},
            pass_fds=[sock.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def reason(log: Path, status: str) -> str:
    """The server's own explanation of a refusal, from its stderr."""
    for line in log.read_text().splitlines():
        if f": {status} " in line:
            return line[line.index(f": {status} ") + 2 :]
    return "(not logged)"


def main(root_path: str, logs: Path) -> int:
    root = open_root(root_path)
    billing_sock, inventory_sock = listening_socket(), listening_socket()
    billing_url, inventory_url = url_of(billing_sock), url_of(inventory_sock)
    billing = start(
        [sys.executable, "-m", "uvicorn", "--fd", str(billing_sock.fileno()), "billing:app"],
        {**service_env(root, "billing"), "INVENTORY_URL": inventory_url},
        billing_sock,
        logs / "billing.log",
    )
    gunicorn = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "1",
        "-b",
        f"fd://{inventory_sock.fileno()}",
    ]
    inventory = start(
        [*gunicorn, "inventory:app"],
        {**service_env(root, "inventory"), "BILLING_URL": billing_url},
        inventory_sock,
        logs / "inventory.log",
    )
    orders = Identity.from_env(service_env(root, "orders"))
    receivers = {
        billing_url.removeprefix("http://"): "billing",
        inventory_url.removeprefix("http://"): "inventory",
    }
    results = []
    try:
        with httpx.Client(auth=SpiffileAuth(orders, receivers), timeout=60) as client:
            for who, target in [
                ("orders", f"{billing_url}/summary"),
                ("orders", f"{inventory_url}/reorder"),
                ("orders", f"{inventory_url}/stock"),
                ("anonymous", f"{billing_url}/invoices"),
                ("anonymous", f"{billing_url}/healthz"),
                ("anonymous", f"{billing_url}/openapi.json"),
            ]:
                if who == "orders":
                    response = client.get(target)
                else:
                    response = httpx.get(target, timeout=60)
                name = "billing" if target.startswith(billing_url) else "inventory"
                path = target.rsplit("/", 1)[1]
                body = response.json()
                if path == "openapi.json":
                    body = sorted(body["components"]["securitySchemes"])
                print(f"{who} -> {name} /{path}: {response.status_code} {body}")
                results.append(response.status_code)
    finally:
        for process in (billing, inventory):
            process.terminate()
            process.wait(30)
        billing_sock.close()
        inventory_sock.close()
    print(f"inventory says why: {reason(logs / 'inventory.log', '403')}")
    print(f"billing says why: {reason(logs / 'billing.log', '401')}")
    return 0 if results == [200, 200, 403, 401, 200, 200] else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        if len(sys.argv) > 1:
            sys.exit(main(sys.argv[1], Path(tmp)))
        demo_root = init_root(f"{tmp}/identity", "example.org")
        for service in ("orders", "billing", "inventory"):
            add_service(demo_root, service)
        sys.exit(main(f"{tmp}/identity", Path(tmp)))
