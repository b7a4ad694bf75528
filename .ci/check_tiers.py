"""Fail when a real-peer tier ran no test or skipped one (called by .ci/run where Go exists).

Usage: check_tiers.py DEFAULT_JUNIT_XML [SPIRE_JUNIT_XML]
       check_tiers.py --fuzz FUZZ_JUNIT_XML
       check_tiers.py --bench BENCH_JUNIT_XML BENCHMARKS_JSON

- the default run: the go-spiffe tier is every test case from a
  ``test_peers_*`` module of ``tests/peers``;
- the SPIRE run (``pytest -m spire``): every test case it ran;
- the fuzz run (``tests/test_fuzz_targets.py`` with atheris installed): every
  test case it ran, so the libFuzzer tests cannot skip for a missing atheris;
- the benchmark tier (``tests/bench`` with the ``bench`` extra and wrk):
  every test case it ran, and the ``--quick`` benchmark document must hold
  end-to-end rows (the suite prints a reason and returns none without wrk,
  uvicorn or gunicorn, which on a CI machine means the set-up failed).
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET


def cases(path: str) -> list[ET.Element]:
    return list(ET.parse(path).getroot().iter("testcase"))


def check(tier: str, selected: list[ET.Element]) -> list[str]:
    # JUnit reports an expected failure as <skipped type="pytest.xfail">: it ran, and
    # strict xfail turns an unexpected pass into a failure, so it is not a skip.
    skipped = [
        c
        for c in selected
        if (s := c.find("skipped")) is not None and s.get("type") != "pytest.xfail"
    ]
    xfailed = sum(1 for c in selected if c.find("skipped") is not None) - len(skipped)
    print(f"{tier}: {len(selected)} tests, {xfailed} expected failures, {len(skipped)} skipped")
    problems = []
    if not selected:
        problems.append(f"{tier}: no test ran")
    for case in skipped:
        reason = case.find("skipped")
        message = reason.get("message", "") if reason is not None else ""
        problems.append(f"{tier}: {case.get('classname')}::{case.get('name')} skipped: {message}")
    return problems


def end_to_end_rows(path: str) -> list[str]:
    with open(path, encoding="utf-8") as document:
        rows = json.load(document)["rows"]
    found = [row["key"] for row in rows if str(row.get("key", "")).startswith("e2e_")]
    print(f"benchmarks --quick: {len(found)} end-to-end rows")
    return [] if found else ["benchmarks --quick: no end-to-end row (wrk or the servers missing)"]


def main(default_xml: str, spire_xml: str | None = None, extra: str | None = None) -> int:
    if default_xml == "--fuzz" and spire_xml is not None:
        problems = check("fuzz tier", cases(spire_xml))
    elif default_xml == "--bench" and spire_xml is not None and extra is not None:
        problems = check("benchmark tier", cases(spire_xml)) + end_to_end_rows(extra)
    else:
        go_spiffe = [c for c in cases(default_xml) if ".test_peers_" in (c.get("classname") or "")]
        problems = check("go-spiffe tier", go_spiffe)
        if spire_xml is not None:
            problems += check("SPIRE tier", cases(spire_xml))
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
