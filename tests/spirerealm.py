"""A real SPIRE deployment on 127.0.0.1 for the SPIRE tier (``pytest -m spire``).

One ``spire-server`` (SQLite datastore, disk key manager, join-token node
attestation) and one ``spire-agent`` (join token, unix workload attestor),
from the binaries ``tests/peerbuild.py`` builds, all state in one temporary
directory. A registration entry gives processes of this uid one SPIFFE ID,
so ``spire-agent api fetch jwt`` returns a SPIRE-issued JWT-SVID for it.

Nothing waits on a fixed delay: each step polls the condition it needs (the
server's health check, the agent's, an SVID being issued) with a generous
deadline, and a failure reports the tail of the server and agent logs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["SpireDeployment", "SpireError"]

T = TypeVar("T")

DEADLINE = 90.0


class SpireError(AssertionError):
    """A SPIRE step did not succeed; the message carries the logs' tails."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool | None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return None
    return True


class SpireDeployment:
    """A running SPIRE server and agent; use as a context manager.

    *jwt_key_type* is the server's ``jwt_key_type`` (``ec-p256`` gives ES256
    JWT-SVIDs, ``rsa-2048`` RS256).
    """

    def __init__(
        self,
        bin_dir: Path,
        trust_domain: str = "spire.test",
        workload_path: str = "/workload",
        jwt_key_type: str = "ec-p256",
        bundle_endpoint: tuple[Path, Path] | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.trust_domain = trust_domain
        self.workload_id = f"spiffe://{trust_domain}{workload_path}"
        self.jwt_key_type = jwt_key_type
        # (certificate chain, key) for the server's https_web bundle endpoint, if wanted.
        self._bundle_endpoint = bundle_endpoint
        #: The bundle endpoint's URL once started (https_web, SPIFFE Federation §5).
        self.bundle_endpoint_url: str | None = None
        #: The refresh hint the bundle endpoint advertises, seconds.
        self.refresh_hint = 60
        # Unix socket paths must stay under 108 bytes: a short directory in /tmp.
        self.base = Path(tempfile.mkdtemp(prefix="spire-"))
        self.server_socket = self.base / "server.sock"
        self.agent_socket = self.base / "agent.sock"
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> SpireDeployment:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self._procs.clear()
        shutil.rmtree(self.base, ignore_errors=True)

    def _spawn(self, name: str, *args: str) -> None:
        log = self.base / f"{name}.log"
        self._logs.append(log)
        with open(log, "wb") as out:
            self._procs.append(
                subprocess.Popen(
                    [str(self.bin_dir / name), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.base,
                )
            )

    def logs(self) -> str:
        parts = []
        for log in self._logs:
            text = log.read_text(errors="replace") if log.exists() else ""
            parts.append(f"--- {log.name}\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(parts)

    def _wait(self, what: str, attempt: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + DEADLINE
        while True:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise SpireError(f"{what}: a SPIRE process exited\n{self.logs()}")
            result = attempt()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise SpireError(f"{what}: not done within {DEADLINE} s\n{self.logs()}")
            time.sleep(0.2)

    def _start(self) -> None:
        port = _free_port()
        data = self.base / "server-data"
        federation = ""
        if self._bundle_endpoint is not None:
            endpoint_port = _free_port()
            cert, key = self._bundle_endpoint
            federation = f"""
  federation {{
    bundle_endpoint {{
      address = "127.0.0.1"
      port = {endpoint_port}
      refresh_hint = "{self.refresh_hint}s"
      profile "https_web" {{
        serving_cert_file {{
          cert_file_path = "{cert}"
          key_file_path = "{key}"
          file_sync_interval = "1h"
        }}
      }}
    }}
  }}"""
            self.bundle_endpoint_url = f"https://127.0.0.1:{endpoint_port}/"
        (self.base / "server.conf").write_text(
            f"""
server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = "{self.server_socket}"
  trust_domain = "{self.trust_domain}"
  data_dir = "{data}"
  log_level = "INFO"
  jwt_key_type = "{self.jwt_key_type}"{federation}
}}
plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{data}/datastore.sqlite3"
    }}
  }}
  KeyManager "disk" {{
    plugin_data {{ keys_path = "{data}/keys.json" }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""
        )
        self._spawn("spire-server", "run", "-config", str(self.base / "server.conf"))
        self._wait(
            "spire-server healthy",
            lambda: True if self.server("healthcheck", check=False).returncode == 0 else None,
        )
        if self.bundle_endpoint_url is not None:
            self._wait("bundle endpoint listening", lambda: _listening(endpoint_port))
        (self.base / "bootstrap.pem").write_text(self.server("bundle", "show", "-format", "pem"))
        token = json.loads(self.server("token", "generate", "-output", "json"))["value"]
        self.server(
            "entry",
            "create",
            "-parentID",
            f"spiffe://{self.trust_domain}/spire/agent/join_token/{token}",
            "-spiffeID",
            self.workload_id,
            "-selector",
            f"unix:uid:{os.getuid()}",
        )
        (self.base / "agent.conf").write_text(
            f"""
agent {{
  data_dir = "{self.base / "agent-data"}"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{self.agent_socket}"
  trust_bundle_path = "{self.base / "bootstrap.pem"}"
  trust_domain = "{self.trust_domain}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "memory" {{
    plugin_data {{}}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""
        )
        self._spawn(
            "spire-agent", "run", "-config", str(self.base / "agent.conf"), "-joinToken", token
        )
        # The agent serves this uid once it attested and synced the entry.
        self._wait("first JWT-SVID from the agent", lambda: self._try_fetch_jwt("warm-up"))

    # --- commands ------------------------------------------------------------------------

    def _run(self, binary: str, args: tuple[str, ...], socket_path: Path, check: bool) -> Any:
        done = subprocess.run(
            [str(self.bin_dir / binary), *args, "-socketPath", str(socket_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise SpireError(
                f"{binary} {' '.join(args[:2])} failed: {done.stderr.strip()}\n{self.logs()}"
            )
        return done

    def server(self, *args: str, check: bool = True) -> Any:
        """Run ``spire-server ARGS -socketPath ...``; its stdout (the process when not *check*)."""
        done = self._run("spire-server", args, self.server_socket, check)
        return done.stdout if check else done

    def _try_fetch_jwt(self, audience: str) -> tuple[str, dict[str, bytes]] | None:
        done = self._run(
            "spire-agent",
            ("api", "fetch", "jwt", "-audience", audience, "-output", "json"),
            self.agent_socket,
            check=False,
        )
        if done.returncode != 0:
            return None
        return parse_fetch_jwt(done.stdout)

    def fetch_jwt(self, audience: str) -> tuple[str, dict[str, bytes]]:
        """A SPIRE-issued JWT-SVID for this uid, and the agent's JWT bundles by trust domain.

        The bundles are the JWK Set documents as the agent hands them out.
        """
        return self._wait(f"JWT-SVID for {audience!r}", lambda: self._try_fetch_jwt(audience))

    def fetch_x509(self, directory: Path) -> Path:
        """``spire-agent api fetch x509 -write DIR``: svid.0.pem, svid.0.key, bundle.0.pem."""

        def attempt() -> Path | None:
            done = self._run(
                "spire-agent",
                ("api", "fetch", "x509", "-write", str(directory)),
                self.agent_socket,
                check=False,
            )
            return directory if done.returncode == 0 else None

        directory.mkdir(parents=True, exist_ok=True)
        return self._wait("X.509-SVID from the agent", attempt)

    def bundle_spiffe(self) -> bytes:
        """``spire-server bundle show -format spiffe``: the trust domain's SPIFFE bundle."""
        text: str = self.server("bundle", "show", "-format", "spiffe")
        return text.encode()


def parse_fetch_jwt(stdout: str) -> tuple[str, dict[str, bytes]] | None:
    """Read ``spire-agent api fetch jwt -output json``: (token, {trust domain: JWKS bytes})."""
    token = None
    bundles: dict[str, bytes] = {}
    for item in json.loads(stdout):
        for svid in item.get("svids") or ():
            token = svid["svid"]
        for trust_domain, encoded in (item.get("bundles") or {}).items():
            bundles[trust_domain.removeprefix("spiffe://")] = base64.b64decode(encoded)
    if token is None:
        return None
    return token, bundles
