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

from spiffile.bundle._compact import Compactor

__all__ = ["SLICE_CHARS", "loads"]

#: Characters of document between two calls of *pause* (about 1 ms of parsing here).
SLICE_CHARS: Final = 128 * 1024
#: Containers at a depth below this are walked in Python (0: the document,
#: 1: its members' values); what they hold goes to the C scanner in chunks.
_WALKED_DEPTH: Final = 2

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


class _Walk:
    """One parse: the scanner per depth and the position of the next pause."""

    __slots__ = ("_compactor", "_hook", "_memo", "_next_pause", "_pause", "_scan", "_slice")

    def __init__(
        self, compactor: Compactor | None, pause: Callable[[], None], slice_chars: int
    ) -> None:
        self._compactor = compactor
        self._hook = None if compactor is None else compactor.hook
        self._scan = _scanner(compactor)
        self._memo: dict[str, str] = {}
        self._pause = pause
        self._slice = slice_chars
        self._next_pause = slice_chars

    def scan(self, s: str, idx: int, depth: int = 0) -> tuple[Any, int]:
        """The value at *idx*: as the C scanner's ``scan_once`` (StopIteration when none)."""
        if depth < _WALKED_DEPTH:
            char = s[idx : idx + 1]
            if char == "{":
                try:
                    return self._object(s, idx + 1, depth + 1)
                except _InvalidError:
                    return _json_object(
                        (s, idx + 1), True, self._at_depth(depth + 1), self._hook, None, self._memo
                    )
            if char == "[":
                try:
                    return self._array(s, idx + 1, depth + 1)
                except _InvalidError:
                    return _json_array((s, idx + 1), self._at_depth(depth + 1))
        value, end = self._scan(s, idx)
        if end >= self._next_pause:
            self._next_pause = end + self._slice
            self._pause()
        return value, end

    def _at_depth(self, depth: int) -> _Scan:
        return lambda s, idx: self.scan(s, idx, depth)

    def _chunk(self, text: str, kind: type) -> Any:
        """*text* parsed by its own compactor, or None unless it is a non-empty *kind*."""
        compactor = None if self._compactor is None else Compactor()
        try:
            value, end = _scanner(compactor)(text, 0)
        except (StopIteration, ValueError):
            return None
        if end != len(text) or type(value) is not kind or not value:
            return None
        if compactor is not None and self._compactor is not None:
            self._compactor.absorb(compactor)
        return value

    def _due(self, end: int) -> None:
        self._next_pause = end + self._slice
        self._pause()

    def _object(self, s: str, pos: int, depth: int) -> tuple[Any, int]:
        members: dict[str, Any] = {}
        first = True
        while True:
            found = _OBJECT_CUT.search(s, pos + self._slice)
            if found is not None and found.start(1) - pos <= 2 * self._slice:
                cut = found.start(1)
                chunk = self._chunk("{" + s[pos:cut] + "}", dict)
                if chunk is not None:
                    members.update(chunk)
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
                try:
                    members[key], end = self.scan(s, _skip(s, end + 1).end(), depth)
                except StopIteration:
                    raise _InvalidError from None
                first = False
                end = _skip(s, end).end()
                char = s[end : end + 1]
                if char == "}":
                    return self._finish(members, end + 1)
                if char != ",":
                    raise _InvalidError
                pos = end + 1

    def _array(self, s: str, pos: int, depth: int) -> tuple[Any, int]:
        values: list[Any] = []
        first = True
        while True:
            found = _ARRAY_CUT.search(s, pos + self._slice)
            if found is not None and found.start() - pos <= 2 * self._slice:
                cut = found.start()
                chunk = self._chunk("[" + s[pos:cut] + "]", list)
                if chunk is not None:
                    values.extend(chunk)
                    pos, first = cut + 1, False
                    self._due(pos)
                    continue
            limit = pos + self._slice
            while pos < limit:
                end = _skip(s, pos).end()
                if s[end : end + 1] == "]" and first:
                    return values, end + 1
                try:
                    value, end = self.scan(s, end, depth)
                except StopIteration:
                    raise _InvalidError from None
                values.append(value)
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


def _scanner(compactor: Compactor | None) -> _Scan:
    decoder = json.JSONDecoder(object_hook=None if compactor is None else compactor.hook)
    return _make_scanner(decoder)


def loads(
    text: str,
    *,
    compactor: Compactor | None,
    pause: Callable[[], None],
    slice_chars: int = SLICE_CHARS,
) -> Any:
    """``json.loads(text, object_hook=compactor.hook)``, calling *pause* between slices."""
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    walk = _Walk(compactor, pause, slice_chars)
    try:
        value, end = walk.scan(text, _skip(text, 0).end())
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None
    end = _skip(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value
