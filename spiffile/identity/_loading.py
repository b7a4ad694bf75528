"""Reading an identity's files: the key, the bundle, the ID file, and what a reload must meet.

A file that does not parse, or a bundle that moves to another trust domain or
back in sequence, never replaces what is loaded (PROFILE.md §4.4, §7.3).
"""

from __future__ import annotations

import logging
import os
from typing import Final

from cryptography.hazmat.primitives.asymmetric import ec

from spiffile._quote import id_content_is_quotable
from spiffile.bundle import Bundle, SequenceGuard
from spiffile.errors import (
    ConfigurationError,
    InvalidBundleError,
    InvalidSpiffeIdError,
    SpiffileError,
)
from spiffile.files import give_way
from spiffile.keys import kid_for, load_private_key_pem
from spiffile.spiffe_id import SpiffeId

__all__ = [
    "_MAX_ID_FILE_BYTES",
    "_BundleAcceptance",
    "_SigningKey",
    "_naming",
    "_parse_bundle",
    "_parse_id_file",
    "_parse_key",
]

_MAX_ID_FILE_BYTES: Final = 4096
_log = logging.getLogger("spiffile")


class _SigningKey:
    __slots__ = ("kid", "private_key")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.private_key = private_key
        self.kid = kid_for(private_key.public_key())


def _parse_key(data: bytes) -> _SigningKey:
    return _SigningKey(load_private_key_pem(data))


def _parse_bundle(data: bytes) -> Bundle:
    # In slices, giving the GIL away between them: while a new bundle is
    # parsed, the threads verifying against the current one keep running
    # (PROFILE.md §7.2).  Slim: a verifier keeps only what it reads, so
    # members it ignores cannot make it hold memory (PROFILE.md §4.5).
    return Bundle.parse(data, pause=give_way, slim=True)


def _parse_id_file(text: str, path: str | os.PathLike[str]) -> SpiffeId:
    """The identity file's SPIFFE ID; its content is quoted only when it is one.

    The file may be anything when a path is wrong: with SPIFFILE_ID_FILE and
    SPIFFILE_KEY_FILE swapped, an error quoting its start would put a private
    key into the logs.  Only a single line that at least starts like a SPIFFE
    ID is shown, to point at the typo.
    """
    try:
        return SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        if id_content_is_quotable(text):
            raise
    raise InvalidSpiffeIdError(
        f"identity file {os.fspath(path)} does not hold a SPIFFE ID: "
        "it must be one line starting with 'spiffe://'"
    ) from None


def _naming(exc: SpiffileError, what: str, path: str | os.PathLike[str]) -> SpiffileError:
    """*exc* again, its message naming the file it is about (same class and code)."""
    shown = os.fspath(path)
    message = str(exc) if shown in str(exc) else f"{what} {shown}: {exc}"
    try:
        return type(exc)(message)
    except TypeError:  # A subclass with another constructor: a plain one of the base class.
        return ConfigurationError(message)


class _BundleAcceptance:
    """What a reloaded bundle must satisfy to replace the loaded one (PROFILE.md §4.4, §7.3)."""

    def __init__(self) -> None:
        self.guard = SequenceGuard()

    def __call__(self, current: Bundle, new: Bundle) -> None:
        if new.trust_domain != current.trust_domain:
            raise InvalidBundleError(
                f"bundle trust domain changed from {current.trust_domain} to {new.trust_domain}"
            )
        warning = self.guard.admit(new)  # Last: it remembers what it admits.
        if warning is not None:
            _log.warning("spiffile: %s", warning)
