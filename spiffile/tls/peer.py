"""The verified peer of a connection made by a spiffile SSL context."""

from __future__ import annotations

import asyncio

from spiffile.errors import ConfigurationError
from spiffile.spiffe_id import SpiffeId
from spiffile.svid.x509 import X509Svid
from spiffile.tls._contexts import _PEER_ATTRIBUTE

__all__ = ["peer_id", "peer_svid"]


def peer_svid(connection: object) -> X509Svid:
    """The verified X.509-SVID of the peer of *connection*.

    *connection* is an :class:`ssl.SSLSocket` or :class:`ssl.SSLObject` made
    by a spiffile context, or an asyncio transport or stream writer over one.
    Raises :class:`~spiffile.errors.ConfigurationError` when the connection
    did not come from a spiffile context or its handshake has not completed.
    """
    target: object = connection
    if isinstance(target, asyncio.StreamWriter):
        target = target.transport
    if isinstance(target, asyncio.BaseTransport):
        target = target.get_extra_info("ssl_object")
    svid = getattr(target, _PEER_ATTRIBUTE, None)
    if not isinstance(svid, X509Svid):
        raise ConfigurationError(
            "no verified SPIFFE peer: the connection is not from a spiffile SSL context "
            "or its handshake has not completed"
        )
    return svid


def peer_id(connection: object) -> SpiffeId:
    """The verified SPIFFE ID of the peer of *connection* (see :func:`peer_svid`)."""
    return peer_svid(connection).id
