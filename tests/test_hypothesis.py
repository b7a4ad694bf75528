"""Property tests (hypothesis): round trips, and "arbitrary input raises only our errors".

As in pyca/cryptography's ``tests/hypothesis/``: whatever bytes, text, JSON or
mutation of a valid token reaches the verifier or the bundle parser, the only
exceptions that may come out are the documented ones, and a changed token is
never accepted.  Example counts are moderate so the file runs in seconds.
"""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenforge import (
    BILLING,
    LEDGER,
    NOW,
    ORDERS,
    b64,
    b64json,
    compact,
    es256_raw,
    make_realm,
)

from spiffile.bundle import BoundKey, Bundle, lint_bundle
from spiffile.errors import (
    InvalidBundleError,
    InvalidSpiffeIdError,
    InvalidTokenError,
    MalformedTokenError,
    UnknownIdentityError,
)
from spiffile.keys import generate_private_key, kid_for, public_jwk
from spiffile.spiffe_id import SpiffeId
from spiffile.svid import Caller, mint, verify

SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN_ERRORS = (InvalidTokenError, UnknownIdentityError)

REALM = make_realm({ORDERS: 1, BILLING: 1, LEDGER: 2})
SIGNERS = [(ORDERS, 0), (BILLING, 0), (LEDGER, 0), (LEDGER, 1)]
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def verify_or_none(token: object, bundle: Bundle = REALM.bundle, **options: Any) -> Caller | None:
    """``verify`` as billing at NOW; ``None`` when it raised one of OUR errors (others escape)."""
    options.setdefault("audience", BILLING)
    options.setdefault("now", NOW)
    try:
        return verify(token, bundle, **options)
    except TOKEN_ERRORS:
        return None


# -- strategies -----------------------------------------------------------------------------------

trust_domains = st.from_regex(r"[a-z0-9._-]{1,40}", fullmatch=True)
segments = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True).filter(
    lambda s: s not in (".", "..")
)
paths = st.lists(segments, max_size=6).map(lambda parts: "".join("/" + p for p in parts))
spiffe_ids = st.builds(lambda td, path: f"spiffe://{td}{path}", trust_domains, paths)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
claim_values = json_scalars | json_values | st.sampled_from([ORDERS, BILLING, LEDGER, NOW + 60])


# -- SPIFFE IDs ---------------------------------------------------------------------------------


@SETTINGS
@given(trust_domains, paths)
def test_spiffe_id_round_trip(trust_domain: str, path: str) -> None:
    text = f"spiffe://{trust_domain}{path}"
    assume(not any(seg in (".", "..") for seg in path.split("/")))
    parsed = SpiffeId.parse(text)
    assert str(parsed) == text
    assert (parsed.trust_domain, parsed.path) == (trust_domain, path)
    assert SpiffeId.from_parts(trust_domain, path) == parsed
    assert SpiffeId.parse(str(parsed)) == parsed
    assert hash(SpiffeId(text)) == hash(parsed)
    assert pickle.loads(pickle.dumps(parsed)) == parsed


@SETTINGS
@given(st.text(max_size=60) | spiffe_ids.map(lambda s: s + "/") | st.from_regex(r"spiffe://.*"))
def test_spiffe_id_parse_accepts_only_canonical_ids(text: str) -> None:
    try:
        parsed = SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        return
    assert str(parsed) == text
    assert text.startswith("spiffe://") and text.isascii()
    assert parsed.trust_domain and parsed.trust_domain == parsed.trust_domain.lower()
    assert all(seg not in ("", ".", "..") for seg in parsed.path.split("/")[1:])
    assert not any(c in text[len("spiffe://") :] for c in "%?#@: \\")


# -- mint / verify ---------------------------------------------------------------------------------

extra_claim_names = st.text(max_size=10).filter(
    lambda name: name not in ("sub", "aud", "exp", "iat", "nbf")
)


@SETTINGS
@given(
    signer=st.sampled_from(SIGNERS),
    audience=spiffe_ids,
    ttl=st.integers(min_value=1, max_value=3600),
    now=st.integers(min_value=0, max_value=2**33),
    fraction=st.floats(min_value=0, max_value=0.999),
    elapsed=st.integers(min_value=-30, max_value=3629),
    extra=st.dictionaries(extra_claim_names, json_values, max_size=4),
)
def test_mint_verify_round_trip(
    signer: tuple[str, int],
    audience: str,
    ttl: int,
    now: int,
    fraction: float,
    elapsed: int,
    extra: dict[str, Any],
) -> None:
    subject, index = signer
    key = REALM.key(subject, index)
    token = mint(
        key,
        kid_for(key.public_key()),
        subject,
        audience,
        now=now + fraction,
        ttl=ttl,
        extra_claims=extra,
    )
    at = now + min(elapsed, ttl + 29)
    caller = verify(token, REALM.bundle, audience=audience, now=at)
    assert caller.id == SpiffeId(subject)
    assert caller.claims["exp"] == now + ttl
    assert caller.claims["iat"] == now
    assert caller.claims["aud"] == audience
    for name, value in extra.items():
        assert caller.claims[name] == value
    # And one second after the leeway, it is expired.
    assert verify_or_none(token, audience=audience, now=now + ttl + 30) is None


