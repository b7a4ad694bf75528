"""The benchmark's figures: drawn from a JSON document, valid PNGs, missing rows left out.

matplotlib is an optional benchmark dependency (the ``bench`` extra): without
it these tests skip.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import plots
from benchmarks._report import Row, Target, document

# A mark, not a module-level importorskip: a run that deselects these tests
# (``pytest -m spire``) must not report the module as skipped.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib is the bench extra's (pip install '.[bench]')",
)

REPO = Path(__file__).resolve().parents[2]
_PNG = b"\x89PNG\r\n\x1a\n"


def _size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == _PNG
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND"
    return width, height


def _e2e(server: str, mode: str, value: float, ratio: float | None) -> Row:
    return Row(
        f"e2e_{server}_{mode}",
        f"{server}, 1 worker: {mode}",
        value,
        "req/s",
        baseline=None if ratio is None else "no auth",
        baseline_value=None if ratio is None else value / ratio,
        ratio=ratio,
        extra={"server": server, "mode": mode, "workers": 1},
    )


def _sample() -> dict[str, Any]:
    rows = [
        Row("raw_verify", "raw ECDSA P-256 verify", 62e-6, "s"),
        Row("raw_sign", "raw ECDSA P-256 sign", 21e-6, "s"),
        Row("verify", "svid.verify", 70e-6, "s", "raw verify", 62e-6, 1.13, Target("<=", 1.15)),
        Row("identity_verify", "Identity.verify", 75e-6, "s", "raw verify", 62e-6, 1.2),
        Row("identity_verify_repeat", "seen", 3e-6, "s", "raw verify", 62e-6, 0.05),
        Row("mint", "svid.mint", 24e-6, "s", "raw sign", 21e-6, 1.14),
        Row("identity_token_cached", "cached", 2e-6, "s", "raw sign", 21e-6, 0.1),
        *[
            Row(f"scale_{n}", f"svid.verify, {n:,} identities", 70e-6, "s", "verify", 70e-6, 1)
            for n in (2, 1000, 10000, 100000)
        ],
        Row("load_100k", "Bundle.parse, 100k identities", 0.23, "s", "json.loads", 0.3, 0.77),
        Row(
            "reload_stall_10k",
            "longest verify wait during a reload, 10,000 identities",
            0.004,
            "s",
            extra={"identities": 10000, "series": "reload: longest verify wait"},
        ),
        Row(
            "reload_stall_100k",
            "longest verify wait during a reload, 100,000 identities",
            0.03,
            "s",
            extra={"identities": 100000, "series": "reload: longest verify wait"},
        ),
        _e2e("uvicorn", "plain", 13000, None),
        _e2e("uvicorn", "reused", 11000, 0.85),
        _e2e("uvicorn", "fresh", 5000, 0.38),
        _e2e("gunicorn_w2", "plain", 6000, None),
        _e2e("gunicorn_w2", "fresh", 3000, 0.5),
    ]
    result: dict[str, Any] = json.loads(document(rows, mode="full", extra={}))
    return result


def test_draws_every_figure_as_a_valid_png(tmp_path: Path) -> None:
    written = plots.draw(_sample(), tmp_path / "out")
    assert [p.name for p in written] == list(plots.FIGURES)
    for path in written:
        width, height = _size(path)
        assert 600 <= width <= 1200 and 300 <= height <= 600  # 100 dpi figures.
        assert path.stat().st_size < 200_000


def test_missing_rows_leave_figures_out(tmp_path: Path) -> None:
    sample = _sample()
    only_e2e = dict(sample, rows=[r for r in sample["rows"] if r["key"].startswith("e2e_")])
    assert [p.name for p in plots.draw(only_e2e, tmp_path / "e2e")] == ["e2e.png"]
    assert plots.draw(dict(sample, rows=[]), tmp_path / "none") == []
    # Malformed rows (no key, no numeric value) are skipped, not fatal.
    broken = dict(sample, rows=[{"value": 1}, {"key": "verify", "value": None}, *sample["rows"]])
    assert len(plots.draw(broken, tmp_path / "broken")) == 3


def test_command_line_redraws_from_a_saved_document(tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(_sample()))
    out = tmp_path / "figures"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.plots", str(saved), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(plots.FIGURES)
    assert done.stdout.split() == [str(out / name) for name in plots.FIGURES]


def test_documents_merge_later_rows_winning(tmp_path: Path) -> None:
    sample = _sample()
    core = dict(sample, rows=[r for r in sample["rows"] if not r["key"].startswith("e2e_")])
    e2e = dict(sample, rows=[r for r in sample["rows"] if r["key"].startswith("e2e_")])
    again = dict(e2e, rows=[dict(e2e["rows"][0], value=1.0)])
    merged = plots.merge([core, e2e, again])
    assert len(merged["rows"]) == len(sample["rows"])
    assert {r["key"]: r["value"] for r in merged["rows"]}["e2e_uvicorn_plain"] == 1.0
    assert merged["mode"] == "full"
    assert len(plots.draw(merged, tmp_path)) == 3
