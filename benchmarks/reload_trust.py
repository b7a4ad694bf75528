"""The worst wait of a federated ``verify`` while a trust directory's document is replaced.

As :mod:`benchmarks.reload` does for a workload's own bundle, for
federation (``SPIFFILE_TRUST_DIR``, PROFILE.md §12): a
:class:`~spiffile.federation.TrustDirectory` holds one spiffile bundle of N
identities; two threads call ``TrustDirectory.verify`` in a loop (the
federated path has no verified-token cache: every call is a full
verification) and time every call on the wall clock, while the main thread
replaces the document by an atomic rename with one a sequence higher and
waits until the directory serves it.  With ``watch()`` (the watcher or a
thread of its own parses) and without (the first caller after the change
parses; the others should not wait).

Rows (seconds, target 50 ms; PROFILE.md §7.2): ``trust_reload_wait_watch_N``,
``trust_reload_wait_others_N`` and ``trust_reload_wait_first_N``, read as
the rows of :mod:`benchmarks.reload`.
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
    TRUST_DOMAIN,
    FullCollections,
    KeyPool,
    bundle_versions,
    full_collections,
)
from benchmarks._report import Row, Target
from benchmarks.core import Settings
from spiffile.federation import TrustDirectory

__all__ = ["SIZES", "run"]

SIZES: Final = (10_000, 100_000)
_TARGET: Final = Target("<=", 0.05)
_THREADS: Final = 2
_SETTLE: Final = 0.2
_TIMEOUT: Final = 60.0


class _Verifier(threading.Thread):
    """Verifies *token* in a loop until stopped, keeping its longest call."""

    def __init__(self, trust: TrustDirectory, token: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.trust = trust
        self.token = token
        self.stop = stop
        self.worst = 0.0
        self.calls = 0
        #: Set when the file is replaced: the longest call before it is the control.
        self.replaced = False
        self.control = 0.0

    def run(self) -> None:
        clock, verify, token = time.perf_counter, self.trust.verify, self.token
        while not self.stop.is_set():
            started = clock()
            verify(token, AUDIENCE)
            took = clock() - started
            self.calls += 1
            if not self.replaced:
                self.control = max(self.control, took)
            elif took > self.worst:
                self.worst = took


_Result = tuple[list[float], float, int, float, list[float]]


def _round(directory: Path, data: bytes, sequence: int, token: str, watch: bool) -> _Result:
    """One replacement: (each thread's longest call, seconds to serve the new document, ...)."""
    trust = TrustDirectory(directory)
    if watch:
        trust.watch()
    # No collector debt from the set-up or the previous round: a full
    # collection during the reload is then one the reload's own allocations
    # triggered, and each is reported in the note.
    gc.collect()
    try:
        stop = threading.Event()
        verifiers = [_Verifier(trust, token, stop) for _ in range(_THREADS)]
        for verifier in verifiers:
            verifier.start()
        time.sleep(_SETTLE)
        temporary = directory / f".{TRUST_DOMAIN}.json.new"
        temporary.write_bytes(data)
        for verifier in verifiers:
            verifier.replaced = True
        with FullCollections() as collections:
            replaced = time.perf_counter()
            os.replace(temporary, directory / f"{TRUST_DOMAIN}.json")
            deadline = replaced + _TIMEOUT
            while (
                trust.bundle_for(TRUST_DOMAIN).sequence != sequence
                and time.perf_counter() < deadline
            ):
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
        trust.close()


def run(pool: KeyPool, settings: Settings, workdir: Path) -> list[Row]:
    """Measure the federated reload-wait rows for every size, with and without ``watch()``."""
    rounds = 1 if settings.quick else 3
    token = pool.tokens(1, now=time.time(), ttl=3600)[0]
    rows: list[Row] = []
    for size in SIZES:
        versions = bundle_versions(size, pool, 1 + 2 * rounds)
        directory = workdir / "reload-trust" / f"td-{size}"
        directory.mkdir(parents=True)
        (directory / f"{TRUST_DOMAIN}.json").write_bytes(versions[0])
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
            f"new document served {times} ms after the rename; {calls} calls timed; "
            f"worst call in the {_SETTLE * 1e3:.0f} ms before the rename (control): "
            f"{control:.1f} ms; {full_collections([d for r in results[watch] for d in r[4]])}"
        )

    watched = max(max(r[0]) for r in results[True])
    others = max(sorted(r[0])[-2] for r in results[False])
    first = max(max(r[0]) for r in results[False])
    return [
        Row(
            f"trust_reload_wait_watch_{size}",
            f"worst federated verify wait during a reload, watch(), {label}",
            watched,
            "s",
            target=_TARGET,
            target_on_value=True,
            note=f"TrustDirectory, {nbytes / 1e6:.1f} MB; {served(True)}",
            extra={**extra, "series": "worst federated verify wait, watch()"},
        ),
        Row(
            f"trust_reload_wait_others_{size}",
            f"worst federated verify wait during a reload, other callers, {label}",
            others,
            "s",
            target=_TARGET,
            target_on_value=True,
            note=f"TrustDirectory, no watch(); {served(False)}",
            extra={**extra, "series": "worst federated verify wait, no watch(), other callers"},
        ),
        Row(
            f"trust_reload_wait_first_{size}",
            f"federated: first caller after the change (parses), {label}",
            first,
            "s",
            note="TrustDirectory, no watch(): reads and parses the new document in its own call",
            extra={**extra, "series": "federated first caller after the change, no watch()"},
        ),
    ]
