"""A 100k-identity bundle: cold load time against ``json.loads``, first lookups, memory.

The bundle bytes are what producers write (``Bundle.to_json``): 100k
identities, one key each.  Load figures are the CPU time of one call per
sample, interleaved with ``json.loads`` of the same bytes, with the garbage
collector enabled as in a real process.  Memory is measured in fresh child
processes (:mod:`benchmarks._memory_probe`).
"""

from __future__ import annotations

import gc
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks import reload, reload_trust
from benchmarks._fixtures import (
    AUDIENCE,
    KeyPool,
    bundle_bytes,
    hostile_bundle_bytes,
    raw_material,
    service_id,
)
from benchmarks._report import Row, Target
from benchmarks._timing import Op, calibrate, median_ratio, run_interleaved
from benchmarks.core import Settings
from spiffile import svid
from spiffile.bundle import Bundle

__all__ = ["IDENTITIES", "run"]

IDENTITIES = 100_000
#: Entries validated per "first lookup" sample (each sample takes fresh ones).
_LOOKUPS = 500
_ES256 = ec.ECDSA(hashes.SHA256())
_REPO = Path(__file__).resolve().parent.parent


def _json_loads_without_gc(data: bytes) -> Callable[[], object]:
    def call() -> object:
        gc.disable()
        try:
            return json.loads(data)
        finally:
            gc.enable()

    return call


