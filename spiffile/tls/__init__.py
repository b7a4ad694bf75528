"""Mutual TLS with X.509-SVIDs from files: SSL contexts that authorize the peer's SPIFFE ID.

:class:`X509Source` holds a workload's X.509-SVID (``svid.pem``, leaf first),
its key (``svid_key.pem``) and its trust domain's authorities
(``svid_bundle.pem``), laid out as spiffe-helper writes them, and follows the
files as they rotate.  :meth:`X509Source.server_ssl_context` and
:meth:`X509Source.client_ssl_context` return :class:`ssl.SSLContext` objects
that present the current SVID, require the peer's, and admit only a peer
whose chain ends at an authority of *its own* trust domain and whose SPIFFE
ID the authorizer allows.

How, given that Python's :mod:`ssl` cannot run a Python verify callback:

1. OpenSSL verifies the peer's chain during the handshake against every
   authority we trust (``cadata``), with host name checking off, and requires
   a certificate from the peer (``CERT_REQUIRED`` on both sides).
2. Right after the handshake completes, inside ``do_handshake`` of the
   socket/object classes these contexts create, the peer's presented chain is
   verified again by :func:`spiffile.svid.x509.verify_at` (the X.509-SVID
   rules, and the chain must end at an authority of the peer ID's trust
   domain, which OpenSSL's pooled store cannot express), then the SPIFFE ID is
   authorized.  A refusal raises :class:`~spiffile.errors.TLSPeerRejectedError`
   (an :class:`ssl.SSLCertVerificationError`, so every client library treats
   it as a failed handshake) and the connection is closed.
3. ``read``/``recv``/``write``/``send`` on these connections first finish
   the checked handshake, so even a socket made with
   ``do_handshake_on_connect=False`` cannot exchange application data with an
   unchecked peer.  The guarantee: our application never reads or writes a
   byte on a connection whose peer was refused.  (TLS 1.3 finishes the
   client's handshake before the server has seen the client certificate, so a
   client the server refuses learns it on its first read, as with any mTLS
   server.)
4. Session tickets are disabled on servers: a resumed session would skip the
   certificate exchange.  Every connection gets the full check.

Rotation: the contexts handed out are façades.  Each new connection
(``wrap_socket``/``wrap_bio``, which asyncio, uvicorn, httpx and urllib3 call
per connection) is made from an inner context built from the files' current
contents; the inner context is rebuilt only when a file changed (one ``stat``
per file per connection otherwise).  Connections already open keep theirs.

The modules behind this package: ``source`` holds :class:`X509Source` (the
files and what they hold now), ``_contexts`` the façade contexts and the
checked sockets and objects (steps 1 to 4), ``peer`` reads the verified peer
back from a connection.
"""

from __future__ import annotations

from spiffile.tls.peer import peer_id, peer_svid
from spiffile.tls.source import (
    ENV_X509_BUNDLE_FILE,
    ENV_X509_KEY_FILE,
    ENV_X509_SVID_FILE,
    SPIFFE_HELPER_NAMES,
    X509Source,
    X509Status,
    verify_x509_svid,
)

__all__ = [
    "ENV_X509_BUNDLE_FILE",
    "ENV_X509_KEY_FILE",
    "ENV_X509_SVID_FILE",
    "SPIFFE_HELPER_NAMES",
    "X509Source",
    "X509Status",
    "peer_id",
    "peer_svid",
    "verify_x509_svid",
]
