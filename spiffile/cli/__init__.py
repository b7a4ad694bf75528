"""The ``spiffile`` command line: a thin click layer over the library.

No rule lives here that the library does not own: every command parses its
arguments, calls one library function and prints the result.  Two things are
the CLI's own business:

- Failures a user can cause end as one ``Error: ...`` line on stderr and a
  non-zero exit (1; 2 for usage errors), never a traceback: the group maps
  :class:`~spiffile.errors.SpiffileError` and :class:`OSError` to click
  exceptions in one place.
- Start-up stays cheap: cryptography, PyJWT and watchfiles are imported inside
  the commands that need them, so ``spiffile --help`` and shell completion do
  not pay for them.

This module holds the group, the workload commands (``token``, ``verify``,
``whoami``), ``check``, ``exec`` and ``demo``; the producer commands live in
``_cli_producer`` and the shared error mapping and options in ``_cli_common``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from spiffile.cli._options import (
    SpiffileGroup,
    complete_service,
    describe,
    emit_json,
    json_option,
    one_line,
    opened_root,
    root_option,
)
from spiffile.cli.producer import COMMANDS
from spiffile.errors import InvalidTokenError, SpiffileError, UnknownIdentityError

__all__ = ["cli", "main"]

_EPILOG = """\b
Producer commands take the identity root from --root or SPIFFILE_ROOT.
Workload commands (token, verify, whoami) read SPIFFILE_DIR or
SPIFFILE_ID_FILE, SPIFFILE_KEY_FILE and SPIFFILE_BUNDLE_FILE.

