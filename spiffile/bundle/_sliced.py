"""A JSON parse that gives the interpreter back between small slices of the document.

CPython's C JSON scanner holds the GIL for a whole ``json.loads``: a 100k-identity
bundle (~28 MB) is ~0.25 s during which no other thread of the process runs, so
every ``verify`` of a server would wait for a reload.  :func:`loads` returns what
``json.loads(text, object_hook=compactor.hook)`` returns (the same value, the same
``JSONDecodeError`` message and position) but parses it in slices of about
:data:`SLICE_CHARS` characters, calling *pause* between them so the caller can
give the GIL away (PROFILE.md §7.2: reloading must not stall verification).

How: the containers at depth 0 and 1 (the document, ``identities``, an
extension member) are walked in Python; what lies inside them goes to the C
scanner in *chunks*: a run of whole members ``m1, ..., mk`` is cut at a
proposed ``,`` at least one slice further on and parsed as ``{m1, ..., mk}``.
The proposal needs no understanding of strings or nesting: a chunk that starts
at a member boundary and parses completely as a non-empty object (or array)
ended at a member boundary too, because JSON is tokenized left to right
without look-ahead, so the members are exactly those the whole parse would
have found.  When a proposal was wrong (it fell inside a string or a nested
value), the members up to it are parsed one by one instead, each with the C
scanner.  Anything that is not valid JSON sends the container to the standard
library's pure-Python ``JSONObject``/``JSONArray`` (kept identical to the C
scanner by CPython), which raises exactly the error a whole parse raises.

Compaction (:class:`~spiffile.bundle._compact.Compactor`) works per chunk: each
chunk has its own compactor, whose counts are added to the caller's when the
chunk is kept, and the hook is called on the assembled containers as the C
scanner calls it, so :meth:`Compactor.accounted` judges the result as it
judges a whole parse.

The bound this gives: between two calls of *pause* the C scanner runs over one
chunk (at most two slices) or one member of a walked container; a single
member deeper than depth 1 that is itself huge (a 100 MB string inside an
entry) is still parsed in one piece.  Nesting deeper than the interpreter's
recursion limit raises ``RecursionError`` as a whole parse does, a few levels
later or earlier (where a whole parse stops depends on the caller's own stack).

Pure: no clock, no I/O; *pause* is the caller's.
"""

from __future__ import annotations

import json
import json.decoder
import json.scanner
import re
from collections.abc import Callable
from typing import Any, Final

from spiffile.bundle._compact import JWK_READ, Compactor, slim_entry, slim_jwk

__all__ = ["SLICE_CHARS", "loads"]

#: Characters of document between two calls of *pause* (about 1 ms of parsing here).
SLICE_CHARS: Final = 128 * 1024

_Scan = Callable[[str, int], tuple[Any, int]]
# The standard library's own pieces (typeshed does not list them): the
# whitespace matcher, the string scanner and the pure-Python containers.
_decoder: Any = json.decoder
_skip: Callable[[str, int], re.Match[str]] = _decoder.WHITESPACE.match
_scanstring: Callable[[str, int, bool], tuple[str, int]] = _decoder.scanstring
_json_object: Callable[..., tuple[Any, int]] = _decoder.JSONObject
_json_array: Callable[..., tuple[Any, int]] = _decoder.JSONArray
_make_scanner: Callable[[json.JSONDecoder], _Scan] = getattr(json.scanner, "make_scanner")  # noqa: B009
#: Where a run of object members may end: a ``,`` after a ``}`` and before a
#: ``"`` (an identity entry ends with ``}``, the next name starts with ``"``).
_OBJECT_CUT: Final = re.compile(r'\}[ \t\n\r]*(,)[ \t\n\r]*"')
_ARRAY_CUT: Final = re.compile(r",")


class _InvalidError(Exception):
    """The container is not valid JSON: let the standard library say why."""