# -- arbitrary input -------------------------------------------------------------------------------

token_shaped = st.from_regex(
    r"[A-Za-z0-9_=+/-]{0,60}\.[A-Za-z0-9_=+/.-]{0,60}\.[A-Za-z0-9_=+/-]{0,100}", fullmatch=True
)


@SETTINGS
@given(
    st.text(max_size=300)
    | st.binary(max_size=300)
    | token_shaped
    | st.integers()
    | st.none()
    | st.lists(st.text(max_size=5), max_size=3)
    | st.text(min_size=8190, max_size=8200, alphabet="A.")
)
def test_arbitrary_input_raises_only_our_errors(value: object) -> None:
    assert verify_or_none(value) is None


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """*good* about four times in five, else *bad*: keeps the valid path well explored."""
    return st.integers(0, 4).flatmap(lambda n: good if n else bad)


@st.composite
def perturbed(
    draw: st.DrawFn, base: dict[str, Any], values: st.SearchStrategy[Any]
) -> dict[str, Any]:
    """*base* with each member kept (mostly), dropped or replaced, plus maybe extra members."""
    result: dict[str, Any] = {}
    for name, value in base.items():
        choice = draw(st.integers(0, 9))
        if choice < 7:
            result[name] = value
        elif choice < 9:
            result[name] = draw(values)
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.dictionaries(st.text(max_size=5), values, min_size=1, max_size=2))
        result.update(extra)
    return result


header_members = perturbed(
    {"alg": "ES256", "kid": REALM.kid(ORDERS), "typ": "JWT"},
    claim_values | st.sampled_from(["ES256", "JWT", "JOSE", "none", REALM.kid(BILLING), ""]),
)
claim_sets = perturbed(
    {"sub": ORDERS, "aud": BILLING, "iat": NOW, "exp": NOW + 60},
    claim_values
    | st.integers(min_value=NOW - 100, max_value=NOW + 4000)
    | st.sampled_from([[BILLING], f"{NOW + 60}", float(NOW + 60), True, 10**20]),
)


@SETTINGS
@given(header=header_members | json_values, claims=claim_sets | json_values, sig=st.binary())
def test_arbitrary_json_with_a_random_signature_is_never_accepted(
    header: Any, claims: Any, sig: bytes
) -> None:
    token = f"{b64json(header)}.{b64json(claims)}.{b64(sig)}"
    assert verify_or_none(token) is None


@SETTINGS
@given(header=header_members, claims=claim_sets)
def test_arbitrary_claims_signed_by_a_bound_key_only_pass_when_well_formed(
    header: dict[str, Any], claims: dict[str, Any]
) -> None:
    """Orders really signs whatever JSON hypothesis picks: acceptance implies every rule held."""
    key = REALM.key(ORDERS)
    token = compact(b64json(header), b64json(claims), lambda data: es256_raw(key, data))
    caller = verify_or_none(token)
    if caller is None:
        return
    assert set(header) <= {"alg", "kid", "typ"} and header["alg"] == "ES256"
    assert header.get("typ", "JWT") in ("JWT", "JOSE")
    assert isinstance(header["kid"], str) and header["kid"]
    assert caller.id == SpiffeId(ORDERS) and claims["sub"] == ORDERS
    assert claims["aud"] == BILLING
    assert type(claims["exp"]) is int and NOW - 30 < claims["exp"] <= NOW + 3600 + 30
    for name in ("iat", "nbf"):
        if name in claims:
            assert type(claims[name]) is int and claims[name] <= NOW + 30


# -- payload JSON: duplicates at any depth, whitespace, escapes ---------------------------------

# A JSON tree keeps objects as member lists, so duplicates survive until rendering.
Tree = Any
# Keys and strings that need a backslash ('"', '\\') are rare: the fast path of the
# payload parser only sees backslash-free text, and that is where duplicates hide.
tree_keys = st.sampled_from(["a", "b", ":", "\u00e9", "sub", "a:b", "a", "b", ":", '"'])
json_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from(["", "a", "ab", ":", "{}", "a b", "\u00e9", "a:b", "a", 'a"b', "a\\b"]),
    lambda children: (
        st.tuples(st.just("list"), st.lists(children, max_size=3))
        | st.tuples(st.just("obj"), st.lists(st.tuples(tree_keys, children), max_size=3))
    ),
    max_leaves=8,
)


