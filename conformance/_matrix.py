"""The live cross-mint matrix: fresh keys and roots, every implementation against every other.

Two parts, both with keys made for this run (nothing pinned):

* tokens: each implementation generates a key; every implementation derives
  the kid of every key (they must agree); the runner writes one bundle
  binding one identity per implementation plus a "victim"; each mints for
  each (``mint``) and each verifies what was minted for it (``verify``), and
  also rejects an impersonation (its own key, the victim's ``sub``) and a
  token presented under the wrong audience.
* roots: each implementation provisions a root (``provision``); the runner
  checks the layout wire facts (id file, 0600 key, bundle kid = thumbprint);
  then every implementation loads its service from that root through the
  environment (``identity-token`` / ``identity-verify``, wall clock) and
  tokens cross over in every direction.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from conformance import _jose
from conformance._impl import Implementation
from conformance.run import Result

__all__ = ["TRUST_DOMAIN", "run_matrix"]

TRUST_DOMAIN = "matrix.example"


def _names(impls: Sequence[Implementation]) -> list[str]:
    names: list[str] = []
    for impl in impls:
        base = re.sub(r"[^A-Za-z0-9._-]", "-", impl.name).strip(".") or "impl"
        name, n = base, 2
        while name in names or name == "victim":
            name, n = f"{base}-{n}", n + 1
        names.append(name)
    return names


def _sid(name: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{name}"


def _why(answer: dict[str, Any]) -> str:
    return (
        f"{answer.get('error')}: {answer.get('code') or ''} {answer.get('message') or ''}".strip()
    )


def run_matrix(impls: Sequence[Implementation], workdir: Path | None = None) -> list[Result]:
    """Every cell of both matrices, as results (verifier = ``implementation``)."""
    results = _token_matrix(impls)
    if all("provision" in impl.info().get("verbs", ()) for impl in impls):
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="spiffile-matrix-") as tmp:
                results += _root_matrix(impls, Path(tmp))
        else:
            results += _root_matrix(impls, workdir)
    else:
        for impl in impls:
            results.append(
                Result(impl.name, "matrix-roots", "provision", "v0", "skip", "no provision verb")
            )
    return results


def _generate(impl: Implementation) -> str:
    answer = impl.call("generate-key", {})
    if answer.get("ok") is True and isinstance(answer.get("pem"), str):
        return str(answer["pem"])
    return _jose.private_key_pem(ec.generate_private_key(ec.SECP256R1()))


def _token_matrix(impls: Sequence[Implementation]) -> list[Result]:
    names = _names(impls)
    results: list[Result] = []
    pems = {name: _generate(impl) for name, impl in zip(names, impls, strict=True)}
    pems["victim"] = _generate(impls[0])
    reference = {
        name: _jose.ec_jwk(_jose.load_private_pem(pem.encode("ascii")))
        for name, pem in pems.items()
    }
    for impl in impls:
        answers = impl.batch([("thumbprint", {"pem": pems[n]}) for n in pems])
        for key_name, answer in zip(pems, answers, strict=True):
            ok = answer.get("ok") is True and answer.get("jwk") == reference[key_name]
            detail = "" if ok else f"jwk {answer.get('jwk')!r}, expected {reference[key_name]!r}"
            status = "pass" if ok else "fail"
            results.append(
                Result(impl.name, "matrix-kids", f"key-of-{key_name}", "v0", status, detail)
            )
    bundle = json.dumps(
        {
            "trust_domain": TRUST_DOMAIN,
            "spiffile_version": 1,
            "identities": {_sid(n): {"keys": [reference[n]]} for n in pems},
        }
    )
    now = int(time.time())
    minted: dict[tuple[str, str], dict[str, Any]] = {}
    for name, impl in zip(names, impls, strict=True):
        requests: list[tuple[str, Any]] = []
        for target in names:
            base = {"pem": pems[name], "kid": reference[name]["kid"], "now": now, "ttl": 60}
            requests.append(("mint", {**base, "sub": _sid(name), "aud": _sid(target)}))
            requests.append(("mint", {**base, "sub": _sid("victim"), "aud": _sid(target)}))
        minted_answers = iter(impl.batch(requests))
        for target in names:
            minted[(name, target)] = next(minted_answers)
            minted[(name, "forged:" + target)] = next(minted_answers)
    for target, impl in zip(names, impls, strict=True):
        verify_requests: list[tuple[str, Any]] = []
        cells: list[tuple[str, str | None]] = []
        for minter in names:
            params = {"bundle": bundle, "now": now, "leeway": 30, "max_lifetime": 3600}
            good = minted[(minter, target)]
            forged = minted[(minter, "forged:" + target)]
            if good.get("ok") is not True:
                results.append(
                    Result(
                        impl.name,
                        "matrix-tokens",
                        f"{minter}->{target}",
                        "v0",
                        "fail",
                        f"{minter} could not mint: {_why(good)}",
                    )
                )
                continue
            verify_requests.append(
                ("verify", {**params, "token": good["token"], "audience": _sid(target)})
            )
            cells.append((f"{minter}->{target}", _sid(minter)))
            verify_requests.append(
                ("verify", {**params, "token": good["token"], "audience": _sid("victim")})
            )
            cells.append((f"{minter}->{target}-wrong-audience", None))
            if forged.get("ok") is True:
                verify_requests.append(
                    ("verify", {**params, "token": forged["token"], "audience": _sid(target)})
                )
                cells.append((f"{minter}-impersonating-victim->{target}", None))
        for (cell, expected_id), answer in zip(cells, impl.batch(verify_requests), strict=True):
            if expected_id is not None:
                ok = answer.get("ok") is True and answer.get("id") == expected_id
                detail = (
                    ""
                    if ok
                    else f"expected caller {expected_id}, got {answer.get('id') or _why(answer)}"
                )
            else:
                ok = answer.get("ok") is False and answer.get("error") == "invalid_token"
                detail = (
                    "" if ok else f"expected invalid_token, got {answer.get('id') or _why(answer)}"
                )
            results.append(
                Result(impl.name, "matrix-tokens", cell, "v0", "pass" if ok else "fail", detail)
            )
    return results


def _layout_problems(root: Path, name: str, kid: object) -> list[str]:
    """The provisioned-root wire facts for one service."""
    directory = root / "services" / name
    problems = []
    id_text = (
        (directory / "id").read_text(encoding="utf-8") if (directory / "id").is_file() else None
    )
    if id_text is None or id_text.rstrip() != _sid(name):
        problems.append(f"id file holds {id_text!r}")
    key_path = directory / "key.pem"
    if not key_path.is_file():
        return [*problems, "no key.pem"]
    mode = stat.S_IMODE(os.stat(key_path).st_mode)
    if mode != 0o600:
        problems.append(f"key.pem has mode {mode:o}, not 600")
    expected_kid = _jose.ec_jwk(_jose.load_private_pem(key_path.read_bytes()))["kid"]
    document = json.loads((root / "bundle.json").read_text(encoding="utf-8"))
    bound = [k.get("kid") for k in document["identities"].get(_sid(name), {}).get("keys", [])]
    if expected_kid not in bound:
        problems.append(f"bundle binds {bound}, not the key's thumbprint {expected_kid}")
    if kid is not None and kid != expected_kid:
        problems.append(f"provision reported kid {kid!r}, the key's thumbprint is {expected_kid}")
    return problems


def _root_matrix(impls: Sequence[Implementation], workdir: Path) -> list[Result]:
    names = _names(impls)
    results: list[Result] = []
    for producer_name, producer in zip(names, impls, strict=True):
        root = workdir / f"root-by-{producer_name}"
        answer = producer.call(
            "provision", {"root": str(root), "trust_domain": TRUST_DOMAIN, "services": names}
        )
        if answer.get("ok") is not True:
            results.append(
                Result(
                    producer.name,
                    "matrix-roots",
                    f"provision-{producer_name}",
                    "v0",
                    "fail",
                    _why(answer),
                )
            )
            continue
        services = answer.get("services") or {}
        for name in names:
            problems = _layout_problems(root, name, (services.get(name) or {}).get("kid"))
            results.append(
                Result(
                    producer.name,
                    "matrix-roots",
                    f"layout-{producer_name}-{name}",
                    "v0",
                    "fail" if problems else "pass",
                    "; ".join(problems),
                )
            )
        bundle_file = str(root / "bundle.json")
        tokens: dict[tuple[str, str], dict[str, Any]] = {}
        for name, impl in zip(names, impls, strict=True):
            env = {
                "SPIFFILE_ID_FILE": str(root / "services" / name / "id"),
                "SPIFFILE_KEY_FILE": str(root / "services" / name / "key.pem"),
                "SPIFFILE_BUNDLE_FILE": bundle_file,
            }
            requests = [("identity-token", {"env": env, "audience": _sid(t)}) for t in names]
            for target, token in zip(names, impl.batch(requests), strict=True):
                tokens[(name, target)] = token
        for target, impl in zip(names, impls, strict=True):
            # SPIFFILE_DIR names the service directory (id, key.pem); the explicit
            # bundle variable wins for the bundle: per-variable precedence.
            env = {
                "SPIFFILE_DIR": str(root / "services" / target),
                "SPIFFILE_BUNDLE_FILE": bundle_file,
            }
            checks: list[tuple[str, Any]] = []
            root_cells: list[tuple[str, str]] = []
            for minter in names:
                minted = tokens[(minter, target)]
                cell = f"root-by-{producer_name}:{minter}->{target}"
                if minted.get("ok") is not True:
                    results.append(
                        Result(
                            impl.name,
                            "matrix-roots",
                            cell,
                            "v0",
                            "fail",
                            f"{minter} could not mint: {_why(minted)}",
                        )
                    )
                    continue
                checks.append(("identity-verify", {"env": env, "token": minted["token"]}))
                root_cells.append((cell, _sid(minter)))
            for (cell, expected_id), answer in zip(root_cells, impl.batch(checks), strict=True):
                ok = answer.get("ok") is True and answer.get("id") == expected_id
                detail = (
                    ""
                    if ok
                    else f"expected caller {expected_id}, got {answer.get('id') or _why(answer)}"
                )
                results.append(
                    Result(impl.name, "matrix-roots", cell, "v0", "pass" if ok else "fail", detail)
                )
    return results
