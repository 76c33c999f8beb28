"""``ckl``: the command-line tool, and the composition root of the three layers.

It sits in ``streams/`` because ``streams`` is the top layer (``streams → projections →
ledger``), so it may import all three without bending the one-way dependency rule.
Each command is one public call plus formatting, in a module by concern:

- ``_cli_read.py``: ``show``, ``replay``, ``pending``, ``audit``
- ``_cli_live.py``: ``tail``, ``await``
- ``_cli_manage.py``: ``demo``, ``reset``, ``project``, ``rebuild``
- ``cli_metrics.py``: ``metrics``
- ``_cli_common.py`` (the store, time arguments, lookups) and ``_cli_format.py`` (tables)

To add a command, write a ``click.command`` in its own module (take the group's
``CliContext`` with ``ckl.cli._context.pass_cli``, raise ``LedgerError`` for what the user
got wrong) and add it to :data:`COMMANDS` below: the one place commands are registered. A test
checks that every command has help and a README entry.

Exit codes: 0 ok, 1 a ``LedgerError`` (one line, no traceback unless ``--debug``), 2 usage,
130 interrupted; ``ckl await`` also exits 1 when the checkpoint failed and 2 on its timeout.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

from ckl.cli import audit, live, manage, read
from ckl.cli._context import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliContext
from ckl.cli.metrics import metrics_command
from ledger import LedgerError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "cli", "main"]

COMMANDS: tuple[click.Command, ...] = (
    *read.COMMANDS,  # show, replay, pending, audit
    *live.COMMANDS,  # tail, await
    *manage.COMMANDS,  # demo, reset, project, rebuild
    metrics_command,
    *audit.COMMANDS,  # verify, export, import, archive, grants
)
"""Every ``ckl`` command: the one registry (``cli.add_command`` for each, below)."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    envvar="CKL_STORE",
    metavar="URL",
    help="Store URL (sqlite:///path.db, postgresql://…, memory://). "
    "Default: $CKL_STORE, else sqlite:///checkpoints.db.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.pass_context
def cli(ctx: click.Context, store: str | None, debug: bool) -> None:
    """checkpoint-ledger: an event-sourced checkpoint ledger for batch workers."""
    ctx.obj = CliContext(store, debug)


for _command in COMMANDS:
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ckl`` with ``argv``; returns the exit code instead of exiting (for tests)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    # Library warnings (a store retry, a connection pool hiccup) go to stderr; the final
    # error is the one line printed below, so drivers stay quiet unless asked.
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        logging.getLogger("psycopg").setLevel(logging.CRITICAL)
    try:
        code = cli.main(args=args, prog_name="ckl", standalone_mode=False)
    except LedgerError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return EXIT_ERROR
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        return _report(exc)
    # `ctx.exit(code)` in a command comes back here as its return value (standalone_mode off).
    return code if isinstance(code, int) else EXIT_OK


def _report(exc: click.ClickException) -> int:
    """Print a click error; its exit code (2 for usage errors)."""
    if isinstance(exc, click.BadParameter) and not isinstance(exc, click.MissingParameter):
        # A bad value (a time, a negative timeout) is one line, like every other error.
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    exc.show()  # a missing argument or an unknown option: the usage line says what to type
    return EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
