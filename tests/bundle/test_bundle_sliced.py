"""Differential tests for spiffile/bundle/_sliced.py against the whole-document parse.

The contract: ``_sliced.loads(text, compactor=c, pause=p)`` returns what
``json.loads(text, object_hook=c.hook)`` returns, leaves the compactor with the
same counts, and raises the same error with the same message, whatever the
slice size; ``Bundle.parse(data, pause=p)`` equals ``Bundle.parse(data)``.
Small slice sizes make every path (chunks kept, chunks refused, member by
member, the standard library's fallback) run on small documents.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from bundledocs import ORDERS, document, fresh_jwk
from hypothesis import given, settings
from hypothesis import strategies as st

from spiffile.bundle import Bundle
from spiffile.bundle._compact import Compactor, slim_entry
from spiffile.bundle._sliced import loads
from spiffile.errors import SpiffileError

_VECTORS = Path(__file__).resolve().parents[2] / "conformance" / "vectors"
_SLICES = (1, 2, 7, 40, 300, 128 * 1024)


def _whole(text: str) -> tuple[str, Any, tuple[int, int, int]]:
    compactor = Compactor()
    try:
        value = json.loads(text, object_hook=compactor.hook)
    except (ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc), (0, 0, 0))
    return ("ok", value, (compactor.jwks, compactor.used, compactor.entries))


def _sliced(text: str, slice_chars: int, calls: list[int] | None = None) -> Any:
    compactor = Compactor()

    def pause() -> None:
        if calls is not None:
            calls.append(1)

    try:
        value = loads(text, compactor=compactor, pause=pause, slice_chars=slice_chars)
    except (ValueError, RecursionError) as exc:
        return (type(exc).__name__, str(exc), (0, 0, 0))
    return ("ok", value, (compactor.jwks, compactor.used, compactor.entries))


def _same_as_whole(text: str) -> None:
    expected = _whole(text)
    for size in _SLICES:
        assert _sliced(text, size) == expected, (size, text[:200])


def _bundle_outcome(data: bytes, **options: Any) -> Any:
    try:
        bundle = Bundle.parse(data, **options)
    except SpiffileError as exc:
        return (type(exc).__name__, exc.code, str(exc))
    return (bundle.trust_domain, bundle.sequence, bundle.extra, bundle.to_document())


def _same_bundle(data: bytes) -> None:
    expected = _bundle_outcome(data)
    assert _bundle_outcome(data, pause=lambda: None) == expected


_scalar = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
_json = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
_layout = st.sampled_from(
    [
        {},
        {"indent": 2},
        {"separators": (",", ":")},
        {"indent": "\t", "separators": (" ,", " : ")},
        {"ensure_ascii": False},
    ]
)


@settings(max_examples=300, deadline=None)
@given(_json, _layout)
def test_any_json_value_parses_as_a_whole(value: Any, layout: dict[str, Any]) -> None:
    _same_as_whole(json.dumps(value, **layout))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(), st.lists(st.fixed_dictionaries({"k": st.text()}), max_size=3), max_size=6
    ),
    st.dictionaries(st.text(), _json, max_size=3),
    _layout,
)
def test_documents_with_entries_and_extensions(
    identities: dict[str, Any], extra: dict[str, Any], layout: dict[str, Any]
) -> None:
    doc = {**extra, "identities": {k: {"keys": v} for k, v in identities.items()}}
    _same_as_whole(json.dumps(doc, **layout))


def _producer_text(count: int) -> str:
    jwk = fresh_jwk()
    entries = {
        f"spiffe://example.org/s{i}": {"keys": [dict(jwk, kid=f"k{i}")] * (1 + i % 3)}
        for i in range(count)
    }
    return (
        Bundle.from_document(document(**{}))
        .to_json()
        .decode()
        .replace('"identities": {}', '"identities": ' + json.dumps(entries, indent=4))
    )


_STRUCTURE = '{}[],:"\\ \n\t0ae-.u'


def test_mutated_documents_fail_or_succeed_as_a_whole_parse_does() -> None:
    """Byte-level mutations of a producer document: every error message and position agree."""
    rng = random.Random(20261129)
    base = _producer_text(12)
    for _ in range(3000):
        text = list(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            how = rng.randrange(3)
            if how == 0:
                del text[at]
            elif how == 1:
                text.insert(at, rng.choice(_STRUCTURE))
            else:
                text[at] = rng.choice(_STRUCTURE)
        _same_as_whole("".join(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "\ufeff{}",
        "{}",
        "[]",
        "{ }",
        "[ ]",
        "{,}",
        "[,]",
        '{"a": 1,}',
        "[1,]",
        "[ , 1]",
        "[   ,1, 2]",
        '{"a": [  , 1], "b": 2}',
        '{"a": {} , , "b": 2}',
        '{"a": 1 "b": 2}',
        '{"a" 1}',
        "{1: 2}",
        '{"a": }',
        "[1 2]",
        '{"a": 1}}',
        '{"a": 1} x',
        '{"a": [1, 2, {"b": "}, \\"c\\": {"}]}',
        '{"a}, \\"b": {"c": "], [,"}, "d": 1}',
        '{"x": "\\u0022}, \\"y\\": 1", "z": {"}": "{"}}',
        '{"dup": 1, "dup": {"keys": []}, "dup": 3}',
        '{"identities": {"a": {"keys": [1]}, "a": {"keys": [2]}}}',
        '{"a": "unterminated}',
        '{"a": "bad \\x escape"}',
        '{"a": "raw\ncontrol"}',
        '{"a": NaN, "b": -Infinity}',
        '{"a": 1e999, "b": -0, "c": 0.5e-400}',
        "[" * 50 + "]" * 50,
        '{"a": ' * 50 + "1" + "}" * 50,
        '{"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y", "kid": "k",'
        ' "use": "jwt-svid", "alg": "ES256"}]}',
        '{"identities": {"keys": [{"kty": "EC", "crv": "P-256", "x": "x", "y": "y",'
        ' "kid": "k", "use": "jwt-svid", "alg": "ES256"}]}}',
    ],
)
def test_hostile_documents(text: str) -> None:
    _same_as_whole(text)


def test_nesting_beyond_the_recursion_limit_is_refused_either_way() -> None:
    """Where exactly a parse stops depends on the caller's stack; far beyond it, both refuse."""
    for text in ("[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000):
        data = text.encode()
        assert _bundle_outcome(data)[:2] == ("InvalidBundleError", "invalid_bundle")
        assert _bundle_outcome(data, pause=lambda: None)[:2] == (
            "InvalidBundleError",
            "invalid_bundle",
        )


def test_bundles_parse_the_same_with_a_pause() -> None:
    jwk = fresh_jwk()
    for data in (
        _producer_text(40).encode(),
        json.dumps(document(**{ORDERS: {"keys": [jwk]}}), separators=(",", ":")).encode(),
        b"\xff\xfe{}",
        b'{"trust_domain": "example.org", "spiffile_version": 1, "identities": {}, "x": [1]}',
        json.dumps({**document(**{ORDERS: {"keys": [jwk], "note": '}, "'}}), "x509": {}}).encode(),
    ):
        _same_bundle(data)


def _vector_documents() -> list[Any]:
    vectors = json.loads((_VECTORS / "bundles.json").read_text())
    return [
        pytest.param(case["input"]["document"], id=case["id"])
        for case in vectors["rejected"] + vectors["accepted"]
    ]


@pytest.mark.parametrize("text", _vector_documents())
def test_conformance_vectors_parse_the_same_with_a_pause(text: str) -> None:
    _same_bundle(text.encode("utf-8", "surrogatepass"))
    _same_as_whole(text)


def test_pause_is_called_between_slices() -> None:
    text = _producer_text(400)
    calls: list[int] = []
    assert _sliced(text, 4096, calls) == _whole(text)
    # At least one pause per two slices of the document.
    assert len(calls) >= len(text) // (2 * 4096)


# -- slim parses (consumers): what is not kept, and that nothing else changes -------

_PROFILE = ("trust_domain", "spiffile_version", "identities", "spiffe_sequence")


def _slim_reference(value: Any) -> Any:
    """What a slim parse must return: the whole parse with the ignored members taken out.

    A member read only for its type keeps its type: a container becomes an empty one.
    """
    if type(value) is list:
        return []
    if type(value) is not dict:
        return value
    kept: dict[str, Any] = {}
    for name, member in value.items():
        if name not in _PROFILE:
            continue
        if name == "identities" and type(member) is dict:
            kept[name] = {k: slim_entry(v) for k, v in member.items()}
        elif type(member) in (dict, list):
            kept[name] = type(member)()
        else:
            kept[name] = member
    return kept


def _slim_same_as_whole(text: str) -> None:
    try:
        expected: Any = ("ok", _slim_reference(json.loads(text)))
    except (ValueError, RecursionError) as exc:
        expected = (type(exc).__name__, str(exc))
    for size in _SLICES:
        try:
            got: Any = (
                "ok",
                loads(text, compactor=None, pause=lambda: None, slice_chars=size, slim=True),
            )
        except (ValueError, RecursionError) as exc:
            got = (type(exc).__name__, str(exc))
        assert got == expected, (size, text[:200])


def _lookups(data: bytes, **options: Any) -> Any:
    """Every identity of the whole document looked up: its keys, or the error's message."""
    try:
        bundle = Bundle.parse(data, **options)
    except SpiffileError as exc:
        return (type(exc).__name__, str(exc))
    try:
        names = list(json.loads(data)["identities"])
    except (ValueError, TypeError, KeyError):
        names = []
    found: list[Any] = [bundle.trust_domain, bundle.sequence, len(bundle)]
    for name in names:
        try:
            entry = bundle.lookup(name)
        except SpiffileError as exc:
            found.append(str(exc))
        else:
            found.append((str(entry.id), [key.kid for key in entry.keys]))
    found.append(bundle.warnings)
    return found


@settings(max_examples=300, deadline=None)
@given(_json, _layout)
def test_slim_parse_of_any_json_value(value: Any, layout: dict[str, Any]) -> None:
    _slim_same_as_whole(json.dumps(value, **layout))


_messy_jwk = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "RSA"]) | _json,
        "crv": st.sampled_from(["P-256"]) | _json,
        "x": _json,
        "y": _json,
        "kid": st.text(max_size=3) | _json,
        "use": st.sampled_from(["jwt-svid", "sig"]) | _json,
        "alg": st.sampled_from(["ES256"]) | _json,
        "d": _json,
        "junk": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([ORDERS, "spiffe://example.org/a", "spiffe://other.org/b", "nope"]),
        st.fixed_dictionaries({}, optional={"keys": st.lists(_messy_jwk, max_size=3) | _json})
        | _json,
        max_size=4,
    ),
    st.dictionaries(st.text(max_size=4), _json, max_size=3),
)
def test_slim_bundles_look_up_every_entry_as_whole_ones_do(
    identities: dict[str, Any], extra: dict[str, Any]
) -> None:
    jwk = fresh_jwk()
    identities = {**identities, "spiffe://example.org/good": {"keys": [jwk], "x": [[]]}}
    data = json.dumps({**extra, **document(**identities)}).encode()
    assert _lookups(data, slim=True) == _lookups(data)
    _slim_same_as_whole(data.decode())


