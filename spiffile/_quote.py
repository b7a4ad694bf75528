"""How a message may show text that came from outside: the one place for the rules.

Messages end up in terminals and log files.  Two rules keep them safe:

- Text an attacker or a broken file controls (a token's header member names,
  a bundle's identity strings, a file's content) is shown through
  :func:`repr`, cut to a length: control characters and terminal escape
  sequences come out as ``\\x1b``-style escapes, so a message can neither
  forge a log line nor drive a terminal (SECURITY.md, "Key exposure").
- The content of a file that should hold a SPIFFE ID is shown only when it
  is one line that at least starts like one.  With two paths swapped or a key
  copied over an ``id`` file, quoting its start would put a private key into
  an error message; a single ``spiffe://`` line can only be an ID, and showing
  it points at the typo (PROFILE.md §3).
"""

from __future__ import annotations

from typing import Final

__all__ = ["id_content_is_quotable", "printable", "quote", "quote_id_content"]

_SCHEME: Final = "spiffe://"
# C0 controls, DEL and C1 controls: what a terminal may act on.
_CONTROL: Final = frozenset(range(0x20)) | frozenset(range(0x7F, 0xA0))


def quote(text: str, limit: int = 80) -> str:
    """*text* as ``repr`` shows it, cut to *limit* characters (``...`` marks a cut)."""
    if len(text) > limit:
        return f"{text[:limit]!r}..."
    return repr(text)


def id_content_is_quotable(text: str) -> bool:
    """Whether the content of an identity file may appear in a message.

    Only one line (trailing whitespace already stripped by the caller) that
    starts like a SPIFFE ID qualifies; anything else may be a private key.
    """
    return "\n" not in text and "\r" not in text and text[: len(_SCHEME)].lower() == _SCHEME


def quote_id_content(text: str, limit: int = 200) -> str | None:
    """The quoted content of an identity file, or ``None`` when it must not be shown."""
    return quote(text, limit) if id_content_is_quotable(text) else None


def printable(text: str) -> str:
    """*text* with every control character (C0, DEL, C1) written as a ``\\xNN`` escape.

    The last filter before a terminal: the CLI passes every line it prints
    for an error or warning through it, whatever the library already quoted.
    """
    if not any(ord(char) in _CONTROL for char in text):
        return text
    return "".join(f"\\x{ord(char):02x}" if ord(char) in _CONTROL else char for char in text)
