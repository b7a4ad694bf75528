"""Vectors for the consumer's ``spiffe_sequence`` rule across reloads (PROFILE.md §4.4).

Each vector is the series of bundle documents a consumer loads, one after
another, from the same file; ``expected.accepted`` says which of them it must
use (the first loads the configuration; a refused one leaves the previous
document in use).  The documents bind no identity: only their sequence (and
trust domain) matters here.
"""

from __future__ import annotations

import json
from typing import Any

from conformance._forge import Forge

__all__ = ["reload_vectors"]

_NOT_JSON = "not a bundle\n"


def _document(trust_domain: str, sequence: int | None) -> str:
    document: dict[str, Any] = {"trust_domain": trust_domain, "spiffile_version": 1}
    if sequence is not None:
        document["spiffe_sequence"] = sequence
    document["identities"] = {}
    return json.dumps(document, indent=2) + "\n"


def reload_vectors(f: Forge) -> list[dict[str, Any]]:
    """Series of documents and which of them a consumer accepts."""
    td = f.trust_domain
    cases: list[tuple[str, str, list[int | str | None], list[bool]]] = [
        ("increasing", "Each document carries a higher sequence.", [5, 6, 9], [True] * 3),
        ("equal", "An equal sequence is accepted.", [5, 5], [True, True]),
        ("lower-refused", "A lower sequence is a rollback.", [5, 4], [True, False]),
        (
            "higher-after-a-refusal",
            "A refused rollback leaves the highest sequence as it was; a higher one is used.",
            [5, 4, 6],
            [True, False, True],
        ),
        (
            "missing-after-present-accepted",
            "A document without spiffe_sequence after one with it is accepted (with a "
            "warning): a producer that does not know the extension must not freeze consumers.",
            [5, None],
            [True, True],
        ),
        (
            "lower-after-missing-refused",
            "The highest sequence is remembered across a document without one: a stale copy "
            "carrying a lower number is still a rollback.",
            [5, None, 3],
            [True, True, False],
        ),
        (
            "equal-after-missing",
            "After a document without the member, the highest sequence itself is accepted.",
            [5, None, 5],
            [True, True, True],
        ),
        (
            "higher-after-missing",
            "After a document without the member, a higher sequence is accepted.",
            [5, None, 6],
            [True, True, True],
        ),
        (
            "present-after-missing",
            "A configuration loaded without a sequence accepts any sequence next.",
            [None, 0],
            [True, True],
        ),
        (
            "unusable-document-between",
            "A document that does not parse is refused and changes nothing.",
            [5, _NOT_JSON, 5],
            [True, False, True],
        ),
        (
            "trust-domain-change-refused",
            "A document for another trust domain never replaces the loaded one (7.3).",
            [5, "other.example", 6],
            [True, False, True],
        ),
    ]
    vectors = []
    for name, description, series, accepted in cases:
        documents = []
        for item in series:
            if item == _NOT_JSON:
                documents.append(_NOT_JSON)
            elif isinstance(item, str):
                documents.append(_document(item, 6))
            else:
                documents.append(_document(td, item))
        vectors.append(
            {
                "id": f"reload-sequence-{name}",
                "level": "spiffile",
                "description": description,
                "input": {"documents": documents},
                "expected": {"ok": True, "accepted": accepted},
            }
        )
    return vectors
