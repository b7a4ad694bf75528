"""Conformance adapter for this repository's spiffile (the Python library).

Run as ``python conformance/adapters/spiffile_py.py VERB`` with the python of
an environment where spiffile is installed; ``handlers`` is also imported
in-process by tests/test_conformance.py.  Every verb calls the public API the
way a user would; only rejections the library raises as ``SpiffileError``
count as rejections, anything else is reported as a crash.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _protocol import Handler, error, serve  # type: ignore[import-not-found]

import spiffile
from spiffile import errors, keys, svid
from spiffile.bundle import Bundle
from spiffile.identity import Identity
from spiffile.spiffe_id import SpiffeId

__all__ = ["handlers"]

_ERRORS: tuple[tuple[type[Exception], str], ...] = (
    (errors.UnknownIdentityError, "unknown_identity"),
    (errors.InvalidTokenError, "invalid_token"),
    (errors.InvalidSpiffeIdError, "invalid_spiffe_id"),
    (errors.InvalidBundleError, "invalid_bundle"),
    (errors.InvalidKeyError, "invalid_key"),
    (errors.InvalidX509SvidError, "invalid_x509_svid"),
)


def _rejected(exc: errors.SpiffileError) -> dict[str, Any]:
    kind = next((kind for cls, kind in _ERRORS if isinstance(exc, cls)), "error")
    response: dict[str, Any] = error(kind, exc, code=exc.code)
    return response


def _guard(handler: Handler) -> Handler:
    def guarded(request: Mapping[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = handler(request)
        except errors.SpiffileError as exc:
            return _rejected(exc)
        return response

    return guarded


def _info(request: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ok": True,
        "name": "spiffile-python",
        "version": spiffile.__version__,
        "module": spiffile.__file__,
        "verbs": sorted(handlers),
        "batch": True,
    }


def _thumbprint(request: Mapping[str, Any]) -> dict[str, Any]:
    key = keys.load_private_key_pem(request["pem"].encode("utf-8"))
    jwk = keys.public_jwk(key.public_key())
    return {"ok": True, "jwk": jwk, "kid": jwk["kid"]}


def _jwk_thumbprint(request: Mapping[str, Any]) -> dict[str, Any]:
    return {"ok": True, "kid": keys.jwk_thumbprint(request["jwk"])}


def _parse_id(request: Mapping[str, Any]) -> dict[str, Any]:
    sid = SpiffeId.parse(request["id"])
    return {"ok": True, "id": str(sid), "trust_domain": sid.trust_domain, "path": sid.path}


def _parse_bundle(request: Mapping[str, Any]) -> dict[str, Any]:
    bundle = Bundle.parse(request["document"])
    identities = {
        str(sid): [key.kid for key in bundle.keys_for(sid)] for sid in bundle.identities()
    }
    return {
        "ok": True,
        "trust_domain": bundle.trust_domain,
        "identities": identities,
        "skipped": len(bundle.warnings),
    }


def _reload_bundle(request: Mapping[str, Any]) -> dict[str, Any]:
    """Load the documents in turn through one Identity's bundle file: its real reload path."""
    import tempfile

    from spiffile.files import atomic_write

    documents = request["documents"]
    if not isinstance(documents, list) or not all(isinstance(d, str) for d in documents):
        raise TypeError("documents must be a list of strings")
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        bundle_file = directory / "bundle.json"
        first = documents[0].encode("utf-8")
        atomic_write(bundle_file, first)
        trust_domain = Bundle.parse(first).trust_domain
        (directory / "id").write_text(f"spiffe://{trust_domain}/conformance\n")
        key_pem = keys.private_key_to_pem(keys.generate_private_key())
        atomic_write(directory / "key.pem", key_pem, mode=0o600)
        accepted = [True]
        with Identity.from_dir(directory) as identity:
            for document in documents[1:]:
                atomic_write(bundle_file, document.encode("utf-8"))
                identity.bundle  # noqa: B018 - the reload happens on access.
                accepted.append(identity.status().bundle.healthy)
    return {"ok": True, "accepted": accepted}


