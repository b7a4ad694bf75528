"""``spiffile demo`` is the README's first command: it must pass end to end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_and_cleans_up() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    result = subprocess.run(
        [sys.executable, "-m", "spiffile", "demo"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    # Accepted, forged (signature), replayed (audience), rotated and accepted, retired key rejected.
    assert re.findall(r"(ACCEPTED|REJECTED)", out) == [
        "ACCEPTED",
        "REJECTED",
        "REJECTED",
        "ACCEPTED",
        "REJECTED",
    ]
    assert "caller is spiffe://demo.example/orders" in out
    assert "REJECTED  401 signature" in out and "REJECTED  401 audience" in out
    assert "same processes" in out
    removed = re.search(r"demo passed in [0-9.]+ s; removed (\S+)", out)
    assert removed is not None, out
    assert not Path(removed.group(1)).exists()


def test_demo_service_without_identity_fails_cleanly() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SPIFFILE_")}
    result = subprocess.run(
        [sys.executable, "-m", "spiffile.demo", "serve"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
