"""How ``ckl`` shows things: the one JSON printer, lines, event words, times, rich tables.

Everything here is pure formatting over the API's own models, shared by the commands and by
``ckl demo`` (which ends with the same replay and audit a user would run). rich is imported by
the functions that build a console or a table, so commands that print only JSON or plain lines
(``verify``, ``export``, ``grants``…) never load it.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from ledger import Completed, Created, Failed, Reset, Retried, Yielded, apply

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from rich.console import Console
    from rich.table import Table

    from ledger import CheckpointEvent, CheckpointState, JSONValue
    from projections import CheckpointSummary, FailureRecord, TimelineEntry

__all__ = [
    "PIPE_WIDTH",
    "Step",
    "echo_json",
    "echo_line",
    "event_attempt",
    "event_detail",
    "event_kind",
    "failures_table",
    "fmt_time",
    "fmt_value",
    "make_console",
    "pending_table",
    "settled_summary",
    "states_table",
    "timeline_steps",
    "timeline_table",
]

PIPE_WIDTH = 160
"""Columns of a table written to a file or a pipe (rich would assume 80 and wrap every cell)."""


def make_console(*, stderr: bool = False, highlight: bool = True) -> Console:
    """A console for the commands: the terminal's width, or :data:`PIPE_WIDTH` when redirected.

    ``$COLUMNS`` still wins, as rich documents, so a script can ask for any width.
    """
    from rich.console import Console  # noqa: PLC0415  (only commands that draw load rich)

    stream = sys.stderr if stderr else sys.stdout
    redirected = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, highlight=highlight, width=PIPE_WIDTH if redirected else None)


def echo_json(document: object, *, ascii_only: bool = False) -> None:
    """Print one JSON document (indented) on stdout: every ``--json`` goes through here.

    ``ascii_only``: write every non-ASCII character as a JSON escape, as ``verify``, ``export``,
    ``import`` and ``archive`` always have: their documents hold file paths from argv, whose
    undecodable bytes (surrogates) only an escape can print.
    """
    click.echo(json.dumps(document, indent=2, ensure_ascii=ascii_only))


def echo_line(text: str) -> None:
    """Print one line on stdout and flush it at once (streams are read line by line)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


_KINDS: dict[type[CheckpointEvent], str] = {
    Created: "created",
    Yielded: "yield",
    Completed: "completed",
    Failed: "failed",
    Retried: "retried",
    Reset: "reset",
}
_STYLES = {"completed": "green", "failed": "red", "retried": "yellow", "reset": "magenta"}


def fmt_time(moment: datetime) -> str:
    """ISO-8601 in UTC to the microsecond, so a printed time can be passed back to --as-of."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time_column(moments: Iterable[datetime], name: str) -> tuple[str, Callable[[datetime], str]]:
    """A time column's header and formatter: the date in the header when all rows share it.

    Rows then show ``HH:MM:SS.ffffff``; the date plus that time is a valid ``--as-of``.
    """
    dates = {moment.astimezone(UTC).date() for moment in moments}
    if len(dates) != 1:
        return f"{name} (UTC)", fmt_time
    (day,) = dates
    return f"{day.isoformat()} UTC", _clock


def _clock(moment: datetime) -> str:
    return moment.astimezone(UTC).time().isoformat(timespec="microseconds")


def fmt_value(value: JSONValue) -> str:
    """A cursor, result or payload as compact JSON ("" for none)."""
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def event_kind(event: CheckpointEvent) -> str:
    """The one word for an event: created, yield, completed, failed, retried, reset."""
    return _KINDS.get(type(event), event.topic)


def event_attempt(event: CheckpointEvent) -> int:
    """The attempt an event belongs to (a create starts attempt 1)."""
    attempt = getattr(event, "attempt", 1)
    return attempt if isinstance(attempt, int) else 1


def event_detail(event: CheckpointEvent) -> str:
    """What an event says beyond cursor and items."""
    detail = ""
    if isinstance(event, Created):
        total = "" if event.total_batches is None else f"total_batches={event.total_batches} "
        detail = f"{total}metadata={fmt_value(event.metadata)}"
    elif isinstance(event, Yielded) and event.accumulated_results is not None:
        detail = f"results={fmt_value(event.accumulated_results)}"
    elif isinstance(event, Completed):
        detail = f"result={fmt_value(event.result)}"
    elif isinstance(event, Failed):
        kind = "transient" if event.transient else "permanent"
        detail = f"{kind} {event.error_type}: {event.message}"
    elif isinstance(event, Retried):
        detail = "resumes from the last cursor"
    elif isinstance(event, Reset):
        detail = f"reason: {event.reason}"
    return detail


def _table(title: str | None) -> Table:
    from rich import box  # noqa: PLC0415  (only commands that draw load rich)
    from rich.table import Table  # noqa: PLC0415

    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)


class Step:
    """One timeline entry with the batch's state right after it (cursor, items, status)."""

    def __init__(self, entry: TimelineEntry, state: CheckpointState) -> None:
        self.entry, self.state = entry, state

    @property
    def kind(self) -> str:
        """The event's word."""
        return event_kind(self.entry.event)

    def to_json(self) -> dict[str, object]:
        """The entry's own JSON plus the batch's state after it."""
        document: dict[str, object] = self.entry.model_dump(mode="json")
        document.update(
            kind=self.kind,
            attempt=self.state.attempt,
            status=self.state.status,
            cursor=self.state.cursor,
            items_processed=self.state.items_processed,
        )
        return document


