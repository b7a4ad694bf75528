"""Implementations under test, as seen by the runner: a command that speaks the protocol.

An implementation is a command line (its adapter); the runner appends a verb,
writes one JSON request to its standard input and reads one JSON response
from its standard output (README.md, "The adapter protocol").  Adapters that
list ``batch`` in their ``info`` answer a list of requests in one process,
which keeps a full vector run to a handful of process starts.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["AdapterError", "Command", "Implementation", "InProcess", "default_implementation"]

HERE = Path(__file__).resolve().parent


class AdapterError(RuntimeError):
    """The adapter itself failed (no JSON answer, non-zero exit): not a verdict on a vector."""


class Implementation:
    """Something that answers protocol requests; subclasses say how."""

    name: str

    def call(self, verb: str, request: Any) -> dict[str, Any]:
        """One request, one response."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """The ``info`` answer (cached); ``{}`` when the adapter does not implement it."""
        cached: dict[str, Any] | None = getattr(self, "_info", None)
        if cached is None:
            answer = self.call("info", {})
            cached = answer if answer.get("ok") else {}
            self._info = cached
        return cached

    def batch(self, requests: Sequence[tuple[str, Any]]) -> list[dict[str, Any]]:
        """Many requests; one process when the adapter supports ``batch``."""
        if not requests:
            return []
        if not self.info().get("batch"):
            return [self.call(verb, request) for verb, request in requests]
        items = [{"verb": verb, "input": request} for verb, request in requests]
        answer = self._call_raw("batch", items)
        if not isinstance(answer, list) or len(answer) != len(requests):
            raise AdapterError(f"{self.name}: batch answered {type(answer).__name__}")
        return [
            item if isinstance(item, dict) else {"ok": False, "error": "crash"} for item in answer
        ]

    def _call_raw(self, verb: str, request: Any) -> Any:
        raise NotImplementedError


class Command(Implementation):
    """An adapter run as a child process: ``argv + [verb]``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 120.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.timeout = timeout

    @classmethod
    def parse(cls, spec: str) -> Command:
        """``NAME=COMMAND LINE`` (or a bare command line, named after its last word)."""
        name, sep, command = spec.partition("=")
        if not sep or " " in name or "/" in name:
            command, name = spec, Path(shlex.split(spec)[-1]).stem
        return cls(name, shlex.split(command))

    def __repr__(self) -> str:
        return f"Command({self.name!r}, {shlex.join(self.argv)!r})"

    def call(self, verb: str, request: Any) -> dict[str, Any]:
        answer = self._call_raw(verb, request)
        if not isinstance(answer, dict):
            raise AdapterError(
                f"{self.name} {verb}: answered {type(answer).__name__}, not an object"
            )
        return answer

    def _call_raw(self, verb: str, request: Any) -> Any:
        try:
            done = subprocess.run(
                [*self.argv, verb],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                env=self.env,
                cwd=self.cwd,
                timeout=self.timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AdapterError(f"{self.name} {verb}: {exc}") from exc
        if done.returncode != 0:
            raise AdapterError(
                f"{self.name} {verb}: exit {done.returncode}: {done.stderr.strip()[-800:]}"
            )
        try:
            return json.loads(done.stdout)
        except RecursionError:
            # Valid JSON nested deeper than Python's parser goes: a verdict on
            # the answer(s), not a reason to stop the run.
            if verb == "batch":
                return [_decode_item(item) for item in _array_items(done.stdout)]
            return _unreadable("its answer")
        except ValueError as exc:
            raise AdapterError(f"{self.name} {verb}: not JSON: {done.stdout[:200]!r}") from exc


def _unreadable(what: str) -> dict[str, Any]:
    """The answer recorded for an item the runner cannot decode: it fails its vector."""
    return {
        "ok": False,
        "error": "crash",
        "exception": "RecursionError",
        "message": f"{what} is nested too deeply to decode",
    }


def _decode_item(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        return _unreadable("this answer")
    except ValueError:
        return _unreadable("this answer")


def _array_items(text: str) -> list[str]:
    """The texts of a JSON array's items, found without recursion (strings and nesting aware).

    Only called on text ``json.loads`` found too deep: an item that is itself
    broken becomes a text that fails to decode on its own.
    """
    start = text.index("[") + 1
    items: list[str] = []
    depth = 0
    in_string = escaped = False
    item_start = start
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth == 0:  # The closing bracket of the outer array.
                if text[item_start:index].strip():
                    items.append(text[item_start:index])
                return items
            depth -= 1
        elif char == "," and depth == 0:
            items.append(text[item_start:index])
            item_start = index + 1
    raise AdapterError("batch answer: the array is not closed")


class InProcess(Implementation):
    """An adapter's handler table called directly (fast; used by the pytest suite)."""

    def __init__(
        self, name: str, handlers: Mapping[str, Callable[[Mapping[str, Any]], dict[str, Any]]]
    ):
        self.name = name
        self.handlers = handlers

    def call(self, verb: str, request: Any) -> dict[str, Any]:
        handler = self.handlers.get(verb)
        if handler is None:
            return {"ok": False, "error": "unsupported", "code": verb}
        try:
            return handler(request)
        except Exception as exc:  # Mirrors the process adapter: an escape is a crash.
            return {
                "ok": False,
                "error": "crash",
                "exception": type(exc).__name__,
                "message": str(exc),
            }

    def _call_raw(self, verb: str, request: Any) -> Any:
        return [self.call(item["verb"], item["input"]) for item in request]


def default_implementation() -> Command:
    """This repository's spiffile, through its adapter, with the running interpreter."""
    return Command("spiffile-python", [sys.executable, str(HERE / "adapters" / "spiffile_py.py")])
