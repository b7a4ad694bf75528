"""Run the conformance vectors against any implementation that speaks the adapter protocol.

    python -m conformance vectors [--impl NAME=COMMAND] [--level v0] [--verbose]
    python -m conformance matrix --impl A=COMMAND --impl B=COMMAND ...
    python -m conformance all ...

Without ``--impl`` the implementation is this repository's spiffile through
conformance/adapters/spiffile_py.py.  See conformance/README.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import _jose
from conformance._impl import AdapterError, Command, Implementation, default_implementation

__all__ = [
    "VECTORS",
    "Result",
    "Vector",
    "check",
    "load_vectors",
    "main",
    "run_vectors",
    "summarize",
]

VECTORS = Path(__file__).resolve().parent / "vectors"


@dataclass(frozen=True)
class Vector:
    """One vector: the protocol verb, its request and what the answer must be."""

    suite: str
    id: str
    level: str
    verb: str
    request: Any
    expected: dict[str, Any]
    raw: dict[str, Any]


@dataclass(frozen=True)
class Result:
    """The verdict on one vector (or one matrix cell) for one implementation."""

    implementation: str
    suite: str
    id: str
    level: str
    status: str  # "pass", "fail" or "skip"
    detail: str = ""


def load_vectors(directory: Path = VECTORS) -> list[Vector]:
    """Every vector of every file, as protocol requests."""

    def read(name: str) -> Any:
        return json.loads((directory / name).read_text(encoding="utf-8"))

    bundle_text = (directory / "bundle.json").read_text(encoding="utf-8")
    vectors: list[Vector] = []

    def add(suite: str, verb: str, items: Iterable[dict[str, Any]], request_of: Any) -> None:
        for item in items:
            vectors.append(
                Vector(
                    suite, item["id"], item["level"], verb, request_of(item), item["expected"], item
                )
            )

    keys = read("keys.json")
    add("keys", "thumbprint", keys["thumbprint"], lambda v: v["input"])
    add("jwk-thumbprints", "jwk-thumbprint", keys["jwk_thumbprint"], lambda v: v["input"])
    ids = read("spiffe-ids.json")
    add("spiffe-ids-valid", "parse-id", ids["valid"], lambda v: v["input"])
    add("spiffe-ids-invalid", "parse-id", ids["invalid"], lambda v: v["input"])
    bundles = read("bundles.json")
    add("bundles-rejected", "parse-bundle", bundles["rejected"], lambda v: v["input"])
    add("bundles-accepted", "parse-bundle", bundles["accepted"], lambda v: v["input"])
    add("reloads", "reload-bundle", read("reloads.json")["vectors"], lambda v: v["input"])
    add("mint", "mint", read("mint.json")["vectors"], lambda v: v["input"])
    for suite in ("tokens-valid", "tokens-invalid"):
        add(
            suite,
            "verify",
            read(f"{suite}.json")["vectors"],
            lambda v: {"token": v["token"], "bundle": bundle_text, **v["verify"]},
        )
    x509_svids = read("x509-svids.json")
    add("x509-svids-valid", "verify-x509", x509_svids["valid"], lambda v: v["input"])
    add("x509-svids-invalid", "verify-x509", x509_svids["invalid"], lambda v: v["input"])
    spiffe = read("spiffe-bundles.json")
    add("spiffe-bundles-valid", "verify-spiffe", spiffe["valid"], lambda v: v["input"])
    add("spiffe-bundles-invalid", "verify-spiffe", spiffe["invalid"], lambda v: v["input"])
    return vectors


def _rejection(answer: dict[str, Any], expected: dict[str, Any]) -> str | None:
    allowed = [expected["error"], *expected.get("also_accepted", [])]
    if answer.get("ok") is True:
        return f"accepted; expected {expected['error']}"
    if answer.get("error") not in allowed:
        return f"error {answer.get('error')!r} ({_why(answer)}); expected {' or '.join(allowed)}"
    return None


def _why(answer: dict[str, Any]) -> str:
    parts = [str(answer.get(k)) for k in ("code", "exception", "message") if answer.get(k)]
    return ": ".join(parts)[:300] or "no detail"


def _compare(
    answer: dict[str, Any], expected: dict[str, Any], members: Sequence[str]
) -> str | None:
    if answer.get("ok") is not True:
        return f"rejected with {answer.get('error')!r} ({_why(answer)}); expected success"
    for member in members:
        if answer.get(member) != expected[member]:
            return f"{member}: got {answer.get(member)!r:.300}, expected {expected[member]!r:.300}"
    return None


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def _canonical_segment(text: str) -> bytes | None:
    if not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        return None
    data = _jose.b64url_decode(text)
    return data if _jose.b64url(data) == text else None


def _check_mint(impl: Implementation, vector: Vector, answer: dict[str, Any]) -> str | None:
    if answer.get("ok") is not True or not isinstance(answer.get("token"), str):
        return f"mint failed: {answer.get('error')!r} ({_why(answer)})"
    token: str = answer["token"]
    segments = token.split(".")
    decoded = [_canonical_segment(s) for s in segments] if len(segments) == 3 else [None]
    if any(part is None for part in decoded):
        return "not three canonical unpadded base64url segments"
    header_bytes, payload_bytes, signature = (part or b"" for part in decoded)
    expected = vector.expected
    header = json.loads(header_bytes)
    if header != expected["header"]:
        return f"header {header!r}, expected exactly {expected['header']!r}"
    claims = json.loads(payload_bytes)
    for name, value in expected["claims"].items():
        if claims.get(name) != value or type(claims.get(name)) is not type(value):
            return f"claim {name}: {claims.get(name)!r}, expected {value!r}"
    for name, value in expected["optional_claims"].items():
        if name in claims and claims[name] != value:
            return f"claim {name}: {claims[name]!r}, expected {value!r} or absent"
    public = _jose.public_key_from_jwk(expected["jwk"])
    head, _, _ = token.rpartition(".")
    if not _jose.es256_raw_verify(public, head.encode("ascii"), signature):
        return "the signature is not a raw 64-byte ES256 signature by the key"
    request = vector.request
    bundle = {
        "trust_domain": request["sub"].split("/")[2],
        "spiffile_version": 1,
        "identities": {request["sub"]: {"keys": [expected["jwk"]]}},
    }
    verified = impl.call(
        "verify",
        {
            "token": token,
            "bundle": json.dumps(bundle),
            "audience": request["aud"],
            "now": request["now"],
            "leeway": 30,
            "max_lifetime": 3600,
        },
    )
    if verified.get("ok") is not True or verified.get("id") != request["sub"]:
        return f"its own verify rejects the token: {verified.get('error')!r} ({_why(verified)})"
    return None


def check(impl: Implementation, vector: Vector, answer: dict[str, Any]) -> Result:
    """Judge one answer."""

    def result(status: str, detail: str = "") -> Result:
        return Result(impl.name, vector.suite, vector.id, vector.level, status, detail)

    if answer.get("error") == "unsupported":
        return result("skip", f"verb {vector.verb} not implemented")
    try:
        problem = _problem(impl, vector, answer)
    except Exception as exc:  # An answer too strange to judge (deep nesting, bad JSON): a fail.
        return result("fail", f"the answer could not be checked: {type(exc).__name__}")
    return result("fail", problem) if problem else result("pass")


def _problem(impl: Implementation, vector: Vector, answer: dict[str, Any]) -> str | None:
    expected = vector.expected
    problem: str | None
    if vector.verb == "mint":
        problem = _check_mint(impl, vector, answer)
    elif expected.get("ok") is False:
        problem = _rejection(answer, expected)
    elif vector.verb == "verify":
        problem = _compare(answer, expected, ("id", "claims"))
    elif vector.verb == "verify-x509":
        problem = _compare(answer, expected, ("id",))
    elif vector.verb == "verify-spiffe":
        problem = _compare(answer, expected, ("id", "trust"))
    elif vector.verb == "parse-id":
        problem = _compare(answer, expected, ("id", "trust_domain", "path"))
    elif vector.verb == "parse-bundle":
        problem = _compare(answer, expected, ("trust_domain", "identities"))
    elif vector.verb == "reload-bundle":
        problem = _compare(answer, expected, ("accepted",))
    elif vector.verb == "thumbprint":
        problem = _compare(answer, expected, ("jwk", "kid"))
    else:
        problem = _compare(answer, expected, ("kid",))
    return problem


def run_vectors(
    impl: Implementation,
    vectors: Sequence[Vector] | None = None,
    *,
    levels: Iterable[str] | None = None,
) -> list[Result]:
    """Run vectors (all, or those of *levels*) through *impl*: one batch per run."""
    chosen = [
        v
        for v in (vectors if vectors is not None else load_vectors())
        if levels is None or v.level in set(levels)
    ]
    answers = impl.batch([(v.verb, v.request) for v in chosen])
    return [check(impl, vector, answer) for vector, answer in zip(chosen, answers, strict=True)]


def summarize(results: Sequence[Result], *, verbose: bool = False) -> str:
    """Human-readable report: counts per suite and level, then every failure."""
    lines = []
    groups: dict[tuple[str, str, str], dict[str, int]] = {}
    for r in results:
        counts = groups.setdefault((r.implementation, r.suite, r.level), {})
        counts[r.status] = counts.get(r.status, 0) + 1
    for (impl, suite, level), counts in sorted(groups.items()):
        shown = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "skip"))
        lines.append(f"{impl:18} {suite:20} {level:9} {shown}")
    for r in results:
        if r.status == "fail" or (verbose and r.status == "skip"):
            lines.append(
                f"{r.status.upper()} {r.implementation} {r.suite}/{r.id} [{r.level}]: {r.detail}"
            )
    total = {s: sum(1 for r in results if r.status == s) for s in ("pass", "fail", "skip")}
    lines.append(
        f"conformance: {total['pass']} passed, {total['fail']} failed, {total['skip']} skipped"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``python -m conformance``)."""
    from conformance._matrix import run_matrix

    parser = argparse.ArgumentParser(
        prog="python -m conformance", description=__doc__.splitlines()[0]
    )
    parser.add_argument("what", choices=("vectors", "matrix", "all"), nargs="?", default="all")
    parser.add_argument(
        "--impl",
        action="append",
        default=[],
        metavar="NAME=COMMAND",
        help="an adapter command line (repeatable); default: this repository's spiffile",
    )
    parser.add_argument(
        "--level",
        action="append",
        choices=("v0", "spiffile", "x509", "spiffe"),
        help="only these levels",
    )
    parser.add_argument("--vectors", type=Path, default=VECTORS, help="vector directory")
    parser.add_argument("--json", type=Path, help="also write every result to this JSON file")
    parser.add_argument("--verbose", action="store_true", help="list skipped vectors too")
    args = parser.parse_args(argv)
    impls: list[Implementation] = [Command.parse(spec) for spec in args.impl] or [
        default_implementation()
    ]
    results: list[Result] = []
    try:
        if args.what in ("vectors", "all"):
            vectors = load_vectors(args.vectors)
            for impl in impls:
                results += run_vectors(impl, vectors, levels=args.level)
        if args.what in ("matrix", "all"):
            results += run_matrix(impls)
    except AdapterError as exc:
        print(f"adapter failure: {exc}", file=sys.stderr)
        return 2
    print(summarize(results, verbose=args.verbose))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2) + "\n")
    return 1 if any(r.status == "fail" for r in results) else 0