def timeline_steps(
    entries: Iterable[TimelineEntry],
) -> tuple[list[Step], dict[int, CheckpointState]]:
    """Fold a run's timeline: each entry with its batch's state after it, and the last states."""
    states: dict[int, CheckpointState] = {}
    steps = []
    for entry in entries:
        state = apply(states.get(entry.batch_index), entry.event)
        states[entry.batch_index] = state
        steps.append(Step(entry, state))
    return steps, states


def timeline_table(steps: Sequence[Step], title: str | None = None) -> Table:
    """Every event in order, with time, batch, attempt, cursor and items after it."""
    table = _table(title)
    time_header, at = _time_column((step.entry.at for step in steps), "time")
    for name, justify in (
        ("pos", "right"),
        (time_header, "left"),
        ("batch", "right"),
        ("att", "right"),
        ("event", "left"),
        ("cursor", "right"),
        ("items", "right"),
        ("detail", "left"),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=name != "detail",
            overflow="fold",
            min_width=16 if name == "detail" else None,
        )
    for step in steps:
        entry, kind = step.entry, step.kind
        style = _STYLES.get(kind, "")
        table.add_row(
            str(entry.position),
            at(entry.at),
            str(entry.batch_index),
            str(event_attempt(entry.event)),
            f"[{style}]{kind}[/{style}]" if style else kind,
            fmt_value(step.state.cursor),
            str(step.state.items_processed),
            event_detail(entry.event),
        )
    return table


def _outcome(state: CheckpointState) -> str:
    if state.status == "completed":
        return f"result={fmt_value(state.result)}"
    if state.error is not None and state.status == "failed":
        kind = "transient" if state.error.transient else "permanent"
        return f"{kind} {state.error.type}: {state.error.message}"
    return ""


def states_table(states: dict[int, CheckpointState], title: str | None = None) -> Table:
    """Each batch's state: status, attempt, cursor, items, yields and its result or error."""
    table = _table(title)
    time_header, at = _time_column((state.updated_at for state in states.values()), "updated")
    for name in ("batch", "status", "att", "cursor", "items", "yields", time_header):
        table.add_column(name, no_wrap=True)
    table.add_column("result / error", overflow="fold", min_width=16)
    for batch in sorted(states):
        state = states[batch]
        style = _STYLES.get(state.status, "")
        table.add_row(
            str(batch),
            f"[{style}]{state.status}[/{style}]" if style else state.status,
            str(state.attempt),
            fmt_value(state.cursor),
            str(state.items_processed),
            str(state.yields),
            at(state.updated_at),
            _outcome(state),
        )
    return table


def settled_summary(states: Iterable[CheckpointState]) -> str:
    """'3 batches: 2 completed, 1 failed, 0 open' (of N when the run declared a total)."""
    listed = list(states)
    counts = {"completed": 0, "failed": 0, "open": 0}
    for state in listed:
        counts[state.status] += 1
    totals = [s.total_batches for s in listed if s.total_batches is not None]
    of = f" of {max(totals)}" if totals else ""
    return (
        f"{len(listed)}{of} batches: {counts['completed']} completed, "
        f"{counts['failed']} failed, {counts['open']} open"
    )


def failures_table(
    records: Sequence[FailureRecord], title: str | None = None, *, show_run: bool = True
) -> Table:
    """The failure audit: when, where, which attempt, what, and what became of it.

    ``show_run=False`` leaves out the run column (for the failures of one run).
    """
    table = _table(title)
    time_header, at = _time_column((record.failed_at for record in records), "failed at")
    for name in (time_header, "run", "batch", "att") if show_run else (time_header, "batch", "att"):
        table.add_column(name, no_wrap=True)
    table.add_column("error", overflow="fold", min_width=12)
    table.add_column("message", overflow="fold", min_width=12)
    for name in ("cursor", "items"):
        table.add_column(name, overflow="fold")
    table.add_column("then", no_wrap=True)
    for record in records:
        kind = "transient" if record.transient else "[red]permanent[/red]"
        where = [record.run_id] if show_run else []
        table.add_row(
            at(record.failed_at),
            *where,
            str(record.batch_index),
            str(record.attempt),
            f"{kind} {record.error_type}",
            record.message,
            fmt_value(record.cursor),
            str(record.items_processed),
            record.resolution or "-",
        )
    return table


def pending_table(summaries: Sequence[CheckpointSummary], title: str | None = None) -> Table:
    """Open checkpoints: where each one would resume."""
    table = _table(title)
    time_header, at = _time_column((summary.updated_at for summary in summaries), "updated")
    for name in ("batch", "att", "cursor", "items", "yields", time_header, "checkpoint id"):
        table.add_column(name, no_wrap=True)
    for summary in summaries:
        table.add_row(
            str(summary.batch_index),
            str(summary.attempt),
            fmt_value(summary.cursor),
            str(summary.items_processed),
            str(summary.yields),
            at(summary.updated_at),
            str(summary.checkpoint_id),
        )
    return table
