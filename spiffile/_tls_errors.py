"""The one error class that is also an :mod:`ssl` error, apart so `import spiffile` stays light.

Reached as :class:`spiffile.errors.TLSPeerRejectedError` (and
``spiffile.TLSPeerRejectedError``); importing :mod:`ssl` loads OpenSSL, which
the rest of the error hierarchy does not need.
"""

from __future__ import annotations

import ssl

from spiffile.errors import SpiffileError

__all__ = ["TLSPeerRejectedError"]


class TLSPeerRejectedError(SpiffileError, ssl.SSLCertVerificationError):
    """A TLS handshake was refused after it completed: the peer's SVID or ID did not pass.

    Also an :class:`ssl.SSLCertVerificationError` (an ``OSError``), so that
    socket code, asyncio and HTTP clients treat it as the failed handshake it
    is and close the connection.  ``reason`` is the :class:`SpiffileError`
    that says why; ``peer`` the peer's SPIFFE ID when its SVID was valid.
    """

    code = "tls_peer_rejected"

    def __init__(self, message: str, *, error: SpiffileError, peer: object = None) -> None:
        super().__init__(message)
        self.error = error
        self.peer = peer
        self.verify_message = message

    def __str__(self) -> str:
        return str(self.verify_message)


TLSPeerRejectedError.__module__ = "spiffile.errors"