# What a walked value is for: its *role* decides how it is parsed and kept.
_DOC: Final = 0  # The document: a container walked in Python.
_WALK: Final = 1  # A member of the document: a container walked in Python.
_LEAF: Final = 2  # Anything deeper: the C scanner, whole or in chunks.
_CHECK: Final = 3  # Slim: a member nothing reads: checked, never kept.
_HELD: Final = 4  # Slim: a member read for its type: a container becomes an empty one.
_ENTRIES: Final = 5  # Slim: ``identities``, each entry slimmed.
_ENTRY: Final = 6  # Slim: one entry: ``keys`` kept.
_KEYS: Final = 7  # Slim: an entry's ``keys``: a list of JWKs.
_JWK: Final = 8  # Slim: one JWK: the members verification reads.
#: What each slim role walks (a container of the other kind is only checked).
_WALKS: Final = {_ENTRIES: "{", _ENTRY: "{", _KEYS: "[", _JWK: "{"}
#: Containers nested deeper than this inside a checked value are checked by
#: the C scanner in one piece (their objects exist for that moment only).
_CHECK_DEPTH: Final = 32
_PROFILE_MEMBERS: Final = frozenset(
    ("trust_domain", "spiffile_version", "identities", "spiffe_sequence")
)


class _Walk:
    """One parse: the scanners, the slimming and the position of the next pause."""

    __slots__ = (
        "_compactor",
        "_hook",
        "_memo",
        "_next_pause",
        "_pause",
        "_plain",
        "_scan",
        "_slice",
        "_slim",
    )

    def __init__(
        self,
        compactor: Compactor | None,
        pause: Callable[[], None],
        slice_chars: int,
        slim: bool,
    ) -> None:
        self._compactor = compactor
        self._hook = None if compactor is None else compactor.hook
        self._scan = _scanner(compactor)
        self._plain = _scanner(None)
        self._memo: dict[str, str] = {}
        self._pause = pause
        self._slice = slice_chars
        self._next_pause = slice_chars
        self._slim = slim

    def scan(self, s: str, idx: int, role: int = _DOC) -> tuple[Any, int]:
        """The value at *idx*: as the C scanner's ``scan_once`` (StopIteration when none)."""
        if role == _CHECK:
            return None, self._check(s, idx, 0)
        if role != _LEAF:
            char = s[idx : idx + 1]
            if (char == "{" or char == "[") and (
                role == _HELD
                or _WALKS.get(role, char) != char
                or (role == _DOC and self._slim and char == "[")
            ):
                # Read for its type only (PROFILE.md §4.1): an empty one will do.
                return ({} if char == "{" else []), self._check(s, idx, 0)
            if char == "{":
                try:
                    return self._object(s, idx + 1, role)
                except _InvalidError:
                    return _json_object(
                        (s, idx + 1), True, self._fallback(role), self._hook, None, self._memo
                    )
            if char == "[":
                try:
                    return self._array(s, idx + 1, role)
                except _InvalidError:
                    return _json_array((s, idx + 1), self._fallback(role))
        value, end = self._scan(s, idx)
        self._leaf_done(end)
        return value, end

    def _leaf_done(self, end: int) -> None:
        if end >= self._next_pause:
            self._next_pause = end + self._slice
            self._pause()

    def _fallback(self, role: int) -> _Scan:
        """What the standard library's containers scan with, to say why *role* is not JSON."""
        if self._slim:
            # Only checked: the error is the same, and a hostile document
            # costs no more memory for being broken.
            return lambda s, idx: (None, self._check(s, idx, 1))
        inner = self._element_role(role)
        return lambda s, idx: self.scan(s, idx, inner)

    def _member_role(self, role: int, key: str) -> int:
        if role == _DOC:
            if not self._slim:
                return _WALK
            if key == "identities":
                return _ENTRIES
            return _HELD if key in _PROFILE_MEMBERS else _CHECK
        if role == _ENTRIES:
            return _ENTRY
        if role == _ENTRY:
            return _KEYS if key == "keys" else _CHECK
        if role == _JWK:
            return _HELD if key in JWK_READ else _CHECK
        return _LEAF

    def _element_role(self, role: int) -> int:
        if role == _DOC:
            return _WALK
        return _JWK if role == _KEYS else _LEAF

    def _kept(self, role: int, value: Any) -> Any:
        """A member's or element's value as *role*'s container keeps it (slim)."""
        if role == _ENTRIES:
            return slim_entry(value)
        if role == _KEYS:
            return slim_jwk(value)
        if role == _JWK:
            return value if type(value) is str else 0
        return value

    def _chunk(self, text: str, kind: type, keep: bool = True) -> Any:
        """*text* parsed by its own compactor, or None unless it is a non-empty *kind*."""
        compactor = None if self._compactor is None or not keep else Compactor()
        try:
            value, end = _scanner(compactor)(text, 0)
        except (StopIteration, ValueError):
            return None
        if end != len(text) or type(value) is not kind or not value:
            return None
        if compactor is not None and self._compactor is not None:
            self._compactor.absorb(compactor)
        return value

    def _slimmed(self, role: int, members: dict[str, Any]) -> dict[str, Any]:
        """A chunk of *role*'s members with what slimming does not keep taken out."""
        if not self._slim:
            return members
        if role == _DOC:
            kept: dict[str, Any] = {}
            for name, value in members.items():
                if name not in _PROFILE_MEMBERS:
                    continue
                if name == "identities" and type(value) is dict:
                    kept[name] = {k: slim_entry(entry) for k, entry in value.items()}
                elif type(value) is dict or type(value) is list:
                    kept[name] = type(value)()
                else:
                    kept[name] = value
            return kept
        if role == _ENTRY:
            return {"keys": members["keys"]} if "keys" in members else {}
        if role == _JWK:
            return {k: self._kept(_JWK, v) for k, v in members.items() if k in JWK_READ}
        return {name: self._kept(role, value) for name, value in members.items()}

    def _due(self, end: int) -> None:
        self._next_pause = end + self._slice
        self._pause()

    def _object(self, s: str, pos: int, role: int) -> tuple[Any, int]:
        members: dict[str, Any] = {}
        first = True
        while True:
            found = _OBJECT_CUT.search(s, pos + self._slice)
            if found is not None and found.start(1) - pos <= 2 * self._slice:
                cut = found.start(1)
                chunk = self._chunk("{" + s[pos:cut] + "}", dict)
                if chunk is not None:
                    members.update(self._slimmed(role, chunk))
                    pos, first = cut + 1, False
                    self._due(pos)
                    continue
            # One member at a time, at least up to the next slice.
            limit = pos + self._slice
            while pos < limit:
                end = _skip(s, pos).end()
                char = s[end : end + 1]
                if char == "}" and first:
                    return self._finish(members, end + 1)
                if char != '"':
                    raise _InvalidError
                try:
                    key, end = _scanstring(s, end + 1, True)
                except ValueError:
                    raise _InvalidError from None
                end = _skip(s, end).end()
                if s[end : end + 1] != ":":
                    raise _InvalidError
                inner = self._member_role(role, key)
                try:
                    value, end = self.scan(s, _skip(s, end + 1).end(), inner)
                except StopIteration:
                    raise _InvalidError from None
                if inner != _CHECK:
                    members[key] = self._kept(role, value)
                first = False
                end = _skip(s, end).end()
                char = s[end : end + 1]
                if char == "}":
                    return self._finish(members, end + 1)
                if char != ",":
                    raise _InvalidError
                pos = end + 1

    def _array(self, s: str, pos: int, role: int) -> tuple[Any, int]:
        values: list[Any] = []
        inner = self._element_role(role)
        first = True
        while True:
            found = _ARRAY_CUT.search(s, pos + self._slice)
            if found is not None and found.start() - pos <= 2 * self._slice:
                cut = found.start()
                chunk = self._chunk("[" + s[pos:cut] + "]", list)
                if chunk is not None:
                    values.extend(map(slim_jwk, chunk) if role == _KEYS else chunk)
                    pos, first = cut + 1, False
                    self._due(pos)
                    continue
            limit = pos + self._slice
            while pos < limit:
                end = _skip(s, pos).end()
                if s[end : end + 1] == "]" and first:
                    return values, end + 1
                try:
                    value, end = self.scan(s, end, inner)
                except StopIteration:
                    raise _InvalidError from None
                values.append(self._kept(role, value))
                first = False
                end = _skip(s, end).end()
                char = s[end : end + 1]
                if char == "]":
                    return values, end + 1
                if char != ",":
                    raise _InvalidError
                pos = end + 1

    def _finish(self, members: dict[str, Any], end: int) -> tuple[Any, int]:
        return (members if self._hook is None else self._hook(members)), end

    def _check(self, s: str, idx: int, depth: int) -> int:
        """Where the value at *idx* ends, building at most a chunk of it at a time."""
        char = s[idx : idx + 1]
        if (char == "{" or char == "[") and depth < _CHECK_DEPTH:
            try:
                return self._check_container(s, idx + 1, char == "{", depth + 1)
            except _InvalidError:
                scan: _Scan = lambda s, i: (None, self._check(s, i, depth + 1))  # noqa: E731
                if char == "{":
                    return _json_object((s, idx + 1), True, scan, None, None, {})[1]
                return _json_array((s, idx + 1), scan)[1]
        end: int = self._plain(s, idx)[1]
        self._leaf_done(end)
        return end

    def _check_container(self, s: str, pos: int, is_object: bool, depth: int) -> int:
        close, kind = ("}", dict) if is_object else ("]", list)
        cuts = _OBJECT_CUT if is_object else _ARRAY_CUT
        first = True
        while True:
            found = cuts.search(s, pos + self._slice)
            if found is not None:
                cut = found.start(found.lastindex or 0)
                if cut - pos <= 2 * self._slice:
                    text = s[pos:cut]
                    opened = "{" if is_object else "["
                    if self._chunk(opened + text + close, kind, keep=False) is not None:
                        pos, first = cut + 1, False
                        self._due(pos)
                        continue
            limit = pos + self._slice
            while pos < limit:
                end = _skip(s, pos).end()
                char = s[end : end + 1]
                if char == close and first:
                    return end + 1
                if is_object:
                    if char != '"':
                        raise _InvalidError
                    try:
                        end = _scanstring(s, end + 1, True)[1]
                    except ValueError:
                        raise _InvalidError from None
                    end = _skip(s, end).end()
                    if s[end : end + 1] != ":":
                        raise _InvalidError
                    end = _skip(s, end + 1).end()
                try:
                    end = self._check(s, end, depth)
                except StopIteration:
                    raise _InvalidError from None
                first = False
                end = _skip(s, end).end()
                char = s[end : end + 1]
                if char == close:
                    return end + 1
                if char != ",":
                    raise _InvalidError
                pos = end + 1


def _scanner(compactor: Compactor | None) -> _Scan:
    decoder = json.JSONDecoder(object_hook=None if compactor is None else compactor.hook)
    return _make_scanner(decoder)


def loads(
    text: str,
    *,
    compactor: Compactor | None,
    pause: Callable[[], None],
    slice_chars: int = SLICE_CHARS,
    slim: bool = False,
) -> Any:
    """``json.loads(text, object_hook=compactor.hook)``, calling *pause* between slices.

    With *slim*, the document's members other than the profile's are checked
    but not kept, and each identity entry keeps only what verification reads
    (:func:`~spiffile.bundle._compact.slim_entry`): the result is what
    ``slim(json.loads(text))`` would be, without ever holding the rest.
    """
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    walk = _Walk(compactor, pause, slice_chars, slim)
    try:
        value, end = walk.scan(text, _skip(text, 0).end())
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    end = _skip(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value
