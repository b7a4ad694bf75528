"""Tests for spiffile/authorize.py: the constructors, fail-closed results, ``allow=`` coercion."""

from __future__ import annotations

import re
from typing import Any

import pytest

from spiffile import authorize
from spiffile.errors import ConfigurationError, InvalidSpiffeIdError
from spiffile.spiffe_id import SpiffeId, TrustDomain

ORDERS = SpiffeId("spiffe://example.org/orders")
BILLING = SpiffeId("spiffe://example.org/billing")
REPORTS = SpiffeId("spiffe://example.org/team/reports")
FOREIGN = SpiffeId("spiffe://other.org/orders")
LOOKALIKE = SpiffeId("spiffe://example.org.evil/orders")
EVERYONE = (ORDERS, BILLING, REPORTS, FOREIGN, LOOKALIKE)


def allowed(check: authorize.Authorizer) -> set[SpiffeId]:
    return {spiffe_id for spiffe_id in EVERYONE if check(spiffe_id)}


def test_any_id() -> None:
    assert allowed(authorize.any_id()) == set(EVERYONE)
    assert repr(authorize.any_id()) == "any_id()"


def test_one_of_takes_text_and_ids() -> None:
    check = authorize.one_of("spiffe://example.org/orders", BILLING)
    assert allowed(check) == {ORDERS, BILLING}
    assert repr(check) == "one_of(spiffe://example.org/billing, spiffe://example.org/orders)"


def test_one_of_parses_at_construction() -> None:
    with pytest.raises(InvalidSpiffeIdError):
        authorize.one_of("spiffe://example.org/orders/")
    with pytest.raises(ConfigurationError):
        authorize.one_of()
    with pytest.raises(TypeError):
        authorize.one_of(42)  # type: ignore[arg-type]


def test_member_of_compares_whole_names() -> None:
    assert allowed(authorize.member_of("example.org")) == {ORDERS, BILLING, REPORTS}
    assert allowed(authorize.member_of(TrustDomain("other.org"))) == {FOREIGN}
    with pytest.raises(InvalidSpiffeIdError):
        authorize.member_of("Example.org")


def test_matching_a_regex_must_match_the_whole_id() -> None:
    check = authorize.matching(re.compile(r"spiffe://example\.org/team/[a-z]+"))
    assert allowed(check) == {REPORTS}
    prefix_only = authorize.matching(re.compile(r"spiffe://example\.org"))
    assert allowed(prefix_only) == set()
    assert "matching(" in repr(check)


def test_matching_a_predicate() -> None:
    def on_team(spiffe_id: SpiffeId) -> bool:
        return spiffe_id.path.startswith("/team/")

    assert allowed(authorize.matching(on_team)) == {REPORTS}
    assert "on_team" in repr(authorize.matching(on_team))
    with pytest.raises(TypeError):
        authorize.matching("spiffe://example.org/orders")  # type: ignore[arg-type]


@pytest.mark.parametrize("result", [None, 1, "yes", [ORDERS], object()])
def test_only_true_allows(result: Any) -> None:
    """A predicate that returns something truthy but not True denies: fail closed."""
    assert allowed(authorize.matching(lambda _: result)) == set()
    assert allowed(authorize.coerce(lambda _: result)) == set()


def test_a_raising_authorizer_does_not_allow() -> None:
    def broken(spiffe_id: SpiffeId) -> bool:
        raise RuntimeError("policy store down")

    with pytest.raises(RuntimeError):
        authorize.coerce(broken)(ORDERS)


def test_any_of() -> None:
    check = authorize.any_of(authorize.one_of(ORDERS), authorize.member_of("other.org"))
    assert allowed(check) == {ORDERS, FOREIGN}
    with pytest.raises(ConfigurationError):
        authorize.any_of()


def test_all_of() -> None:
    check = authorize.all_of(authorize.member_of("example.org"), authorize.matching(on_team))
    assert allowed(check) == {REPORTS}
    assert repr(check).startswith("all_of(member_of(example.org), matching(")
    assert authorize.all_of(authorize.any_id())(FOREIGN) is True
    with pytest.raises(ConfigurationError):
        authorize.all_of()


def on_team(spiffe_id: SpiffeId) -> bool:
    return spiffe_id.path.startswith("/team/")


# -- coerce: what every allow= accepts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        (None, set(EVERYONE)),
        ("spiffe://example.org/orders", {ORDERS}),
        ("orders", {ORDERS}),
        ("/orders", {ORDERS}),
        ("team/reports", {REPORTS}),
        (BILLING, {BILLING}),
        (TrustDomain("other.org"), {FOREIGN}),
        (["orders", "billing"], {ORDERS, BILLING}),
        (("orders", "spiffe://other.org/orders"), {ORDERS, FOREIGN}),
        ({"team/reports"}, {REPORTS}),
        (["orders", authorize.member_of("other.org")], {ORDERS, FOREIGN}),
        ([TrustDomain("other.org")], {FOREIGN}),
        (authorize.one_of(BILLING), {BILLING}),
        ((name for name in ["billing"]), {BILLING}),
    ],
)
def test_coerce(allow: Any, expected: set[SpiffeId]) -> None:
    assert allowed(authorize.coerce(allow, "example.org")) == expected


def test_bare_names_follow_the_given_trust_domain() -> None:
    assert allowed(authorize.coerce("orders", TrustDomain("other.org"))) == {FOREIGN}


def test_bare_name_without_a_trust_domain_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="bare name"):
        authorize.coerce(["orders"])
    assert allowed(authorize.coerce(["spiffe://example.org/orders"])) == {ORDERS}


@pytest.mark.parametrize(
    "allow",
    [
        "SPIFFE://example.org/orders",  # A mis-cased scheme is an error, never a bare name.
        "Spiffe://example.org/orders",
        "orders/",
        "a/../orders",
        ["orders", "bad name"],
        "spiffe://example.org/orders?x",
    ],
)
def test_coerce_refuses_invalid_ids(allow: Any) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        authorize.coerce(allow, "example.org")


def test_coerce_refuses_an_empty_allow_list() -> None:
    empties: list[Any] = [[], (), set()]
    for empty in empties:
        with pytest.raises(ConfigurationError, match="empty"):
            authorize.coerce(empty, "example.org")


@pytest.mark.parametrize("allow", [b"spiffe://example.org/orders", 42, True, [42], [None]])
def test_coerce_refuses_other_types(allow: Any) -> None:
    with pytest.raises(TypeError):
        authorize.coerce(allow, "example.org")


def test_coerce_checks_the_trust_domain() -> None:
    with pytest.raises(InvalidSpiffeIdError):
        authorize.coerce("orders", "Example.org")


def test_authorizers_are_plain_callables_for_tls_reuse() -> None:
    """What a TLS peer check needs: ``check(peer_id) -> bool``, nothing else."""
    check = authorize.coerce(["orders"], "example.org")
    result = check(ORDERS)
    assert result is True
    assert check(BILLING) is False
