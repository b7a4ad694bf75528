"""A provisioned root with real services, shared by the integration tests.

Imported as a top-level module (``tests/`` has no ``__init__.py``), like
``tokenforge``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from spiffile.identity import Identity
from spiffile.provision import Root, add_service, init_root, load_identity


@dataclass
class Realm:
    """orders, billing and reports in one root; ghost in another root of the same trust domain."""

    root: Root
    stranger_root: Root
    orders: Identity
    billing: Identity
    ghost: Identity


def provision_realm(base: Path) -> Realm:
    root = init_root(base / "identity", "example.org")
    for name in ("orders", "billing", "reports"):
        add_service(root, name)
    stranger_root = init_root(base / "stranger", "example.org")
    add_service(stranger_root, "ghost")
    return Realm(
        root,
        stranger_root,
        load_identity(root, "orders"),
        load_identity(root, "billing"),
        load_identity(stranger_root, "ghost"),
    )
