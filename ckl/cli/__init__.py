"""``ckl``: the command-line tool, the composition root of the three layers.

Each command is one public call plus formatting, in a module by concern:

- ``read.py``: ``show``, ``replay``, ``pending``, ``stuck``, ``audit``
- ``live.py``: ``tail``, ``await``
- ``manage.py``: ``demo``, ``retry``, ``cancel``, ``reset``, ``project``, ``rebuild``
- ``metrics.py``: ``metrics``
- ``audit.py``: ``verify``, ``export``, ``import``, ``archive``, ``grants``
- ``partitions.py``: ``partitions enable|list|create|detach`` (PostgreSQL)
- ``serve.py``: ``serve``, ``token``
- ``_context.py`` (the one way to the store, time arguments, lookups), ``_output.py`` (the one
  JSON printer, lines and tables) and ``_exit.py`` (exit codes)

Commands are loaded lazily: :class:`LazyGroup` imports a command's module only when that
command runs, so ``ckl --help`` loads neither the ledger nor rich, psycopg or
prometheus_client. To add a command, write a ``click.command`` in its module (take the group's
``CliContext`` with ``ckl.cli._context.pass_cli``, raise ``LedgerError`` for what the user got
wrong) and add a :class:`CommandEntry` to :data:`COMMANDS` below: the one place commands are
registered. Tests check that each entry's summary is its command's own and that every command
has help and a README entry.

Exit codes: 0 ok, 1 a ``LedgerError`` (one line, no traceback unless ``--debug``), 2 usage,
130 interrupted; ``ckl await`` also exits 1 when the checkpoint failed and 2 on its timeout.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from ckl.cli._exit import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["COMMANDS", "CommandEntry", "LazyGroup", "cli", "main"]


class CommandEntry(NamedTuple):
    """One ``ckl`` command: where it lives, and the summary ``ckl --help`` shows for it."""

    name: str
    """The command's name on the command line."""
    module: str
    """The module that defines it (imported when the command runs)."""
    attribute: str
    """The ``click.Command`` in that module."""
    summary: str
    """The first paragraph of the command's help, shown without importing the module."""


COMMANDS: tuple[CommandEntry, ...] = (
    CommandEntry("show", "ckl.cli.read", "show", "Show one checkpoint's current state."),
    CommandEntry(
        "replay",
        "ckl.cli.read",
        "replay",
        "Replay a run's checkpoint timeline: every event in order, and each batch's state.",
    ),
    CommandEntry(
        "pending",
        "ckl.cli.read",
        "pending",
        "List a run's pending checkpoints (created, still open) and where each resumes.",
    ),
    CommandEntry(
        "stuck",
        "ckl.cli.read",
        "stuck",
        "List stuck checkpoints: open with an expired lease, or with no event for too long.",
    ),
    CommandEntry(
        "audit",
        "ckl.cli.read",
        "audit",
        "Audit failures, lease takeovers and cancels, filtered, and what became of each.",
    ),
    CommandEntry(
        "tail",
        "ckl.cli.live",
        "tail",
        "Follow the live stream of RUN's events (or of every run): catch up, then live.",
    ),
    CommandEntry(
        "await",
        "ckl.cli.live",
        "await_",
        "Wait until a checkpoint settles: exit 0 completed, 1 failed, 2 timed out.",
    ),
    CommandEntry(
        "demo",
        "ckl.cli.manage",
        "demo",
        "Run a sample job (3 batches, a transient failure, a resume), then replay and audit it.",
    ),
    CommandEntry(
        "retry",
        "ckl.cli.manage",
        "retry",
        "Retry a transient failure: the next attempt resumes from the last durable cursor.",
    ),
    CommandEntry(
        "cancel",
        "ckl.cli.manage",
        "cancel",
        "Cancel a batch, or every batch of RUN that is not settled: no more work is recorded.",
    ),
    CommandEntry(
        "reset",
        "ckl.cli.manage",
        "reset",
        "Reset a checkpoint (operator action): a new attempt starts from scratch.",
    ),
    CommandEntry(
        "project",
        "ckl.cli.manage",
        "project",
        "Keep the projections current: follow the log until interrupted (Ctrl-C or SIGTERM).",
    ),
    CommandEntry(
        "rebuild",
        "ckl.cli.manage",
        "rebuild",
        "Drop the projections and replay the whole log into them.",
    ),
    CommandEntry(
        "migrate",
        "ckl.cli.manage",
        "migrate",
        "Upgrade the store's schema to this version's (idempotent); print from/to versions.",
    ),
    CommandEntry(
        "metrics",
        "ckl.cli.metrics",
        "metrics_command",
        "Serve Prometheus metrics of the store on http://HOST:PORT/metrics until interrupted.",
    ),
    CommandEntry(
        "verify",
        "ckl.cli.audit",
        "verify",
        "Recompute the hash chains of RUN (or the whole store); exit 1 if anything was altered.",
    ),
    CommandEntry(
        "export",
        "ckl.cli.audit",
        "export",
        "Write every event of RUN to FILE (JSON lines: a header, then one line per event).",
    ),
    CommandEntry(
        "import",
        "ckl.cli.audit",
        "import_",
        "Append the events of an archive FILE to the store, after checking all of its hashes.",
    ),
    CommandEntry(
        "archive",
        "ckl.cli.audit",
        "archive",
        "Export a finished RUN to FILE, check the file, then purge the run from the store.",
    ),
    CommandEntry(
        "partitions",
        "ckl.cli.partitions",
        "partitions",
        "Partition the PostgreSQL event log by position range; detach archived partitions.",
    ),
    CommandEntry(
        "serve",
        "ckl.cli.serve",
        "serve",
        "Serve the ledger over HTTP: JSON API under /v1, SSE streams, the web UI at /.",
    ),
    CommandEntry(
        "token",
        "ckl.cli.serve",
        "token",
        "Make a bearer token for `ckl serve`: print it once, append its SHA-256 to the file.",
    ),
    CommandEntry(
        "grants",
        "ckl.cli.audit",
        "grants",
        "Print the PostgreSQL GRANT statements of a least-privilege set-up (run as superuser).",
    ),
)
"""Every ``ckl`` command: the one registry (:class:`LazyGroup` serves it)."""


