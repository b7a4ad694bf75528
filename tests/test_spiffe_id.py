"""Tests for spiffile/spiffe_id.py: every SPIFFE-ID rule, the length limits, value semantics."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from spiffile.errors import InvalidSpiffeIdError, SpiffileError
from spiffile.spiffe_id import (
    MAX_ID_BYTES,
    MAX_TRUST_DOMAIN_BYTES,
    SpiffeId,
    TrustDomain,
    validate_trust_domain,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "spiffe_ids.json").read_text("utf-8"))
VALID: list[dict[str, str]] = VECTORS["valid"]
INVALID: list[dict[str, str]] = VECTORS["invalid"]


def _vector_id(vector: dict[str, str]) -> str:
    return vector["id"].encode("unicode_escape").decode("ascii") or "<empty>"


# -- vectors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VALID, ids=[_vector_id(v) for v in VALID])
def test_valid_id(vector: dict[str, str]) -> None:
    parsed = SpiffeId.parse(vector["id"])
    assert str(parsed) == vector["id"]
    assert parsed.trust_domain == vector["trust_domain"]
    assert parsed.path == vector["path"]
    assert SpiffeId(vector["id"]) == parsed
    assert SpiffeId.from_parts(vector["trust_domain"], vector["path"]) == parsed
    assert parsed.member_of(vector["trust_domain"])


@pytest.mark.parametrize("vector", INVALID, ids=[v["why"] + ":" + _vector_id(v) for v in INVALID])
def test_invalid_id(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.parse(vector["id"])


@pytest.mark.parametrize("vector", INVALID, ids=[v["why"] + ":" + _vector_id(v) for v in INVALID])
def test_invalid_id_message_is_bounded_and_single_line(vector: dict[str, str]) -> None:
    """The message names the problem; it never dumps a huge input or breaks a log line."""
    with pytest.raises(InvalidSpiffeIdError) as caught:
        SpiffeId.parse(vector["id"])
    message = str(caught.value)
    assert message
    assert "\n" not in message
    assert len(message) < 400


def test_profile_facts_examples_are_in_the_vectors() -> None:
    """PROFILE-FACTS.md's own valid and invalid examples are all covered."""
    valid = {v["id"] for v in VALID}
    invalid = {v["id"] for v in INVALID}
    assert {
        "spiffe://example.org",
        "spiffe://example.org/a/b/c.d_e-f",
        "spiffe://ex-ample_2.org/UPPER.case",
    } <= valid
    assert {
        "spiffe://Example.org/x",
        "spiffe://example.org/",
        "spiffe://example.org//x",
        "spiffe://example.org/a/../b",
        "spiffe://example.org/a b",
        "spiffe://example.org/bad~path",
        "http://example.org/x",
        "spiffe://",
    } <= invalid


# -- length limits -----------------------------------------------------------------------------


