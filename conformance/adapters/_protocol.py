"""The adapter side of the conformance protocol, shared by the Python adapters.

Standard library only: an adapter runs inside the virtual environment of the
implementation it drives (which may be another version of spiffile), so it
must not import anything from this repository but this file.

    <adapter> <verb>     one JSON request on stdin, one JSON response on stdout
    <adapter> batch      a JSON list of {"verb", "input"} -> the list of responses

The process exits 0 whenever it wrote a response, including rejections.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Handler", "crash", "error", "serve"]

Handler = Callable[[Mapping[str, Any]], dict[str, Any]]


def error(kind: str, exc: BaseException | None = None, code: str | None = None) -> dict[str, Any]:
    """A rejection: ``kind`` is one of the protocol's error names."""
    response: dict[str, Any] = {"ok": False, "error": kind}
    if code is not None:
        response["code"] = code
    if exc is not None:
        response["exception"] = type(exc).__name__
        response["message"] = str(exc)[:300]
    return response


def crash(exc: BaseException) -> dict[str, Any]:
    """An exception the implementation should never have let escape: a conformance failure."""
    response = error("crash", exc)
    response["traceback"] = traceback.format_exc(limit=6)[-2000:]
    return response


def _dispatch(handlers: Mapping[str, Handler], verb: str, request: Any) -> dict[str, Any]:
    handler = handlers.get(verb)
    if handler is None:
        return error("unsupported", code=verb)
    if not isinstance(request, dict):
        return error("bad_request", code="the request must be a JSON object")
    try:
        return handler(request)
    except Exception as exc:  # The adapter reports every escape instead of dying.
        return crash(exc)


def serve(handlers: Mapping[str, Handler], argv: list[str] | None = None) -> int:
    """Read the request for ``argv[0]`` from stdin and print the response."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: adapter VERB (verbs: batch, {', '.join(sorted(handlers))})", file=sys.stderr)
        return 2
    verb = args[0]
    text = sys.stdin.read()
    request = json.loads(text) if text.strip() else {}
    if verb == "batch":
        if not isinstance(request, list):
            print("batch expects a JSON list", file=sys.stderr)
            return 2
        result: Any = [
            _dispatch(handlers, item.get("verb", ""), item.get("input", {}))
            if isinstance(item, dict)
            else error("bad_request")
            for item in request
        ]
    else:
        result = _dispatch(handlers, verb, request)
    sys.stdout.write(json.dumps(result, ensure_ascii=True))
    sys.stdout.write("\n")
    return 0
