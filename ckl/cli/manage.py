"""The commands that change something: ``demo``, ``reset``, ``project``, ``rebuild``."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime

import click

from ckl.cli._context import CliContext, find_token, pass_cli
from ckl.cli._output import echo_json, fmt_value, make_console
from ckl.demo import replay_and_audit, run_demo
from projections import Projections

__all__ = ["demo", "project", "rebuild", "reset"]


@click.command()
@click.option("--run-id", default=None, help="Run id to use (default: demo-<UTC time>).")
@click.option("--items", default=1000, show_default=True, help="Items per batch.")
@click.option("--chunk", default=250, show_default=True, help="Items per checkpoint yield.")
@pass_cli
def demo(obj: CliContext, run_id: str | None, items: int, chunk: int) -> None:
    """Run a sample job (3 batches, a transient failure, a resume), then replay and audit it."""
    run_id = run_id or f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    console = make_console()
    with obj.open() as ledger:
        run_demo(ledger, run_id, items_per_batch=items, chunk=chunk, console=console)
        replay_and_audit(ledger, run_id, console=console)


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="BATCH", type=click.IntRange(min=0))
@click.option("--reason", required=True, help="Why (kept in the Reset event; required).")
@click.option("--json", "as_json", is_flag=True, help="Print the new state as one JSON document.")
@pass_cli
def reset(obj: CliContext, run_id: str, batch_index: int, reason: str, as_json: bool) -> None:
    """Reset a checkpoint (operator action): a new attempt starts from scratch."""
    with obj.open(existing=True) as ledger:
        token = find_token(ledger, run_id, batch_index)
        before = ledger.get_checkpoint(token)
        state = ledger.reset_checkpoint(token, reason)
    if as_json:
        echo_json(state.model_dump(mode="json"))
        return
    click.echo(
        f"reset {token}: was {before.status} (attempt {before.attempt}, "
        f"cursor={fmt_value(before.cursor) or '-'}, items {before.items_processed}); "
        f"attempt {state.attempt} starts from scratch. Reason: {reason}"
    )


@click.command()
@click.option(
    "--poll-interval",
    default=0.5,
    show_default=True,
    help="Seconds between polls for other processes' writes (SQLite; PostgreSQL uses NOTIFY).",
)
@pass_cli
def project(obj: CliContext, poll_interval: float) -> None:
    """Keep the projections current: follow the log until interrupted (Ctrl-C or SIGTERM)."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with obj.open(poll_interval=poll_interval) as ledger, Projections(ledger) as views:
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli
def rebuild(obj: CliContext, as_json: bool) -> None:
    """Drop the projections and replay the whole log into them."""
    with obj.open(existing=True) as ledger, Projections(ledger) as views:
        started = time.perf_counter()
        position = views.rebuild()
        seconds = time.perf_counter() - started
    if as_json:
        echo_json({"position": position, "seconds": round(seconds, 3)})
    else:
        click.echo(f"rebuilt the views up to position {position} in {seconds:.2f}s")
