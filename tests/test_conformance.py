"""The conformance suite against this implementation: every vector, the generator, the runner.

One named test per vector (``suite/id``), run in-process through the same
adapter the runner drives as a child process.  The generator is checked to
reproduce the committed vectors byte for byte, and the runner is checked
end to end through the process protocol, including that it reports failures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest` run without `python -m`: make conformance/ importable.
    sys.path.insert(0, str(REPO))

from conformance import generate  # noqa: E402
from conformance._impl import InProcess, default_implementation  # noqa: E402
from conformance._matrix import run_matrix  # noqa: E402
from conformance.adapters.spiffile_py import handlers  # noqa: E402
from conformance.run import Vector, check, load_vectors, run_vectors, summarize  # noqa: E402

VECTORS = load_vectors()
OURS = InProcess("spiffile-python", handlers)


def test_vector_counts() -> None:
    """Many more hostile vectors than valid ones, in every kind."""
    by_suite: dict[str, int] = {}
    for vector in VECTORS:
        by_suite[vector.suite] = by_suite.get(vector.suite, 0) + 1
    assert by_suite["tokens-invalid"] > 5 * by_suite["tokens-valid"]
    assert by_suite["spiffe-ids-invalid"] > 2 * by_suite["spiffe-ids-valid"]
    assert by_suite["bundles-rejected"] >= 20
    assert len({(v.suite, v.id) for v in VECTORS}) == len(VECTORS)


@pytest.mark.parametrize("vector", VECTORS, ids=[f"{v.suite}/{v.id}" for v in VECTORS])
def test_vector(vector: Vector) -> None:
    answer = OURS.call(vector.verb, vector.request)
    result = check(OURS, vector, answer)
    assert result.status == "pass", result.detail
    if vector.suite == "tokens-invalid" and vector.raw["reason"] != "unknown_identity":
        # Our own error codes follow the check order of PROFILE.md exactly.
        assert answer.get("code") == vector.raw["reason"], answer
    if vector.suite == "spiffe-bundles-invalid":
        # Under SPIFFE-bundle trust too, the code names the rule broken (PROFILE.md §12.2).
        assert answer.get("code") == vector.raw["reason"], answer
    if vector.suite == "x509-svids-invalid":
        # One error class per X.509-SVID rule: the code names the rule broken.
        assert answer.get("code") == vector.raw["reason"], answer


def _committed() -> dict[str, str]:
    return {p.name: p.read_text(encoding="ascii") for p in sorted(generate.VECTORS.glob("*.json"))}


def _require_deterministic_ecdsa() -> None:
    """RFC 6979 signing needs cryptography >= 44 on OpenSSL >= 3.2; the generator relies on it."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        key.sign(b"probe", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except (TypeError, UnsupportedAlgorithm) as exc:
        pytest.skip(f"this cryptography cannot sign deterministically (RFC 6979): {exc}")


def test_generator_reproduces_committed_vectors(tmp_path: Path) -> None:
    """The committed vectors are exactly what the committed inputs produce (RFC 6979 nonces)."""
    _require_deterministic_ecdsa()
    generate.write(tmp_path, generate.build())
    regenerated = {p.name: p.read_text(encoding="ascii") for p in sorted(tmp_path.glob("*.json"))}
    committed = _committed()
    assert sorted(regenerated) == sorted(committed)
    for name in committed:
        assert regenerated[name] == committed[name], (
            f"{name} differs: run python -m conformance.generate"
        )


def test_generator_command_line(tmp_path: Path) -> None:
    _require_deterministic_ecdsa()
    done = subprocess.run(
        [sys.executable, "-m", "conformance.generate", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "tokens-invalid.json" in done.stdout
    assert (tmp_path / "bundle.json").read_bytes() == (
        generate.VECTORS / "bundle.json"
    ).read_bytes()


def test_rfc7638_example_is_included() -> None:
    keys = json.loads((generate.VECTORS / "keys.json").read_text())
    (example,) = [v for v in keys["jwk_thumbprint"] if v["id"] == "rfc7638-section-3.1"]
    assert example["expected"]["kid"] == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_long_lived_vectors_need_the_cap_lifted() -> None:
    for vector in VECTORS:
        if vector.raw.get("needs_max_lifetime_lifted"):
            assert vector.request["max_lifetime"] is None
            capped = {**vector.request, "max_lifetime": 3600}
            assert OURS.call("verify", capped)["code"] == "lifetime"


def test_readme_names_every_vector_file() -> None:
    readme = (REPO / "conformance" / "README.md").read_text(encoding="utf-8")
    for name in _committed():
        assert f"`{name}`" in readme, name


def test_runner_command_line_checks_all_vectors_through_the_process_protocol() -> None:
    """``python -m conformance all``: our adapter as a child process, batch verb, live matrix."""
    done = subprocess.run(
        [sys.executable, "-m", "conformance", "all"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("conformance: ") and " 0 failed, 0 skipped" in last, last
    passed = int(last.split()[1])
    assert passed >= len(VECTORS)


class _AcceptsEverything(InProcess):
    """A broken implementation: the runner must catch it."""

    def __init__(self) -> None:
        def accept(request: Mapping[str, Any]) -> dict[str, Any]:
            return {"ok": True, "id": "spiffe://example.org/orders", "claims": {}}

        super().__init__("accepts-everything", {"verify": accept})


def test_runner_reports_an_implementation_that_accepts_hostile_tokens() -> None:
    broken = _AcceptsEverything()
    results = run_vectors(broken, [v for v in VECTORS if v.verb == "verify"])
    failed = {r.id for r in results if r.status == "fail"}
    hostile = {v.id for v in VECTORS if v.suite == "tokens-invalid"}
    assert hostile <= failed
    report = summarize(results)
    assert f"{len(failed)} failed" in report.splitlines()[-1]


def test_runner_skips_verbs_an_adapter_does_not_implement() -> None:
    results = run_vectors(_AcceptsEverything(), [v for v in VECTORS if v.verb == "parse-id"])
    assert results and all(r.status == "skip" for r in results)


def test_runner_without_batch_calls_one_request_at_a_time() -> None:
    class NoBatch(InProcess):
        calls = 0

        def info(self) -> dict[str, Any]:
            return {}

        def call(self, verb: str, request: Any) -> dict[str, Any]:
            NoBatch.calls += 1
            return super().call(verb, request)

    subset = [v for v in VECTORS if v.suite == "spiffe-ids-invalid"]
    results = run_vectors(NoBatch("no-batch", handlers), subset)
    assert all(r.status == "pass" for r in results)
    assert NoBatch.calls == len(subset)


def test_live_matrix_ours_against_ours_in_process_and_as_a_process(tmp_path: Path) -> None:
    """Two instances (in-process and child process): every cell passes, roots included."""
    results = run_matrix([OURS, default_implementation()], tmp_path)
    failures = [r for r in results if r.status != "pass"]
    assert not failures, summarize(results)
    suites = {r.suite for r in results}
    assert suites == {"matrix-kids", "matrix-tokens", "matrix-roots"}
