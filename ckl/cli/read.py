"""The read commands: ``show``, ``replay``, ``pending``, ``stuck``, ``audit``.

Each syncs the views first (read-your-writes), makes one public query, and prints a rich table
or, with ``--json``, one JSON document of the API's own models.
"""

from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ckl.cli._context import CliContext, find_token, parse_moment, pass_cli, require_run
from ckl.cli._output import (
    cell,
    echo_json,
    event_kind,
    failure_context,
    fmt_idle,
    fmt_time,
    fmt_value,
    idle_seconds,
    make_console,
    pending_table,
    printable,
    settled_summary,
    states_table,
    stuck_table,
)
from ckl.cli._stream import (
    KIND_TOPICS,
    AuditWriter,
    StepFold,
    TimelineWriter,
    consume,
    kind_filter,
    stdout,
)
from projections import STUCK_IDLE_SECONDS

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from datetime import datetime

    from ledger import CheckpointState
    from projections import AuditKind, FailureRecord, TimelineEntry

__all__ = ["audit", "pending", "replay", "show", "stuck"]

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
        now = ledger.now()
    if as_json:
        echo_json(state.model_dump(mode="json"))
        return
    # Plain lines, no markup: every value here may hold text a worker chose.
    lines = [
        f"{token}  {state.status}  attempt {state.attempt}",
        f"  cursor           {fmt_value(state.cursor) or 'null'}",
        f"  items_processed  {state.items_processed}",
    ]
    if state.accumulated_results is not None:
        lines.append(f"  results so far   {fmt_value(state.accumulated_results)}")
    if state.status == "completed":
        lines.append(f"  result           {fmt_value(state.result) or 'null'}")
    if state.error is not None:
        kind = "transient" if state.error.transient else "permanent"
        lines.append(
            f"  error            {kind} {printable(state.error.type)}: "
            f"{printable(state.error.message)}"
        )
        lines.append(f"  next             {_next_step(state)}")
    if state.status == "cancelled":
        lines.append(f"  cancelled        {printable(state.cancel_reason or '')}")
    if state.owner is not None:
        expiry = state.lease_expires_at
        live = "live" if state.lease_is_live(now) else "expired"
        until = "" if expiry is None else f" until {fmt_time(expiry)}"
        lines.append(f"  owner            {printable(state.owner)} (lease {live}{until})")
    if state.status == "open":
        lines.append(f"  idle             {fmt_idle(idle_seconds(now, state.updated_at))}")
    lines.append(f"  version {state.version}, updated {fmt_time(state.updated_at)}")
    for line in lines:
        click.echo(line)


def _next_step(state: CheckpointState) -> str:
    """What resumes a failed checkpoint: a retry for a transient failure, else a reset."""
    where = f"{state.token.run_id} {state.token.batch_index}"
    if state.error is not None and state.error.transient:
        return f"`ckl retry {where}` resumes it from its last cursor (progress kept)"
    return f"fix the cause, then `ckl reset {where} --reason TEXT` starts it over"


_BATCH_HELP = "Only this batch (repeat the option for several)."
_LAST_HELP = "Only the last N matching events (read backwards by position, printed in order)."


