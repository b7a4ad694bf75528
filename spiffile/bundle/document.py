"""The trust bundle document: parse, validate, serialize, and look up bound keys.

A bundle binds each SPIFFE ID to the public keys that may speak for it
(PROFILE.md §4).  Parsing checks the document itself eagerly and
each identity entry lazily, on its first lookup: a 100k-identity bundle then
loads at the cost of ``json.loads`` and a verifier pays only for the entries
it meets.  A validated entry (its ``SpiffeId`` and public key objects) is
cached, so key objects are built once per bundle version, never per call.

A malformed entry is skipped with one warning, as the other implementations
do, so that one bad entry cannot take verification down for everyone.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec

from spiffile._quote import quote
from spiffile.bundle._compact import Compactor, entry_json, expand, stored
from spiffile.bundle._sliced import loads as sliced_loads
from spiffile.errors import InvalidBundleError, InvalidSpiffeIdError, UnknownIdentityError
from spiffile.keys import public_key_from_jwk
from spiffile.spiffe_id import SpiffeId, validate_trust_domain

__all__ = [
    "MAX_BUNDLE_BYTES",
    "BoundIdentity",
    "BoundKey",
    "Bundle",
]

_log = logging.getLogger("spiffile")

#: Bundles larger than this are refused before parsing.
MAX_BUNDLE_BYTES: Final = 128 * 1024 * 1024
SPIFFILE_VERSION: Final = 1


def _no_pause() -> None:
    pass


class BoundKey:
    """One public key bound to one identity.  ``public_key`` is built once."""

    __slots__ = ("jwk", "kid", "public_key")

    def __init__(self, kid: str, jwk: Mapping[str, Any], public_key: ec.EllipticCurvePublicKey):
        """Use :meth:`Bundle.keys_for`; this is built by the bundle."""
        self.kid = kid
        self.jwk = jwk
        self.public_key = public_key

    def __repr__(self) -> str:
        return f"BoundKey(kid={self.kid!r})"


class BoundIdentity:
    """A validated identity entry: its parsed ID and the keys bound to it (PROFILE.md §4.1)."""

    __slots__ = ("id", "keys")

    def __init__(self, spiffe_id: SpiffeId, keys: tuple[BoundKey, ...]) -> None:
        """Built by :meth:`Bundle.lookup`."""
        self.id = spiffe_id
        self.keys = keys

    def __repr__(self) -> str:
        return f"BoundIdentity({str(self.id)!r}, keys={len(self.keys)})"


def _validate_jwk(jwk: object) -> BoundKey:
    if not isinstance(jwk, dict):
        raise InvalidBundleError("a key is not a JSON object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidBundleError("a key has no 'kid'")
    if "use" in jwk and jwk["use"] != "jwt-svid":
        raise InvalidBundleError(f"key {kid[:64]!r} has 'use' other than 'jwt-svid'")
    if "alg" in jwk and jwk["alg"] != "ES256":
        raise InvalidBundleError(f"key {kid[:64]!r} has 'alg' other than 'ES256'")
    try:
        public_key = public_key_from_jwk(jwk)
    except InvalidBundleError as exc:
        raise InvalidBundleError(f"key {kid[:64]!r}: {exc}") from None
    return BoundKey(kid, jwk, public_key)


def _validate_entry(text: str, raw: object, trust_domain: str) -> BoundIdentity:
    try:
        spiffe_id = SpiffeId.parse(text)
    except InvalidSpiffeIdError as exc:
        raise InvalidBundleError(str(exc)) from None
    if spiffe_id.trust_domain != trust_domain:
        raise InvalidBundleError(f"{text[:200]} is not in trust domain {trust_domain}")
    if not isinstance(raw, dict):
        raise InvalidBundleError(f"{text[:200]}: entry is not a JSON object")
    jwks = raw.get("keys")
    if not isinstance(jwks, list) or not jwks:
        raise InvalidBundleError(f"{text[:200]}: 'keys' must be a non-empty list")
    keys = tuple(_validate_jwk(jwk) for jwk in jwks)
    if len({key.kid for key in keys}) != len(keys):
        raise InvalidBundleError(f"{text[:200]}: two keys share one 'kid'")
    return BoundIdentity(spiffe_id, keys)


def _top_level(document: object) -> tuple[str, dict[str, Any], int | None, dict[str, Any]]:
    """Check a decoded document's top level: (trust domain, identities, sequence, extra members)."""
    if not isinstance(document, dict):
        raise InvalidBundleError("bundle document must be a JSON object")
    version = document.get("spiffile_version")
    if type(version) is not int or version != SPIFFILE_VERSION:
        # Bounded: the message becomes a log line when a reload is refused.
        shown = type(version).__name__ if isinstance(version, dict | list) else repr(version)
        raise InvalidBundleError(
            f"unsupported spiffile_version {shown[:20]}; this reader knows version 1"
        )
    trust_domain = document.get("trust_domain")
    try:
        validate_trust_domain(trust_domain)  # type: ignore[arg-type]
    except InvalidSpiffeIdError as exc:
        raise InvalidBundleError(f"bad trust_domain: {exc}") from None
    identities = document.get("identities")
    if not isinstance(identities, dict):
        raise InvalidBundleError("'identities' must be a JSON object")
    sequence = document.get("spiffe_sequence")
    if sequence is not None and (type(sequence) is not int or sequence < 0):
        raise InvalidBundleError("'spiffe_sequence' must be a non-negative integer")
    extra = {
        k: v
        for k, v in document.items()
        if k not in ("trust_domain", "spiffile_version", "identities", "spiffe_sequence")
    }
    return trust_domain, identities, sequence, extra  # type: ignore[return-value]