def _probe(path: Path, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._memory_probe", str(path), *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=_REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def run(pool: KeyPool, settings: Settings, workdir: Path) -> list[Row]:
    """Measure the load and memory rows; returns them in table order."""
    data = bundle_bytes(IDENTITIES, pool)
    path = workdir / "bundle-100k.json"
    path.write_bytes(data)
    now = time.time()
    token = pool.tokens(1, now=now, ttl=600)[0]
    signing_input, der = raw_material([token])[0]
    public = pool.private[0].public_key()

    # First lookups walk services 2, 3, ... of one parsed bundle: always fresh entries.
    warm = Bundle.parse(data)
    fresh = itertools.count(2)

    def first_lookups() -> None:
        for index in itertools.islice(fresh, _LOOKUPS):
            warm.keys_for(service_id(index))

    def raw_verify() -> None:
        public.verify(der, signing_input, _ES256)

    def parse_and_verify() -> object:
        return svid.verify(token, Bundle.parse(data), audience=AUDIENCE, now=now)

    rounds = 3 if settings.quick else 9
    ops = [
        Op("json_loads", lambda: json.loads(data), 1),
        Op("json_loads_nogc", _json_loads_without_gc(data), 1),
        Op("parse", lambda: Bundle.parse(data), 1),
        Op("parse_first_verify", parse_and_verify, 1),
        Op("first_lookups", first_lookups, 1),
        Op("raw_verify", raw_verify, calibrate(raw_verify, settings.sample_seconds)),
    ]
    samples = run_interleaved(ops, rounds)
    memory = {
        "tracemalloc": _probe(path, "--measure", "tracemalloc"),
        "rss": {w: _probe(path, "--measure", "rss", "--what", w) for w in ("parse", "json")},
    }
    path.unlink()
    return (
        _rows(samples, memory)
        + _hostile_rows(pool, settings, workdir)
        + reload.run(pool, settings, workdir)
        + reload_trust.run(pool, settings, workdir)
    )


#: The hostile document's size: the profile's cap (PROFILE.md §4.5); 16 MB in --quick.
_HOSTILE_BYTES = 128 * 1024 * 1024
_HOSTILE_QUICK_BYTES = 16 * 1000 * 1000


def _hostile_rows(pool: KeyPool, settings: Settings, workdir: Path) -> list[Row]:
    """Peak and retained memory of a valid bundle made mostly of members nobody reads.

    Fresh child processes (RSS): ``Bundle.parse`` (what producers use, and
    what verifiers used before) against the slim parse verifiers make now.
    The junk is in one top-level member, then spread over the entries.
    """
    size = _HOSTILE_QUICK_BYTES if settings.quick else _HOSTILE_BYTES
    rows = []
    for in_entries in (False, True):
        data = hostile_bundle_bytes(size, pool, in_entries=in_entries)
        path = workdir / "bundle-hostile.json"
        path.write_bytes(data)
        whole = _probe(path, "--measure", "rss", "--what", "parse")
        slim = _probe(path, "--measure", "rss", "--what", "slim")
        # A trust directory's copy of the same document as a federated one.
        trust = _probe(path, "--measure", "rss", "--what", "trust")
        path.unlink()
        where = "in the entries" if in_entries else "one top-level member"
        tag = "entries" if in_entries else "top"
        mib = f"{len(data) / 2**20:.0f} MiB"
        # Peak: the documented bound (the text, one chunk, the result).  Retained:
        # reported (RSS keeps freed arenas; tracemalloc rows give the exact bytes).
        for kind, key, target in (("peak_grown", "peak", 1.5), ("grown", "retained", None)):
            if whole[kind] is None or slim[kind] is None:
                continue
            rows.append(
                Row(
                    f"hostile_{key}_{tag}",
                    f"hostile {mib} bundle, junk {where}: {key} / size",
                    slim[kind] / len(data),
                    "x",
                    baseline="Bundle.parse",
                    baseline_value=whole[kind] / len(data),
                    ratio=slim[kind] / whole[kind] if whole[kind] else None,
                    target=None if target is None else Target("<=", target),
                    target_on_value=True,
                    note=(
                        f"RSS growth across the slim parse a verifier makes, the file already "
                        f"read: {slim[kind] / 2**20:.0f} MiB; Bundle.parse (producers, and "
                        f"verifiers before) {whole[kind] / 2**20:.0f} MiB"
                    ),
                )
            )
        if whole["grown"] is not None and trust["grown"] is not None:
            rows.append(
                Row(
                    f"hostile_trust_retained_{tag}",
                    f"federated hostile {mib} document, junk {where}: retained / size",
                    trust["grown"] / len(data),
                    "x",
                    baseline="Bundle.parse",
                    baseline_value=whole["grown"] / len(data),
                    ratio=trust["grown"] / whole["grown"] if whole["grown"] else None,
                    note=(
                        f"RSS growth across the parse a TrustDirectory makes of it "
                        f"(parse_trust_document, slim, in slices), the file already read: "
                        f"{trust['grown'] / 2**20:.0f} MiB, peak "
                        f"{(trust['peak_grown'] or 0) / 2**20:.0f} MiB; the whole parse it "
                        f"made before {whole['grown'] / 2**20:.0f} MiB"
                    ),
                )
            )
    return rows


def _rows(samples: dict[str, list[float]], memory: dict[str, Any]) -> list[Row]:
    def med(name: str) -> float:
        return statistics.median(samples[name])

    per_lookup = [s / _LOOKUPS for s in samples["first_lookups"]]
    traced, rss = memory["tracemalloc"], memory["rss"]
    rows = [
        Row(
            "load_100k",
            "Bundle.parse, 100k identities",
            med("parse"),
            "s",
            baseline="json.loads",
            baseline_value=med("json_loads"),
            ratio=median_ratio(samples["parse"], samples["json_loads"]),
            target=Target("<=", 1.2),
            note=(
                f"json.loads of the same bytes with the collector off: "
                f"{med('json_loads_nogc') * 1e3:.0f} ms (Bundle.parse / that: "
                f"{median_ratio(samples['parse'], samples['json_loads_nogc']):.2f}x)"
            ),
        ),
        Row(
            "load_100k_first_verify",
            "Bundle.parse 100k + first verify",
            med("parse_first_verify"),
            "s",
            baseline="json.loads",
            baseline_value=med("json_loads"),
            ratio=median_ratio(samples["parse_first_verify"], samples["json_loads"]),
            target=Target("<=", 1.2),
            note="the first verify also validates the sender's entry (lazily, once per bundle)",
        ),
        Row(
            "first_lookup",
            "first lookup of one entry",
            statistics.median(per_lookup),
            "s",
            baseline="raw verify",
            baseline_value=med("raw_verify"),
            ratio=median_ratio(per_lookup, samples["raw_verify"]),
            note="lazy entry check: SPIFFE ID, JWK members, public key (point on curve)",
        ),
        Row(
            "memory_per_identity",
            "memory per identity (tracemalloc)",
            traced["parse"]["retained"] / IDENTITIES,
            "B",
            baseline="json.loads",
            baseline_value=traced["json"]["retained"] / IDENTITIES,
            ratio=traced["parse"]["retained"] / traced["json"]["retained"],
            target=Target("<=", 600),
            target_on_value=True,
            note=(
                "held after a full collection; peak during the parse "
                f"{traced['parse']['peak'] / IDENTITIES:.0f} B/identity "
                f"(json.loads {traced['json']['peak'] / IDENTITIES:.0f}), input text included"
            ),
        ),
    ]
    parse_rss, json_rss = rss["parse"]["grown"], rss["json"]["grown"]
    if parse_rss is not None and json_rss:
        rows.append(
            Row(
                "rss_per_identity",
                "resident memory per identity (RSS)",
                parse_rss / IDENTITIES,
                "B",
                baseline="json.loads",
                baseline_value=json_rss / IDENTITIES,
                ratio=parse_rss / json_rss,
                target=Target("<=", 600),
                target_on_value=True,
                note=(
                    "RSS growth across one parse in a fresh process, file already read; "
                    f"peak growth {rss['parse']['peak_grown'] / IDENTITIES:.0f} B/identity "
                    f"(json.loads {rss['json']['peak_grown'] / IDENTITIES:.0f})"
                ),
            )
        )
    return rows
