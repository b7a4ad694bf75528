"""The fuzz harness itself: its seeds, its oracles, and that a finding fails a run.

The targets run here without atheris (plain functions of bytes); the driver
test needs atheris (``pip install -e '.[fuzz]'``) and is skipped without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.targets import TARGETS, Finding, _reference_split, check_canary

REPO = Path(__file__).resolve().parent.parent
VECTORS = json.loads((REPO / "tests" / "vectors" / "spiffe_ids.json").read_text())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_seed_passes_its_own_check(name: str) -> None:
    """A seed that failed would make every run report a finding at once."""
    for seed in TARGETS[name].seeds():
        if name == "_canary":
            continue
        TARGETS[name].check(seed)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["id"])
def test_the_spiffe_id_oracle_accepts_the_valid_vectors(vector: dict[str, str]) -> None:
    assert _reference_split(vector["id"]) == (vector["trust_domain"], vector["path"])


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["why"])
def test_the_spiffe_id_oracle_refuses_the_invalid_vectors(vector: dict[str, str]) -> None:
    assert _reference_split(vector["id"]) is None


def test_the_token_oracle_refuses_a_seed_with_another_payload() -> None:
    """The oracle is independent of the verifier: it only knows which inputs were signed."""
    token = TARGETS["token"].seeds()[0]
    header, payload, signature = token.split(b".")
    # Re-verifying a genuine token passes; the same signature under a changed
    # payload is refused by the verifier, so the check stays quiet too.
    TARGETS["token"].check(token)
    TARGETS["token"].check(header + b"." + payload[:-2] + b"." + signature)


def test_the_canary_reports_its_planted_bug() -> None:
    with pytest.raises(Finding):
        check_canary(b"FUZZ")


def fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fuzz", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_finding_fails_the_run_and_replays(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is the fuzz extra: pip install -e '.[fuzz]'")
    result = fuzz("--target", "_canary", "--time", "60", "--artifacts", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 with findings" in result.stdout
    crashes = [p for p in tmp_path.iterdir() if p.name.startswith("_canary-crash-")]
    assert len(crashes) == 1 and crashes[0].read_bytes().startswith(b"FUZZ")
    replay = fuzz("--target", "_canary", "--reproduce", str(crashes[0]))
    assert replay.returncode != 0 and "Finding: the canary" in replay.stderr


def test_a_clean_run_exits_zero(tmp_path: Path) -> None:
    pytest.importorskip("atheris", reason="atheris is the fuzz extra: pip install -e '.[fuzz]'")
    result = fuzz("--target", "spiffe-id", "--time", "2", "--artifacts", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spiffe-id:" in result.stdout and "0 with findings" in result.stdout