class Bundle:
    """An immutable trust bundle.  Producers derive new bundles with the ``with_*`` methods."""

    __slots__ = ("_extra", "_malformed", "_raw", "_sequence", "_trust_domain", "_valid")

    def __init__(
        self,
        trust_domain: str,
        identities: dict[str, Any],
        sequence: int | None,
        extra: Mapping[str, Any] | None,
    ) -> None:
        """Not public: build bundles with :meth:`parse`, :meth:`from_document` or :meth:`empty`.

        A tuple among *identities* is a compact entry
        (:mod:`spiffile.bundle._compact`); the public constructors make sure
        only they put tuples there.
        """
        self._trust_domain = trust_domain
        self._raw = identities
        self._sequence = sequence
        self._extra = dict(extra or {})
        self._valid: dict[str, BoundIdentity] = {}
        self._malformed: dict[str, str] = {}

    # -- construction ------------------------------------------------------------

    @classmethod
    def empty(cls, trust_domain: str) -> Bundle:
        """A bundle with no identities (what ``init_root`` writes)."""
        return cls(validate_trust_domain(trust_domain), {}, None, None)

    @classmethod
    def parse(
        cls, data: bytes | str, *, pause: Callable[[], None] | None = None, slim: bool = False
    ) -> Bundle:
        """Parse a bundle document, raising :class:`InvalidBundleError` if it is unusable.

        With *pause*, the document is parsed in slices of about 128 KiB and
        *pause* is called between them (:mod:`spiffile.bundle._sliced`): a
        reloading thread passes a function that gives the GIL away, so the
        threads verifying against the previous bundle keep running
        (PROFILE.md §7.2).  The result and the errors are the same either way.

        *slim* is for consumers: members the profile does not define, in the
        document, in an entry or in a JWK, are checked but not kept (they are
        ignored, PROFILE.md §4.1), so the bundle's memory follows its
        identities and the parse never holds more than a slice of them.  A
        slim bundle verifies exactly as the whole one; its :attr:`extra` is
        empty and :meth:`to_document` lacks what was dropped, so a producer
        never writes one back.
        """
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("bundle data must be bytes or str")
        if len(data) > MAX_BUNDLE_BYTES:
            raise InvalidBundleError(f"bundle is larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            text = bytes(data).decode("utf-8")
        except ValueError as exc:
            raise InvalidBundleError(f"bundle is not valid UTF-8 JSON: {exc}") from None
        # Producer-shaped entries are stored compactly while parsing (see
        # "Compact entries"): the JSON dicts they came from are freed as soon as they are
        # built, so the peak stays near the result, and the load costs about
        # what json.loads alone costs (fewer live containers for the garbage
        # collector to traverse pays for the hook).
        if slim and pause is None:
            pause = _no_pause
        compactor = Compactor()
        try:
            if pause is None:
                document = json.loads(text, object_hook=compactor.hook)
            else:
                document = sliced_loads(text, compactor=compactor, pause=pause, slim=slim)
        except RecursionError:
            compactor.jwks = -1  # The hook's own frames may have tipped it: retry plainly.
            document = None
        except ValueError as exc:
            raise InvalidBundleError(f"bundle is not valid UTF-8 JSON: {exc}") from None
        if not compactor.accounted(document):
            try:
                if pause is None:
                    document = json.loads(text)
                else:
                    document = sliced_loads(text, compactor=None, pause=pause, slim=slim)
            except (ValueError, RecursionError) as exc:
                raise InvalidBundleError(f"bundle is not valid UTF-8 JSON: {exc}") from None
        return cls(*_top_level(document))

    @classmethod
    def from_document(cls, document: object) -> Bundle:
        """Validate the top level of a decoded bundle document (entries are checked lazily)."""
        trust_domain, identities, sequence, extra = _top_level(document)
        # A copy, so that the caller's later edits cannot change this bundle;
        # a tuple (not a JSON value) becomes the list JSON would have made of
        # it, so that it is never read as a compact entry.
        identities = {
            text: list(entry) if type(entry) is tuple else entry
            for text, entry in identities.items()
        }
        return cls(trust_domain, identities, sequence, extra)

    # -- reading -------------------------------------------------------------------

    @property
    def trust_domain(self) -> str:
        """The trust domain every identity of this bundle belongs to."""
        return self._trust_domain

    @property
    def sequence(self) -> int | None:
        """The ``spiffe_sequence`` extension, or ``None`` when the producer did not write one."""
        return self._sequence

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, spiffe_id: object) -> bool:
        try:
            self.lookup(str(spiffe_id))
        except UnknownIdentityError:
            return False
        return True

    def __iter__(self) -> Iterator[SpiffeId]:
        return iter(self.identities())

    def bundle_for(self, trust_domain: str) -> Bundle:
        """The trust-source protocol (``spiffile.trust``): this bundle, for its own domain only."""
        if trust_domain != self._trust_domain:
            raise UnknownIdentityError(
                f"no trust document for trust domain {trust_domain[:255]!r} "
                f"(this bundle is for {self._trust_domain!r})"
            )
        return self

    def keys_for(self, spiffe_id: str | SpiffeId) -> tuple[BoundKey, ...]:
        """The keys bound to *spiffe_id*, or :class:`UnknownIdentityError`."""
        return self.lookup(spiffe_id).keys

    def lookup(self, spiffe_id: str | SpiffeId) -> BoundIdentity:
        """The validated entry of *spiffe_id*, or :class:`UnknownIdentityError`.

        An entry is validated on its first lookup and kept for the life of
        this bundle; a malformed one is skipped with one warning and reads as
        unknown (PROFILE.md §4.3).
        """
        text = spiffe_id if type(spiffe_id) is str else str(spiffe_id)
        entry = self._valid.get(text)
        if entry is not None:
            return entry
        if text in self._malformed or text not in self._raw:
            raise UnknownIdentityError(f"{quote(text, 200)} is not in the bundle")
        try:
            entry = _validate_entry(text, stored(self._raw[text]), self._trust_domain)
        except InvalidBundleError as exc:
            self._malformed[text] = str(exc)
            _log.warning("spiffile: skipping malformed bundle entry: %s", exc)
            raise UnknownIdentityError(f"{quote(text, 200)} has a malformed bundle entry") from None
        self._valid[text] = entry
        return entry

    def identities(self) -> list[SpiffeId]:
        """Every identity with a valid entry, sorted."""
        found = []
        for text in sorted(self._raw):
            try:
                found.append(self.lookup(text).id)
            except UnknownIdentityError:
                continue
        return found

    @property
    def warnings(self) -> list[str]:
        """Why each malformed entry was skipped (validates every entry)."""
        self.identities()
        return [self._malformed[text] for text in sorted(self._malformed)]

    # -- deriving (producers) ----------------------------------------------------

    def _derive(self, identities: dict[str, Any], sequence: int | None) -> Bundle:
        return Bundle(self._trust_domain, identities, sequence, self._extra)

    def with_keys(self, spiffe_id: str | SpiffeId, jwks: Sequence[Mapping[str, Any]]) -> Bundle:
        """A copy of this bundle whose entry for *spiffe_id* holds exactly *jwks*."""
        text = str(spiffe_id)
        entry = {"keys": [dict(jwk) for jwk in jwks]}
        _validate_entry(text, entry, self._trust_domain)
        identities = dict(self._raw)
        identities[text] = entry
        return self._derive(identities, self._sequence)

    def without_identity(self, spiffe_id: str | SpiffeId) -> Bundle:
        """A copy of this bundle without *spiffe_id* (absent: unchanged copy)."""
        identities = dict(self._raw)
        identities.pop(str(spiffe_id), None)
        return self._derive(identities, self._sequence)

    @property
    def extra(self) -> Mapping[str, Any]:
        """Top-level members beyond the profile's, kept as read (extensions, e.g. X.509)."""
        return copy.deepcopy(self._extra)

    def with_extra(self, name: str, value: Any) -> Bundle:
        """A copy carrying the extension member *name* (not one of the profile's own members)."""
        if name in ("trust_domain", "spiffile_version", "identities", "spiffe_sequence"):
            raise ValueError(f"{name!r} is a profile member, not an extension")
        extra = dict(self._extra)
        extra[name] = copy.deepcopy(value)
        return Bundle(self._trust_domain, dict(self._raw), self._sequence, extra)

    def with_sequence(self, sequence: int) -> Bundle:
        """A copy carrying ``spiffe_sequence`` = *sequence*."""
        if type(sequence) is not int or sequence < 0:
            raise ValueError("sequence must be a non-negative int")
        return self._derive(dict(self._raw), sequence)

    def jwks_for(self, spiffe_id: str | SpiffeId) -> list[dict[str, Any]]:
        """Copies of the JWKs bound to *spiffe_id* (producers edit these)."""
        return [dict(key.jwk) for key in self.keys_for(spiffe_id)]

    def _head(self) -> dict[str, Any]:
        """The document's members other than ``identities``, in document order."""
        document: dict[str, Any] = dict(self._extra)
        document["trust_domain"] = self._trust_domain
        document["spiffile_version"] = SPIFFILE_VERSION
        if self._sequence is not None:
            document["spiffe_sequence"] = self._sequence
        return document

    def to_document(self) -> dict[str, Any]:
        """The bundle as a JSON-ready dict; entries keep exactly what was read.

        A fresh copy: editing it leaves this bundle unchanged, whether an
        entry was stored compactly (expanded anew) or as parsed (deep-copied).
        """
        document = copy.deepcopy(self._head())
        raw = self._raw
        document["identities"] = {
            text: expand(raw[text])
            if type(raw[text]) is tuple
            else copy.deepcopy(stored(raw[text]))
            for text in sorted(raw)
        }
        return document

    def to_json(self) -> bytes:
        """UTF-8 JSON, one identity per line, identities sorted, with a trailing newline.

        Written line by line because ``json.dumps(indent=...)`` falls back to
        the pure-Python encoder, several times slower on a large bundle, and
        every producer write pays it.  Each line still goes through
        ``json.dumps`` (or its equal, :func:`~spiffile.bundle._compact.entry_json`).
        """
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}," for k, v in self._head().items()]
        raw = self._raw
        entries = [f"    {json.dumps(k)}: {entry_json(raw[k])}" for k in sorted(raw)]
        body = ",\n".join(entries)
        lines.append(f'  "identities": {{\n{body}\n  }}' if entries else '  "identities": {}')
        return ("{\n" + "\n".join(lines) + "\n}\n").encode("utf-8")