def _check_span(
    ctx: click.Context, since: datetime | None, until: datetime | None, what: str = "--until"
) -> None:
    """``--since`` after ``--until`` matches nothing: say so (exit 2) rather than print nothing."""
    if since is not None and until is not None and since > until:
        raise click.BadParameter(
            f"{fmt_time(since)} is after {what} {fmt_time(until)}", ctx, param_hint="'--since'"
        )


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
@click.option(
    "--batch", "batches", type=click.IntRange(min=0), multiple=True, metavar="N", help=_BATCH_HELP
)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(list(KIND_TOPICS)),
    multiple=True,
    help="Only events of this kind, as the event column shows them (repeatable).",
)
@click.option(
    "--since",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Only events at or after this ISO-8601 time (no zone means UTC).",
)
@click.option(
    "--until",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Only events at or before this ISO-8601 time (no zone means UTC).",
)
@click.option("--last", type=click.IntRange(min=1), default=None, metavar="N", help=_LAST_HELP)
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
@click.pass_context
def replay(
    ctx: click.Context,
    obj: CliContext,
    *,
    run_id: str,
    as_of: datetime | None,
    batches: tuple[int, ...],
    kinds: tuple[str, ...],
    since: datetime | None,
    until: datetime | None,
    last: int | None,
    as_json: bool,
    plot: Path | None,
) -> None:
    """Replay a run's checkpoint timeline: every event in order, and each batch's state.

    Written as it is read, page by page, so a run of millions of events prints at once in
    constant memory. --batch, --kind, --since/--until and --last choose which events; the
    state columns are each batch's state right after the event either way, and the batch
    table at the end is each batch's state now (or at --as-of).
    """
    _check_span(ctx, since, until)
    _check_span(ctx, since, as_of, "--as-of")
    end = as_of if until is None or (as_of is not None and as_of < until) else until
    topics, keep = kind_filter(kinds)
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        summaries = require_run(views, run_id)
        known = {summary.batch_index for summary in summaries}
        unknown = sorted(set(batches) - known)
        if unknown:
            raise click.BadParameter(
                f"run {printable(run_id)} has no batch {', '.join(map(str, unknown))}",
                ctx,
                next(p for p in ctx.command.params if p.name == "batches"),
            )
        chosen = sorted(batches) or None
        read = functools.partial(
            views.iter_timeline, run_id, since=since, until=end, batches=chosen, topics=topics
        )
        entries: Iterator[TimelineEntry]
        if last is None:
            entries = read()
        else:
            newest = (
                e for e in read(descending=True) if keep is None or event_kind(e.event) in keep
            )
            entries = reversed(list(itertools.islice(newest, last)))
        out = stdout()
        writer = TimelineWriter(
            out,
            as_json=as_json,
            position_width=len(str(views.position)),
            batch_width=len(str(max(known))),
        )
        fold = StepFold(ledger, run_id)
        writer.begin(run_id, None if as_of is None else as_of.isoformat())
        consume(entries, fold, writer, keep)
        whole = since is None and not kinds and last is None and until is None
        states = fold.states if whole else views.run_states(run_id, until=as_of, batches=chosen)
        written = None
        if plot is not None:
            from ckl.plotting import plot_run_progress  # noqa: PLC0415  (optional extra)

            title = f"run {run_id}" + ("" if as_of is None else f" as of {fmt_time(as_of)}")
            written = plot_run_progress(list(read()), plot, title=title)
    batch_states = [states[b] for b in sorted(states)]
    if as_json:
        writer.end_json(batch_states, None if written is None else str(written))
        return
    when = "now" if as_of is None else f"as of {fmt_time(as_of)}"
    if writer.count == 0 and not (since or until or kinds or chosen):
        first = min(summary.created_at for summary in summaries)
        out.write(
            f"run {printable(run_id)} {when}: nothing had happened yet "
            f"(its first checkpoint was created at {fmt_time(first)})\n"
        )
    else:
        out.write(f"run {printable(run_id)}: {writer.count} events\n")
    out.flush()
    console = make_console()
    if states:
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
        now = ledger.now()
    waiting = [summary for summary in summaries if summary.status == "open"]
    if as_json:
        echo_json(
            {
                "progress": progress.model_dump(mode="json"),
                "now": now.isoformat(),
                "pending": [
                    {
                        **summary.model_dump(mode="json"),
                        "idle_seconds": round(idle_seconds(now, summary.last_activity), 3),
                    }
                    for summary in waiting
                ],
            }
        )
        return
    total = progress.total_batches if progress.total_batches is not None else progress.created
    head = (
        f"run {run_id}: {len(waiting)} pending; {progress.completed}/{total} completed, "
        f"{progress.failed} failed"
        + (f", {progress.cancelled} cancelled" if progress.cancelled else "")
    )
    console = make_console()
    if waiting:
        console.print(pending_table(waiting, now, title=cell(head)))
    else:
        click.echo(printable(head))


