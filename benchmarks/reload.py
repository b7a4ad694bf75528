"""The worst wait of a ``verify`` while the bundle is replaced, at 1k, 10k and 100k identities.

Two threads verify a token in a loop and time every call on the wall clock
(a stall is wall time: the thread waits for the GIL or a lock, it does not
use CPU).  Meanwhile the main thread replaces the bundle file by an atomic
rename, as producers do, with a document one sequence higher, and waits until
the identity serves it.  Measured with ``watch()`` (the watcher thread reads
and parses the new bundle) and without (the first caller after the change
pays the parse; the other callers should not wait for it).

Rows (values in seconds, target 50 ms; PROFILE.md §7.2):

- ``reload_wait_watch_N``: the longest call of either verifying thread
  while the watcher reloads.
- ``reload_wait_others_N``: without ``watch()``, the longest call of the
  thread that did *not* load the new bundle (the second largest of the two
  threads' maxima: exactly one call loads it).
- ``reload_wait_first_N``: without ``watch()``, the longest call of all:
  the first caller after the change, who reads and parses the bundle.

Each figure is the worst of the rounds; the note gives the time from the
rename to the new bundle being served, the calls timed, and the control: the
worst call in the same threads before the rename, which is what the machine
(other processes, the interpreter's 5 ms switch interval between four
threads) costs without any reload.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path
from typing import Final

from benchmarks._fixtures import (
    AUDIENCE,
    FullCollections,
    KeyPool,
    bundle_versions,
    full_collections,
    identity_dir,
)
from benchmarks._report import Row, Target
from benchmarks.core import Settings
from spiffile import Identity

__all__ = ["SIZES", "run"]

SIZES: Final = (1_000, 10_000, 100_000)
_TARGET: Final = Target("<=", 0.05)
_THREADS: Final = 2
_SETTLE: Final = 0.2
_TIMEOUT: Final = 60.0

_Result = tuple[list[float], float, int, float, list[float]]


class _Verifier(threading.Thread):
    """Verifies *token* in a loop until stopped, keeping its longest call."""

    def __init__(self, identity: Identity, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.identity = identity
        self.token = token
        self.stop = stop
        self.worst = 0.0
        self.calls = 0
        #: Set when the file is replaced: the longest call before it is the control.
        self.replaced = False
        self.control = 0.0

    def run(self) -> None:
        clock, verify, token = time.perf_counter, self.identity.verify, self.token
        while not self.stop.is_set():
            started = clock()
            verify(token)
            took = clock() - started
            self.calls += 1
            if not self.replaced:
                self.control = max(self.control, took)
            elif took > self.worst:
                self.worst = took


def _round(directory: Path, data: bytes, sequence: int, token: str, watch: bool) -> _Result:
    """One replacement: (each thread's longest call, seconds to serve the new bundle, calls)."""
    identity = Identity.from_dir(directory)
    if watch:
        identity.watch()
    # No collector debt from the set-up or the previous round: a full
    # collection during the reload is then one the reload's own allocations
    # triggered, and each is reported in the note.
    gc.collect()
    try:
        stop = threading.Event()
        verifiers = [_Verifier(identity, token, stop) for _ in range(_THREADS)]
        for verifier in verifiers:
            verifier.start()
        time.sleep(_SETTLE)
        temporary = directory / ".bundle.json.new"
        temporary.write_bytes(data)
        for verifier in verifiers:
            verifier.replaced = True
        with FullCollections() as collections:
            replaced = time.perf_counter()
            os.replace(temporary, directory / "bundle.json")
            deadline = replaced + _TIMEOUT
            while identity.bundle.sequence != sequence and time.perf_counter() < deadline:
                time.sleep(0.005)
            served = time.perf_counter() - replaced
            time.sleep(_SETTLE)
            stop.set()
            for verifier in verifiers:
                verifier.join()
        return (
            [v.worst for v in verifiers],
            served,
            sum(v.calls for v in verifiers),
            max(v.control for v in verifiers),
            collections.durations,
        )
    finally:
        identity.close()


def run(pool: KeyPool, settings: Settings, workdir: Path) -> list[Row]:
    """Measure the reload-wait rows for every size, with and without ``watch()``."""
    rounds = 1 if settings.quick else 3
    now = time.time()
    token = pool.tokens(1, now=now, ttl=3600)[0]
    rows: list[Row] = []
    for size in SIZES:
        versions = bundle_versions(size, pool, 1 + 2 * rounds)
        directory = identity_dir(
            workdir / "reload", f"svc-{size}", AUDIENCE, pool.private[1], versions[0]
        )
        sequence = 1
        results: dict[bool, list[_Result]] = {True: [], False: []}
        for _ in range(rounds):
            for watch in (True, False):
                sequence += 1
                results[watch].append(
                    _round(directory, versions[sequence - 1], sequence, token, watch)
                )
        rows += _rows(size, len(versions[0]), results)
        for path in sorted(directory.iterdir()):
            path.unlink()
        directory.rmdir()
    return rows


def _rows(size: int, nbytes: int, results: dict[bool, list[_Result]]) -> list[Row]:
    label = f"{size:,} identities"
    extra = {"identities": size, "bundle_bytes": nbytes}

    def served(watch: bool) -> str:
        times = ", ".join(f"{r[1] * 1e3:.0f}" for r in results[watch])
        calls = sum(r[2] for r in results[watch])
        control = max(r[3] for r in results[watch]) * 1e3
        return (
            f"new bundle served {times} ms after the rename; {calls} calls timed; "
            f"worst call in the {_SETTLE * 1e3:.0f} ms before the rename (control): "
            f"{control:.1f} ms; {full_collections([d for r in results[watch] for d in r[4]])}"
        )

    watched = max(max(r[0]) for r in results[True])
    others = max(sorted(r[0])[-2] for r in results[False])
    first = max(max(r[0]) for r in results[False])
    return [
        Row(
            f"reload_wait_watch_{size}",
            f"worst verify wait during a reload, watch(), {label}",
            watched,
            "s",
            target=_TARGET,
            target_on_value=True,
            note=f"{nbytes / 1e6:.1f} MB; {served(True)}",
            extra={**extra, "series": "worst verify wait, watch()"},
        ),
        Row(
            f"reload_wait_others_{size}",
            f"worst verify wait during a reload, other callers, {label}",
            others,
            "s",
            target=_TARGET,
            target_on_value=True,
            note=f"no watch(); {served(False)}",
            extra={**extra, "series": "worst verify wait, no watch(), other callers"},
        ),
        Row(
            f"reload_wait_first_{size}",
            f"first caller after the change (parses), {label}",
            first,
            "s",
            note="no watch(): reads and parses the new bundle in its own call",
            extra={**extra, "series": "first caller after the change, no watch()"},
        ),
    ]