@pytest.mark.parametrize("text", _vector_documents())
def test_conformance_vectors_slim(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    assert _lookups(data, slim=True) == _lookups(data)


def test_mutated_documents_slim() -> None:
    rng = random.Random(20261130)
    base = json.dumps(
        {**json.loads(_producer_text(6)), "x509": {"a": [1, {"b": '}, "'}]}, "z": [[], {}]}
    )
    for _ in range(1500):
        text = list(base)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(text))
            how = rng.randrange(3)
            if how == 0:
                del text[at]
            elif how == 1:
                text.insert(at, rng.choice(_STRUCTURE))
            else:
                text[at] = rng.choice(_STRUCTURE)
        _slim_same_as_whole("".join(text))


def test_a_slim_bundle_keeps_no_unknown_member() -> None:
    jwk = fresh_jwk()
    doc = {
        **document(**{ORDERS: {"keys": [dict(jwk, note=[1] * 50)], "comment": ["x"] * 50}}),
        "x509_authorities": [{"pem": "y" * 100}] * 20,
    }
    slim = Bundle.parse(json.dumps(doc, indent=1), slim=True)
    assert slim.extra == {}
    assert slim.to_document()["identities"] == {ORDERS: {"keys": [jwk]}}
    assert [k.kid for k in slim.keys_for(ORDERS)] == [jwk["kid"]]
