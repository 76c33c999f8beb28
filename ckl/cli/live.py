"""The live commands: ``tail`` (the stream, optionally as progress bars) and ``await``.

Both block in the main thread, so Ctrl-C lands there and ``ckl.cli`` exits 130 after the
``with`` blocks have disposed the subscription and closed the store.
"""

from __future__ import annotations

import json
import queue
import time
from typing import TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ckl.cli._context import CliContext, find_token, pass_cli
from ckl.cli._exit import EXIT_ERROR
from ckl.cli._output import (
    cell,
    echo_json,
    echo_line,
    event_attempt,
    event_detail,
    event_kind,
    fmt_idle,
    fmt_time,
    fmt_value,
    idle_seconds,
    make_console,
    printable,
    settled_summary,
)
from ledger import (
    AwaitTimeout,
    Cancelled,
    CheckpointCancelled,
    CheckpointFailedError,
    CheckpointToken,
    Claimed,
    Created,
    Failed,
    Reset,
    apply,
    run_is_settled,
)
from streams.completion import await_checkpoint
from streams.tail import StreamEvent, run_stream

if TYPE_CHECKING:
    from datetime import datetime

    from ledger import CheckpointEvent, CheckpointState, Ledger

__all__ = ["await_", "tail"]

EXIT_TIMED_OUT = 2
"""``ckl await``: the wait gave up (the issue fixes 2, the same code as a usage error)."""
TOTAL_ITEMS_KEY = "total_items"
"""Created metadata key a worker may set so progress bars know a batch's expected items."""
IDLE_REFRESH_SECONDS = 1.0
"""How often ``tail --progress`` redraws the idle times of open batches between events."""


def _stream_line(item: StreamEvent) -> str:
    event = item.event
    cursor = getattr(event, "cursor", None)
    items = getattr(event, "items_processed", None)
    where = "" if items is None else f"  cursor={fmt_value(cursor)} items={items}"
    detail = event_detail(event)
    return (
        f"{item.position:>7}  {fmt_time(item.at)}  {item.run_id}/{item.batch_index}"
        f"  {event_kind(event):<9} attempt {event_attempt(event)}{where}"
        + (f"  {detail}" if detail else "")
    )


class _Feed:
    """The stream's events handed to the main thread through a bounded queue.

    Bounded, so the stream stays pull-based: when the terminal is slow the reader thread waits
    in ``put`` instead of piling events up in memory.
    """

    def __init__(self) -> None:
        self.items: queue.Queue[StreamEvent | Exception] = queue.Queue(maxsize=1000)

    def get(self, timeout: float) -> StreamEvent | None:
        try:
            item = self.items.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, Exception):
            raise item
        return item


@click.command()
@click.argument("run_id", metavar="[RUN]", required=False)
@click.option(
    "--from",
    "after",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    metavar="POSITION",
    help="Start after this global position (the position of the last event you saw); "
    "0 replays from the beginning, then follows live.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one event per line.")
@click.option(
    "--progress",
    is_flag=True,
    help="Show one live progress bar per batch of RUN (items_processed of the batch's "
    f"'{TOTAL_ITEMS_KEY}' metadata when it has one) until the run settles.",
)
@pass_cli
@click.pass_context
def tail(
    ctx: click.Context,
    obj: CliContext,
    *,
    run_id: str | None,
    after: int,
    as_json: bool,
    progress: bool,
) -> None:
    """Follow the live stream of RUN's events (or of every run): catch up, then live.

    Runs until Ctrl-C (exit 130). With --progress it ends (exit 0) when the run has settled:
    every batch completed, permanently failed or cancelled, and all of its declared
    total_batches created. Each open batch's bar shows its owner (the lease holder) and how
    long it has been idle (since its last event, on the ledger's clock).
    """
    if progress and run_id is None:
        raise click.UsageError("--progress needs a RUN", ctx)
    feed = _Feed()
    with obj.open(reads=True) as ledger:
        subscription = run_stream(ledger, run_id, after=after).subscribe(
            on_next=feed.items.put, on_error=feed.items.put
        )
        try:
            if progress:
                assert run_id is not None  # noqa: S101  (checked above)
                _show_progress(ledger, run_id, feed, as_json=as_json)
                return
            while True:
                item = feed.get(timeout=1.0)
                if item is not None:
                    echo_line(item.model_dump_json() if as_json else _stream_line(item))
        finally:
            subscription.dispose()


def _bar_status(state: CheckpointState, now: datetime) -> str:
    """A bar's status text (rich markup; what a worker chose is escaped)."""
    if state.status == "completed":
        return "[green]completed[/green]"
    if state.status == "failed" and state.error is not None:
        kind = "transient" if state.error.transient else "permanent"
        return f"[red]failed[/red] ({kind}) {cell(state.error.type)}"
    if state.status == "cancelled":
        return f"[blue]cancelled[/blue] {cell(state.cancel_reason or '')}"
    owner = "no owner" if state.owner is None else f"owner {cell(state.owner)}"
    idle = fmt_idle(idle_seconds(now, state.updated_at))
    return f"open, attempt {state.attempt}, {owner}, idle {idle}"


def _worth_a_line(event: CheckpointEvent) -> bool:
    """Events printed above the bars: failures, resets, cancels and takeovers."""
    return isinstance(event, Failed | Reset | Cancelled) or (
        isinstance(event, Claimed) and event.taken_over
    )


