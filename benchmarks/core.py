"""Per-call costs: verify, mint, the token cache, bundle size, hostile input.

Every op here is timed interleaved with the two raw ``cryptography``
operations it is compared to (ECDSA P-256 verify and sign, SHA-256 included,
DER signatures as ``cryptography`` takes them), in the same rounds of the
same process.  Tokens are a pool of distinct tokens cycled through, so that
no per-token cache could flatter a figure; the raw operations cycle through
the same signing inputs and signatures.
"""

from __future__ import annotations

import base64
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from benchmarks._fixtures import (
    AUDIENCE,
    SENDER,
    KeyPool,
    bundle_bytes,
    identity_dir,
    raw_material,
    settle,
)
from benchmarks._report import Row, Target
from benchmarks._timing import Op, calibrate, median_ratio, run_interleaved
from spiffile import Identity, _wire, svid
from spiffile.bundle import Bundle
from spiffile.errors import (
    InvalidTokenError,
    SignatureError,
    SpiffileError,
    TokenTooLargeError,
    UnknownIdentityError,
)

__all__ = ["Settings", "run"]

_ES256 = ec.ECDSA(hashes.SHA256())
_TOKENS = 32
#: Distinct tokens for the "never seen" Identity.verify row: four times the
#: verified-token cache, so that no token is still cached when it comes round.
_FRESH_TOKENS = 4096
_TTL = 3000  # Long enough for a full run; under the verifier's default 3600 s cap.
SIZES = (2, 1_000, 10_000, 100_000)
MANY = "spiffe://example.org/many-keys"


@dataclass(frozen=True)
class Settings:
    """How long to measure: rounds of interleaved samples, each about *sample_seconds*."""

    rounds: int
    sample_seconds: float
    quick: bool


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _rejects(fn: Callable[[], object], expected: type[Exception]) -> Callable[[], None]:
    """Wrap a call that must raise *expected*; check once now so the row means what it says."""
    try:
        fn()
    except expected:
        pass
    else:  # pragma: no cover - would mean the hostile input was accepted
        raise RuntimeError(f"hostile input was not rejected with {expected.__name__}")

    def call() -> None:
        try:
            fn()
        except SpiffileError:
            pass

    return call


def _hostile_tokens(pool: KeyPool, now: float) -> dict[str, str]:
    good = pool.tokens(1, now=now, ttl=_TTL)[0]
    head, _payload, signature = good.split(".")
    # 1 MB token: base64url all the way, so only the size cap can stop it early.
    big = ".".join((head, "A" * (1024 * 1024 - len(head) - 90), signature))
    # A kid that none of the 50 keys bound to the subject carries.
    unknown_kid = svid.mint(pool.private[0], "no-such-kid", MANY, AUDIENCE, now=now, ttl=60)
    # The deepest payload that fits under the token size cap: nested arrays.
    room = (svid.MAX_TOKEN_BYTES - len(head) - len(signature) - 2) * 3 // 4
    depth = (room - len('{"sub":"x","a":}')) // 2
    nested_json = '{"sub":"x","a":' + "[" * depth + "]" * depth + "}"
    nested = ".".join((head, _b64encode(nested_json.encode()), signature))
    assert len(nested) <= svid.MAX_TOKEN_BYTES
    return {
        "big": big,
        "unknown_kid": unknown_kid,
        "nested": nested,
        "floats": _float_token(head, signature, ""),
        "floats_colon": _float_token(head, signature, ',"note":"a:b"'),
        "floats_cap": _float_token(head, signature, ',"note":"a:b"', at_cap=True),
    }