\b
Shell completion (add to your shell's start-up file):
  bash: eval "$(_SPIFFILE_COMPLETE=bash_source spiffile)"
  zsh:  eval "$(_SPIFFILE_COMPLETE=zsh_source spiffile)"
  fish: _SPIFFILE_COMPLETE=fish_source spiffile | source

\b
Exit status: 0 success, 1 failure or rejected token, 2 usage error;
`spiffile exec` exits with its child's status.
"""


@click.group(
    cls=SpiffileGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG,
)
@click.version_option(package_name="spiffile", prog_name="spiffile")
def cli() -> None:
    """SPIFFE workload identity from three files.

    Each workload signs its own JWT-SVIDs with its key and verifies its
    callers offline against a trust bundle that producers update in place.
    """


for _command in COMMANDS:
    cli.add_command(_command)


# --- workload commands -------------------------------------------------------------------------


def _load_identity() -> Any:
    from spiffile.identity import Identity

    return Identity.from_env()


@cli.command()
@click.option("--audience", "-a", required=True, help="SPIFFE ID of the receiver.")
@click.option(
    "--ttl", type=click.IntRange(min=1), default=60, show_default=True, help="Lifetime, seconds."
)
def token(audience: str, ttl: int) -> None:
    """Mint a JWT-SVID for AUDIENCE (identity from SPIFFILE_*).

    \b
    curl -H "Authorization: Bearer $(spiffile token -a spiffe://example.org/billing)" ...
    """
    identity = _load_identity()
    try:
        text = identity.token(audience=audience, ttl=ttl)
    except ValueError as exc:  # A ttl above the identity's lifetime cap.
        raise click.BadParameter(one_line(str(exc)), param_hint="'--ttl'") from exc
    click.echo(text)


def _reject(exc: SpiffileError, as_json: bool) -> NoReturn:
    if as_json:
        emit_json({"error": {"code": exc.code, "message": one_line(str(exc))}})
    raise click.ClickException(f"token rejected ({exc.code}): {describe(exc)}")


@cli.command()
@click.argument("token_text", metavar="[TOKEN|-]", required=False, default="-")
@click.option("--audience", "-a", help="Expected audience (default: this workload's SPIFFE ID).")
@json_option
def verify(token_text: str, audience: str | None, as_json: bool) -> None:
    """Verify a JWT-SVID and print the caller's SPIFFE ID.

    The token comes from the argument, or stdin with `-` or no argument.

    Exits 1 with the reason on rejection.
    """
    if token_text == "-":
        if sys.stdin is None:  # Started with stdin closed (`<&-`).
            raise click.UsageError("stdin is closed: pass TOKEN, or pipe it to stdin")
        if sys.stdin.isatty():
            raise click.UsageError("pass TOKEN, or pipe it to stdin")
        token_text = sys.stdin.read()
    token_text = token_text.strip()
    if token_text.lower().startswith("bearer "):
        token_text = token_text[7:].strip()
    identity = _load_identity()
    try:
        caller = identity.verify(token_text, audience=audience)
    except (InvalidTokenError, UnknownIdentityError) as exc:
        _reject(exc, as_json)
    if as_json:
        emit_json({"id": str(caller.id), "claims": dict(caller.claims)})
    else:
        click.echo(str(caller.id))


@cli.command(name="whoami")
@json_option
def whoami(as_json: bool) -> None:
    """Show this workload's identity and file health.

    Exits 1 when the identity is unhealthy (a file serves its last good
    version, or the signing key is not in the bundle), so it can serve as a
    health probe.
    """
    identity = _load_identity()
    status = identity.status()
    bundle = identity.bundle
    data: dict[str, Any] = {
        "id": str(status.id),
        "kid": status.kid,
        "healthy": status.healthy,
        "key_bound": status.key_bound,
        "trust_domain": bundle.trust_domain,
        "identities": len(bundle.identities()),
        "skipped_entries": len(bundle.warnings),
        "bundle_sequence": status.bundle_sequence,
        "key_file": status.key.path,
        "key_error": status.key.error,
        "bundle_file": status.bundle.path,
        "bundle_error": status.bundle.error,
    }
    if as_json:
        emit_json(data)
    else:
        for key, value in data.items():
            if value is not None:
                click.echo(f"{key:16} {value}")
    if not status.healthy:
        reason = status.key.error or status.bundle.error
        if reason is None and not status.key_bound:
            reason = f"signing key {status.kid} is not bound to {status.id} in the bundle"
        raise click.ClickException(f"identity unhealthy: {one_line(reason or 'unknown')}")


# --- bundle tools ------------------------------------------------------------------------------


@cli.command()
@click.argument(
    "bundle_path",
    metavar="BUNDLE",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
)
@json_option
def check(bundle_path: str, as_json: bool) -> None:
    """Lint a bundle strictly; report every problem.

    BUNDLE is a file, or `-` for stdin.

    Consumers skip a malformed identity entry with a warning; producers
    should never write one.  Exits 1 if there is any problem.
    """
    from spiffile.bundle import lint_bundle

    name = bundle_path
    if name == "-":
        if sys.stdin is None:  # Started with stdin closed (`<&-`).
            raise click.UsageError("stdin is closed: pass a BUNDLE file, or pipe it to stdin")
        data = sys.stdin.buffer.read()
    else:
        with open(name, "rb") as handle:
            data = handle.read()
    import logging

    logger = logging.getLogger("spiffile")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # The problems are the output: no duplicate warnings.
    try:
        problems = lint_bundle(data)
    finally:
        logger.setLevel(previous)
    if as_json:
        emit_json({"file": name, "ok": not problems, "problems": problems})
    else:
        for problem in problems:
            click.echo(f"{name}: {problem}")
        if not problems:
            click.echo(f"{name}: ok")
    if problems:
        plural = "s" if len(problems) != 1 else ""
        raise click.ClickException(f"{name}: {len(problems)} problem{plural}")


# --- exec and demo -----------------------------------------------------------------------------


class _ExecCommand(click.Command):
    """Split ``-- CMD ARGS...`` off before click parses (click would swallow the ``--``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["spiffile.exec.command"] = args[cut + 1 :]
            args = args[:cut]
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return [*super().collect_usage_pieces(ctx), "-- CMD [ARGS]..."]


@cli.command(name="exec", cls=_ExecCommand)
@root_option
@click.argument("name", required=False, shell_complete=complete_service)
@click.option(
    "--signal",
    "signal_name",
    default="HUP",
    show_default=True,
    help="Signal sent to CMD when the identity files change.",
)
@click.option(
    "--settle",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds without further change before signalling.",
)
@click.pass_context
def exec_(
    ctx: click.Context, root: Path | None, name: str | None, signal_name: str, settle: float
) -> None:
    """Run CMD with an identity; signal it when the files change.

    \b
    spiffile exec --root ./identity orders -- python app.py
    spiffile exec -- ./server          (identity from the SPIFFILE_* env)

    With NAME, CMD gets the service's environment from the root; without,
    the current SPIFFILE_* environment is passed through.  SIGINT and SIGTERM
    are forwarded; the exit status is CMD's (128+N if killed by signal N).
    """
    from spiffile.cli import exec as runner

    command = ctx.meta.get("spiffile.exec.command")
    if not command:
        raise click.UsageError("missing command: spiffile exec [--root R NAME] -- CMD [ARGS...]")
    reload_signal = runner.parse_signal(signal_name)
    environment = dict(os.environ)
    if name is not None:
        from spiffile.provision import service_env

        environment.pop("SPIFFILE_DIR", None)
        environment.update(service_env(opened_root(root), name))
    elif ctx.get_parameter_source("root") == click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--root needs a service NAME")
    files = runner.identity_paths_from_env(environment)
    # Fail before starting CMD if the identity is unusable, with the library's reason.
    from spiffile.identity import Identity

    Identity.from_env(environment)
    try:
        status = runner.run(
            command,
            environment,
            files,
            reload_signal=reload_signal,
            settle=settle,
            log=lambda message: click.echo(message, err=True),
        )
    except FileNotFoundError:
        click.echo(f"Error: command not found: {command[0]}", err=True)
        ctx.exit(127)
    except PermissionError:
        click.echo(f"Error: permission denied: {command[0]}", err=True)
        ctx.exit(126)
    ctx.exit(status)


@cli.command()
def demo() -> None:
    """Run two services that call each other (end-to-end check).

    Provisions a temporary root, starts `orders` and `billing` on 127.0.0.1,
    shows an accepted call, rejected forgeries and a key rotation picked up
    without restart, then cleans up.  Exits 1 if anything does not happen as
    expected.
    """
    from spiffile.cli.demo import DemoFailedError, run_demo

    try:
        run_demo(click.echo)
    except DemoFailedError as exc:
        raise click.ClickException(f"demo failed: {one_line(str(exc))}") from exc


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (`spiffile`, `python -m spiffile`)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="spiffile")
