"""Figures drawn from the benchmark's JSON document (matplotlib, the ``bench`` extra).

``python -m benchmarks --plots DIR`` draws them after a run;
``python -m benchmarks.plots RESULTS.json [MORE.json ...] --out DIR`` draws
them again from saved documents (rows of later documents replace rows of
earlier ones with the same key, so separate ``--only`` runs combine).
Each figure uses the rows it finds and leaves out what is missing (a
``--only`` run, a suite skipped for want of ``wrk``), so any document gives
the figures its rows allow; a figure with no rows at all is not written.

- ``cost.png``: per-call cost of verify and mint against the raw ECDSA
  operations they wrap (the core suite).
- ``bundle_size.png``: verify cost, and parse or reload time, against the
  number of identities in the bundle.  A row takes part in the second panel
  when its ``extra`` carries ``identities`` (and optionally ``series``, the
  line it belongs to), or when its key is ``load_`` or ``reload_`` and a
  size (``load_100k``, ``reload_10000``).
- ``e2e.png``: requests per second of real servers with and without
  authentication (the e2e suite).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["FIGURES", "available", "draw", "main", "merge"]

#: File names of the figures, in the order they are drawn.
FIGURES: Final = ("cost.png", "bundle_size.png", "e2e.png")
_DPI: Final = 100
_RAW: Final = "#9e9e9e"
_OURS: Final = "#1f77b4"
_CACHED: Final = "#2ca02c"

_VERIFY_ROWS: Final = (
    ("raw_verify", "raw ECDSA verify", _RAW),
    ("verify", "svid.verify", _OURS),
    ("identity_verify", "Identity.verify, new token", _OURS),
    ("watched_verify", "... new token, watch()", _OURS),
    ("identity_verify_repeat", "Identity.verify, seen token", _CACHED),
    ("watched_verify_repeat", "... seen token, watch()", _CACHED),
    ("pyjwt_decode", "PyJWT decode (reference)", _RAW),
)
_SIGN_ROWS: Final = (
    ("raw_sign", "raw ECDSA sign", _RAW),
    ("mint", "svid.mint", _OURS),
    ("identity_token_uncached", "Identity.token, miss", _OURS),
    ("identity_token_cached", "Identity.token, cached", _CACHED),
    ("watched_token_cached", "... cached, watch()", _CACHED),
)
_E2E_MODES: Final = (
    ("plain", "no authentication", _RAW),
    ("header", "no authentication, token header sent", "#cfcfcf"),
    ("reused", "reused token", _CACHED),
    ("fresh", "fresh token each request", _OURS),
)


def available() -> bool:
    """Whether matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _rows(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    rows = document.get("rows") or []
    return {
        row["key"]: row
        for row in rows
        if isinstance(row, dict) and isinstance(row.get("key"), str) and _number(row.get("value"))
    }


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(width: float, height: float, panels: int = 1) -> tuple[Figure, list[Axes]]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, panels, figsize=(width, height), squeeze=False)
    return figure, list(axes[0])


def _save(figure: Figure, path: Path) -> Path:
    from matplotlib import pyplot

    figure.tight_layout()
    figure.savefig(path, dpi=_DPI)
    pyplot.close(figure)
    return path


def _subtitle(document: Mapping[str, Any]) -> str:
    parts = [
        f"Python {document.get('python', '?')}",
        str(document.get("machine", "")),
        f"{document.get('mode', '?')} run",
    ]
    return ", ".join(part for part in parts if part)


_Spec = Sequence[tuple[str, str, str]]


def _bars(axes: Axes, rows: dict[str, dict[str, Any]], spec: _Spec) -> bool:
    present = [(key, label, colour) for key, label, colour in spec if key in rows]
    if not present:
        axes.set_visible(False)
        return False
    values = [rows[key]["value"] * 1e6 for key, _, _ in present]
    positions = list(range(len(present)))[::-1]
    axes.barh(positions, values, color=[colour for _, _, colour in present])
    axes.set_yticks(positions, [label for _, label, _ in present])
    for position, value, (key, _, _) in zip(positions, values, present, strict=True):
        ratio = rows[key].get("ratio")
        text = f" {value:.1f} us" + (f" ({ratio:.2f}x)" if _number(ratio) else "")
        axes.text(value, position, text, va="center", fontsize=8)
    axes.set_xlabel("microseconds per call (median)")
    axes.set_xlim(0, max(values) * 1.45)
    return True