def _float_token(head: str, signature: str, extra: str, *, at_cap: bool = False) -> str:
    """An 8 KiB token for a subject no bundle holds, its payload a flat array of floats.

    Short floats fill the size cap (refused by the value count before any
    parse); *at_cap* writes as many long floats as the value cap allows
    instead, the dearest payload that is parsed.  *extra* with a ``:``
    inside a string defeats the payload's fast path (``_wire.loads_claims``).
    """
    start = f'{{"sub":"spiffe://example.org/nobody","aud":"{AUDIENCE}","exp":{2**31}{extra},"f":['
    room = (svid.MAX_TOKEN_BYTES - len(head) - len(signature) - 2) * 3 // 4 - len(start) - 2
    if at_cap:
        count = _wire.MAX_JSON_SEPARATORS - start.count(",")  # one more for "pad"
        mantissa = "9" * (_wire.MAX_JSON_NUMBER - len("1.e-300"))
        values = ",".join([f"1.{mantissa}e-300"] * count)
        # The rest of the size cap as one string (the ':' of *extra* included).
        start = start.replace(',"f":[', f',"pad":"{"x" * (room - len(values) - 12)}","f":[')
    else:
        values = ",".join(["1.5e-7"] * (room // 7))
    token = ".".join((head, _b64encode(f"{start}{values}]}}".encode()), signature))
    assert svid.MAX_TOKEN_BYTES - 256 <= len(token) <= svid.MAX_TOKEN_BYTES, len(token)
    return token


def run(pool: KeyPool, settings: Settings, workdir: Path | None = None) -> list[Row]:
    """Measure the per-call rows; returns them in table order."""
    now = time.time()
    tokens = pool.tokens(_TOKENS, now=now, ttl=_TTL)
    raw = raw_material(tokens)
    private, public = pool.private[0], pool.private[0].public_key()

    # Bundles of every size, plus one whose sender has 50 bound keys.
    many = {MANY: pool.jwks[:50]}
    bundles = {size: Bundle.parse(bundle_bytes(size, pool, extra=many)) for size in SIZES}
    for bundle in bundles.values():
        svid.verify(tokens[0], bundle, audience=AUDIENCE, now=now)  # validates the entry once
        bundle.keys_for(MANY)
    small = bundles[2]

    # Two workloads on disk: the sender (service 0) and the receiver (service 1).
    tmp = tempfile.TemporaryDirectory(prefix="spiffile-bench-", dir=workdir)
    base = Path(tmp.name)
    two = bundle_bytes(2, pool)
    sender_dir = identity_dir(base, "sender", SENDER, pool.private[0], two)
    receiver_dir = identity_dir(base, "receiver", AUDIENCE, pool.private[1], two)
    settle([sender_dir / "bundle.json", receiver_dir / "key.pem"])
    sender = Identity.from_dir(sender_dir)
    sender_uncached = Identity.from_dir(sender_dir, token_cache_size=0)
    receiver = Identity.from_dir(receiver_dir)
    receiver.verify(tokens[0])
    sender.token(AUDIENCE)
    # The same two with push reload (a file is looked at at most every 50 ms either way).
    sender_watched = Identity.from_dir(sender_dir).watch()
    receiver_watched = Identity.from_dir(receiver_dir).watch()
    sender_watched.token(AUDIENCE)

    next_token = itertools.cycle(tokens).__next__
    # The same 32 claim sets again: ECDSA signatures are randomised, so every
    # token text differs while all stay inside their lifetime.
    fresh = [
        t for _ in range(_FRESH_TOKENS // _TOKENS) for t in pool.tokens(_TOKENS, now=now, ttl=_TTL)
    ]
    assert len(set(fresh)) == _FRESH_TOKENS
    next_fresh = itertools.cycle(fresh).__next__
    repeated = tokens[0]
    next_raw = itertools.cycle(raw).__next__
    next_input = itertools.cycle([data for data, _ in raw]).__next__
    hostile = _hostile_tokens(pool, now)

    def raw_verify() -> None:
        data, der = next_raw()
        public.verify(der, data, _ES256)

    def raw_sign() -> None:
        private.sign(next_input(), _ES256)

    def verify_in(bundle: Bundle) -> Callable[[], object]:
        def call() -> object:
            return svid.verify(next_token(), bundle, audience=AUDIENCE, now=now)

        return call

    def identity_verify() -> object:
        return receiver.verify(next_fresh())

    def identity_verify_repeat() -> object:
        return receiver.verify(repeated)

    def watched_verify() -> object:
        return receiver_watched.verify(next_fresh())

    def watched_verify_repeat() -> object:
        return receiver_watched.verify(repeated)

    kid = pool.jwks[0]["kid"]

    def mint() -> object:
        return svid.mint(private, kid, SENDER, AUDIENCE, now=now)

    def pyjwt_decode() -> object:
        return jwt.decode(next_token(), public, algorithms=["ES256"], audience=AUDIENCE)

    def reject(name: str, expected: type[Exception]) -> Callable[[], None]:
        token = hostile[name]
        return _rejects(lambda: svid.verify(token, small, audience=AUDIENCE, now=now), expected)

    plan: dict[str, Callable[[], object]] = {
        "raw_verify": raw_verify,
        "raw_sign": raw_sign,
        "verify": verify_in(small),
        "identity_verify": identity_verify,
        "identity_verify_repeat": identity_verify_repeat,
        "watched_verify": watched_verify,
        "watched_verify_repeat": watched_verify_repeat,
        "watched_token_cached": lambda: sender_watched.token(AUDIENCE),
        "pyjwt_decode": pyjwt_decode,
        "mint": mint,
        "identity_token_uncached": lambda: sender_uncached.token(AUDIENCE),
        "identity_token_cached": lambda: sender.token(AUDIENCE),
        **{f"verify_{size}": verify_in(bundles[size]) for size in SIZES[1:]},
        "hostile_1mb": reject("big", TokenTooLargeError),
        "hostile_unknown_kid": reject("unknown_kid", SignatureError),
        "hostile_nested": reject("nested", InvalidTokenError),
        "hostile_floats": reject("floats", InvalidTokenError),
        "hostile_floats_colon": reject("floats_colon", InvalidTokenError),
        "hostile_floats_cap": reject("floats_cap", UnknownIdentityError),
    }
    ops = [Op(name, fn, calibrate(fn, settings.sample_seconds)) for name, fn in plan.items()]
    samples = run_interleaved(ops, settings.rounds)
    sender_watched.close()
    receiver_watched.close()
    tmp.cleanup()
    return _rows(samples)


def _rows(samples: dict[str, list[float]]) -> list[Row]:
    def med(name: str) -> float:
        return statistics.median(samples[name])

    def row(key: str, label: str, base: str, target: Target | None = None, note: str = "") -> Row:
        return Row(
            key=key,
            label=label,
            value=med(key),
            unit="s",
            baseline=_BASE_LABELS[base],
            baseline_value=med(base),
            ratio=median_ratio(samples[key], samples[base]),
            target=target,
            note=note,
        )

    rows = [
        Row("raw_verify", "raw ECDSA P-256 verify (cryptography)", med("raw_verify"), "s"),
        Row("raw_sign", "raw ECDSA P-256 sign (cryptography)", med("raw_sign"), "s"),
        row("verify", "svid.verify, valid token", "raw_verify", Target("<=", 1.15)),
        row(
            "identity_verify",
            "Identity.verify, token never seen",
            "raw_verify",
            Target("<=", 1.10),
            note="Identity.verify = bundle freshness check + svid.verify + cache insert",
        ),
        row(
            "identity_verify_repeat",
            "Identity.verify, token verified before",
            "raw_verify",
            Target("<=", 0.05),
            note="verified-token cache: audience, times and bundle checked again",
        ),
        row(
            "watched_verify",
            "Identity.verify, token never seen, watch()",
            "raw_verify",
            Target("<=", 1.10),
            note="watch() serves a change once reported; looks stay one per 50 ms",
        ),
        row(
            "watched_verify_repeat",
            "Identity.verify, verified before, watch()",
            "raw_verify",
            Target("<=", 0.05),
        ),
        row("pyjwt_decode", "reference: PyJWT decode ES256", "raw_verify"),
        row("mint", "svid.mint", "raw_sign", Target("<=", 1.3)),
        row(
            "identity_token_uncached",
            "Identity.token, cache miss",
            "raw_sign",
            note="cache miss = key file stat + audience check + svid.mint + cache insert",
        ),
        row(
            "identity_token_cached",
            "Identity.token, served from cache",
            "raw_sign",
            Target("<=", 0.05),
            note="the key file is looked at at most every 50 ms (PROFILE.md §7.2)",
        ),
        row(
            "watched_token_cached",
            "Identity.token, served from cache, watch()",
            "raw_sign",
            Target("<=", 0.05),
        ),
    ]
    for size in SIZES:
        key = "verify" if size == 2 else f"verify_{size}"
        rows.append(
            Row(
                key=f"scale_{size}",
                label=f"svid.verify, {size:,} identities",
                value=med(key),
                unit="s",
                baseline=_BASE_LABELS["verify"],
                baseline_value=med("verify"),
                ratio=median_ratio(samples[key], samples["verify"]),
                target=Target("band", 0.05),
            )
        )
    rows += [
        row("hostile_1mb", "reject: 1 MB token", "verify", Target("<", 0.5)),
        row(
            "hostile_unknown_kid",
            "reject: unknown kid, 50 bound keys",
            "verify",
            Target("<", 0.5),
        ),
        row("hostile_nested", "reject: deeply nested JSON payload", "verify", Target("<", 0.5)),
        row(
            "hostile_floats",
            "reject: 8 KiB of floats, unknown sub",
            "verify",
            Target("<=", 1.0),
            note="no valid key; refused by the value count before any parse",
        ),
        row(
            "hostile_floats_colon",
            "reject: 8 KiB of floats, ':' in a string",
            "verify",
            Target("<=", 1.0),
            note="the ':' defeats the payload fast path",
        ),
        row(
            "hostile_floats_cap",
            "reject: long floats at the caps, ':'",
            "verify",
            Target("<=", 1.0),
            note="the dearest payload parsed: one strict parse, explanation from it",
        ),
    ]
    return rows


_BASE_LABELS = {
    "raw_verify": "raw verify",
    "raw_sign": "raw sign",
    "verify": "valid verify",
}
