"""Interleaved timing: every operation of a suite is measured round by round in one process.

Why interleaved: on a shared machine the speed of the CPU drifts (other
processes, frequency scaling, a neighbour's test suite).  Timing the library
for ten seconds and then the raw operation for ten seconds would fold that
drift into the ratio.  Here each round times every operation once, in a
rotated order, and a ratio is computed *within* each round; the figure
reported is the median over rounds, so a slow round moves numerator and
denominator together and an outlier round does not move the median.

This module uses the standard library only: the legacy probe imports it from
inside a separate virtual environment that has no access to this repository's
package.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

__all__ = ["CPU_CLOCK", "WALL_CLOCK", "Op", "calibrate", "median_ratio", "run_interleaved"]


#: The clock of in-process samples: CPU time of this thread.  On a shared
#: machine a sample timed by the wall clock also counts the time this process
#: sat descheduled while a neighbour ran; thread CPU time does not (it still
#: counts the system calls the library makes, such as ``stat``).
CPU_CLOCK: Final = time.thread_time
#: The clock for anything that waits on another process (CLI start-up).
WALL_CLOCK: Final = time.perf_counter


@dataclass(frozen=True)
class Op:
    """One operation to time: *fn* is called *number* times per sample, timed by *clock*."""

    name: str
    fn: Callable[[], object]
    number: int
    clock: Callable[[], float] = CPU_CLOCK


def _sample(fn: Callable[[], object], number: int, clock: Callable[[], float]) -> float:
    """Seconds per call, over *number* back-to-back calls (the loop costs the same for all ops)."""
    loop = itertools.repeat(None, number)
    start = clock()
    for _ in loop:
        fn()
    return (clock() - start) / number


def calibrate(fn: Callable[[], object], sample_seconds: float, *, cap: int = 1_000_000) -> int:
    """How many calls make one sample last about *sample_seconds* (at least 1)."""
    number = 1
    while number < cap:
        elapsed = _sample(fn, number, CPU_CLOCK) * number
        if elapsed >= sample_seconds / 4:
            break
        number *= 4
    per_call = max(_sample(fn, number, CPU_CLOCK), 1e-9)
    return max(1, min(cap, int(sample_seconds / per_call)))


def run_interleaved(ops: Sequence[Op], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of every op, one sample per op per round, order rotated each round.

    The garbage collector stays enabled (the library's allocations are part
    of its cost in a real process); a collection before each sample keeps one
    op's garbage from being collected on another op's clock.
    """
    samples: dict[str, list[float]] = {op.name: [] for op in ops}
    count = len(ops)
    for index in range(rounds):
        shift = index % count if count else 0
        for op in [*ops[shift:], *ops[:shift]]:
            gc.collect(0)
            samples[op.name].append(_sample(op.fn, op.number, op.clock))
    return samples


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the per-round ratios (both sequences come from the same rounds)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))