class LazyGroup(click.Group):
    """A click group whose commands are imported from their modules only when needed.

    ``list_commands`` and the help's command list come from the registry alone; ``get_command``
    imports the one module it needs. Commands added with ``add_command`` work as in any group.
    """

    def __init__(
        self,
        *args: Any,  # noqa: ANN401  (click.Group's own arguments, passed through)
        registry: Sequence[CommandEntry] = (),
        **kwargs: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(*args, **kwargs)
        self.registry = {entry.name: entry for entry in registry}

    def list_commands(self, ctx: click.Context) -> list[str]:  # noqa: ARG002  (click's signature)
        """Every command's name, sorted (as click's own group lists them)."""
        return sorted({*self.commands, *self.registry})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:  # noqa: ARG002
        """The command, its module imported on first use; ``None`` for an unknown name."""
        command = self.commands.get(cmd_name)
        entry = self.registry.get(cmd_name)
        if command is None and entry is not None:
            command = getattr(importlib.import_module(entry.module), entry.attribute)
            if not isinstance(command, click.Command):
                msg = f"{entry.module}.{entry.attribute} is not a click command"
                raise TypeError(msg)
            self.commands[cmd_name] = command
        return command

    def load_all(self) -> dict[str, click.Command]:
        """Import every command; the commands by name (for tests and documentation tools)."""
        ctx = click.Context(self)
        loaded = {name: self.get_command(ctx, name) for name in self.list_commands(ctx)}
        return {name: command for name, command in loaded.items() if command is not None}

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The help's command list, from the registry's summaries: no command is imported.

        Laid out as click lays out its own (``click.Group.format_commands``); a command not yet
        imported is shown through a stand-in that carries its registry summary as help, so
        click shortens it exactly as it would the command's own.
        """
        commands = []
        for name in self.list_commands(ctx):
            entry = self.registry.get(name)
            command = self.commands.get(name)
            if command is None and entry is not None:
                command = click.Command(name, help=entry.summary)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    registry=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--store",
    envvar="CKL_STORE",
    metavar="URL",
    help="Store URL (sqlite:///path.db, postgresql://…, memory://). "
    "Default: $CKL_STORE, else sqlite:///checkpoints.db.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
# The installed distribution's version (importlib.metadata), read only when asked.
@click.version_option(
    package_name="checkpoint-ledger", prog_name="ckl", message="%(prog)s %(version)s"
)
@click.pass_context
def cli(ctx: click.Context, store: str | None, debug: bool) -> None:
    """checkpoint-ledger: an event-sourced checkpoint ledger for batch workers."""
    # Imported here: `ckl --help` never runs this callback, and so never loads the ledger.
    from ckl.cli._context import CliContext  # noqa: PLC0415

    ctx.obj = CliContext(store, debug)


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
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        return _report(exc)
    except Exception as exc:
        # The command that raised has loaded the ledger already; importing it at the top
        # would cost every `ckl --help` the ledger's import.
        from ledger import LedgerError  # noqa: PLC0415

        if debug or not isinstance(exc, LedgerError):
            raise
        click.echo(f"error: {exc}", err=True)
        return EXIT_ERROR
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
