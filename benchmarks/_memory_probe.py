"""Memory held by one parsed bundle, measured in a fresh interpreter.

Run as ``python -m benchmarks._memory_probe PATH --measure ...``.  A fresh
process because resident memory only means something from a clean start: in
the benchmark process, arenas freed by earlier rows would be reused and hide
the growth.  Prints one JSON object on stdout.

``--measure tracemalloc``: bytes still allocated after the parse and a full
collection (what the bundle holds), for ``json.loads`` and for
``Bundle.parse`` one after the other, plus the peak during each.
``--measure rss``: growth of the resident set (Linux ``/proc/self/statm``)
across one parse, the file already read, and the growth of the peak resident
set (``VmHWM``); ``--what slim`` measures the parse a verifier makes
(``Bundle.parse(data, slim=True)``: unknown members checked, not kept),
``--what trust`` the parse a trust directory makes of a federated document
(``parse_trust_document(..., slim=True)`` with a pause between slices).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from spiffile.bundle import Bundle
from spiffile.trust import parse_trust_document

__all__ = ["main"]


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except OSError:
        return None
    return pages * resource.getpagesize()


def _peak_resident_bytes() -> int:
    # Linux: VmHWM belongs to this process image.  (ru_maxrss survives exec
    # on Linux, so a child of a large benchmark process would report the
    # parent's peak.)
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB.


def _parsers(data: bytes) -> dict[str, Callable[[], object]]:
    return {
        "json": lambda: json.loads(data),
        "parse": lambda: Bundle.parse(data),
        # What a verifier (Identity) holds: sliced, unknown members not kept.
        "slim": lambda: Bundle.parse(data, pause=lambda: None, slim=True),
        # What a trust directory (federation) holds of a spiffile bundle.
        "trust": lambda: parse_trust_document(data, "example.org", pause=lambda: None, slim=True),
    }


def _traced(data: bytes) -> dict[str, dict[str, int]]:
    results = {}
    for name, parse in _parsers(data).items():
        if name in ("slim", "trust"):
            continue  # The tracemalloc rows compare json.loads and Bundle.parse.
        gc.collect()
        tracemalloc.start()
        value = parse()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del value
        gc.collect()
        results[name] = {"retained": current, "peak": peak}
    return results


def _resident(data: bytes, what: str) -> dict[str, int | None]:
    parse = _parsers(data)[what]
    gc.collect()
    before, peak_before = _resident_bytes(), _peak_resident_bytes()
    value = parse()
    gc.collect()
    after, peak_after = _resident_bytes(), _peak_resident_bytes()
    del value
    grown = None if before is None or after is None else after - before
    return {"grown": grown, "peak_grown": peak_after - max(peak_before, before or 0)}


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, measure, print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("path", type=Path)
    parser.add_argument("--measure", choices=("tracemalloc", "rss"), required=True)
    parser.add_argument("--what", choices=("json", "parse", "slim", "trust"), default="parse")
    args = parser.parse_args(argv)
    data = args.path.read_bytes()
    if args.measure == "tracemalloc":
        print(json.dumps(_traced(data)))
    else:
        print(json.dumps(_resident(data, args.what)))


if __name__ == "__main__":
    main()
