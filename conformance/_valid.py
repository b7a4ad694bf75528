"""The valid token vectors: what every implementation must accept, and the caller it yields.

The claim sets come from inputs.json; boundary cases (leeway, lifetime cap,
size cap) and long-lived tokens are added here.  Long-lived tokens have a
far-future ``exp`` so that implementations which read the wall clock can run
them too; they need the verifier's lifetime cap lifted.
"""

from __future__ import annotations

from typing import Any

from conformance._forge import Forge
from conformance._shapes import MAX_TOKEN_CHARS, claims_of, sized

__all__ = ["valid_vectors"]


def _valid(
    f: Forge,
    vid: str,
    description: str,
    token: str,
    claims: dict[str, Any],
    *,
    level: str = "v0",
    verify: dict[str, Any] | None = None,
) -> dict[str, Any]:
    params = verify if verify is not None else f.verify_params()
    vector: dict[str, Any] = {
        "id": vid,
        "description": description,
        "level": level,
        "token": token,
        "verify": params,
        "expected": {"ok": True, "id": claims["sub"], "claims": claims},
    }
    if params["max_lifetime"] is None:
        vector["needs_max_lifetime_lifted"] = True
    return vector


def valid_vectors(f: Forge) -> list[dict[str, Any]]:
    """Tokens that every implementation must accept, with the caller each yields."""
    vectors = []
    for case in f.inputs["claim_sets"]:
        signer = case["signer"]
        header = {k: (f.kid(signer) if v == "@kid" else v) for k, v in case["header"].items()}
        token = f.token(header, case["claims"], signer=f.es256(signer))
        vectors.append(
            _valid(
                f,
                f"valid-{case['name']}",
                case["description"],
                token,
                case["claims"],
                verify=f.verify_params(audience=case["audience"]),
            )
        )
    now, far = f.now, f.inputs["far_future_exp"]
    unknown_kid = f.header(kid="not-a-bound-kid")
    vectors.append(
        _valid(
            f,
            "valid-kid-unknown-falls-back-to-bound-keys",
            "No bound key has the header kid: the verifier tries the keys bound to sub "
            "(orders has two), and the first one verifies.",
            f.token(unknown_kid, f.claims()),
            f.claims(),
        )
    )
    boundaries = [
        ("exp-within-leeway", "exp 29 s in the past, leeway 30 s.", {"exp": now - 29}, "v0"),
        ("iat-future-within-leeway", "iat 30 s in the future.", {"iat": now + 30}, "v0"),
        ("nbf-future-within-leeway", "nbf 30 s in the future.", {"nbf": now + 30}, "v0"),
        (
            "lifetime-at-cap-plus-leeway",
            "exp - now = max_lifetime + leeway (3630 s): still inside the default cap.",
            {"exp": now + 3630},
            "spiffile",
        ),
        ("exp-zero-iat", "iat 0 (1970) is a valid NumericDate.", {"iat": 0}, "spiffile"),
    ]
    for name, description, changes, level in boundaries:
        claims = f.claims(**changes)
        vectors.append(
            _valid(f, f"valid-{name}", description, f.token(None, claims), claims, level=level)
        )
    claims = f.claims(exp=now + 300)
    vectors.append(
        _valid(
            f,
            "valid-custom-max-lifetime",
            "A caller-chosen cap of 300 s accepts a 300 s token.",
            f.token(None, claims),
            claims,
            level="spiffile",
            verify=f.verify_params(max_lifetime=300),
        )
    )
    sized_token = sized(f, MAX_TOKEN_CHARS)
    vectors.append(
        _valid(
            f,
            "valid-size-at-cap",
            f"Exactly {MAX_TOKEN_CHARS} characters: the size cap is inclusive.",
            sized_token,
            claims_of(sized_token),
            level="spiffile",
        )
    )
    long_lived = [
        ("orders", "orders-1", "billing", far),
        ("billing", "billing", "orders", far),
        ("team-a/audit.v2", "audit", "billing", 4102444800),
    ]
    for sender, key, receiver, exp in long_lived:
        claims = f.claims(sub=f.sid(sender), aud=f.sid(receiver), exp=exp)
        token = f.token(f.header(key), claims, signer=f.es256(key))
        vectors.append(
            _valid(
                f,
                f"valid-long-lived-{key}-to-{receiver}",
                "Valid until far in the future, so it also verifies against the wall clock "
                "of implementations that cannot be handed a fixed now; needs the lifetime "
                "cap lifted (max_lifetime null).",
                token,
                claims,
                verify=f.verify_params(audience=f.sid(receiver), max_lifetime=None),
            )
        )
    return vectors
