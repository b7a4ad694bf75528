"""Adapter for py-spiffe (PyPI ``spiffe``): its X.509-SVID parser (``X509Svid.parse``).

Run with the python of a venv holding ``spiffe``::

    /path/to/venv/bin/python conformance/adapters/pyspiffe_x509.py parse-x509-svid

One verb beyond ``info``: ``parse-x509-svid`` takes ``{"chain"`` (PEM, leaf
first), ``"key"`` (PKCS#8 PEM)``}`` and answers ``{"ok": true, "id"}`` or
``{"ok": false, "error": "invalid_x509_svid", "code": <py-spiffe's exception>}``.
py-spiffe checks the leaf and intermediate rules of the X.509-SVID standard
there (it has no offline chain verification), so the trust part of a
``verify-x509`` vector is not what this verb answers.
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


def _parse(request: Mapping[str, Any]) -> dict[str, Any]:
    try:
        svid = spiffe.X509Svid.parse(
            request["chain"].encode("utf-8"), request["key"].encode("utf-8")
        )
    except spiffe_errors.PySpiffeError as exc:
        rejected: dict[str, Any] = error("invalid_x509_svid", exc, code=type(exc).__name__)
        return rejected
    return {"ok": True, "id": str(svid.spiffe_id)}


handlers: dict[str, Handler] = {"info": _info, "parse-x509-svid": _parse}


if __name__ == "__main__":
    raise SystemExit(serve(handlers))