def _trust_domain(length: int) -> str:
    """A valid trust domain of exactly *length* bytes."""
    label = "a" * 62 + "."
    name = (label * (length // len(label) + 1))[:length]
    return name if not name.endswith(".") else name[:-1] + "b"


def test_trust_domain_of_255_bytes_is_valid() -> None:
    name = _trust_domain(MAX_TRUST_DOMAIN_BYTES)
    assert len(name) == 255
    parsed = SpiffeId.parse(f"spiffe://{name}/x")
    assert parsed.trust_domain == name
    assert validate_trust_domain(name) == name


def test_trust_domain_of_256_bytes_is_rejected() -> None:
    name = _trust_domain(MAX_TRUST_DOMAIN_BYTES + 1)
    assert len(name) == 256
    with pytest.raises(InvalidSpiffeIdError, match="255"):
        SpiffeId.parse(f"spiffe://{name}/x")
    with pytest.raises(InvalidSpiffeIdError, match="255"):
        SpiffeId.parse(f"spiffe://{name}")
    with pytest.raises(InvalidSpiffeIdError):
        validate_trust_domain(name)


def _id_of_length(length: int) -> str:
    """A valid ID of exactly *length* bytes: ``spiffe://example.org/a/aaaa...``."""
    prefix = "spiffe://example.org/a/"
    return prefix + "a" * (length - len(prefix))


@pytest.mark.parametrize("length", [MAX_ID_BYTES - 1, MAX_ID_BYTES])
def test_id_up_to_2048_bytes_is_valid(length: int) -> None:
    text = _id_of_length(length)
    assert len(text.encode()) == length
    assert str(SpiffeId.parse(text)) == text


@pytest.mark.parametrize("length", [MAX_ID_BYTES + 1, MAX_ID_BYTES + 100, 1024 * 1024])
def test_id_over_2048_bytes_is_rejected(length: int) -> None:
    text = _id_of_length(length)
    with pytest.raises(InvalidSpiffeIdError, match="2048"):
        SpiffeId.parse(text)


def test_id_of_2048_bytes_with_a_255_byte_trust_domain_is_valid() -> None:
    name = _trust_domain(255)
    prefix = f"spiffe://{name}"
    text = prefix + "/" + "b" * (MAX_ID_BYTES - len(prefix) - 1)
    assert len(text) == MAX_ID_BYTES
    assert SpiffeId.parse(text).trust_domain == name


def test_length_is_counted_in_bytes_not_characters() -> None:
    """2048 characters, more bytes: rejected for length (the non-ASCII rule would too)."""
    text = "spiffe://example.org/" + "\u00e9" * (MAX_ID_BYTES - 30)
    assert len(text) < MAX_ID_BYTES < len(text.encode())
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.parse(text)


# -- non-string input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [None, b"spiffe://example.org/x", 42, 4.2, ["spiffe://example.org/x"], {"id": "x"}, object()],
    ids=["none", "bytes", "int", "float", "list", "dict", "object"],
)
def test_non_string_is_rejected(value: Any) -> None:
    with pytest.raises(InvalidSpiffeIdError, match="string"):
        SpiffeId.parse(value)


@pytest.mark.parametrize("value", [None, b"example.org", 1, ["example.org"]])
def test_validate_trust_domain_rejects_non_strings(value: Any) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        validate_trust_domain(value)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Example.org",
        "example.org/x",
        "example.org:443",
        "user@example.org",
        "ex ample",
        "\u00e9",
    ],
)
def test_validate_trust_domain_rejects_invalid_names(name: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        validate_trust_domain(name)


def test_errors_are_spiffile_errors() -> None:
    with pytest.raises(SpiffileError) as caught:
        SpiffeId.parse("nope")
    assert caught.value.code == "invalid_spiffe_id"


# -- from_parts --------------------------------------------------------------------------------


def test_from_parts() -> None:
    assert str(SpiffeId.from_parts("example.org", "/a/b")) == "spiffe://example.org/a/b"
    assert str(SpiffeId.from_parts("example.org")) == "spiffe://example.org"
    assert SpiffeId.from_parts("example.org", "").path == ""


@pytest.mark.parametrize(
    ("trust_domain", "path"),
    [
        ("example.org", "a"),
        ("example.org", "/a/"),
        ("example.org", "//a"),
        ("example.org", "/a/../b"),
        ("Example.org", "/a"),
        ("", "/a"),
        ("example.org", "/a?b"),
        ("example.org", "/a#b"),
    ],
)
def test_from_parts_rejects_invalid_parts(trust_domain: str, path: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.from_parts(trust_domain, path)


@pytest.mark.parametrize(
    ("trust_domain", "path"),
    [
        ("example.org/admin", ""),
        ("example.org/admin", "/x"),
    ],
    ids=["path_in_trust_domain", "path_in_trust_domain_and_path"],
)
def test_from_parts_rejects_a_trust_domain_holding_a_path(trust_domain: str, path: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.from_parts(trust_domain, path)


@pytest.mark.parametrize(("trust_domain", "path"), [(1, "/a"), ("example.org", 1), (None, "")])
def test_from_parts_type_errors(trust_domain: Any, path: Any) -> None:
    with pytest.raises(TypeError):
        SpiffeId.from_parts(trust_domain, path)


# -- value semantics ---------------------------------------------------------------------------


def test_equality_and_hashing() -> None:
    a = SpiffeId("spiffe://example.org/a")
    same = SpiffeId.parse("spiffe://example.org/a")
    other = SpiffeId("spiffe://example.org/A")
    assert a == same
    assert hash(a) == hash(same)
    assert a != other
    assert len({a, same, other}) == 2
    assert {a: 1}[same] == 1


def test_equal_to_its_canonical_string() -> None:
    """``caller.id == "spiffe://..."`` means what it says, both ways round, and in sets."""
    a = SpiffeId("spiffe://example.org/a")
    assert a == "spiffe://example.org/a"
    assert "spiffe://example.org/a" == a
    assert a in {"spiffe://example.org/a"}
    assert "spiffe://example.org/a" in {a}
    assert a in ["spiffe://example.org/b", "spiffe://example.org/a"]
    by_id: dict[object, int] = {a: 1}
    assert by_id["spiffe://example.org/a"] == 1
    assert hash(a) == hash("spiffe://example.org/a")


@pytest.mark.parametrize(
    "other",
    [
        "spiffe://example.org/A",
        "spiffe://example.org/a/",
        "spiffe://Example.org/a",
        "SPIFFE://example.org/a",
        "spiffe://example.org/./a",
        "a",
        "",
    ],
)
def test_not_equal_to_another_or_invalid_string(other: str) -> None:
    """No normalisation: a string that is not the canonical text names no workload it equals."""
    a = SpiffeId("spiffe://example.org/a")
    assert a != other
    assert other != a


def test_not_equal_to_other_types() -> None:
    a = SpiffeId("spiffe://example.org/a")
    assert a != None  # noqa: E711
    assert a != b"spiffe://example.org/a"
    assert a != TrustDomain("example.org")


# -- TrustDomain -------------------------------------------------------------------------------


def test_trust_domain_builds_ids() -> None:
    domain = TrustDomain("example.org")
    assert domain.id("billing") == SpiffeId("spiffe://example.org/billing")
    assert domain.id("/billing") == SpiffeId("spiffe://example.org/billing")
    assert domain.id("team/billing") == SpiffeId("spiffe://example.org/team/billing")
    assert domain.id() == SpiffeId("spiffe://example.org")
    assert domain.name == str(domain) == "example.org"
    assert repr(domain) == "TrustDomain('example.org')"
    assert TrustDomain.of(SpiffeId("spiffe://example.org/x")) == domain
    assert TrustDomain(domain) == domain


@pytest.mark.parametrize("path", ["a/../b", "a//b", "a/", "bad~path", "a b", "..", "a?b"])
def test_trust_domain_id_rejects_invalid_paths(path: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        TrustDomain("example.org").id(path)


@pytest.mark.parametrize(
    "name", ["", "Example.org", "example.org/a", "example.org:443", "spiffe://example.org"]
)
def test_trust_domain_rejects_invalid_names(name: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        TrustDomain(name)


def test_trust_domain_value_semantics() -> None:
    domain = TrustDomain("example.org")
    assert domain == "example.org"
    assert "example.org" == domain
    assert domain != "example.com"
    assert hash(domain) == hash("example.org")
    assert len({domain, TrustDomain("example.org"), "example.org"}) == 1
    assert pickle.loads(pickle.dumps(domain)) == domain
    with pytest.raises(AttributeError):
        domain._name = "evil.org"
    with pytest.raises(TypeError):
        domain.id(1)  # type: ignore[arg-type]


def test_trust_domain_membership() -> None:
    domain = TrustDomain("example.org")
    assert SpiffeId("spiffe://example.org/a") in domain
    assert "spiffe://example.org/a" in domain
    assert SpiffeId("spiffe://example.org.evil/a") not in domain
    assert "spiffe://evil.org/example.org" not in domain
    assert "not an id" not in domain
    assert 42 not in domain
    assert SpiffeId("spiffe://example.org/a").member_of(domain)


def test_str_and_repr() -> None:
    a = SpiffeId("spiffe://example.org/a/b")
    assert str(a) == "spiffe://example.org/a/b"
    assert f"{a}" == "spiffe://example.org/a/b"
    assert repr(a) == "SpiffeId('spiffe://example.org/a/b')"
    assert a.trust_domain == "example.org"
    assert a.path == "/a/b"
    assert a.member_of("example.org")
    assert not a.member_of("example.com")


@pytest.mark.parametrize("name", ["trust_domain", "path", "_text", "_path", "_trust_domain", "new"])
def test_immutable(name: str) -> None:
    a = SpiffeId("spiffe://example.org/a")
    with pytest.raises(AttributeError):
        setattr(a, name, "spiffe://evil.org/x")
    assert str(a) == "spiffe://example.org/a"
    assert a.trust_domain == "example.org"


@pytest.mark.parametrize("name", ["trust_domain", "path"])
def test_public_attributes_cannot_be_deleted(name: str) -> None:
    a = SpiffeId("spiffe://example.org/a")
    with pytest.raises(AttributeError):
        delattr(a, name)


def test_private_slots_cannot_be_deleted() -> None:
    a = SpiffeId("spiffe://example.org/a")
    with pytest.raises(AttributeError):
        del a._text
    assert str(a) == "spiffe://example.org/a"


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip(protocol: int) -> None:
    a = SpiffeId("spiffe://example.org/a/b")
    restored = pickle.loads(pickle.dumps(a, protocol=protocol))
    assert restored == a
    assert type(restored) is SpiffeId
    assert restored.trust_domain == "example.org"
    assert restored.path == "/a/b"
    assert hash(restored) == hash(a)


def test_unpickling_revalidates() -> None:
    """A tampered pickle cannot smuggle an invalid ID past the parser."""
    data = pickle.dumps(SpiffeId("spiffe://example.org/aaaa"), protocol=2)
    tampered = data.replace(b"spiffe://example.org/aaaa", b"spiffe://example.org/a/..")
    with pytest.raises(InvalidSpiffeIdError):
        pickle.loads(tampered)


def test_copy_and_deepcopy() -> None:
    a = SpiffeId("spiffe://example.org/a")
    assert copy.copy(a) == a
    assert copy.deepcopy(a) == a
