"""Conformance adapter for the earlier Python implementation, spiffile 0.1.0 from PyPI.

Run it with the python of a virtual environment holding ``spiffile==0.1.0``
(it has the same package name as this repository, so never in ours)::

    /path/to/venv/bin/python conformance/adapters/spiffile_v010.py VERB

0.1.0 has no ``now`` parameter: ``mint`` and ``verify`` pin the clock for the
duration of one call by replacing the ``time`` module seen by
``spiffile.identity`` and the ``datetime`` class seen by ``jwt.api_jwt``
(PyJWT reads the wall clock there).  It has no lifetime cap, so
``max_lifetime`` is ignored.  It has no key error class: a key it cannot
load raises ``TypeError``/``ValueError``, reported as ``invalid_key`` with
the exception named.  Everything else is driven through its public API.
"""

from __future__ import annotations

import datetime as _datetime
import importlib
import json
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import Handler, error, serve  # type: ignore[import-not-found]

# The modules of spiffile 0.1.0, not of this repository: typed as Any, since a
# type checker run here would only see our own, different, spiffile.
spiffile: Any = importlib.import_module("spiffile")
identity_module: Any = importlib.import_module("spiffile.identity")
keys: Any = importlib.import_module("spiffile.keys")
provision: Any = importlib.import_module("spiffile.provision")
api_jwt: Any = importlib.import_module("jwt.api_jwt")

__all__ = ["handlers"]


def _errors() -> tuple[tuple[type[Exception], str], ...]:
    return (
        (spiffile.UnknownIdentityError, "unknown_identity"),
        (spiffile.InvalidTokenError, "invalid_token"),
        (spiffile.InvalidSpiffeIdError, "invalid_spiffe_id"),
        (spiffile.InvalidBundleError, "invalid_bundle"),
    )