def _idle_option(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """``--idle``: finite seconds ≥ 0 (click's FloatRange lets NaN and infinity through)."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise click.BadParameter(f"{value!r} is not a finite number of seconds ≥ 0", ctx, param)
    return value


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option(
    "--idle",
    type=float,
    callback=_idle_option,
    default=STUCK_IDLE_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="An open checkpoint with no event (yield, heartbeat, claim…) for this long is stuck, "
    "leased or not. One whose lease expired is stuck whatever its idle time.",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@pass_cli
def stuck(obj: CliContext, run_id: str | None, idle: float, as_json: bool) -> None:
    """List stuck checkpoints: open with an expired lease, or with no event for too long.

    For each: run, batch, status, attempt, owner, idle time, lease expiry and why it is stuck.
    Idle times are measured on the ledger's clock. A worker running the run with leases
    (claim_next, run_batches with owner=) takes an expired lease over; `ckl cancel` stops a
    batch for good. Exit 0 either way.
    """
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        if run_id is not None:
            require_run(views, run_id)
        rows = views.stuck(run_id, idle=idle)
    if as_json:
        echo_json([row.model_dump(mode="json") for row in rows])
        return
    scope = "" if run_id is None else f" in run {printable(run_id)}"
    if not rows:
        click.echo(
            f"no stuck checkpoints{scope} (no expired lease, nothing idle for {fmt_idle(idle)})"
        )
        return
    title = (
        f"{len(rows)} stuck checkpoint(s){scope}: lease expired, or no event for "
        f"{fmt_idle(idle)} or more"
    )
    make_console().print(stuck_table(rows, title=cell(title)))


@click.command()
@click.option("--run", "run_id", metavar="RUN", default=None, help="Only this run's failures.")
@click.option(
    "--batch",
    "batches",
    type=click.IntRange(min=0),
    multiple=True,
    metavar="N",
    help="Only this batch of --run (repeat the option for several).",
)
@click.option(
    "--since",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Only failures at or after this ISO-8601 time (no zone means UTC).",
)
@click.option(
    "--until",
    metavar="TIME",
    callback=parse_moment,
    default=None,
    help="Only failures at or before this ISO-8601 time (no zone means UTC).",
)
@click.option("--error-type", metavar="T", default=None, help="Only this error type (exact).")
@click.option(
    "--transient/--permanent",
    "transient",
    default=None,
    help="Only transient, or only permanent, failures (default: both).",
)
@click.option(
    "--kind",
    type=click.Choice(["failure", "takeover", "cancel"]),
    default=None,
    help="Only failures (Failed events), takeovers of an expired lease, or cancels "
    "(default: all three).",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the last N matching rows (read backwards, printed in order).",
)
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also print each failure's traceback, host and pid (control characters escaped).",
)
@click.option("--json", "as_json", is_flag=True, help=_JSON_HELP)
@pass_cli
@click.pass_context
def audit(
    ctx: click.Context,
    obj: CliContext,
    *,
    run_id: str | None,
    batches: tuple[int, ...],
    since: datetime | None,
    until: datetime | None,
    error_type: str | None,
    transient: bool | None,
    kind: AuditKind | None,
    last: int | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Audit failures, lease takeovers and cancels, filtered, and what became of each.

    A failure is a Failed event (transient or permanent; then retried, reset or still
    standing); a takeover is a worker claiming a batch whose previous owner's lease expired
    (error type LeaseExpired, transient); a cancel is `ckl cancel` (error type Cancelled).
    Written as it is read, page by page, in constant memory.
    """
    if batches and run_id is None:
        raise click.BadParameter(
            "--batch needs --run (batch numbers belong to a run)", ctx, param_hint="'--batch'"
        )
    _check_span(ctx, since, until)
    with obj.open(existing=True) as ledger, obj.views(ledger) as views:
        read = functools.partial(
            views.iter_failures,
            run_id=run_id,
            since=since,
            until=until,
            error_type=error_type,
            transient=transient,
            kind=kind,
            batches=sorted(batches) or None,
        )
        records: Iterable[FailureRecord] = (
            read()
            if last is None
            else reversed(list(itertools.islice(read(descending=True), last)))
        )
        out = stdout()
        writer = AuditWriter(out, as_json=as_json, show_run=run_id is None)
        writer.begin()
        contexts: list[FailureRecord] = []
        for record in records:
            writer.write(record)
            if verbose and record.kind == "failure":
                # The tracebacks come after the table, as before; only the rows that have one.
                contexts.append(record)
        summary = writer.end()
    if as_json:
        return
    if summary is None:
        out.write("nothing matches\n")
        return
    out.write(summary + "\n")
    for record in contexts:
        out.write("\n")
        for line in failure_context(record):
            out.write(line + "\n")
