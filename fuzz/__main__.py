"""Run the fuzz targets: ``python -m fuzz --ci`` (bounded, for CI) or a long run.

Each target runs in its own libFuzzer process (atheris never returns from
``Fuzz()``), its chatter goes to a log file, and one summary line per target
comes out here.  The exit status is 0 only when no target found anything;
a finding leaves its input in the artifacts directory with the command that
replays it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["main"]

#: --ci: wall-clock budget for the whole run, start-up included (CI asks for under a minute).
CI_BUDGET = 54
#: What starting one instrumented target costs before it fuzzes (measured 2-4 s under load).
STARTUP_ALLOWANCE = 3
#: libFuzzer's per-input limit: an input that takes longer is a finding (a hang).
INPUT_TIMEOUT = 10
RSS_LIMIT_MB = 2048

_EXECUTED = re.compile(rb"stat::number_of_executed_units: (\d+)")
_STATS = re.compile(rb"#(\d+)\s+\S+\s+cov: (\d+)")


@dataclass
class Outcome:
    """What one libFuzzer process did."""

    target: str
    status: int
    runs: int
    seconds: float
    coverage: int
    findings: list[Path]
    log: Path

    @property
    def ok(self) -> bool:
        return self.status == 0 and not self.findings


def _have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_target(
    name: str, seconds: int, corpus: Path, artifacts: Path, *, quiet: bool = True
) -> Outcome:
    """Fuzz target *name* for *seconds* from its seeds and *corpus*; collect what it found."""
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    seeds = Path(tempfile.mkdtemp(prefix=f"spiffile-fuzz-seeds-{name}-"))
    try:
        for index, seed in enumerate(target.seeds()):
            (seeds / f"seed-{index}").write_bytes(seed)
        before = set(artifacts.iterdir())
        log = artifacts / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "fuzz._worker",
            name,
            f"-max_total_time={seconds}",
            f"-max_len={target.max_len}",
            f"-timeout={INPUT_TIMEOUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-artifact_prefix={artifacts}{os.sep}{name}-",
            "-print_final_stats=1",
            str(corpus),
            str(seeds),
        ]
        started = time.monotonic()
        with log.open("wb") as out:
            # The hard limit only guards against a wedged process: libFuzzer stops itself.
            try:
                status = subprocess.run(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT if quiet else None,
                    timeout=seconds + INPUT_TIMEOUT + 60,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                status = -1
        elapsed = time.monotonic() - started
    finally:
        shutil.rmtree(seeds, ignore_errors=True)
    text = log.read_bytes()
    executed = _EXECUTED.findall(text)
    stats = _STATS.findall(text)
    runs = int(executed[-1]) if executed else (int(stats[-1][0]) if stats else 0)
    coverage = int(stats[-1][1]) if stats else 0
    findings = sorted(p for p in set(artifacts.iterdir()) - before if p.suffix != ".log")
    return Outcome(name, status, runs, elapsed, coverage, findings, log)


def _reproduce(name: str, path: Path) -> int:
    """Replay one input through the plain check (no atheris needed) and say what happens."""
    from fuzz.targets import TARGETS

    TARGETS[name].check(path.read_bytes())  # A finding propagates with its traceback.
    print(f"fuzz: {name}: {path} passes the check")
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__)
    parser.add_argument(
        "--ci", action="store_true", help=f"every target, {CI_BUDGET} s in all, throwaway corpus"
    )
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        help="target to run (repeatable; default: all)",
    )
    parser.add_argument("--time", type=int, default=60, help="seconds per target (default 60)")
    parser.add_argument(
        "--corpus", type=Path, help="keep the corpus here (one subdirectory per target)"
    )
    parser.add_argument("--artifacts", type=Path, help="findings and logs (default: a temp dir)")
    parser.add_argument("--reproduce", type=Path, metavar="FILE", help="replay one input")
    parser.add_argument("--verbose", action="store_true", help="show libFuzzer's own output")
    options = parser.parse_args(argv)
    if options.time <= 0:
        parser.error("--time must be positive")
    if options.reproduce is not None and (not options.target or len(options.target) != 1):
        parser.error("--reproduce needs exactly one --target")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    options = _parse(argv)
    from fuzz.targets import TARGETS

    if options.reproduce is not None:
        return _reproduce(options.target[0], options.reproduce)
    if not _have_atheris():
        print("fuzz: atheris is not installed: pip install -e '.[fuzz]'", file=sys.stderr)
        return 2
    names = options.target or [name for name in TARGETS if not name.startswith("_")]
    deadline = time.monotonic() + CI_BUDGET
    artifacts = options.artifacts or Path(tempfile.mkdtemp(prefix="spiffile-fuzz-"))
    scratch: Path | None = None
    if options.corpus is None:
        scratch = Path(tempfile.mkdtemp(prefix="spiffile-corpus-"))
    corpus_root: Path = options.corpus if scratch is None else scratch
    outcomes = []
    try:
        for index, name in enumerate(names):
            seconds = options.time
            if options.ci:  # Share what is left of the budget among the targets still to run.
                share = (deadline - time.monotonic()) / (len(names) - index)
                seconds = max(1, int(share - STARTUP_ALLOWANCE))
            outcome = run_target(
                name, seconds, corpus_root / name, artifacts, quiet=not options.verbose
            )
            outcomes.append(outcome)
            verdict = "ok" if outcome.ok else f"FAILED (exit {outcome.status})"
            print(
                f"fuzz: {name}: {outcome.runs} runs in {outcome.seconds:.0f} s, "
                f"coverage {outcome.coverage}: {verdict}",
                flush=True,
            )
            for finding in outcome.findings:
                print(f"  finding: {finding}")
                print(f"  replay:  python -m fuzz --target {name} --reproduce {finding}")
            if not outcome.ok:
                tail = outcome.log.read_bytes().decode("utf-8", "replace").splitlines()[-30:]
                print("\n".join("  | " + line for line in tail))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    failed = [o for o in outcomes if not o.ok]
    if not failed and options.artifacts is None:
        shutil.rmtree(artifacts, ignore_errors=True)  # Nothing to keep from a clean run.
        artifacts = Path("(removed: clean run)")
    total = sum(o.runs for o in outcomes)
    print(
        f"fuzz: {len(outcomes)} targets, {total} runs, {len(failed)} with findings;"
        f" logs in {artifacts}"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
