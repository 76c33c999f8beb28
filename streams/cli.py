"""``ckl``: the command-line tool, and the composition root of the three layers.

It sits in ``streams/`` because ``streams`` is the top layer (``streams → projections →
ledger``), so it may import all three without bending the one-way dependency rule.
Each command is one public call plus formatting. Exit codes: 0 ok, 1 a ``LedgerError``
(one line, no traceback unless ``--debug``), 2 usage, 130 interrupted.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console

from ledger import CheckpointNotFound, Ledger, LedgerError, LedgerSettings
from projections import Projections
from streams.demo import run_demo

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["cli", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Context:
    def __init__(self, store: str | None, debug: bool) -> None:
        self.store, self.debug = store, debug

    def open(self) -> Ledger:
        return Ledger.open(settings=LedgerSettings.from_env(store=self.store))


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
    ctx.obj = _Context(store, debug)


@cli.command()
@click.option("--run-id", default=None, help="Run id to use (default: demo-<UTC time>).")
@click.option("--items", default=1000, show_default=True, help="Items per batch.")
@click.option("--chunk", default=250, show_default=True, help="Items per checkpoint yield.")
@click.pass_obj
def demo(obj: _Context, run_id: str | None, items: int, chunk: int) -> None:
    """Run a sample job: 3 batches, a transient failure in the middle, a resume."""
    run_id = run_id or f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with obj.open() as ledger:
        run_demo(ledger, run_id, items_per_batch=items, chunk=chunk, console=Console())


@cli.command()
@click.argument("run_id")
@click.argument("batch_index", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def show(obj: _Context, run_id: str, batch_index: int, as_json: bool) -> None:
    """Show one checkpoint's current state."""
    with obj.open() as ledger:
        token = ledger.find_checkpoint(run_id, batch_index)
        if token is None:
            raise CheckpointNotFound(f"{run_id}/{batch_index}")
        state = ledger.get_checkpoint(token)
    if as_json:
        click.echo(json.dumps(state.model_dump(mode="json"), indent=2))
        return
    console = Console()
    console.print(f"[bold]{token}[/bold]  {state.status}  attempt {state.attempt}")
    console.print(f"  cursor           {json.dumps(state.cursor)}")
    console.print(f"  items_processed  {state.items_processed}")
    if state.accumulated_results is not None:
        console.print(f"  results so far   {json.dumps(state.accumulated_results)}")
    if state.status == "completed":
        console.print(f"  result           {json.dumps(state.result)}")
    if state.error is not None:
        kind = "transient" if state.error.transient else "permanent"
        console.print(f"  error            {kind} {state.error.type}: {state.error.message}")
    console.print(f"  version {state.version}, updated {state.updated_at.isoformat()}")


@cli.command()
@click.option(
    "--poll-interval",
    default=0.5,
    show_default=True,
    help="Seconds between polls for other processes' writes (SQLite; PostgreSQL uses NOTIFY).",
)
@click.pass_obj
def project(obj: _Context, poll_interval: float) -> None:
    """Keep the projections current: follow the log until interrupted (Ctrl-C or SIGTERM)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    settings = LedgerSettings.from_env(store=obj.store, poll_interval=poll_interval)
    with Ledger.open(settings=settings) as ledger, Projections(ledger) as views:
        views.start()
        click.echo(f"following {ledger.store_display} from position {views.position}", err=True)
        reported = views.position
        try:
            while not stop.wait(1.0):
                if views.position != reported:
                    reported = views.position
                    click.echo(f"views at position {reported}", err=True)
        except KeyboardInterrupt:
            click.echo(f"stopped at position {views.position}", err=True)
            raise
        click.echo(f"stopped at position {views.position}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_obj
def rebuild(obj: _Context, as_json: bool) -> None:
    """Drop the projections and replay the whole log into them."""
    with obj.open() as ledger, Projections(ledger) as views:
        started = time.perf_counter()
        position = views.rebuild()
        seconds = time.perf_counter() - started
    if as_json:
        click.echo(json.dumps({"position": position, "seconds": round(seconds, 3)}))
    else:
        click.echo(f"rebuilt the views up to position {position} in {seconds:.2f}s")


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
        cli.main(args=args, prog_name="ckl", standalone_mode=False)
    except LedgerError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return EXIT_ERROR
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as exc:
        exc.show()
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
