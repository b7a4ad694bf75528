"""The comparison rows: ``spiffile==0.1.0`` measured the same way, in its own virtual environment.

0.1.0 has the same distribution name as this project, so it can never share
our environment.  It is installed with pip into a separate venv (by default
under the system temporary directory, reused across runs; never inside the
repository), and :mod:`benchmarks._legacy_probe` runs there as a script,
measuring 0.1.0 and the raw ECDSA operations in that one process.  When pip
cannot reach the package index the rows are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

from benchmarks._report import Row
from benchmarks.core import Settings

__all__ = ["DEFAULT_VENV", "VERSION", "run"]

VERSION = "0.1.0"
DEFAULT_VENV = Path(tempfile.gettempdir()) / f"spiffile-bench-venv-{VERSION}"
_PROBE = Path(__file__).resolve().with_name("_legacy_probe.py")


def _python(directory: Path) -> Path:
    return directory / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _clean_env() -> dict[str, str]:
    # Nothing of this environment may leak into the other one's imports.
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def _installed(python: Path) -> bool:
    if not python.exists():
        return False
    done = subprocess.run(
        [str(python), "-c", "import spiffile; print(spiffile.__version__)"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tempfile.gettempdir(),
    )
    return done.returncode == 0 and done.stdout.strip() == VERSION


def ensure_venv(directory: Path) -> tuple[Path | None, str]:
    """A venv with ``spiffile==0.1.0`` in *directory* (created if needed), or None and why not."""
    python = _python(directory)
    if _installed(python):
        return python, "reused"
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(directory)
        done = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"spiffile=={VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=_clean_env(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"could not create the venv: {exc}"
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if "is ignored" not in line]
        return None, "pip install failed: " + (lines[-1] if lines else f"exit {done.returncode}")
    if not _installed(python):
        return None, f"spiffile=={VERSION} did not import after installation"
    return python, "installed"


def run(
    settings: Settings, bundle_path: Path, venv_dir: Path = DEFAULT_VENV
) -> tuple[list[Row], dict[str, Any]]:
    """Measure 0.1.0; returns its rows (possibly empty) and a JSON section saying what happened."""
    python, how = ensure_venv(venv_dir)
    if python is None:
        print(f"legacy: skipping spiffile=={VERSION}: {how}", file=sys.stderr)
        return [], {"skipped": how}
    done = subprocess.run(
        [
            str(python),
            str(_PROBE),
            "--rounds",
            str(settings.rounds),
            "--sample",
            str(settings.sample_seconds),
            "--load-rounds",
            "2" if settings.quick else "5",
            "--bundle",
            str(bundle_path),
        ],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tempfile.gettempdir(),
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"legacy: the probe failed: {reason}", file=sys.stderr)
        return [], {"skipped": f"probe failed: {reason}"}
    result: dict[str, Any] = json.loads(done.stdout)
    result["venv"] = str(venv_dir)
    result["venv_status"] = how
    return _rows(result), result


def _rows(result: dict[str, Any]) -> list[Row]:
    median, ratio, raised = result["median_s"], result["ratio"], result["raised"]
    label = f"spiffile {VERSION}"
    rows = [
        Row(
            "legacy_verify",
            f"{label}: Identity.verify",
            median["identity_verify"],
            "s",
            baseline="raw verify",
            baseline_value=median["raw_verify"],
            ratio=ratio["verify"],
            note="its own venv; raw ECDSA measured in that process",
        ),
        Row(
            "legacy_token",
            f"{label}: Identity.token (no cache)",
            median["identity_token"],
            "s",
            baseline="raw sign",
            baseline_value=median["raw_sign"],
            ratio=ratio["token"],
        ),
        Row(
            "legacy_load_100k",
            f"{label}: load 100k identities",
            result["load_s"]["load"],
            "s",
            baseline="json.loads",
            baseline_value=result["load_s"]["json_loads"],
            ratio=ratio["load_100k"],
            note="Bundle.from_dict(json.loads(data)): eager, parses every SPIFFE ID",
        ),
    ]
    for name, text in (
        ("hostile_1mb", "reject 1 MB token"),
        ("hostile_unknown_kid", "reject unknown kid, 50 keys"),
        ("hostile_nested", "reject nested JSON payload"),
    ):
        rows.append(
            Row(
                f"legacy_{name}",
                f"{label}: {text}",
                median[name],
                "s",
                baseline="its valid verify",
                baseline_value=median["identity_verify"],
                ratio=ratio[name],
                note=f"raises {raised[name]}",
            )
        )
    return rows
