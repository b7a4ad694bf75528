"""Tests for spiffile/bundle/spiffe.py: SPIFFE-format bundles."""

from __future__ import annotations

from typing import Any

import pytest
from bundledocs import BILLING
from bundledocs import encode as _encode

from spiffile.bundle import Bundle, spiffe_jwt_bundle
from spiffile.errors import UnknownIdentityError


def test_spiffe_jwt_bundle_holds_only_that_identity(good: dict[str, Any]) -> None:
    bundle = Bundle.parse(_encode(good))
    jwks = spiffe_jwt_bundle(bundle, BILLING)
    assert [k["kid"] for k in jwks["keys"]] == [
        k["kid"] for k in good["identities"][BILLING]["keys"]
    ]
    assert all(k["use"] == "jwt-svid" and "d" not in k for k in jwks["keys"])
    with pytest.raises(UnknownIdentityError):
        spiffe_jwt_bundle(bundle, "spiffe://example.org/nobody")
