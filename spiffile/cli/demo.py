"""``spiffile demo``: two real services that authenticate each other with spiffile.

This is an end-to-end check as much as a show: every step states what must
happen, and the demo fails (exit 1) if it does not.

- A temporary root is provisioned with the provisioning API.
- ``orders`` and ``billing`` run as separate processes (``python -m
  spiffile.cli.demo serve NAME``) on 127.0.0.1, each with only its own
  ``SPIFFILE_*`` environment from :func:`spiffile.provision.service_env` and
  :meth:`Identity.from_env`, as a real deployment would run them.
- Each service answers ``GET /`` by verifying the bearer token and naming the
  caller, and ``GET /call?url=...&audience=...`` by calling a peer with a
  fresh token.
- The driver shows an accepted call, two rejected ones (a token forged with an
  attacker's key, a genuine token replayed to the wrong audience), rotates
  ``orders``' key and shows the next call accepted by the same two processes,
  and a token signed with the retired key rejected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["TRUST_DOMAIN", "DemoFailedError", "run_demo", "serve"]

TRUST_DOMAIN = "demo.example"
_START_TIMEOUT = 20.0
_HTTP_TIMEOUT = 10.0

# Never route the demo's loopback calls through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DemoFailedError(Exception):
    """An expected outcome of the demo did not happen."""


def _http_get(url: str, bearer: str | None = None) -> tuple[int, dict[str, Any]]:
    """GET ``url``; return the status and the JSON body, whatever the status."""
    request = urllib.request.Request(url)
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with _OPENER.open(request, timeout=_HTTP_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read() or b"{}")


# --- the service -------------------------------------------------------------------------------


def serve(host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve the demo endpoints with the identity from the environment until killed."""
    from spiffile.errors import SpiffileError
    from spiffile.identity import Identity

    identity = Identity.from_env()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """Keep the demo's output readable: no access log."""

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/":
                self._hello()
            elif url.path == "/call":
                query = urllib.parse.parse_qs(url.query)
                self._call(query.get("url", [""])[0], query.get("audience", [""])[0])
            else:
                self._reply(404, {"error": "not_found"})

        def _hello(self) -> None:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Bearer "):
                self._reply(401, {"error": "missing_token", "message": "no bearer token"})
                return
            try:
                caller = identity.verify(header[len("Bearer ") :])
            except SpiffileError as exc:
                self._reply(401, {"error": exc.code, "message": str(exc)})
                return
            self._reply(200, {"service": str(identity.id), "caller": str(caller.id)})

        def _call(self, url: str, audience: str) -> None:
            try:
                token = identity.token(audience=audience)
                status, body = _http_get(url, bearer=token)
            except (SpiffileError, OSError, ValueError) as exc:
                self._reply(502, {"error": "call_failed", "message": str(exc)})
                return
            self._reply(200, {"status": status, "response": body, "kid": identity.kid})

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"READY {server.server_address[1]}", flush=True)
    server.serve_forever()


# --- the driver --------------------------------------------------------------------------------


@dataclass
class _Service:
    name: str
    process: subprocess.Popen[str]
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def _service_environment(root: Any, name: str) -> dict[str, str]:
    from spiffile.provision import service_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    env.update(service_env(root, name))
    # Let the child import this very copy of spiffile, installed or not.
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _start(root: Any, name: str) -> _Service:
    process = subprocess.Popen(
        [sys.executable, "-m", "spiffile.cli.demo", "serve"],
        env=_service_environment(root, name),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        # Out of the terminal's process group: a Ctrl-C reaches the driver only,
        # which stops the services itself (a service interrupted while still
        # importing would print a traceback).
        start_new_session=True,
    )
    return _Service(name, process)


def _wait_ready(service: _Service) -> None:
    """Read the service's ``READY <port>`` line (or fail if it dies or stalls)."""
    stdout = service.process.stdout
    if stdout is None:  # pragma: no cover - we always pass stdout=PIPE
        raise DemoFailedError(f"{service.name}: no stdout")
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        if not selector.select(timeout=_START_TIMEOUT):
            raise DemoFailedError(f"{service.name} did not start within {_START_TIMEOUT:.0f} s")
    line = stdout.readline().split()
    if len(line) != 2 or line[0] != "READY":
        raise DemoFailedError(f"{service.name} failed to start (exit {service.process.poll()})")
    service.port = int(line[1])


def _stop(services: Sequence[_Service]) -> None:
    for service in services:
        if service.process.poll() is None:
            service.process.terminate()
    for service in services:
        try:
            service.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()
        if service.process.stdout is not None:
            service.process.stdout.close()


@contextlib.contextmanager
def _running(root: Any, names: Sequence[str]) -> Iterator[dict[str, _Service]]:
    services: list[_Service] = []
    try:
        for name in names:
            services.append(_start(root, name))
        for service in services:
            _wait_ready(service)
        yield {service.name: service for service in services}
    finally:
        _stop(services)


def _expect(
    echo: Callable[[str], None], status: int, body: dict[str, Any], *, accept: bool, code: str = ""
) -> None:
    """Print one outcome and fail the demo unless it is the expected one."""
    if accept:
        if status != 200:
            raise DemoFailedError(f"expected the call to be accepted, got {status} {body}")
        echo(f"   ACCEPTED  billing says the caller is {body.get('caller')}")
        return
    if status != 401 or (code and body.get("error") != code):
        raise DemoFailedError(f"expected a 401 rejection ({code}), got {status} {body}")
    echo(f"   REJECTED  401 {body.get('error')}: {body.get('message')}")


