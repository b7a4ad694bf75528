"""The strict bundle linter behind ``spiffile check``.

A reader is lenient where leniency keeps verification up (a malformed entry
is skipped, PROFILE.md §4.3); a producer should never write what a reader has
to forgive.  The linter reports all of it.
"""

from __future__ import annotations

from spiffile._wire import WireError, loads_object
from spiffile.bundle._compact import JWK_MEMBERS
from spiffile.bundle.document import MAX_BUNDLE_BYTES, Bundle
from spiffile.errors import InvalidBundleError
from spiffile.keys import jwk_thumbprint

__all__ = ["lint_bundle"]


def lint_bundle(data: bytes) -> list[str]:
    """Every problem in a bundle document, strictly (``spiffile check``); ``[]`` when clean.

    Stricter than a reader: besides what makes the document or an entry
    unusable, it reports duplicate JSON members, JWKs missing ``use``/``alg``,
    a ``kid`` that is not the RFC 7638 thumbprint, and one key bound to two
    identities (a key must vouch for one identity only).
    """
    if len(data) > MAX_BUNDLE_BYTES:
        return [f"bundle is larger than {MAX_BUNDLE_BYTES} bytes"]
    try:
        document = loads_object(data, cap_nesting=False)
    except WireError as exc:
        return [f"the document {exc}"]
    try:
        bundle = Bundle.from_document(document)
    except InvalidBundleError as exc:
        return [str(exc)]
    problems = list(bundle.warnings)
    owners: dict[str, str] = {}
    for spiffe_id in bundle.identities():
        for key in bundle.keys_for(spiffe_id):
            missing = [m for m in JWK_MEMBERS if m not in key.jwk]
            if missing:
                problems.append(f"{spiffe_id}: key {key.kid[:64]!r} lacks {', '.join(missing)}")
            if key.kid != jwk_thumbprint(key.jwk):
                problems.append(
                    f"{spiffe_id}: key {key.kid[:64]!r} 'kid' is not its RFC 7638 thumbprint"
                )
            thumbprint = jwk_thumbprint(key.jwk)
            other = owners.setdefault(thumbprint, str(spiffe_id))
            if other != str(spiffe_id):
                problems.append(f"one key is bound to both {other} and {spiffe_id}")
    return problems
