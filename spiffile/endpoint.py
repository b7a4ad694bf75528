"""SPIFFE bundle endpoints: fetch, keep in step and serve trust documents over HTTPS.

The SPIFFE Federation standard has a trust domain publish its bundle at a
URL; a relying party fetches it, keeps the last good copy, and fetches again
when the document's ``spiffe_refresh_hint`` says (SPIFFE Federation §5).
This module speaks its ``https_web`` profile: the endpoint is authenticated
by an ordinary web PKI certificate (the system's CAs, or a CA file).

- :func:`fetch_bundle` fetches and parses one document (a SPIFFE bundle, or
  a spiffile bundle from another spiffile deployment: the shapes the trust
  directory reads, ``spiffile.trust``); :func:`fetch_to_file` writes it
  atomically, so a failure of any kind leaves the last good file in place.
- :class:`BundleSync` keeps several such files in step, honouring each
  document's refresh hint, with exponential backoff after failures.
- :class:`BundleServer` publishes a spiffile root's keys **per identity**:
  ``GET /<path of the SPIFFE ID>`` answers that one identity's JWK Set as a
  SPIFFE bundle (PROFILE.md §9).  There is deliberately no domain-wide
  document: every spiffile workload holds a signing key, so a merged set
  would let any workload speak as any other to a standard verifier.  The
  receiver of a per-identity document MUST check that a verified token's
  ``sub`` is the identity it fetched the document for.

This is the network layer: it reads files only through :mod:`spiffile.files`
and takes no rule of its own about tokens.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import json
import logging
import os
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from spiffile.bundle import Bundle, spiffe_jwt_bundle
from spiffile.errors import (
    BundleFetchError,
    ConfigurationError,
    InvalidSpiffeIdError,
    SpiffileError,
    UnknownIdentityError,
)
from spiffile.files import MAX_FILE_BYTES, FileView, atomic_write, give_way, read_file
from spiffile.spiffe_id import SpiffeId
from spiffile.trust import TrustDocument, parse_trust_document

__all__ = [
    "DEFAULT_REFRESH",
    "MAX_BACKOFF",
    "BundleServer",
    "BundleSync",
    "Endpoint",
    "FetchResult",
    "fetch_bundle",
    "fetch_to_file",
]

_log = logging.getLogger("spiffile.endpoint")

#: Seconds between fetches when a document carries no ``spiffe_refresh_hint``.
DEFAULT_REFRESH: Final = 300
#: Bounds on a refresh hint (a hostile or broken endpoint cannot make us spin or stop).
MIN_REFRESH: Final = 1
MAX_REFRESH: Final = 86400
#: The first retry after a failure, doubled per failure up to :data:`MAX_BACKOFF`.
FIRST_BACKOFF: Final = 1.0
MAX_BACKOFF: Final = 300.0
DEFAULT_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class FetchResult:
    """One fetched trust document: the bytes served, parsed, with its sequence and hint."""

    trust_domain: str
    data: bytes
    document: TrustDocument
    sequence: int | None
    refresh_hint: int | None


def _ssl_context(ca_file: str | os.PathLike[str] | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=os.fspath(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BundleFetchError(f"cannot use CA file {os.fspath(ca_file or '')!r}: {exc}") from None


def _refresh_hint(document: TrustDocument) -> int | None:
    hint = getattr(document, "refresh_hint", None)
    return hint if isinstance(hint, int) else None


def fetch_bundle(
    url: str,
    trust_domain: str,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchResult:
    """Fetch the trust document of *trust_domain* from *url* (SPIFFE Federation §5, https_web).

    The server must present a certificate for the URL's host that chains to
    the system's CAs (or *ca_file*'s); redirects are not followed; the body
    is capped at the trust-document size cap before it is parsed.  Raises
    :class:`BundleFetchError` for a transport or HTTP failure and
    :class:`InvalidBundleError` for a document that is not a trust document
    of *trust_domain*.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.username or parts.password:
        raise BundleFetchError(f"not an https URL without credentials: {url[:200]!r}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    context = _ssl_context(ca_file)
    try:
        connection = http.client.HTTPSConnection(
            parts.hostname, parts.port, context=context, timeout=timeout
        )
        try:
            connection.request("GET", path, headers={"Accept": "application/json"})
            response = connection.getresponse()
            data = response.read(MAX_FILE_BYTES + 1)
        finally:
            connection.close()
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise BundleFetchError(f"cannot fetch {url[:200]!r}: {exc}") from None
    if response.status != 200:
        raise BundleFetchError(f"{url[:200]!r} answered HTTP {response.status}")
    if len(data) > MAX_FILE_BYTES:
        raise BundleFetchError(f"{url[:200]!r} served more than {MAX_FILE_BYTES} bytes")
    document = parse_trust_document(data, trust_domain)
    return FetchResult(trust_domain, data, document, document.sequence, _refresh_hint(document))


def fetch_to_file(
    url: str,
    trust_domain: str,
    out: str | os.PathLike[str],
    *,
    ca_file: str | os.PathLike[str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> FetchResult:
    """Fetch with :func:`fetch_bundle` and replace *out* atomically with what was served.

    On any error *out* is left as it was: the last good document keeps
    serving its verifiers.  A document whose ``spiffe_sequence`` is lower
    than the one already in *out* is refused as a rollback (SPIFFE Trust
    Domain and Bundle §4.1: the sequence only grows).
    """
    result = fetch_bundle(url, trust_domain, ca_file=ca_file, timeout=timeout)
    try:
        current = parse_trust_document(read_file(out), trust_domain)
    except (OSError, SpiffileError):
        current = None  # Nothing usable to protect: take the new document.
    if (
        current is not None
        and current.sequence is not None
        and (result.sequence is None or result.sequence < current.sequence)
    ):
        raise BundleFetchError(
            f"{url[:200]!r} served spiffe_sequence {result.sequence}, older than the "
            f"{current.sequence} in {os.fspath(out)!r}: kept the current document"
        )
    atomic_write(out, result.data, mode=0o644)
    return result


@dataclass(frozen=True)
class Endpoint:
    """A trust domain to keep in step: where its document is published and where it goes."""

    trust_domain: str
    url: str
    out: str


class BundleSync:
    """Keep several trust documents in step with their bundle endpoints.

    Each endpoint is fetched again after its document's refresh hint (bounded
    to [:data:`MIN_REFRESH`, :data:`MAX_REFRESH`] seconds; :data:`DEFAULT_REFRESH`
    when absent).  After a failure it is retried after 1 s, doubling per
    consecutive failure up to :data:`MAX_BACKOFF` (and never later than its
    next regular refresh), while its file keeps the last good document.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        ca_file: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.endpoints = list(endpoints)
        self._ca_file = ca_file
        self._timeout = timeout
        self._clock = clock
        self._due = {e.trust_domain: 0.0 for e in self.endpoints}
        self._backoff = {e.trust_domain: 0.0 for e in self.endpoints}
        self._interval = {e.trust_domain: float(DEFAULT_REFRESH) for e in self.endpoints}
        #: The last error per trust domain (``None`` after a success).
        self.errors: dict[str, SpiffileError | None] = {}

    def sync_one(self, endpoint: Endpoint) -> FetchResult | None:
        """Fetch one endpoint now and schedule its next fetch; ``None`` on failure."""
        td = endpoint.trust_domain
        now = self._clock()
        try:
            result = fetch_to_file(
                endpoint.url, td, endpoint.out, ca_file=self._ca_file, timeout=self._timeout
            )
        except SpiffileError as exc:
            self.errors[td] = exc
            backoff = min(max(self._backoff[td] * 2, FIRST_BACKOFF), MAX_BACKOFF)
            self._backoff[td] = backoff
            self._due[td] = now + min(backoff, self._interval[td])
            _log.warning("bundle sync %s: %s (retry in %.0f s)", td, exc, backoff)
            return None
        hint = result.refresh_hint if result.refresh_hint is not None else DEFAULT_REFRESH
        self._interval[td] = float(min(max(hint, MIN_REFRESH), MAX_REFRESH))
        self._backoff[td] = 0.0
        self._due[td] = now + self._interval[td]
        self.errors[td] = None
        _log.info("bundle sync %s: sequence %s, next in %.0f s", td, result.sequence, hint)
        return result

    def sync_all(self) -> bool:
        """Fetch every endpoint once; ``True`` when all succeeded."""
        return all([self.sync_one(e) is not None for e in self.endpoints])

    def next_delay(self) -> float:
        """Seconds until the earliest scheduled fetch (0 when one is due)."""
        return max(0.0, min(self._due.values(), default=0.0) - self._clock())

    def run(self, stop: threading.Event) -> None:
        """Fetch each endpoint when due until *stop* is set."""
        while not stop.is_set():
            now = self._clock()
            for endpoint in self.endpoints:
                if self._due[endpoint.trust_domain] <= now:
                    self.sync_one(endpoint)
            stop.wait(self.next_delay())


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _answer(self, *, send_body: bool) -> None:
        status, body = self.server.publisher.respond(self.path)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("bundle serve: " + format, *args)


class _Publisher:
    """The per-identity documents of one spiffile bundle file (PROFILE.md §9)."""

    def __init__(self, bundle_file: str | os.PathLike[str], refresh_hint: int) -> None:
        # Parsed in slices (PROFILE.md §7.2): requests keep being served meanwhile.
        self._view = FileView(
            bundle_file, functools.partial(Bundle.parse, pause=give_way), description="bundle"
        )
        self._refresh_hint = refresh_hint

    def respond(self, path: str) -> tuple[int, bytes]:
        bundle = self._view.get()
        target = urllib.parse.urlsplit(path).path
        if target in ("", "/"):
            return 404, _message(
                "this endpoint publishes one identity per path (GET /<path of the SPIFFE ID>); "
                "there is no domain-wide document"
            )
        try:
            spiffe_id = SpiffeId.parse(f"spiffe://{bundle.trust_domain}{target}")
        except InvalidSpiffeIdError:
            return 404, _message("not a SPIFFE ID path of this trust domain")
        try:
            bundle.keys_for(spiffe_id)
        except UnknownIdentityError:
            return 404, _message("no such identity")
        document = spiffe_jwt_bundle(bundle, spiffe_id)
        if bundle.sequence is not None:
            document["spiffe_sequence"] = bundle.sequence
        document["spiffe_refresh_hint"] = self._refresh_hint
        return 200, json.dumps(document, indent=2).encode() + b"\n"


def _message(text: str) -> bytes:
    return json.dumps({"error": text}).encode() + b"\n"


class _HTTPServer(http.server.ThreadingHTTPServer):
    """Accepts plain sockets and runs each TLS handshake in the connection's own thread.

    Wrapping the listening socket instead would run handshakes in the accept
    loop, where one client that never finishes its handshake stalls everyone.
    """

    daemon_threads = True
    publisher: _Publisher
    tls: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(DEFAULT_TIMEOUT)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            _log.debug("bundle serve: TLS handshake with %s failed: %s", client_address, exc)
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()


class BundleServer:
    """Serve a spiffile bundle's identities, each as its own SPIFFE bundle, over HTTPS.

    ``GET /orders`` answers the keys of ``spiffe://<trust domain>/orders``
    as a JWK Set with ``use`` ``jwt-svid``, the bundle's ``spiffe_sequence``
    and *refresh_hint*; ``/`` and unknown identities answer 404.  The bundle
    file is followed as it changes (rotation and revocation show up on the
    next request; a broken rewrite keeps the last good version).

    A receiver that verifies with such a document MUST accept only tokens
    whose ``sub`` is the identity it fetched: a standard verifier does not
    tie keys to subjects (PROFILE.md §9).
    """

    def __init__(
        self,
        bundle_file: str | os.PathLike[str],
        *,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 0,
        refresh_hint: int = DEFAULT_REFRESH,
    ) -> None:
        publisher = _Publisher(bundle_file, refresh_hint)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"cannot load the server certificate: {exc}") from None
        self._server = _HTTPServer((host, port), _Handler)
        self._server.publisher = publisher
        self._server.tls = context
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"https://{shown}:{port}/"

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def start(self) -> BundleServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> BundleServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