def draw_cost(document: Mapping[str, Any], path: Path) -> Path | None:
    """Verify and mint cost against the raw ECDSA operations."""
    rows = _rows(document)
    figure, (left, right) = _figure(11, 4.2, 2)
    drawn = _bars(left, rows, _VERIFY_ROWS)
    drawn = _bars(right, rows, _SIGN_ROWS) or drawn
    if not drawn:
        _close(figure)
        return None
    left.set_title("verify (ratio to raw verify)", fontsize=10)
    right.set_title("mint (ratio to raw sign)", fontsize=10)
    figure.suptitle(f"Per-call cost against raw ECDSA P-256 — {_subtitle(document)}", fontsize=10)
    return _save(figure, path)


def _close(figure: Figure) -> None:
    from matplotlib import pyplot

    pyplot.close(figure)


_SIZE_KEY: Final = re.compile(r"_(\d+)(k?)(?=_|$)")
#: Parse-time rows of the load suite (``load_100k``), which carry no ``identities``.
_PARSE_KEY: Final = re.compile(r"^(re)?load_\d+k?$")


def _size_of(row: Mapping[str, Any]) -> int | None:
    extra = row.get("extra") or {}
    identities = extra.get("identities") if isinstance(extra, dict) else None
    if isinstance(identities, (int, float)) and not isinstance(identities, bool):
        return int(identities)
    match = _SIZE_KEY.search(row["key"])
    if match is None:
        return None
    return int(match.group(1)) * (1000 if match.group(2) else 1)


def _series_of(row: Mapping[str, Any]) -> str:
    extra = row.get("extra") or {}
    if isinstance(extra, dict) and isinstance(extra.get("series"), str):
        return str(extra["series"])
    label = str(row.get("label", row["key"]))
    return re.sub(r",?\s*[\d,.]+k?\s*identities", "", label).strip(" ,") or row["key"]


def draw_bundle_size(document: Mapping[str, Any], path: Path) -> Path | None:
    """Verify cost, and parse/reload time, against the bundle's identities."""
    rows = _rows(document)
    verify = sorted(
        (size, row["value"])
        for row in rows.values()
        if row["key"].startswith("scale_") and (size := _size_of(row)) is not None
    )
    timed: dict[str, list[tuple[int, float]]] = {}
    baselines: dict[int, float] = {}
    for row in rows.values():
        key = row["key"]
        extra = row.get("extra") or {}
        sized = isinstance(extra, dict) and "identities" in extra
        if row.get("unit") != "s" or not (sized or _PARSE_KEY.match(key)):
            continue
        size = _size_of(row)
        if size is None:
            continue
        timed.setdefault(_series_of(row), []).append((size, row["value"]))
        if row.get("baseline") == "json.loads" and _number(row.get("baseline_value")):
            baselines[size] = row["baseline_value"]
    if not verify and not timed:
        return None
    figure, (left, right) = _figure(11, 4.2, 2)
    if verify:
        left.plot([s for s, _ in verify], [v * 1e6 for _, v in verify], "o-", color=_OURS)
        left.set_xscale("log")
        left.set_ylim(0, max(v * 1e6 for _, v in verify) * 1.3)
        if "raw_verify" in rows:
            raw = rows["raw_verify"]["value"] * 1e6
            left.axhline(raw, color=_RAW, linestyle="--", label=f"raw verify {raw:.1f} us")
            left.legend(fontsize=8, loc="lower right")
        left.set_xlabel("identities in the bundle")
        left.set_ylabel("svid.verify, microseconds")
        left.set_title("verify cost does not grow with the bundle", fontsize=10)
    else:
        left.set_visible(False)
    if timed:
        for name, points in sorted(timed.items()):
            points.sort()
            right.plot([s for s, _ in points], [v * 1e3 for _, v in points], "o-", label=name[:60])
        if baselines:
            sizes = sorted(baselines)
            right.plot(
                sizes, [baselines[s] * 1e3 for s in sizes], "s--", color=_RAW, label="json.loads"
            )
        right.set_xscale("log")
        right.set_yscale("log")
        from matplotlib.ticker import FuncFormatter, NullFormatter

        right.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        right.yaxis.set_minor_formatter(NullFormatter())
        right.set_xlabel("identities in the bundle")
        right.set_ylabel("milliseconds")
        right.set_title("parse and reload time", fontsize=10)
        right.legend(fontsize=7)
    else:
        right.set_visible(False)
    figure.suptitle(f"Bundle size — {_subtitle(document)}", fontsize=10)
    return _save(figure, path)