def _guard(handler: Handler) -> Handler:
    def guarded(request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = handler(request)
        except spiffile.SpiffileError as exc:
            kind = next((k for cls, k in _errors() if isinstance(exc, cls)), "error")
            rejected: dict[str, Any] = error(kind, exc, code=kind)
            return rejected
        return response

    return guarded


@contextmanager
def _clock(now: float) -> Iterator[None]:
    """Pin the wall clock that 0.1.0 (time.time) and PyJWT (datetime.now) read."""

    class _Frozen(_datetime.datetime):
        @classmethod
        def now(cls, tz: _datetime.tzinfo | None = None) -> _Frozen:
            return cls.fromtimestamp(now, tz)

    saved_time = identity_module.time
    saved_datetime = api_jwt.datetime
    identity_module.time = types.SimpleNamespace(time=lambda: now)
    api_jwt.datetime = _Frozen
    try:
        yield
    finally:
        identity_module.time = saved_time
        api_jwt.datetime = saved_datetime


class _StaticBundle:
    """A bundle source over one in-memory document (0.1.0 reads bundles through .get())."""

    def __init__(self, document: str) -> None:
        try:
            parsed = json.loads(document)
        except ValueError as exc:  # 0.1.0's FileBundleSource maps JSON errors the same way.
            raise spiffile.InvalidBundleError(f"cannot parse bundle: {exc}") from exc
        self.bundle = spiffile.Bundle.from_dict(parsed)

    def get(self) -> Any:
        return self.bundle


def _load_key(pem: str) -> Any:
    try:
        return keys.private_key_from_pem(pem.encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise _KeyRejectedError(exc) from exc


class _KeyRejectedError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _key_guard(handler: Handler) -> Handler:
    def guarded(request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = handler(request)
        except _KeyRejectedError as exc:
            rejected: dict[str, Any] = error("invalid_key", exc.cause, code="invalid_key")
            return rejected
        return response

    return _guard(guarded)


def _info(request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "name": "spiffile-0.1.0",
        "version": spiffile.__version__,
        "module": spiffile.__file__,
        "verbs": sorted(handlers),
        "batch": True,
    }


def _thumbprint(request: Mapping[str, Any]) -> dict[str, Any]:
    jwk = keys.public_jwk(_load_key(request["pem"]))
    return {"ok": True, "jwk": jwk, "kid": jwk["kid"]}


def _jwk_thumbprint(request: Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": True, "kid": keys.jwk_thumbprint(request["jwk"])}


def _parse_id(request: Mapping[str, Any]) -> dict[str, Any]:
    sid = spiffile.SpiffeId.parse(request["id"])
    return {"ok": True, "id": str(sid), "trust_domain": sid.trust_domain, "path": sid.path}


def _parse_bundle(request: Mapping[str, Any]) -> dict[str, Any]:
    bundle = _StaticBundle(request["document"]).bundle
    identities = {
        sid: [jwk.get("kid") if isinstance(jwk, dict) else None for jwk in jwks]
        for sid, jwks in bundle.identities.items()
    }
    return {"ok": True, "trust_domain": bundle.trust_domain, "identities": identities}


def _generate_key(request: Mapping[str, Any]) -> dict[str, Any]:
    pem = keys.private_key_to_pem(keys.generate_private_key()).decode("ascii")
    return {"ok": True, "pem": pem}


def _mint(request: Mapping[str, Any]) -> dict[str, Any]:
    identity = spiffile.Identity(
        id=spiffile.SpiffeId.parse(request["sub"]),
        private_key=_load_key(request["pem"]),
        bundle_source=None,
    )
    with _clock(request["now"]):
        token = identity.token(request["aud"], ttl=request.get("ttl", 60))
    return {"ok": True, "token": token}


def _verify(request: Mapping[str, Any]) -> dict[str, Any]:
    identity = spiffile.Identity(
        id=spiffile.SpiffeId.parse("spiffe://conformance.invalid/verifier"),
        private_key=keys.generate_private_key(),
        bundle_source=_StaticBundle(request["bundle"]),
    )
    with _clock(request["now"]):
        caller = identity.verify(
            request["token"], audience=request["audience"], leeway=request.get("leeway", 30)
        )
    return {"ok": True, "id": str(caller.id), "claims": dict(caller.claims)}


def _provision(request: Mapping[str, Any]) -> dict[str, Any]:
    root = provision.init_root(request["root"], trust_domain=request["trust_domain"])
    services = {}
    for name in request["services"]:
        sid = provision.add_service(root, name)
        key_file = provision.service_env(root, name)["SPIFFILE_KEY_FILE"]
        key = keys.private_key_from_pem(Path(key_file).read_bytes())
        services[name] = {"id": str(sid), "kid": keys.public_jwk(key)["kid"]}
    return {"ok": True, "services": services}


def _identity_token(request: Mapping[str, Any]) -> dict[str, Any]:
    identity = spiffile.Identity.from_env(dict(request["env"]))
    token = identity.token(request["audience"], ttl=request.get("ttl", 60))
    return {"ok": True, "token": token, "id": str(identity.id)}


def _identity_verify(request: Mapping[str, Any]) -> dict[str, Any]:
    identity = spiffile.Identity.from_env(dict(request["env"]))
    caller = identity.verify(request["token"], audience=request.get("audience"))
    return {"ok": True, "id": str(caller.id), "claims": dict(caller.claims)}


handlers: dict[str, Handler] = {
    "info": _info,
    "thumbprint": _key_guard(_thumbprint),
    "jwk-thumbprint": _guard(_jwk_thumbprint),
    "parse-id": _guard(_parse_id),
    "parse-bundle": _guard(_parse_bundle),
    "generate-key": _guard(_generate_key),
    "mint": _key_guard(_mint),
    "verify": _guard(_verify),
    "provision": _guard(_provision),
    "identity-token": _guard(_identity_token),
    "identity-verify": _guard(_identity_verify),
}


if __name__ == "__main__":
    raise SystemExit(serve(handlers))
