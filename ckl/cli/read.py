"""The read commands: ``show``, ``replay``, ``pending``, ``audit``.

Each syncs the views first (read-your-writes), makes one public query, and prints a rich table
or, with ``--json``, one JSON document of the API's own models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ckl.cli._context import CliContext, find_token, parse_moment, pass_cli, require_run
from ckl.cli._output import (
    echo_json,
    failures_table,
    fmt_time,
    make_console,
    pending_table,
    settled_summary,
    states_table,
    timeline_steps,
    timeline_table,
)

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["audit", "pending", "replay", "show"]

_JSON_HELP = "Print one JSON document instead of a table."


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="BATCH", type=click.IntRange(min=0))
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@pass_cli
def show(obj: CliContext, run_id: str, batch_index: int, as_json: bool) -> None:
    """Show one checkpoint's current state."""
    with obj.open(existing=True) as ledger:
        token = find_token(ledger, run_id, batch_index)
        state = ledger.get_checkpoint(token)
    if as_json:
        echo_json(state.model_dump(mode="json"))
        return
    console = make_console()
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
    console.print(f"  version {state.version}, updated {fmt_time(state.updated_at)}")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--as-of",
    "as_of",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Show the run as it was at this moment: an ISO-8601 time such as "
    "2026-11-23T11:15:30.5 or 2026-11-23T12:15:30+01:00 (no zone means UTC). "
    "The timeline stops there too.",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    metavar="FILE.png",
    help="Also draw items_processed over time per batch, failures and retries marked "
    "(needs the 'plot' extra: pip install 'checkpoint-ledger[plot]').",
)
@pass_cli
def replay(
    obj: CliContext, run_id: str, as_of: datetime | None, as_json: bool, plot: Path | None
) -> None:
    """Replay a run's checkpoint timeline: every event in order, and each batch's state."""
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        summaries = require_run(views, run_id)
        entries = views.timeline(run_id, until=as_of)
        states = {} if as_of is None else views.run_state_as_of(run_id, as_of)
    steps, folded = timeline_steps(entries)
    if as_of is None:
        states = folded
    written = None
    if plot is not None:
        from ckl.plotting import plot_run_progress  # noqa: PLC0415  (optional extra)

        title = f"run {run_id}" + ("" if as_of is None else f" as of {fmt_time(as_of)}")
        written = plot_run_progress(entries, plot, title=title)
    if as_json:
        echo_json(
            {
                "run_id": run_id,
                "as_of": None if as_of is None else as_of.isoformat(),
                "events": len(steps),
                "timeline": [step.to_json() for step in steps],
                "batches": [states[b].model_dump(mode="json") for b in sorted(states)],
                "plot": None if written is None else str(written),
            }
        )
        return
    console = make_console()
    when = "now" if as_of is None else f"as of {fmt_time(as_of)}"
    if not steps:
        first = min(summary.created_at for summary in summaries)
        console.print(
            f"run [cyan]{run_id}[/cyan] {when}: nothing had happened yet "
            f"(its first checkpoint was created at {fmt_time(first)})"
        )
    else:
        console.print(timeline_table(steps, title=f"run {run_id}: {len(steps)} events"))
        console.print(states_table(states, title=f"{when}: {settled_summary(states.values())}"))
    if written is not None:
        console.print(f"plot written to {written}")


@click.command()
@click.argument("run_id", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@pass_cli
def pending(obj: CliContext, run_id: str, as_json: bool) -> None:
    """List a run's pending checkpoints (created, still open) and where each resumes."""
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        summaries = require_run(views, run_id)
        progress = views.progress(run_id)
    waiting = [summary for summary in summaries if summary.status == "open"]
    if as_json:
        echo_json(
            {
                "progress": progress.model_dump(mode="json"),
                "pending": [summary.model_dump(mode="json") for summary in waiting],
            }
        )
        return
    total = progress.total_batches if progress.total_batches is not None else progress.created
    head = (
        f"run {run_id}: {len(waiting)} pending; {progress.completed}/{total} completed, "
        f"{progress.failed} failed"
    )
    console = make_console()
    if waiting:
        console.print(pending_table(waiting, title=head))
    else:
        console.print(head)


@click.command()
@click.option("--run", "run_id", metavar="RUN", default=None, help="Only this run's failures.")
@click.option(
    "--since",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Only failures at or after this ISO-8601 time (no zone means UTC).",
)
@click.option("--error-type", metavar="T", default=None, help="Only this error type (exact).")
@click.option(
    "--transient/--permanent",
    "transient",
    default=None,
    help="Only transient, or only permanent, failures (default: both).",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@pass_cli
def audit(
    obj: CliContext,
    *,
    run_id: str | None,
    since: datetime | None,
    error_type: str | None,
    transient: bool | None,
    as_json: bool,
) -> None:
    """Audit failures: every Failed event, filtered, and whether it was retried or reset."""
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        records = views.failures(
            run_id=run_id, since=since, error_type=error_type, transient=transient
        )
    if as_json:
        echo_json([record.model_dump(mode="json") for record in records])
        return
    console = make_console()
    if not records:
        console.print("no failures match")
        return
    permanent = sum(1 for record in records if not record.transient)
    title = f"{len(records)} failure(s), {permanent} permanent"
    console.print(failures_table(records, title=title, show_run=run_id is None))
