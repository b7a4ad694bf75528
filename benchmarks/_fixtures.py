"""Keys, bundle documents, tokens and identity files the benchmarks run on.

Everything is built in memory or in a temporary directory, the way a user's
process would meet it: bundle bytes as a producer writes them
(``Bundle.to_json`` layout: indented, sorted), tokens minted by the library.
"""

from __future__ import annotations

import base64
import gc
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from spiffile import keys, svid
from spiffile.bundle import Bundle

__all__ = [
    "AUDIENCE",
    "SENDER",
    "TRUST_DOMAIN",
    "FullCollections",
    "KeyPool",
    "bundle_bytes",
    "bundle_document",
    "bundle_versions",
    "full_collections",
    "hostile_bundle_bytes",
    "identity_dir",
    "raw_material",
    "service_id",
    "settle",
]

TRUST_DOMAIN = "example.org"


def service_id(index: int) -> str:
    """The SPIFFE ID of the *index*-th service of a generated bundle."""
    return f"spiffe://{TRUST_DOMAIN}/svc-{index:06d}"


#: Every token is minted by service 0 for service 1, in every bundle size.
SENDER = service_id(0)
AUDIENCE = service_id(1)


@dataclass(frozen=True)
class KeyPool:
    """Distinct P-256 keys; identity *i* of a generated bundle is bound to key ``i % len``.

    A pool (rather than 100k fresh keys) keeps set-up to a second: the reader
    cannot tell, since every entry is a separate JSON object with its own
    strings, parsed and validated separately.
    """

    private: tuple[ec.EllipticCurvePrivateKey, ...]
    jwks: tuple[dict[str, str], ...]

    @classmethod
    def generate(cls, size: int) -> KeyPool:
        private = tuple(keys.generate_private_key() for _ in range(size))
        return cls(private, tuple(keys.public_jwk(k.public_key()) for k in private))

    def tokens(self, count: int, *, now: float, ttl: int) -> list[str]:
        """*count* distinct tokens from SENDER to AUDIENCE: the profile's claims only.

        Each is issued one second before the previous one, so no two are
        alike and a per-token cache anywhere could not flatter a figure.
        """
        kid = self.jwks[0]["kid"]
        return [
            svid.mint(self.private[0], kid, SENDER, AUDIENCE, now=now - n, ttl=ttl)
            for n in range(count)
        ]


def bundle_document(
    size: int, pool: KeyPool, *, extra: Mapping[str, Sequence[dict[str, str]]] | None = None
) -> dict[str, Any]:
    """A bundle document with *size* identities (at least SENDER and AUDIENCE)."""
    identities: dict[str, Any] = {}
    for index in range(max(size, 2)):
        identities[service_id(index)] = {"keys": [dict(pool.jwks[index % len(pool.jwks)])]}
    for spiffe_id, jwks in (extra or {}).items():
        identities[spiffe_id] = {"keys": [dict(jwk) for jwk in jwks]}
    return {
        "trust_domain": TRUST_DOMAIN,
        "spiffile_version": 1,
        "identities": {k: identities[k] for k in sorted(identities)},
    }


def bundle_bytes(
    size: int, pool: KeyPool, *, extra: Mapping[str, Sequence[dict[str, str]]] | None = None
) -> bytes:
    """The document of :func:`bundle_document` as producers write it (``Bundle.to_json``)."""
    return Bundle.from_document(bundle_document(size, pool, extra=extra)).to_json()


def bundle_versions(size: int, pool: KeyPool, count: int) -> list[bytes]:
    """*count* versions of the *size*-identity bundle, ``spiffe_sequence`` 1 to *count*.

    The decoded fixture (three tracked containers per identity) is garbage
    once the bytes are written, and it is collected before returning: a
    reload benchmark that kept it, or the collector's debt from building it,
    would time a full collection of the fixture (60-130 ms at 100k
    identities) in whichever thread crossed the collector's threshold, most
    often the one loading the new bundle.
    """
    document = bundle_document(size, pool)
    versions = [
        Bundle.from_document({**document, "spiffe_sequence": n}).to_json()
        for n in range(1, count + 1)
    ]
    del document
    gc.collect()
    return versions


class FullCollections:
    """Records the full (generation 2) collections that run while it is active.

    A full collection holds the GIL for as long as it walks every tracked
    object of the process, whatever thread triggered it: a reload benchmark
    reports them beside its worst wait, so that a wait they explain is told
    from one the reload causes.
    """

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._started: dict[int, float] = {}

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started[threading.get_ident()] = time.perf_counter()
            return
        started = self._started.pop(threading.get_ident(), None)
        if started is not None:
            self.durations.append(time.perf_counter() - started)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc_info: object) -> None:
        gc.callbacks.remove(self._callback)


def full_collections(durations: Sequence[float]) -> str:
    """The note's words for the full collections a reload row saw after the rename."""
    if not durations:
        return "no full collection after the rename"
    return (
        f"{len(durations)} full collection(s) after the rename, "
        f"longest {max(durations) * 1e3:.0f} ms"
    )


def hostile_bundle_bytes(size: int, pool: KeyPool, *, in_entries: bool) -> bytes:
    """A valid bundle of about *size* bytes made mostly of members the profile ignores.

    1000 identities; the rest is ``[]`` after ``[]`` (three bytes of text
    each, and the dearest JSON value to hold: an empty list is 56 bytes plus
    its slot), either in one top-level member or spread over the entries.
    """
    document = bundle_document(1000, pool)
    base = len(Bundle.from_document(document).to_json())
    if in_entries:
        each = max(0, (size - base) // 1000 // 3 - 6)
        junk = "[" + ",".join(["[]"] * each) + "]"
        lines = Bundle.from_document(document).to_json().decode().split("\n")
        body = "\n".join(
            line.replace('{"keys": ', '{"junk": ' + junk + ', "keys": ', 1)
            if line.startswith('    "spiffe://')
            else line
            for line in lines
        )
        return body.encode()
    text = Bundle.from_document(document).to_json().decode()
    junk = "[" + ",".join(["[]"] * max(0, (size - base) // 3 - 6)) + "]"
    return (text[: text.rindex("}")].rstrip() + f',\n  "junk": {junk}\n}}\n').encode()


def identity_dir(
    base: Path, name: str, spiffe_id: str, key: ec.EllipticCurvePrivateKey, bundle: bytes
) -> Path:
    """Write ``id``, ``key.pem`` (0600) and ``bundle.json`` for one workload."""
    directory = base / name
    directory.mkdir(parents=True)
    (directory / "id").write_text(spiffe_id + "\n")
    key_path = directory / "key.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(keys.private_key_to_pem(key))
    (directory / "bundle.json").write_bytes(bundle)
    return directory


def settle(paths: Sequence[Path]) -> None:
    """Wait until no file is inside the file views' racy window (then ``get`` is one stat).

    The views compare content while a file's timestamps are within 20 ms of
    now (2 s on file systems with coarse timestamps); a benchmark must
    measure the steady state, not that window.
    """
    coarse = any(os.stat(p).st_mtime_ns % 1_000_000 == 0 for p in paths)
    time.sleep(2.1 if coarse else 0.05)


def raw_material(tokens: Sequence[str]) -> list[tuple[bytes, bytes]]:
    """(signing input, DER signature) of each token: what the raw ECDSA baselines work on."""
    pairs = []
    for token in tokens:
        head, payload, signature = token.split(".")
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        pairs.append((f"{head}.{payload}".encode("ascii"), der))
    return pairs
