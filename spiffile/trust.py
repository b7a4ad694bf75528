"""Trust sources: which document speaks for a trust domain, and how much it may say.

A verifier asks one question of its trust: "what is the trust document of
trust domain T?" (go-spiffe's ``jwtbundle.Source`` asks the same).  Anything
with a ``bundle_for(trust_domain)`` method answers it (:class:`TrustSource`):

* a spiffile :class:`~spiffile.bundle.Bundle`, for its own trust domain;
* a :class:`~spiffile.bundle.spiffe.SpiffeBundle`, for its own trust domain;
* a :class:`TrustSet`, one document per trust domain (federation);
* ``spiffile.federation.TrustDirectory``, a hot-reloading directory of them.

The two kinds of document give two kinds of trust (PROFILE.md §12): a
spiffile bundle binds each key to one identity, a SPIFFE bundle holds
authorities that may sign for any identity of their domain.  The kind is
decided by the document's shape, never by a token, and the verified
:class:`~spiffile.svid.Caller` says which kind vouched for it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeAlias

from spiffile.bundle.document import Bundle
from spiffile.bundle.spiffe import (
    SpiffeBundle,
    is_bundle_map,
    load_json_object,
    parse_bundle_map,
)
from spiffile.caller import TrustKind
from spiffile.errors import InvalidBundleError, InvalidSpiffeIdError, UnknownIdentityError
from spiffile.spiffe_id import validate_trust_domain

__all__ = [
    "TrustDocument",
    "TrustKind",
    "TrustSet",
    "TrustSource",
    "kind_of",
    "parse_trust_document",
    "refuse_rollback",
]

#: What a trust source hands out for one trust domain.
TrustDocument: TypeAlias = Bundle | SpiffeBundle


class TrustSource(Protocol):
    """Anything that can name the trust document of a trust domain."""

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        """The document for *trust_domain*, or :class:`UnknownIdentityError` when there is none."""
        ...


def kind_of(document: TrustDocument) -> TrustKind:
    """The kind of trust *document* gives."""
    return TrustKind.SPIFFE if isinstance(document, SpiffeBundle) else TrustKind.SPIFFILE


class TrustSet:
    """An immutable set of trust documents, one per trust domain."""

    __slots__ = ("_documents",)

    def __init__(self, documents: Mapping[str, TrustDocument] | None = None) -> None:
        """*documents* maps each trust domain name to its document (which must be for it)."""
        checked: dict[str, TrustDocument] = {}
        for trust_domain, document in (documents or {}).items():
            if not isinstance(document, Bundle | SpiffeBundle):
                raise TypeError("a trust document is a Bundle or a SpiffeBundle")
            if document.trust_domain != trust_domain:
                raise ValueError(
                    f"the document for {trust_domain!r} is for {document.trust_domain!r}"
                )
            checked[trust_domain] = document
        self._documents = checked

    @classmethod
    def of(cls, *documents: TrustDocument) -> TrustSet:
        """A set of *documents*, each under its own trust domain (one each)."""
        mapping: dict[str, TrustDocument] = {}
        for document in documents:
            if document.trust_domain in mapping:
                raise ValueError(f"two documents for trust domain {document.trust_domain!r}")
            mapping[document.trust_domain] = document
        return cls(mapping)

    def bundle_for(self, trust_domain: str) -> TrustDocument:
        """The trust-source protocol: this set's document for *trust_domain*."""
        document = self._documents.get(trust_domain)
        if document is None:
            raise UnknownIdentityError(f"no trust document for trust domain {trust_domain[:255]!r}")
        return document

    @property
    def trust_domains(self) -> list[str]:
        """The trust domains this set holds, sorted."""
        return sorted(self._documents)

    def __len__(self) -> int:
        return len(self._documents)

    def __iter__(self) -> Iterator[str]:
        return iter(self.trust_domains)

    def __contains__(self, trust_domain: object) -> bool:
        return trust_domain in self._documents

    def __repr__(self) -> str:
        kinds = ", ".join(f"{td}: {kind_of(d)}" for td, d in sorted(self._documents.items()))
        return f"TrustSet({{{kinds}}})"


def _from_object(document: dict[str, Any], trust_domain: str) -> TrustDocument:
    if "spiffile_version" in document:
        bundle = Bundle.from_document(document)
        if bundle.trust_domain != trust_domain:
            raise InvalidBundleError(
                f"the spiffile bundle is for {bundle.trust_domain!r}, not {trust_domain!r}"
            )
        return bundle
    if "keys" in document:
        return SpiffeBundle.from_document(document, trust_domain)
    if is_bundle_map(document):
        bundles = parse_bundle_map(document)
        found = bundles.get(trust_domain)
        if found is None:
            raise InvalidBundleError(f"the bundle map holds no bundle for {trust_domain!r}")
        return found
    raise InvalidBundleError(
        "not a trust document: expected a spiffile bundle ('spiffile_version'), "
        "a SPIFFE bundle (a JWK Set with 'keys') or a spiffe-helper bundle map"
    )


def parse_trust_document(
    data: bytes | str,
    trust_domain: str,
    *,
    pause: Callable[[], None] | None = None,
    slim: bool = False,
) -> TrustDocument:
    """Parse the trust document of *trust_domain*, whichever kind it is, by its shape.

    * an object with ``spiffile_version``: a spiffile bundle (PROFILE.md §4),
      which must be for *trust_domain*;
    * an object with ``keys``: a SPIFFE bundle (SPIFFE Trust Domain and Bundle §4);
    * an object whose members are all strings: spiffe-helper's bundle map,
      from which the member for *trust_domain* is taken.

    *pause* and *slim* are :meth:`Bundle.parse`'s, for a spiffile bundle:
    parsed in slices with *pause* between them, and members nobody reads
    not kept (a verifier's copy).  The other kinds are parsed whole by the
    strict JSON reader (it refuses repeated members, which the sliced parse
    does not look for; they are capped far lower).  The result and the
    errors are the same either way.

    Raises :class:`InvalidBundleError` for anything else.
    """
    try:
        validate_trust_domain(trust_domain)
    except InvalidSpiffeIdError as exc:
        raise InvalidBundleError(f"bad trust domain: {exc}") from None
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if isinstance(data, bytes | bytearray | memoryview) and b'"spiffile_version"' in data:
        # The spiffile reader has its own size cap and compact storage for
        # large bundles: let it parse what looks like its document.
        try:
            bundle = Bundle.parse(bytes(data), pause=pause, slim=slim)
        except InvalidBundleError:
            document = load_json_object(data, "trust document")
            if "spiffile_version" in document:
                raise
            return _from_object(document, trust_domain)  # The name sat inside a value.
        if bundle.trust_domain != trust_domain:
            raise InvalidBundleError(
                f"the spiffile bundle is for {bundle.trust_domain!r}, not {trust_domain!r}"
            )
        return bundle
    return _from_object(load_json_object(data, "trust document"), trust_domain)


def refuse_rollback(current: TrustDocument, new: TrustDocument) -> None:
    """Refuse a reload that goes back in ``spiffe_sequence`` or changes trust domain.

    The same rule for both kinds (PROFILE.md §4.4): once a sequence has been
    seen, a lower one, or none, is a rollback that could restore a revoked key.
    """
    if new.trust_domain != current.trust_domain:
        raise InvalidBundleError(
            f"trust domain changed from {current.trust_domain} to {new.trust_domain}"
        )
    if current.sequence is not None and (new.sequence is None or new.sequence < current.sequence):
        raise InvalidBundleError(
            f"bundle rollback refused: spiffe_sequence {new.sequence} < {current.sequence}"
        )
