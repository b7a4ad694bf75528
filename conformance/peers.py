"""Peer implementations installed from PyPI into their own virtual environments.

The earlier Python implementation is published as ``spiffile``, the same
name as this package, so it can never share our environment; py-spiffe
brings gRPC and protobuf we do not want as test dependencies.  Each peer gets
a fresh venv; when the registry cannot be reached the install fails with
:class:`PeerUnavailable` carrying pip's own words, so a test can report a skip
with the reason instead of passing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance._impl import Command

__all__ = ["ADAPTERS", "PeerUnavailable", "install_peer", "v010_implementation"]

ADAPTERS = Path(__file__).resolve().parent / "adapters"


class PeerUnavailable(RuntimeError):  # noqa: N818 - a condition, not a bug: tests skip on it.
    """A peer could not be installed (registry unreachable, package missing)."""


def _clean_env() -> dict[str, str]:
    """The environment minus anything that would leak our interpreter's packages into the peer's."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def install_peer(directory: Path, requirements: Sequence[str], *, timeout: float = 80) -> Path:
    """Create a venv in *directory*, pip-install *requirements*, return its python.

    Each step gets *timeout* seconds (venv creation a third of it), so that a
    hanging registry ends in :class:`PeerUnavailable` well before pytest's own
    per-test timeout (120 s) would turn it into a failure.
    """
    env = _clean_env()
    steps = [
        [sys.executable, "-m", "venv", str(directory)],
        [
            str(directory / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--timeout",
            "20",
            "--retries",
            "2",
            *requirements,
        ],
    ]
    for argv, limit in zip(steps, (timeout / 3, timeout), strict=True):
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, env=env, timeout=limit, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PeerUnavailable(f"{' '.join(argv[:4])}...: {exc}") from exc
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "is ignored" not in ln]
            tail = " | ".join(lines[-4:]) or done.stdout.strip()[-300:]
            raise PeerUnavailable(f"cannot install {' '.join(requirements)}: {tail}")
    return directory / "bin" / "python"


def v010_implementation(python: Path) -> Command:
    """spiffile 0.1.0 through its adapter, run by the peer venv's python."""
    return Command(
        "spiffile-0.1.0", [str(python), str(ADAPTERS / "spiffile_v010.py")], env=_clean_env()
    )
