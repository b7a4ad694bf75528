"""Shared fixtures: small and generic (keys, a bundle of example.org identities).

Module-specific helpers live in their own test modules; token crafting for the
hostile-input tests lives in ``tests/tokenforge.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from bundledocs import BILLING as DOC_BILLING
from bundledocs import ORDERS as DOC_ORDERS
from bundledocs import fresh_jwk
from cryptography.hazmat.primitives.asymmetric import ec
from tokenforge import BILLING, LEDGER, MANY, ORDERS, Realm, make_realm

from spiffile.bundle import Bundle
from spiffile.keys import generate_private_key


@pytest.fixture
def make_p256_keys() -> Callable[[int], list[ec.EllipticCurvePrivateKey]]:
    """A factory: ``make_p256_keys(n)`` returns *n* fresh P-256 private keys."""

    def make(count: int) -> list[ec.EllipticCurvePrivateKey]:
        return [generate_private_key() for _ in range(count)]

    return make


@pytest.fixture
def make_example_realm() -> Callable[[Mapping[str, int]], Realm]:
    """A factory: ``make_example_realm({spiffe_id: key_count})`` -> a fresh :class:`Realm`.

    The realm's ``bundle`` binds that many fresh P-256 keys to each identity of
    ``example.org``; its ``keys`` hold the private keys per identity.
    """
    return lambda layout: make_realm(layout)


@pytest.fixture(scope="session")
def example_realm() -> Realm:
    """A shared, read-only realm in example.org.

    orders: 1 key, billing: 1 key, ledger: 2 keys, many: 50 keys.  Do not
    mutate its bundle's key objects; use :func:`make_example_realm` for that.
    """
    return make_realm({ORDERS: 1, BILLING: 1, LEDGER: 2, MANY: 50})


@pytest.fixture(scope="session")
def example_bundle(example_realm: Realm) -> Bundle:
    """The bundle of :func:`example_realm`."""
    return example_realm.bundle


@pytest.fixture
def good() -> dict[str, Any]:
    """A valid spiffile bundle document (tests/bundle): ORDERS with one key, BILLING with two."""
    return {
        "trust_domain": "example.org",
        "spiffile_version": 1,
        "identities": {
            DOC_ORDERS: {"keys": [fresh_jwk()]},
            DOC_BILLING: {"keys": [fresh_jwk(), fresh_jwk()]},
        },
    }


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The SPIRE tier is heavy: it runs only when a ``-m`` expression names it.

    ``pytest -m spire`` (or ``.ci/run``) runs it; the README's test command
    and ``pytest -m "not network"`` leave it out, reported as deselected.
    """
    if "spire" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("spire") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
