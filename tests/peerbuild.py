"""Build the real SPIFFE peers once, into a cache outside the repository.

Three Go modules under ``tests/peers/`` describe the peers:

- ``spiffepeer/``: a small program over go-spiffe v2.9.0 (bundle endpoint
  server and client, JWT-SVID validation and minting, X.509-SVID checks and
  mutual TLS); see its ``main.go`` for the subcommands.
- ``grpcpeer/``: go-spiffe's gRPC credentials (``spiffegrpc/grpccredentials``)
  over grpc-go v1.79.3, as a health-service server and client.
- ``spire/``: a tools module pinning SPIRE v1.13.3, whose ``spire-server``
  and ``spire-agent`` are built with ``go install tool``.

Each is built into ``$SPIFFILE_PEERS_CACHE`` (default
``~/.cache/spiffile-peers``), in a directory named for its version and a
hash of its module files and the Go version, so a change to either source
or toolchain builds afresh and an unchanged one is never rebuilt. Builds
are serialised by a lock file and published by a rename, so concurrent test
processes never see a half-built binary. Binaries never enter the
repository.

Run as a script to build everything ahead of the tests (``.ci/run`` does)::

    python tests/peerbuild.py            # every peer
    python tests/peerbuild.py spiffepeer  # only go-spiffe's

Tests use :func:`peer_binary` (through :func:`require_peer`), which skips
with the reason when Go is missing or the build fails, unless
``SPIFFILE_REQUIRE_PEERS=1`` is set: then it fails instead, so CI can never
pass with a tier silently skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "PEERS",
    "PeerServer",
    "PeerUnavailableError",
    "build",
    "cache_root",
    "go_available",
    "peer_binary",
    "peer_json",
    "require_peer",
    "run_peer",
]

PEERS_DIR = Path(__file__).resolve().parent / "peers"

# Set by .ci/run: a peer that cannot be built is a failure, never a skip.
REQUIRE_ENV = "SPIFFILE_REQUIRE_PEERS"


@dataclass(frozen=True)
class Peer:
    """One Go module to build: its directory, pinned version and the binaries it yields."""

    name: str
    version: str
    binaries: tuple[str, ...]
    # Arguments after ``go``; GOBIN points into the cache entry being built.
    command: tuple[str, ...]


PEERS: dict[str, Peer] = {
    "spiffepeer": Peer(
        "spiffepeer",
        "go-spiffe-v2.9.0",
        ("spiffepeer",),
        ("install", "."),
    ),
    "grpcpeer": Peer(
        "grpcpeer",
        "go-spiffe-v2.9.0-grpc-v1.79.3",
        ("grpcpeer",),
        ("install", "."),
    ),
    "spire": Peer(
        "spire",
        "spire-v1.13.3",
        ("spire-server", "spire-agent"),
        ("install", "tool"),
    ),
}


class PeerUnavailableError(Exception):
    """A peer cannot be built here (no Go, no module proxy, a failing build)."""


def cache_root() -> Path:
    override = os.environ.get("SPIFFILE_PEERS_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spiffile-peers"


def go_available() -> str | None:
    return shutil.which("go")


def _go_version(go: str) -> str:
    out = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


def _source_hash(peer: Peer, go_version: str) -> str:
    digest = hashlib.sha256()
    digest.update(f"{peer.version}\0{go_version}\0{sys.platform}\0".encode())
    source = PEERS_DIR / peer.name
    for path in sorted(source.iterdir()):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _entry(peer: Peer, go: str) -> Path:
    return cache_root() / f"{peer.name}-{peer.version}-{_source_hash(peer, _go_version(go))}"


def build(name: str, *, log: bool = False) -> Path:
    """Build peer *name* if its cache entry is missing; return the entry's ``bin`` directory.

    Raises :class:`PeerUnavailableError` with the reason when it cannot.
    """
    peer = PEERS[name]
    go = go_available()
    if go is None:
        raise PeerUnavailableError("go is not on PATH (the go-spiffe and SPIRE peer tiers need Go)")
    entry = _entry(peer, go)
    bin_dir = entry / "bin"
    if all((bin_dir / b).is_file() for b in peer.binaries):
        return bin_dir
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / f".{peer.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((bin_dir / b).is_file() for b in peer.binaries):
            return bin_dir
        staging = Path(tempfile.mkdtemp(prefix=f".{peer.name}-", dir=cache_root()))
        try:
            env = dict(os.environ)
            env["GOBIN"] = str(staging / "bin")
            # The committed go.sum must be complete: never rewrite it during a build.
            env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly").strip()
            if log:
                print(f"building {peer.name} ({peer.version}) into {entry}", flush=True)
            started = time.monotonic()
            done = subprocess.run(
                [go, *peer.command],
                cwd=PEERS_DIR / peer.name,
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            seconds = time.monotonic() - started
            if done.returncode != 0:
                tail = "\n".join(done.stderr.strip().splitlines()[-5:])
                raise PeerUnavailableError(f"building {peer.name} failed: {tail}")
            (staging / "build.json").write_text(
                json.dumps({"peer": peer.name, "version": peer.version, "seconds": seconds})
            )
            if entry.exists():
                shutil.rmtree(entry)
            staging.rename(entry)
            if log:
                print(f"built {peer.name} in {seconds:.1f} s", flush=True)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    return bin_dir


_memo: dict[str, Path | PeerUnavailableError] = {}


def peer_binary(name: str, binary: str | None = None) -> Path:
    """The path of *binary* (default: the peer's first) of peer *name*, built if needed."""
    if name not in _memo:
        try:
            _memo[name] = build(name)
        except PeerUnavailableError as exc:
            _memo[name] = exc
        except (OSError, subprocess.SubprocessError) as exc:
            _memo[name] = PeerUnavailableError(f"building {name} failed: {exc}")
    found = _memo[name]
    if isinstance(found, PeerUnavailableError):
        raise found
    return found / (binary or PEERS[name].binaries[0])


def require_peer(name: str, binary: str | None = None) -> Path:
    """:func:`peer_binary`, or skip with the reason (fail under ``SPIFFILE_REQUIRE_PEERS=1``)."""
    import pytest

    try:
        return peer_binary(name, binary)
    except PeerUnavailableError as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but the {name} peer is unavailable: {exc}")
        pytest.skip(str(exc))


def run_peer(
    binary: Path, *args: str, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run a peer command to completion (``spiffepeer`` prints one JSON line on success)."""
    return subprocess.run(
        [str(binary), *args], input=input, capture_output=True, text=True, timeout=timeout
    )


def peer_json(binary: Path, *args: str, input: str | None = None) -> dict[str, Any]:
    """Run a peer command that must succeed; its JSON result."""
    done = run_peer(binary, *args, input=input)
    if done.returncode != 0:
        raise AssertionError(f"{binary.name} {args[0]} failed: {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


class PeerServer:
    """A long-running peer (``spiffepeer serve-bundle`` / ``mtls-server``) as a context manager.

    It prints one JSON line once it listens (read here, with a generous
    timeout) and stops when its stdin closes; ``lines()`` returns what else it
    printed so far.
    """

    def __init__(self, binary: Path, *args: str, start_timeout: float = 60) -> None:
        self._proc = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        ready = selectors.DefaultSelector()
        ready.register(self._proc.stdout, selectors.EVENT_READ)
        if not ready.select(start_timeout):
            self.close()
            raise AssertionError(f"{binary.name} {args[0]} did not start in {start_timeout} s")
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            self.close()
            raise AssertionError(f"{binary.name} {args[0]} exited: {err.strip()}")
        self.info: dict[str, Any] = json.loads(line)

    def close(self) -> str:
        """Stop the server (EOF on stdin, then SIGKILL after 10 s); everything it printed after."""
        if self._proc.returncode is not None:
            return ""
        try:
            # communicate() closes stdin (the stop signal), then collects the output.
            out, _ = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            out, _ = self._proc.communicate()
        return out or ""

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    names = argv or list(PEERS)
    for name in names:
        if name not in PEERS:
            print(f"unknown peer {name!r}; known: {', '.join(PEERS)}", file=sys.stderr)
            return 2
        try:
            bin_dir = build(name, log=True)
        except PeerUnavailableError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 1
        print(f"{name}: {bin_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
