"""One libFuzzer process for one target: ``python -m fuzz._worker TARGET [libFuzzer flags]``.

Run by ``python -m fuzz``; the spiffile modules are imported under atheris'
instrumentation so that coverage of our own code (and only ours) guides it.
"""

from __future__ import annotations

import logging
import sys

import atheris

__all__ = ["main"]


def main(argv: list[str]) -> None:
    """Instrument spiffile, then hand the target's check to libFuzzer (never returns)."""
    if len(argv) < 2:
        raise SystemExit("usage: python -m fuzz._worker TARGET [libFuzzer flags]")
    with atheris.instrument_imports(include=["spiffile", "fuzz.targets"]):
        from fuzz.targets import TARGETS
    target = TARGETS[argv[1]]
    # The bundle reader warns once per skipped entry: millions of inputs would flood stderr.
    logging.getLogger("spiffile").setLevel(logging.CRITICAL)
    atheris.Setup([argv[0], *argv[2:]], target.check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
