"""``python -m benchmarks [--quick] [--json PATH]``: run every row, print the table and JSON.

``--quick`` (what CI runs) has the same rows with far fewer and shorter
samples: it checks that every benchmark still runs and gives a rough
picture.  Nothing is asserted: on a shared machine timings are noise for a
gate; people read the ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import core, e2e, gil, legacy, load, middleware, plots, startup
from benchmarks._fixtures import KeyPool, bundle_bytes
from benchmarks._report import Row, document, format_table
from benchmarks.core import Settings

__all__ = ["main"]

SUITES = ("core", "middleware", "load", "startup", "gil", "e2e", "legacy")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="spiffile throughput and scale, as ratios to the raw operations.",
    )
    parser.add_argument("--quick", action="store_true", help="few short samples (CI)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the JSON here too")
    parser.add_argument("--rounds", type=int, help="rounds of interleaved samples (per-call rows)")
    parser.add_argument(
        "--only", action="append", choices=SUITES, help="run only these suites (repeatable)"
    )
    parser.add_argument(
        "--plots",
        type=Path,
        metavar="DIR",
        help="draw the figures into DIR from this run's JSON (needs matplotlib: the bench extra)",
    )
    parser.add_argument("--skip-legacy", action="store_true", help="no spiffile 0.1.0 rows")
    parser.add_argument(
        "--legacy-venv",
        type=Path,
        default=legacy.DEFAULT_VENV,
        help=f"where spiffile 0.1.0 is installed (default {legacy.DEFAULT_VENV})",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected suites; print the table, then the JSON document."""
    args = _arguments(argv)
    if args.plots is not None and not plots.available():
        print("Error: --plots needs matplotlib (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    suites = args.only or [s for s in SUITES if not (s == "legacy" and args.skip_legacy)]
    settings = Settings(
        rounds=args.rounds or (5 if args.quick else 25),
        sample_seconds=0.005 if args.quick else 0.04,
        quick=args.quick,
    )
    started = time.perf_counter()
    pool = KeyPool.generate(256)
    rows: list[Row] = []
    extra: dict[str, Any] = {"suites": suites, "settings": vars(settings)}
    with tempfile.TemporaryDirectory(prefix="spiffile-bench-") as tmp:
        workdir = Path(tmp)
        for suite in suites:
            print(f"running {suite} ...", file=sys.stderr, flush=True)
            if suite == "core":
                rows += core.run(pool, settings, workdir)
            elif suite == "middleware":
                rows += middleware.run(pool, settings, workdir)
            elif suite == "load":
                rows += load.run(pool, settings, workdir)
            elif suite == "startup":
                rows += startup.run(settings)
            elif suite == "gil":
                rows += gil.run(pool, settings, workdir)
            elif suite == "e2e":
                rows += e2e.run(pool, settings, workdir)
            elif suite == "legacy":
                path = workdir / "legacy-bundle-100k.json"
                path.write_bytes(bundle_bytes(load.IDENTITIES, pool))
                legacy_rows, extra["legacy"] = legacy.run(settings, path, args.legacy_venv)
                rows += legacy_rows
    extra["seconds"] = round(time.perf_counter() - started, 1)
    print(format_table(rows))
    print(f"\n({'quick' if args.quick else 'full'} run, {extra['seconds']} s)")
    text = document(rows, mode="quick" if args.quick else "full", extra=extra)
    if args.json is not None:
        args.json.write_text(text + "\n")
        print(f"JSON written to {args.json}")
    else:
        print("\nJSON:")
        print(text)
    if args.plots is not None:
        for path in plots.draw(json.loads(text), args.plots):
            print(f"figure written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