def _generate_key(request: Mapping[str, Any]) -> dict[str, Any]:
    pem = keys.private_key_to_pem(keys.generate_private_key())
    return {"ok": True, "pem": pem.decode("ascii")}


def _mint(request: Mapping[str, Any]) -> dict[str, Any]:
    key = keys.load_private_key_pem(request["pem"].encode("utf-8"))
    token = svid.mint(
        key,
        request["kid"],
        request["sub"],
        request["aud"],
        now=request["now"],
        ttl=request.get("ttl", svid.DEFAULT_TTL),
    )
    return {"ok": True, "token": token}


def _verify(request: Mapping[str, Any]) -> dict[str, Any]:
    bundle = Bundle.parse(request["bundle"])
    caller = svid.verify(
        request["token"],
        bundle,
        audience=request["audience"],
        now=request["now"],
        leeway=request.get("leeway", svid.DEFAULT_LEEWAY),
        max_lifetime=request.get("max_lifetime", svid.DEFAULT_MAX_LIFETIME),
    )
    return {"ok": True, "id": str(caller.id), "claims": dict(caller.claims)}


def _verify_x509(request: Mapping[str, Any]) -> dict[str, Any]:
    from spiffile.svid import x509

    authorities = {
        trust_domain: x509.load_authorities(text.encode("utf-8"))
        for trust_domain, text in request["authorities"].items()
    }
    svid_ = x509.verify_at(request["chain"].encode("utf-8"), authorities, request["now"])
    return {"ok": True, "id": str(svid_.id)}


def _verify_spiffe(request: Mapping[str, Any]) -> dict[str, Any]:
    from spiffile.trust import TrustSet, parse_trust_document

    trust = TrustSet(
        {
            trust_domain: parse_trust_document(text, trust_domain)
            for trust_domain, text in request["trust"].items()
        }
    )
    caller = svid.verify(
        request["token"],
        trust,
        audience=request["audience"],
        now=request["now"],
        leeway=request.get("leeway", svid.DEFAULT_LEEWAY),
        max_lifetime=request.get("max_lifetime", svid.DEFAULT_MAX_LIFETIME),
        issuer=request.get("issuer"),
    )
    return {"ok": True, "id": str(caller.id), "trust": str(caller.trust)}


def _provision(request: Mapping[str, Any]) -> dict[str, Any]:
    from spiffile import provision

    root = provision.init_root(request["root"], trust_domain=request["trust_domain"])
    services = {}
    for name in request["services"]:
        info = provision.add_service(root, name)
        services[name] = {"id": str(info.id), "kid": info.kid}
    return {"ok": True, "services": services}


def _identity(request: Mapping[str, Any]) -> Identity:
    env = request["env"]
    if not isinstance(env, dict):
        raise TypeError("env must be an object")
    return Identity.from_env(env)


def _identity_token(request: Mapping[str, Any]) -> dict[str, Any]:
    with _identity(request) as identity:
        token = identity.token(request["audience"], ttl=request.get("ttl", svid.DEFAULT_TTL))
        return {"ok": True, "token": token, "id": str(identity.id), "now": int(time.time())}


def _identity_verify(request: Mapping[str, Any]) -> dict[str, Any]:
    with _identity(request) as identity:
        caller = identity.verify(request["token"], audience=request.get("audience"))
        return {"ok": True, "id": str(caller.id), "claims": dict(caller.claims)}


handlers: dict[str, Handler] = {
    "info": _info,
    "thumbprint": _guard(_thumbprint),
    "jwk-thumbprint": _guard(_jwk_thumbprint),
    "parse-id": _guard(_parse_id),
    "parse-bundle": _guard(_parse_bundle),
    "reload-bundle": _guard(_reload_bundle),
    "generate-key": _guard(_generate_key),
    "mint": _guard(_mint),
    "verify": _guard(_verify),
    "verify-x509": _guard(_verify_x509),
    "verify-spiffe": _guard(_verify_spiffe),
    "provision": _guard(_provision),
    "identity-token": _guard(_identity_token),
    "identity-verify": _guard(_identity_verify),
}


if __name__ == "__main__":
    raise SystemExit(serve(handlers))