def run_demo(echo: Callable[[str], None] = print) -> None:
    """Run the demo, printing each step; raise :class:`DemoFailedError` on a surprise.

    SIGTERM or SIGHUP midway raise ``SystemExit(128 + n)`` after cleaning up.
    """
    started = time.monotonic()
    with _exit_on_termination():
        _run_demo(echo, started)


@contextlib.contextmanager
def _exit_on_termination() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into ``SystemExit(128 + n)`` while the demo runs.

    Their default action kills the driver on the spot: the ``finally`` blocks
    that stop the services and delete the temporary root (private keys
    included) would never run.  Ctrl-C already unwinds as KeyboardInterrupt.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # Signal handlers can only be set from the main thread.
        return
    # Only where the default action would kill us: `nohup spiffile demo` keeps
    # ignoring SIGHUP, and a handler set by an embedding program stays.
    caught = [s for s in (signal.SIGTERM, signal.SIGHUP) if signal.getsignal(s) == signal.SIG_DFL]

    def terminate(signum: int, _frame: Any) -> None:
        for sig in caught:  # Let the cleanup finish undisturbed.
            signal.signal(sig, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, terminate) for sig in caught}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_demo(echo: Callable[[str], None], started: float) -> None:
    from spiffile.files import RECHECK_INTERVAL
    from spiffile.keys import generate_private_key, load_private_key_pem
    from spiffile.provision import add_service, init_root, load_identity, rotate_service
    from spiffile.svid import mint

    workdir = tempfile.mkdtemp(prefix="spiffile-demo-")
    try:
        root = init_root(Path(workdir) / "identity", TRUST_DOMAIN)
        orders = add_service(root, "orders")
        billing = add_service(root, "billing")
        echo(f"spiffile demo: identity root {root.path} (trust domain {TRUST_DOMAIN})")
        with _running(root, ["orders", "billing"]) as services:
            pids = {name: s.process.pid for name, s in services.items()}
            for name, info in (("orders", orders), ("billing", billing)):
                service = services[name]
                echo(
                    f"  {name:8} {info.id!s:30} pid {service.process.pid:<7} {service.url}"
                    "  (own process, own SPIFFILE_* env)"
                )

            def orders_calls_billing() -> tuple[int, dict[str, Any]]:
                query = urllib.parse.urlencode(
                    {"url": services["billing"].url, "audience": str(billing.id)}
                )
                status, body = _http_get(services["orders"].url + "call?" + query)
                if status != 200:
                    raise DemoFailedError(f"orders could not call billing: {status} {body}")
                return int(body["status"]), {**body["response"], "kid": body["kid"]}

            echo("\n1. orders calls billing with a fresh token")
            status, body = orders_calls_billing()
            _expect(echo, status, body, accept=True)
            if body.get("caller") != str(orders.id) or body.get("kid") != orders.kid:
                raise DemoFailedError(f"billing saw the wrong caller: {body}")

            echo("\n2. an attacker forges a token claiming to be orders (signed with its own key)")
            forged = mint(
                generate_private_key(), orders.kid, orders.id, billing.id, now=time.time()
            )
            _expect(
                echo, *_http_get(services["billing"].url, forged), accept=False, code="signature"
            )

            echo("\n3. a genuine orders token for payments is replayed to billing")
            payments = f"spiffe://{TRUST_DOMAIN}/payments"
            with contextlib.closing(load_identity(root, "orders")) as operator_view:
                replayed = operator_view.token(audience=payments)
            _expect(
                echo, *_http_get(services["billing"].url, replayed), accept=False, code="audience"
            )

            echo("\n4. the operator rotates orders' key (old key dropped); nothing restarts")
            old_key = load_private_key_pem((orders.directory / "key.pem").read_bytes())
            new_kid = rotate_service(root, "orders", keep_old=False)
            echo(f"   orders: kid {orders.kid} -> {new_kid}")
            # The services look at their files at most every 50 ms (PROFILE.md §7.2).
            time.sleep(RECHECK_INTERVAL)
            status, body = orders_calls_billing()
            _expect(echo, status, body, accept=True)
            if body.get("kid") != new_kid:
                raise DemoFailedError(f"orders did not pick up its new key: {body}")
            retired = mint(old_key, orders.kid, orders.id, billing.id, now=time.time())
            echo("   a token signed with the retired key:")
            _expect(
                echo, *_http_get(services["billing"].url, retired), accept=False, code="signature"
            )
            for name, service in services.items():
                if service.process.poll() is not None or service.process.pid != pids[name]:
                    raise DemoFailedError(f"{name} restarted or died")
            echo(f"   same processes: orders pid {pids['orders']}, billing pid {pids['billing']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    echo(f"\ndemo passed in {time.monotonic() - started:.1f} s; removed {workdir}")


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiffile.cli.demo")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve the demo endpoints (SPIFFILE_* env)")
    serve_parser.add_argument("--port", type=int, default=0)
    sub.add_parser("run", help="run the demo (same as `spiffile demo`)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        from spiffile.errors import SpiffileError

        try:
            serve(port=args.port)
        except (SpiffileError, OSError) as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130  # Ctrl-C: stop quietly, as the shell reports it.
        return 0
    try:
        run_demo()
    except DemoFailedError as exc:
        print(f"Error: demo failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
