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

This module holds the group, ``exec`` and ``demo``; the workload commands
(``token``, ``verify``, ``whoami``, ``check``) live in ``workload``, the producer commands in
``producer`` and the shared error mapping and options in ``_options``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import click

from spiffile.cli import endpoint, producer, workload
from spiffile.cli import x509 as x509_cli
from spiffile.cli._options import (
    Seconds,
    SpiffileGroup,
    complete_service,
    one_line,
    opened_root,
    root_option,
)

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


for _command in (*workload.COMMANDS, *producer.COMMANDS, *endpoint.COMMANDS, *x509_cli.COMMANDS):
    cli.add_command(_command)


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
    default="auto",
    show_default=True,
    metavar="auto|none|SIG",
    help="What CMD is told when its identity changes: auto = SIGHUP only if CMD handles "
    "SIGHUP; none = nothing (CMD reads its files itself); SIG = always send SIG.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Restart CMD when it exits unexpectedly (non-zero or killed), with back-off; "
    "and, unless --signal is given, when its identity changes.",
)
@click.option(
    "--max-restarts",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="With --restart: unexpected exits in a row before giving up "
    "(a CMD that ran 60 s starts the count again).",
)
@click.option(
    "--backoff",
    type=Seconds(maximum=3600),
    default=1.0,
    show_default=True,
    help="With --restart: seconds before the first restart; doubles each time, up to 30.",
)
@click.option(
    "--stop-timeout",
    type=Seconds(maximum=3600),
    default=10.0,
    show_default=True,
    help="Seconds CMD gets to exit after SIGTERM before SIGKILL, when it is restarted.",
)
@click.option(
    "--settle",
    type=Seconds(maximum=3600),
    default=0.5,
    show_default=True,
    help="Seconds without further change before CMD is told.",
)
@click.pass_context
def exec_(
    ctx: click.Context,
    root: Path | None,
    name: str | None,
    signal_name: str,
    restart: bool,
    max_restarts: int,
    backoff: float,
    stop_timeout: float,
    settle: float,
) -> None:
    """Run CMD with an identity and keep it alive through rotations.

    \b
    spiffile exec --root ./identity orders -- python app.py
    spiffile exec --signal HUP -- gunicorn app:app    (identity from the SPIFFILE_* env)
    spiffile exec --restart --root ./identity orders -- ./server

    With NAME, CMD gets the service's environment from the root; without,
    the current SPIFFILE_* environment is passed through.  With NAME on a
    root that has an X.509 CA, exec also re-issues the service's X.509-SVID
    each time it passes half its lifetime (as `spiffile x509 renew NAME`);
    a failed renewal is reported here and retried, CMD keeps running.
    Without NAME exec never renews: run `spiffile x509 renew` elsewhere.

    CMD is told of a change only when its own ID, key or X.509 files
    changed, or the bundle's content did (not a rewrite that only renumbers it), once the
    files have settled.  The default, auto, sends SIGHUP only to a CMD that
    has a SIGHUP handler (gunicorn, nginx): most programs, uvicorn included,
    die of an unhandled SIGHUP, so they are left running and read the new
    files themselves (as programs built on spiffile do) or need --restart.

    SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to exec are
    forwarded to CMD; after SIGINT, SIGTERM or SIGQUIT it is not restarted.
    On Linux CMD dies with exec, even when exec is killed with SIGKILL.
    The exit status is CMD's (128+N if it was killed by signal N).
    """
    from spiffile.cli import exec as runner

    command = ctx.meta.get("spiffile.exec.command")
    if not command:
        raise click.UsageError("missing command: spiffile exec [--root R NAME] -- CMD [ARGS...]")
    choice = signal_name.strip().lower()
    on_change: runner.OnChange
    reload_signal = runner.parse_signal("HUP")
    if choice in ("auto", "none"):
        on_change = "auto" if choice == "auto" else "none"
    else:
        on_change = "signal"
        reload_signal = runner.parse_signal(signal_name)
    explicit = ctx.get_parameter_source("signal_name") == click.core.ParameterSource.COMMANDLINE
    if restart and not explicit:
        on_change = "restart"
    environment = dict(os.environ)
    renewer = None

    def say(message: str) -> None:
        click.echo(message, err=True)

    if name is not None:
        from spiffile.cli._renewal import X509Renewer
        from spiffile.provision import service_env

        opened = opened_root(root)
        renewer = X509Renewer.for_service(opened, name, say)
        if renewer is not None:
            renewer.tick()  # CMD starts with an SVID that is not past half its life.
        environment.pop("SPIFFILE_DIR", None)
        environment.update(service_env(opened, name))
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
            on_change=on_change,
            reload_signal=reload_signal,
            restart_on_exit=restart,
            max_restarts=max_restarts,
            backoff=backoff,
            stop_timeout=stop_timeout,
            settle=settle,
            log=say,
            x509_files=runner.x509_paths_from_env(environment),
            renew=None if renewer is None else renewer.tick,
        )
    except FileNotFoundError:
        click.echo(f"Error: command not found: {command[0]!r}", err=True)
        ctx.exit(127)
    except PermissionError:
        click.echo(f"Error: permission denied: {command[0]!r}", err=True)
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
