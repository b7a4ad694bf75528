"""Differential tests for spiffile/bundle/_compact.py against its references.

The contract: for any JSON text, parsing with the :class:`Compactor` hook and
expanding every entry gives exactly what ``json.loads`` gives (whenever the
compactor says its result can be used), and the hand-written writer
:func:`entry_json` gives exactly what ``json.dumps`` gives.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spiffile.bundle import Bundle
from spiffile.bundle._compact import JWK_MEMBERS, Compactor, entry_json, stored

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_producer_jwk = st.builds(
    lambda kid, x, y: {
        "kty": "EC",
        "crv": "P-256",
        "x": x,
        "y": y,
        "kid": kid,
        "use": "jwt-svid",
        "alg": "ES256",
    },
    _text,
    _text,
    _text,
)


def _variant(jwk: dict[str, Any], how: int, value: Any) -> Any:
    """A JWK that is *almost* producer-shaped: the near misses the hook must leave alone."""
    changed = dict(jwk)
    if how == 0:  # one member with another value (possibly another type)
        changed[JWK_MEMBERS[len(str(value)) % 7]] = value
    elif how == 1:  # members in another order
        changed = dict(reversed(list(jwk.items())))
    elif how == 2:  # one member more
        changed["extra"] = value
    elif how == 3:  # one member less
        changed.pop(JWK_MEMBERS[len(str(value)) % 7])
    return changed


_scalar = st.none() | st.booleans() | st.integers() | _text
_near_jwk = st.builds(_variant, _producer_jwk, st.integers(0, 3), _scalar)
_jwk = _producer_jwk | _near_jwk
_entry = st.one_of(
    st.builds(lambda keys: {"keys": keys}, st.lists(_jwk, min_size=1, max_size=3)),
    st.builds(lambda keys, v: {"keys": keys, "other": v}, st.lists(_jwk, max_size=2), _scalar),
    st.builds(lambda keys: {"keys": keys}, st.lists(_jwk | _scalar, max_size=3)),
    _scalar,
    _producer_jwk,
)
_document = st.builds(
    lambda identities, extra: {
        "trust_domain": "example.org",
        "spiffile_version": 1,
        "identities": identities,
        **extra,
    },
    st.dictionaries(_text, _entry, max_size=5),
    st.dictionaries(st.sampled_from(["spiffe_sequence", "x", "keys"]), _entry, max_size=2),
)


@settings(max_examples=400, deadline=None)
@given(_document)
def test_expand_of_compact_equals_the_parsed_json(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    compactor = Compactor()
    hooked = json.loads(text, object_hook=compactor.hook)
    if not compactor.accounted(hooked):
        return  # The caller parses again without the hook; nothing compact is used.
    plain = json.loads(text)
    assert {k: stored(v) for k, v in hooked["identities"].items()} == plain["identities"]
    assert {k: v for k, v in hooked.items() if k != "identities"} == {
        k: v for k, v in plain.items() if k != "identities"
    }


@settings(max_examples=400, deadline=None)
@given(_document)
def test_entry_writer_equals_json_dumps(document: dict[str, Any]) -> None:
    text = json.dumps(document)
    compactor = Compactor()
    hooked = json.loads(text, object_hook=compactor.hook)
    if not compactor.accounted(hooked):
        return
    for name, value in hooked["identities"].items():
        assert entry_json(value) == json.dumps(document["identities"][name])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_text, st.lists(_producer_jwk, min_size=1, max_size=3), max_size=5))
def test_bundle_round_trips_producer_shaped_documents(keys: dict[str, list[Any]]) -> None:
    document = {
        "trust_domain": "example.org",
        "spiffile_version": 1,
        "identities": {name: {"keys": jwks} for name, jwks in keys.items()},
    }
    bundle = Bundle.parse(json.dumps(document))
    assert bundle.to_document() == document
    assert json.loads(bundle.to_json()) == document


def test_producer_shaped_entries_are_stored_compactly() -> None:
    """The point of the scheme: a producer-shaped entry is held as a tuple of strings."""
    jwk = dict(
        zip(JWK_MEMBERS, ("EC", "P-256", "x1", "y1", "k1", "jwt-svid", "ES256"), strict=True)
    )
    compactor = Compactor()
    hooked = json.loads(
        json.dumps({"identities": {"a": {"keys": [jwk, jwk]}}}), object_hook=compactor.hook
    )
    assert compactor.accounted(hooked)
    assert hooked["identities"]["a"] == ("k1", "x1", "y1", "k1", "x1", "y1")


def test_a_tuple_from_a_caller_is_not_taken_for_a_compact_entry() -> None:
    """Bundle.from_document gets Python objects: a tuple there is data, never a compact entry."""
    bundle = Bundle.from_document(
        {
            "trust_domain": "example.org",
            "spiffile_version": 1,
            "identities": {"spiffe://example.org/a": ("k", "x", "y")},
        }
    )
    assert bundle.identities() == []
    assert bundle.to_document()["identities"] == {"spiffe://example.org/a": ["k", "x", "y"]}