def draw_e2e(document: Mapping[str, Any], path: Path) -> Path | None:
    """Requests per second of each server configuration, by mode."""
    rows = _rows(document)
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    for row in rows.values():
        extra = row.get("extra") or {}
        if not row["key"].startswith("e2e_") or not isinstance(extra, dict):
            continue
        server, mode = extra.get("server"), extra.get("mode")
        if not isinstance(server, str) or mode not in {m for m, _, _ in _E2E_MODES}:
            continue
        groups.setdefault(server, {})[str(mode)] = row
        if mode == "plain":
            labels[server] = str(row["label"]).split(":")[0]
    if not groups:
        return None
    servers = list(groups)
    figure, (axes,) = _figure(11, 4.6)
    width = 0.8 / len(_E2E_MODES)
    middle = (len(_E2E_MODES) - 1) / 2
    for offset, (mode, legend, colour) in enumerate(_E2E_MODES):
        xs, ys = [], []
        for index, server in enumerate(servers):
            found = groups[server].get(mode)
            if found is not None:
                xs.append(index + (offset - middle) * width)
                ys.append(found["value"])
        if not xs:
            continue
        axes.bar(xs, ys, width, label=legend, color=colour)
        for x, server in zip(xs, [s for s in servers if mode in groups[s]], strict=True):
            row = groups[server][mode]
            ratio = row.get("ratio")
            text = f"{row['value'] / 1000:.1f}k" + (f"\n{ratio:.2f}x" if _number(ratio) else "")
            axes.text(x, row["value"], text, ha="center", va="bottom", fontsize=7)
    axes.set_xticks(
        range(len(servers)), [labels.get(s, s).replace(", ", ",\n", 1) for s in servers], fontsize=8
    )
    axes.set_ylabel("requests per second (median)")
    top = max(row["value"] for group in groups.values() for row in group.values())
    axes.set_ylim(0, top * 1.25)
    axes.legend(fontsize=8)
    axes.set_title(
        "Real servers on 127.0.0.1 under wrk, a trivial endpoint; ratio to no authentication — "
        + _subtitle(document),
        fontsize=10,
    )
    return _save(figure, path)


def draw(document: Mapping[str, Any], directory: Path) -> list[Path]:
    """Draw every figure the document has rows for into *directory*; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, function in zip(FIGURES, (draw_cost, draw_bundle_size, draw_e2e), strict=True):
        path = function(document, directory / name)
        if path is not None:
            written.append(path)
    return written


def merge(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One document from several: the first one's header, every row, later rows winning."""
    if not documents:
        return {"rows": []}
    rows: dict[object, Any] = {}
    for document in documents:
        for row in document.get("rows") or []:
            rows[row.get("key") if isinstance(row, dict) else id(row)] = row
    return {**documents[0], "rows": list(rows.values())}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.plots RESULTS.json [MORE.json ...] [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.plots",
        description="Draw the figures from a saved JSON document.",
    )
    parser.add_argument(
        "documents", type=Path, nargs="+", help="JSON written by python -m benchmarks --json"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/plots"), help="directory")
    args = parser.parse_args(argv)
    if not available():
        print("Error: matplotlib is not installed (pip install -e '.[bench]')", file=sys.stderr)
        return 2
    document = merge([json.loads(path.read_text()) for path in args.documents])
    for path in draw(document, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