def _expected_items(state: CheckpointState) -> int | None:
    total = state.metadata.get(TOTAL_ITEMS_KEY)
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    return None


class _Bars:
    """The progress bars of one run: each batch's state and bar, updated event by event."""

    def __init__(self, ledger: Ledger, bars: Progress) -> None:
        self.ledger, self.bars = ledger, bars
        self.states: dict[int, CheckpointState] = {}
        self.tasks: dict[int, TaskID] = {}
        self.refreshed = time.monotonic()

    def show(self, item: StreamEvent) -> None:
        """Fold one event into its batch's state and redraw that batch's bar."""
        event = item.event
        previous = self.states.get(item.batch_index)
        if previous is None and not isinstance(event, Created):
            # Started mid-run (--from): read the state at this event's version instead.
            token = CheckpointToken(
                run_id=item.run_id,
                batch_index=item.batch_index,
                checkpoint_id=item.checkpoint_id,
            )
            state = self.ledger.get_checkpoint(token, as_of=event.originator_version)
        else:
            state = apply(previous, event)
        self.states[item.batch_index] = state
        if _worth_a_line(event):
            self.bars.console.print(
                f"  batch {item.batch_index}  {event_kind(event)}  {cell(event_detail(event))}"
            )
        expected = _expected_items(state)
        if state.status == "completed" and expected is None:
            expected = state.items_processed  # done: a full bar, whatever was declared
        status = _bar_status(state, self.ledger.now())
        task = self.tasks.get(item.batch_index)
        if task is None:
            task = self.bars.add_task("", total=expected, batch=item.batch_index, status=status)
            self.tasks[item.batch_index] = task
        self.bars.update(task, total=expected, completed=state.items_processed, status=status)
        if state.status != "open":
            self.bars.stop_task(task)
        else:
            self.bars.start_task(task)

    def refresh_idle(self) -> None:
        """Redraw the idle times of open batches, at most every ``IDLE_REFRESH_SECONDS``."""
        if time.monotonic() - self.refreshed < IDLE_REFRESH_SECONDS:
            return
        self.refreshed = time.monotonic()
        now = self.ledger.now()
        for batch, task in self.tasks.items():
            if self.states[batch].status == "open":
                self.bars.update(task, status=_bar_status(self.states[batch], now))


def _show_progress(ledger: Ledger, run_id: str, feed: _Feed, *, as_json: bool) -> None:
    """One bar per batch, updated from the stream, until the run settles (then return)."""
    console = make_console(stderr=True, highlight=False)
    columns = (
        TextColumn("batch {task.fields[batch]:>3}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, auto_refresh=True, refresh_per_second=8) as progress:
        bars = _Bars(ledger, progress)
        console.print(f"run [cyan]{cell(run_id)}[/cyan]  {ledger.store_display}")
        while True:
            item = feed.get(timeout=0.25)
            if item is None:
                if run_is_settled(bars.states):
                    break
                bars.refresh_idle()
                continue
            if as_json:
                echo_line(item.model_dump_json())
            bars.show(item)
    summary = settled_summary(bars.states.values())
    console.print(f"run [cyan]{cell(run_id)}[/cyan] settled: {summary}")


@click.command("await")
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="BATCH", type=click.IntRange(min=0))
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    metavar="S",
    help="Give up after S seconds (exit 2). Default: wait until it settles.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli
@click.pass_context
def await_(
    ctx: click.Context,
    obj: CliContext,
    *,
    run_id: str,
    batch_index: int,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Wait until a checkpoint settles: exit 0 completed, 1 failed, 2 timed out.

    A cancelled checkpoint ends the wait too, with exit 1 (outcome "cancelled").
    """
    with obj.open(existing=True) as ledger:
        token = find_token(ledger, run_id, batch_index)
        try:
            result = await_checkpoint(ledger, token, timeout=timeout)
            outcome, code = "completed", 0
            line = printable(f"completed {token} result={json.dumps(result, ensure_ascii=False)}")
        except CheckpointFailedError as exc:
            kind = "transient" if exc.transient else "permanent"
            outcome, code = "failed", EXIT_ERROR
            where = f"{run_id} {batch_index}"
            then = (
                f"`ckl retry {where}` resumes it from its last cursor"
                if exc.transient
                else f"fix the cause, then `ckl reset {where} --reason TEXT` starts it over"
            )
            line = printable(
                f"failed {token} ({kind}, attempt {exc.attempt}) {exc.error_type}: "
                f"{exc.message}; {then}"
            )
        except CheckpointCancelled as exc:
            # A cancel ends the wait with no result to return.
            outcome, code = "cancelled", EXIT_ERROR
            line = printable(f"cancelled {token}: {exc.reason}")
        except AwaitTimeout:
            outcome, code = "timed_out", EXIT_TIMED_OUT
            line = f"timed out after {timeout:g}s: {token} has not completed or failed yet"
        state = ledger.get_checkpoint(token)
    if as_json:
        echo_json({"outcome": outcome, "state": state.model_dump(mode="json")})
    elif outcome == "timed_out":
        click.echo(
            f"{line} (status {state.status}, attempt {state.attempt}, "
            f"items {state.items_processed})"
        )
    else:
        click.echo(line)
    ctx.exit(code)
