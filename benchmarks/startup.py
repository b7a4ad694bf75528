"""CLI start-up: ``spiffile --help`` against ``python -c pass``, in fresh processes.

Wall-clock time of a whole child process (the only honest clock for it),
interleaved round by round with the bare interpreter start.  Also reports
which heavy packages ``spiffile --help`` imports (from ``-X importtime``),
since start-up cost is almost entirely imports.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks._report import Row
from benchmarks._timing import WALL_CLOCK, Op, median_ratio, run_interleaved
from benchmarks.core import Settings

__all__ = ["HEAVY", "run"]

#: Packages that ``spiffile --help`` should not need to import.
HEAVY = ("cryptography", "jwt", "watchfiles", "anyio", "cffi", "_cffi_backend")
#: Imports whose cumulative time the row's note shows.
_WATCHED = ("spiffile.cli", "spiffile", "importlib.metadata", "click")


def _command() -> list[str]:
    script = Path(sys.executable).with_name("spiffile")
    if script.exists():
        return [str(script), "--help"]
    return [sys.executable, "-m", "spiffile", "--help"]


def _runner(argv: list[str]) -> Op:
    def call() -> None:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return Op(" ".join(argv), call, 1, WALL_CLOCK)


def imported_at_help() -> dict[str, float]:
    """Every module ``spiffile --help`` imports, with its cumulative import time in seconds.

    From ``-X importtime`` (``PYTHONPROFILEIMPORTTIME``): a module's
    cumulative time includes the modules it imported first.
    """
    env = dict(os.environ, PYTHONPROFILEIMPORTTIME="1")
    done = subprocess.run(
        _command(), env=env, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    modules: dict[str, float] = {}
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        cumulative = parts[1].strip()
        if cumulative.isdigit():  # Not the header line.
            modules[parts[2].strip()] = int(cumulative) / 1e6
    return modules


def run(settings: Settings) -> list[Row]:
    """Measure the start-up row."""
    cli, bare = _runner(_command()), _runner([sys.executable, "-c", "pass"])
    library = _runner([sys.executable, "-c", "import spiffile"])
    samples = run_interleaved([cli, bare, library], 5 if settings.quick else 21)
    modules = imported_at_help()
    heavy = sorted({name.split(".")[0] for name in modules} & set(HEAVY))
    note = "heavy imports at --help: " + (", ".join(heavy) if heavy else "none")
    note += "; cumulative import time: " + ", ".join(
        f"{name} {modules[name] * 1e3:.1f} ms" for name in _WATCHED if name in modules
    )
    return [
        Row(
            "cli_startup",
            "spiffile --help (process)",
            statistics.median(samples[cli.name]),
            "s",
            baseline="python -c pass",
            baseline_value=statistics.median(samples[bare.name]),
            ratio=median_ratio(samples[cli.name], samples[bare.name]),
            note=note,
            extra={"import_seconds": modules, "heavy": heavy},
        ),
        Row(
            "import_spiffile",
            "python -c 'import spiffile'",
            statistics.median(samples[library.name]),
            "s",
            baseline="python -c pass",
            baseline_value=statistics.median(samples[bare.name]),
            ratio=median_ratio(samples[library.name], samples[bare.name]),
        ),
    ]
