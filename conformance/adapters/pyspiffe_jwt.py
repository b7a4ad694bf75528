"""Adapter for py-spiffe (PyPI ``spiffe``): standard JWT-SVID validation against a JWK Set.

Run with the python of a venv holding ``spiffe``::

    /path/to/venv/bin/python conformance/adapters/pyspiffe_jwt.py verify-jwks

One verb beyond ``info``: ``verify-jwks`` takes ``{"token", "jwks" (JWK Set
text), "trust_domain", "audience" (string or list)}`` and answers
``{"ok": true, "id", "audience", "expiry"}`` or ``{"ok": false, "error": "invalid_token",
"exception"}``.  It is what a standard SPIFFE verifier does with the
per-identity set ``spiffile export-jwks NAME`` writes: ``JwtBundle.parse``
then ``JwtSvid.parse_and_validate`` (py-spiffe 0.3: audience is a set; every
key of the bundle may sign for any ``sub`` of its trust domain, which is why
the export holds one identity's keys only).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import Handler, error, serve  # type: ignore[import-not-found]

# py-spiffe's modules, typed as Any: they are not installed where type checks run.
spiffe: Any = importlib.import_module("spiffe")
spiffe_errors: Any = importlib.import_module("spiffe.errors")

__all__ = ["handlers"]


def _info(request: Mapping[str, Any]) -> dict[str, Any]:
    version = importlib.import_module("importlib.metadata").version("spiffe")
    return {"ok": True, "name": "py-spiffe", "version": version, "verbs": sorted(handlers)}


def _verify_jwks(request: Mapping[str, Any]) -> dict[str, Any]:
    audience = request["audience"]
    audiences = {audience} if isinstance(audience, str) else set(audience)
    try:
        bundle = spiffe.JwtBundle.parse(
            spiffe.TrustDomain(request["trust_domain"]), request["jwks"].encode("utf-8")
        )
        svid = spiffe.JwtSvid.parse_and_validate(request["token"], bundle, audiences)
    except spiffe_errors.PySpiffeError as exc:
        rejected: dict[str, Any] = error("invalid_token", exc, code=type(exc).__name__)
        return rejected
    return {
        "ok": True,
        "id": str(svid.spiffe_id),
        "audience": sorted(svid.audience),
        "expiry": svid.expiry,
    }


handlers: dict[str, Handler] = {"info": _info, "verify-jwks": _verify_jwks}


if __name__ == "__main__":
    raise SystemExit(serve(handlers))