def _has_duplicates(tree: Tree) -> bool:
    if isinstance(tree, tuple) and tree[0] == "list":
        return any(_has_duplicates(child) for child in tree[1])
    if isinstance(tree, tuple):
        names = [name for name, _ in tree[1]]
        return len(set(names)) != len(names) or any(_has_duplicates(v) for _, v in tree[1])
    return False


def _model(tree: Tree) -> Any:
    if isinstance(tree, tuple) and tree[0] == "list":
        return [_model(child) for child in tree[1]]
    if isinstance(tree, tuple):
        return {name: _model(value) for name, value in tree[1]}
    return tree


@st.composite
def rendered(draw: st.DrawFn, tree: Tree) -> str:
    """*tree* as JSON text with random whitespace and randomly \\u-escaped member names."""

    plain = draw(st.booleans())  # Half the payloads avoid backslashes where they can.

    def ws() -> str:
        return draw(st.sampled_from(["", "", "", " ", "\n", "\t ", "\r\n"]))

    def name(text: str) -> str:
        if not plain and draw(st.booleans()):
            return '"' + "".join(f"\\u{ord(c):04x}" for c in text) + '"'
        return json.dumps(text, ensure_ascii=False)

    def render(node: Tree) -> str:
        if isinstance(node, tuple) and node[0] == "list":
            return "[" + ws() + ("," + ws()).join(render(c) for c in node[1]) + ws() + "]"
        if isinstance(node, tuple):
            members = [ws() + name(k) + ws() + ":" + ws() + render(v) for k, v in node[1]]
            return "{" + ",".join(members) + ws() + "}"
        return json.dumps(node, ensure_ascii=not plain and draw(st.booleans()))

    return ws() + render(tree) + ws()


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, Tree]:
    claims = [("sub", ORDERS), ("aud", BILLING), ("exp", NOW + 60)]
    extra = draw(st.lists(st.tuples(tree_keys, json_trees), max_size=3))
    members = draw(st.permutations(claims + extra))
    tree = ("obj", members)
    return draw(rendered(tree)), tree


@SETTINGS
@given(payloads())
def test_payload_json_duplicates_at_any_depth_are_rejected_everything_else_parsed(
    payload: tuple[str, Tree],
) -> None:
    """The strict JSON rules hold for every spelling (whitespace, escapes, nesting, colons).

    A duplicate member anywhere makes the payload malformed (one parser takes the
    first value, another the last); otherwise the claims are exactly the JSON's.
    """
    text, tree = payload
    key = REALM.key(ORDERS)
    token = compact(
        b64json({"alg": "ES256", "kid": REALM.kid(ORDERS), "typ": "JWT"}),
        b64(text.encode("utf-8")),
        lambda data: es256_raw(key, data),
    )
    if _has_duplicates(tree):
        try:
            verify(token, REALM.bundle, audience=BILLING, now=NOW)
        except MalformedTokenError:
            return
        raise AssertionError(f"duplicate members accepted: {text!r}")
    caller = verify(token, REALM.bundle, audience=BILLING, now=NOW)
    assert caller.claims == _model(tree)


# -- mutated valid tokens ---------------------------------------------------------------------

mutation_chars = st.sampled_from(B64URL_ALPHABET) | st.sampled_from(list(".= \n\t+/\u00e9\x00"))


def _honest_token(signer: tuple[str, int]) -> str:
    subject, index = signer
    key = REALM.key(subject, index)
    return mint(key, kid_for(key.public_key()), subject, BILLING, now=NOW)


