"""Threads: does verifying a token let another thread of the same process run?

A threaded server (gunicorn ``gthread``, a thread pool behind an async
framework) verifies tokens in several threads of one process.  That buys
throughput only if the work releases the GIL.  Each row is the throughput
of two threads sharing a fixed batch, divided by one thread doing the same
batch, wall clock, interleaved round by round:

- raw ECDSA P-256 verify (``cryptography``): the part that can run in C
  without the GIL;
- ``Identity.verify`` of tokens never seen before: the whole library call;
- two controls that show what the machine can do at that moment:
  ``hashlib.sha256`` of 64 KiB (CPython releases the GIL while hashing
  large buffers, so ~2x on two free cores) and a pure-Python loop (holds
  the GIL, so ~1x or below).

On a machine shared with other work the second core is not always free;
the controls say how free it was.  So a second measurement answers the
question without needing a free core (:func:`probe`): the batch runs in
one thread while another spins in pure Python, with a switch interval of
0.2 s.  A call that holds the GIL keeps it until that interval runs out, so
the batch (a few tens of ms) finishes undisturbed; a call that releases it
lets the spinner in, and the batch then waits out the interval: a ratio of
several times instead of about one.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks._fixtures import AUDIENCE, SENDER, KeyPool, bundle_bytes, identity_dir, raw_material
from benchmarks._report import Row
from benchmarks._timing import WALL_CLOCK, Op, median_ratio, run_interleaved
from benchmarks.core import Settings
from spiffile import svid
from spiffile.identity import Identity

__all__ = ["probe", "run", "threaded"]

_ES256: Final = ec.ECDSA(hashes.SHA256())
_BLOCK: Final = os.urandom(64 * 1024)
#: Distinct tokens for the Identity.verify rows: four times the verified-token cache.
_TOKENS: Final = 4096


def threaded(fn: Callable[[], object], total: int, threads: int) -> Callable[[], None]:
    """A callable that runs *fn* *total* times split over *threads* threads started together."""

    def call() -> None:
        barrier = threading.Barrier(threads)
        share = total // threads
        failures: list[BaseException] = []

        def worker() -> None:
            barrier.wait()
            try:
                for _ in itertools.repeat(None, share):
                    fn()
            except BaseException as exc:  # Re-raised in the caller's thread.
                failures.append(exc)

        workers = [threading.Thread(target=worker) for _ in range(threads)]
        for worker_thread in workers:
            worker_thread.start()
        for worker_thread in workers:
            worker_thread.join()
        if failures:
            raise failures[0]

    return call


#: How long a thread may keep the GIL while another waits, during the probe.
_PROBE_INTERVAL: Final = 0.2
#: Wall-clock seconds after which a probe batch beside the spinner stops (scaled to its size).
_PROBE_CAP: Final = 1.0


def probe(fn: Callable[[], object], count: int) -> tuple[float, float]:
    """Seconds for *count* calls alone, and with a pure-Python thread spinning beside them."""
    start = time.perf_counter()
    for _ in itertools.repeat(None, count):
        fn()
    alone = time.perf_counter() - start
    previous = sys.getswitchinterval()
    stop = threading.Event()
    started = threading.Event()

    def spin() -> None:
        started.set()
        while not stop.is_set():
            pass

    sys.setswitchinterval(_PROBE_INTERVAL)
    spinner = threading.Thread(target=spin)
    try:
        spinner.start()
        started.wait()
        # Runs once the spinner was made to drop the GIL: from here the
        # spinner waits a whole interval before it asks for it again.
        # A call that releases the GIL may hand the spinner a whole interval
        # per call, so the batch stops at _PROBE_CAP and the time is scaled to
        # *count* calls: by then the answer (tens of x) is already plain.
        start = time.perf_counter()
        done = 0
        beside = 0.0
        while done < count:
            fn()
            done += 1
            beside = time.perf_counter() - start
            if beside > _PROBE_CAP:
                break
        beside = beside * count / done
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(previous)
    return alone, beside


def _python_loop() -> int:
    total = 0
    for n in range(200):
        total += n * n
    return total


def run(pool: KeyPool, settings: Settings, workdir: Path | None = None) -> list[Row]:
    """Measure the thread-scaling rows."""
    now = time.time()
    tokens = pool.tokens(64, now=now, ttl=600)
    raw = raw_material(tokens)
    public = pool.private[0].public_key()
    next_raw = itertools.cycle(raw).__next__

    def raw_verify() -> None:
        data, der = next_raw()
        public.verify(der, data, _ES256)

    tmp = tempfile.TemporaryDirectory(prefix="spiffile-bench-gil-", dir=workdir)
    two = bundle_bytes(2, pool)
    receiver_dir = identity_dir(Path(tmp.name), "receiver", AUDIENCE, pool.private[1], two)
    time.sleep(0.05)  # Out of the file views' racy window (see _fixtures.settle).
    receiver = Identity.from_dir(receiver_dir)
    # One claim set, many tokens: ECDSA signatures are randomised, so every text differs.
    kid = pool.jwks[0]["kid"]
    fresh = [
        svid.mint(pool.private[0], kid, SENDER, AUDIENCE, now=now, ttl=600) for _ in range(_TOKENS)
    ]
    assert len(set(fresh)) == _TOKENS
    next_fresh = itertools.cycle(fresh).__next__

    def identity_verify() -> object:
        return receiver.verify(next_fresh())

    plan: dict[str, Callable[[], object]] = {
        "raw_verify": raw_verify,
        "identity_verify": identity_verify,
        "sha256": lambda: hashlib.sha256(_BLOCK).digest(),
        "python": _python_loop,
    }
    target = 0.05 if settings.quick else 0.25  # seconds of one-thread work per sample
    ops: list[Op] = []
    totals: dict[str, int] = {}
    for name, fn in plan.items():
        start = time.perf_counter()
        for _ in range(50):
            fn()
        total = max(20, int(target / ((time.perf_counter() - start) / 50)) // 2 * 2)
        totals[name] = total
        ops += [
            Op(f"{name}_1", threaded(fn, total, 1), 1, WALL_CLOCK),
            Op(f"{name}_2", threaded(fn, total, 2), 1, WALL_CLOCK),
        ]
    samples = run_interleaved(ops, 3 if settings.quick else 9)
    probes: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3 if settings.quick else 5):
        for name, fn in plan.items():
            # About 20 ms of calls: far under the probe's interval.
            probes.setdefault(name, []).append(probe(fn, max(1, totals[name] * 2 // 25)))
    tmp.cleanup()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return _rows(samples, totals, load) + _probe_rows(probes)


_LABELS: Final = {
    "raw_verify": "raw ECDSA verify",
    "identity_verify": "Identity.verify, token never seen",
    "sha256": "control: sha256 of 64 KiB (GIL released)",
    "python": "control: pure-Python loop (GIL held)",
}


def _rows(samples: dict[str, list[float]], totals: dict[str, int], load: float | None) -> list[Row]:
    rows = []
    for name, label in _LABELS.items():
        one, two = samples[f"{name}_1"], samples[f"{name}_2"]
        # Same batch either way: the throughput ratio is one time over the other.
        ratio = median_ratio(one, two)
        rows.append(
            Row(
                f"gil_{name}",
                f"2 threads / 1 thread: {label}",
                totals[name] / statistics.median(two),
                "op/s",
                baseline="1 thread",
                baseline_value=totals[name] / statistics.median(one),
                ratio=ratio,
                note=(
                    "throughput of two threads against one, same batch, wall clock"
                    + ("" if load is None else f"; load average {load:.1f} at the end")
                ),
            )
        )
    return rows


def _probe_rows(probes: dict[str, list[tuple[float, float]]]) -> list[Row]:
    rows = []
    for name, label in _LABELS.items():
        alone = [a for a, _ in probes[name]]
        beside = [b for _, b in probes[name]]
        ratio = median_ratio(beside, alone)
        rows.append(
            Row(
                f"gil_probe_{name}",
                f"GIL probe, a Python thread spinning beside: {label}",
                statistics.median(beside),
                "s",
                baseline="alone",
                baseline_value=statistics.median(alone),
                ratio=ratio,
                note=(
                    "about 1x: the call keeps the GIL; several x: it releases it "
                    f"(switch interval {_PROBE_INTERVAL} s) -> "
                    + ("released" if ratio > 2 else "held")
                ),
                extra={"released": ratio > 2},
            )
        )
    return rows
