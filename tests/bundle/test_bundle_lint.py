"""Tests for spiffile/bundle/lint.py: the strict linter behind `spiffile check`."""

from __future__ import annotations

from typing import Any

from bundledocs import BILLING, ORDERS
from bundledocs import encode as _encode
from bundledocs import fresh_jwk as _jwk

from spiffile.bundle import lint_bundle


def test_lint_clean_bundle(good: dict[str, Any]) -> None:
    assert lint_bundle(_encode(good)) == []


def test_lint_reports_every_problem(good: dict[str, Any]) -> None:
    orders_key = good["identities"][ORDERS]["keys"][0]
    good["identities"][BILLING]["keys"][0]["kid"] = "not-the-thumbprint"
    del good["identities"][BILLING]["keys"][1]["use"]
    good["identities"]["spiffe://example.org/copy"] = {"keys": [dict(orders_key)]}
    good["identities"]["spiffe://other.org/x"] = {"keys": [_jwk()]}
    problems = lint_bundle(_encode(good))
    text = "\n".join(problems)
    assert len(problems) == 4, problems
    assert "not its RFC 7638 thumbprint" in text
    assert "lacks use" in text
    assert "bound to both" in text
    assert "other.org" in text


def test_lint_reports_duplicate_members_and_bad_json() -> None:
    assert lint_bundle(b'{"trust_domain": "a", "trust_domain": "b"}') != []
    assert lint_bundle(b"{") != []
    assert lint_bundle(b'{"spiffile_version": 2}') != []
