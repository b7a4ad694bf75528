"""``spiffile bundle``: fetch, sync and serve trust documents over bundle endpoints.

Thin over :mod:`spiffile.endpoint` (SPIFFE Federation §5, https_web); the
rules (atomic writes, last good kept, rollback refused, per-identity
publishing only) live there.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from spiffile.cli._options import emit_json, json_option, opened_root, root_option

__all__ = ["COMMANDS"]

_CA_FILE = click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True),
    help="Trust this CA file (PEM) for the endpoint's certificate instead of the system CAs.",
)
_TIMEOUT = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the endpoint.",
)


@click.group(name="bundle")
def bundle() -> None:
    """Trust documents over SPIFFE bundle endpoints (https_web)."""


@bundle.command()
@click.argument("url")
@click.option("--trust-domain", required=True, help="The trust domain the document is for.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write it (e.g. TRUST_DIR/<trust-domain>.json).",
)
@_CA_FILE
@_TIMEOUT
@json_option
def fetch(
    url: str, trust_domain: str, out: Path, ca_file: str | None, timeout: float, as_json: bool
) -> None:
    """Fetch the trust document of a trust domain from its bundle endpoint.

    The document (a SPIFFE bundle, or another spiffile deployment's bundle)
    must be for --trust-domain; it replaces --out atomically. On any error
    --out is left as it was, and a document older than it (lower
    spiffe_sequence) is refused.

    \b
    spiffile bundle fetch https://spire.example.org/bundle \\
        --trust-domain example.org --out /etc/spiffe/trust/example.org.json
    """
    from spiffile.endpoint import fetch_to_file

    result = fetch_to_file(url, trust_domain, out, ca_file=ca_file, timeout=timeout)
    if as_json:
        emit_json(
            {
                "trust_domain": trust_domain,
                "out": str(out),
                "sequence": result.sequence,
                "refresh_hint": result.refresh_hint,
            }
        )
    else:
        click.echo(f"{trust_domain}: sequence {result.sequence} -> {out}")


def _parse_endpoint(text: str) -> tuple[str, str]:
    trust_domain, sep, url = text.partition("=")
    if not sep or not trust_domain or not url:
        raise click.BadParameter(f"expected TRUST_DOMAIN=URL, got {text[:200]!r}")
    return trust_domain, url


@bundle.command()
@click.option(
    "--trust-dir",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="Write each document to <trust-dir>/<trust-domain>.json (SPIFFILE_TRUST_DIR layout).",
)
@click.option(
    "--endpoint",
    "endpoints",
    multiple=True,
    required=True,
    metavar="TRUST_DOMAIN=URL",
    help="A trust domain and its bundle endpoint URL (repeat for several).",
)
@_CA_FILE
@_TIMEOUT
@click.option("--once", is_flag=True, help="Fetch each endpoint once and exit (1 if any failed).")
def sync(
    trust_dir: Path, endpoints: Sequence[str], ca_file: str | None, timeout: float, once: bool
) -> None:
    """Keep several trust documents in step with their bundle endpoints.

    Each is fetched again after its spiffe_refresh_hint (300 s when absent);
    a failed fetch is retried after 1 s, doubling up to 300 s, while the file
    keeps its last good document. Runs until SIGTERM or Ctrl-C.
    """
    from spiffile.endpoint import BundleSync, Endpoint

    parsed = [_parse_endpoint(text) for text in endpoints]
    syncer = BundleSync(
        [Endpoint(td, url, str(trust_dir / f"{td}.json")) for td, url in parsed],
        ca_file=ca_file,
        timeout=timeout,
    )
    _log_to_stderr()
    if once:
        ok = syncer.sync_all()
        for td, error in syncer.errors.items():
            click.echo(f"{td}: {'ok' if error is None else error}", err=error is not None)
        sys.exit(0 if ok else 1)
    stop = threading.Event()
    _stop_on_signals(stop)
    syncer.run(stop)


@bundle.command()
@root_option
@click.option("--cert", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--key", required=True, type=click.Path(dir_okay=False, exists=True))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8443, show_default=True)
@click.option(
    "--refresh-hint",
    type=click.IntRange(min=1),
    default=300,
    show_default=True,
    help="spiffe_refresh_hint to publish, in seconds.",
)
def serve(root: Path | None, cert: str, key: str, host: str, port: int, refresh_hint: int) -> None:
    """Publish this root's identities over HTTPS, one SPIFFE bundle per identity.

    GET /<path> answers the keys of spiffe://<trust domain>/<path> only (as
    export-jwks prints them); there is no domain-wide document, because a
    merged key set would let any workload speak as any other.

    \b
    THE RECEIVER MUST CHECK `sub`: a standard SPIFFE verifier given the
    document of /orders accepts any token signed by orders' keys whatever
    its `sub` says. Accept only tokens whose verified `sub` is
    spiffe://<trust domain>/orders. (spiffile peers should federate with
    the whole spiffile bundle file instead: it binds each key to its
    identity.)
    """
    from spiffile.endpoint import BundleServer

    opened = opened_root(root)
    server = BundleServer(
        opened.bundle_path,
        certfile=cert,
        keyfile=key,
        host=host,
        port=port,
        refresh_hint=refresh_hint,
    )
    click.echo(f"serving {server.url}<service path> (per identity)", err=True)
    stop = threading.Event()
    _stop_on_signals(stop)
    server.start()
    stop.wait()
    server.close()


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("spiffile.endpoint")
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def _stop_on_signals(stop: threading.Event) -> None:
    def handle(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


COMMANDS = (bundle,)