@st.composite
def mutated_tokens(draw: st.DrawFn) -> tuple[str, str]:
    token = _honest_token(draw(st.sampled_from(SIGNERS)))
    header, payload, signature = token.split(".")
    kind = draw(
        st.sampled_from(
            ["flip", "insert", "delete", "swap", "truncate", "extra_header", "edit_claims"]
        )
    )
    if kind == "flip":
        i = draw(st.integers(0, len(token) - 1))
        mutated = token[:i] + draw(mutation_chars) + token[i + 1 :]
    elif kind == "insert":
        i = draw(st.integers(0, len(token)))
        mutated = token[:i] + draw(mutation_chars) + token[i:]
    elif kind == "delete":
        i = draw(st.integers(0, len(token) - 1))
        mutated = token[:i] + token[i + 1 :]
    elif kind == "swap":
        order = draw(st.permutations([header, payload, signature]))
        mutated = ".".join(order)
    elif kind == "truncate":
        mutated = token[: draw(st.integers(0, len(token) - 1))]
    elif kind == "extra_header":
        decoded = json.loads(_decode(header))
        extra = draw(st.dictionaries(st.text(max_size=6), claim_values, min_size=1, max_size=3))
        reordered = draw(st.permutations(list({**decoded, **extra}.items())))
        mutated = f"{b64json(dict(reordered))}.{payload}.{signature}"
    else:
        claims = json.loads(_decode(payload))
        name = draw(st.sampled_from([*claims, "nbf", "jti"]))
        claims[name] = draw(claim_values)
        mutated = f"{header}.{b64json(claims)}.{signature}"
    return token, mutated


def _decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@SETTINGS
@given(mutated_tokens())
def test_mutated_tokens_are_never_accepted(pair: tuple[str, str]) -> None:
    honest, mutated = pair
    assume(mutated != honest)
    assert verify_or_none(honest) is not None
    assert verify_or_none(mutated) is None


# -- bundles --------------------------------------------------------------------------------------

REAL_JWKS = [public_jwk(REALM.key(ORDERS).public_key())] + [
    public_jwk(generate_private_key().public_key()) for _ in range(11)
]


@st.composite
def jwk_like(draw: st.DrawFn) -> Any:
    base: dict[str, Any] = dict(draw(st.sampled_from(REAL_JWKS)))
    for _ in range(draw(mostly(st.just(0), st.integers(1, 2)))):
        name = draw(st.sampled_from([*base, "d", "kty", "crv"]) | st.text(max_size=4))
        if draw(st.booleans()):
            base.pop(name, None)
        else:
            base[name] = draw(
                claim_values | st.sampled_from(["EC", "P-256", "RSA", "jwt-svid", "ES256", "AA"])
            )
    return base


entries = mostly(
    st.builds(
        lambda keys: {"keys": keys},
        mostly(
            st.lists(mostly(jwk_like(), json_values), min_size=1, max_size=3),
            st.lists(json_values, max_size=2),
        ),
    ),
    json_values,
)
identity_names = mostly(
    st.sampled_from([ORDERS, BILLING, LEDGER])
    | paths.map(lambda path: "spiffe://example.org" + path),
    st.sampled_from(["spiffe://evil.org/x", "spiffe://example.org/"])
    | spiffe_ids
    | st.text(max_size=12),
)
documents = mostly(
    st.fixed_dictionaries(
        {
            "trust_domain": mostly(st.just("example.org"), json_scalars),
            "spiffile_version": mostly(st.just(1), st.sampled_from([True, 1.0, 2, "1", 0, None])),
            "identities": mostly(
                st.dictionaries(identity_names, entries, min_size=1, max_size=5), json_values
            ),
        },
        optional={"spiffe_sequence": st.integers(-2, 2**64) | json_scalars, "extra": json_values},
    ),
    json_values,
)


@SETTINGS
@given(documents, st.lists(identity_names, max_size=3))
def test_bundle_parse_raises_only_invalid_bundle_and_lookups_only_unknown(
    document: Any, probes: list[str]
) -> None:
    data = json.dumps(document).encode()
    try:
        bundle = Bundle.parse(data)
    except InvalidBundleError:
        assert lint_bundle(data)  # The linter agrees the document is broken.
        return
    assert isinstance(lint_bundle(data), list)
    raw = document["identities"]
    for name in [*raw, *probes, ORDERS]:
        try:
            keys = bundle.keys_for(name)
        except UnknownIdentityError:
            assert name not in bundle
            continue
        assert name in bundle
        assert keys and all(isinstance(key, BoundKey) for key in keys)
        assert SpiffeId(name).trust_domain == bundle.trust_domain
    listed = bundle.identities()
    assert all(isinstance(i, SpiffeId) for i in listed)
    assert len(listed) + len(bundle.warnings) == len(raw)
    # What a producer writes back parses again to the same identities.
    assert Bundle.parse(bundle.to_json()).identities() == listed
    # A real token checked against whatever this bundle is raises only our errors.
    verify_or_none(_honest_token((ORDERS, 0)), bundle)


@SETTINGS
@given(st.binary(max_size=400) | st.text(max_size=400))
def test_bundle_parse_of_arbitrary_bytes(data: bytes | str) -> None:
    try:
        bundle = Bundle.parse(data)
    except InvalidBundleError:
        return
    bundle.identities()
    assert isinstance(bundle.warnings, list)
