"""``spiffile x509``: the root's X.509 CA and its services' X.509-SVIDs (a profile extension).

``enable`` gives a root a CA, ``renew`` re-issues SVIDs past half their
lifetime (run it from cron or a timer well inside the lifetime),
``rotate-ca`` switches to a new CA with overlap, ``status`` lists expiries.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from spiffile.cli._options import emit_json, json_option, opened_root, root_option

__all__ = ["x509_group"]


def _ttl_option(function: Any) -> Any:
    return click.option(
        "--svid-ttl",
        type=click.IntRange(min=60),
        default=None,
        metavar="SECONDS",
        help="Lifetime of the X.509-SVIDs (default 3600).",
    )(function)


def _report(statuses: Sequence[Any], as_json: bool) -> None:
    if as_json:
        emit_json(
            [
                {
                    "name": s.name,
                    "id": str(s.id),
                    "expires_at": int(s.expires_at),
                    "issued": s.issued,
                }
                for s in statuses
            ]
        )
        return
    now = time.time()
    for s in statuses:
        state = "issued" if s.issued else "kept"
        click.echo(f"{s.id}  {state}, expires in {max(0, int(s.expires_at - now))} s")


@click.group(name="x509")
def x509_group() -> None:
    """X.509-SVIDs for mutual TLS from the root's own CA (an extension of the profile)."""


@x509_group.command()
@root_option
@_ttl_option
@json_option
def enable(root: Path | None, svid_ttl: int | None, as_json: bool) -> None:
    """Give the root an X.509 CA (idempotent) and write every service's SVID."""
    from spiffile.provision.x509 import enable_x509, renew_svids

    opened = opened_root(root)
    ca = enable_x509(opened, svid_ttl=svid_ttl)
    if as_json:
        _report(renew_svids(opened), True)
        return
    click.echo(f"X.509 CA valid until {ca.not_valid_after_utc.isoformat()}")


@x509_group.command()
@root_option
@click.argument("names", metavar="[NAME...]", nargs=-1)
@click.option("--force", is_flag=True, help="Re-issue even SVIDs not yet past half life.")
@json_option
def renew(root: Path | None, names: Sequence[str], force: bool, as_json: bool) -> None:
    """Re-issue the SVIDs (of NAME..., or all) past half their lifetime."""
    from spiffile.provision.x509 import renew_svids

    _report(renew_svids(opened_root(root), names, force=force), as_json)


@x509_group.command(name="rotate-ca")
@root_option
@json_option
def rotate_ca_command(root: Path | None, as_json: bool) -> None:
    """Switch to a new CA; the old one stays published until its SVIDs expire."""
    from spiffile.provision.x509 import rotate_ca

    ca = rotate_ca(opened_root(root))
    if as_json:
        emit_json({"not_after": int(ca.not_valid_after_utc.timestamp())})
    else:
        click.echo(
            "new X.509 CA published and issuing; run `spiffile x509 renew --force` "
            "to re-issue every SVID now"
        )


COMMANDS = [x509_group]
