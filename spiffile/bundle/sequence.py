"""The consumer's rule for ``spiffe_sequence`` across reloads (PROFILE.md §4.4).

Pure: it sees bundles one after another and remembers the highest sequence it
admitted.  :class:`~spiffile.Identity` holds one per loaded configuration; the
conformance adapter drives one directly.
"""

from __future__ import annotations

from spiffile.bundle.document import Bundle
from spiffile.errors import InvalidBundleError

__all__ = ["SequenceGuard"]


class SequenceGuard:
    """Refuse a bundle whose ``spiffe_sequence`` is below the highest one admitted.

    A document *without* the member after one with it is admitted, with a
    warning: a producer that does not know the extension (another tool, a
    script) must not be able to freeze every consumer and with them every
    later revocation.  Only a document carrying a *lower* number is a
    rollback.  The highest number seen is kept across such documents, so a
    stale copy that still carries its old number is refused after them too.
    """

    __slots__ = ("highest",)

    def __init__(self) -> None:
        #: The highest ``spiffe_sequence`` admitted so far (None before any).
        self.highest: int | None = None

    def admit(self, bundle: Bundle) -> str | None:
        """Admit *bundle* as the next version; return a warning to log, or None.

        Raises :class:`InvalidBundleError` for a rollback, remembering nothing.
        """
        sequence = bundle.sequence
        if sequence is None:
            if self.highest is None:
                return None
            return (
                f"the new bundle has no spiffe_sequence after one with {self.highest}; "
                "accepted (a producer that does not know the extension wrote it), but a "
                f"later bundle below {self.highest} is still refused"
            )
        if self.highest is not None and sequence < self.highest:
            raise InvalidBundleError(
                f"bundle rollback refused: spiffe_sequence {sequence} < {self.highest}"
            )
        self.highest = sequence
        return None
