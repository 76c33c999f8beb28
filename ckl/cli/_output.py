"""How ``ckl`` shows things: the one JSON printer, lines, event words, times, rich tables.

Everything here is pure formatting over the API's own models, shared by the commands and by
``ckl demo`` (which ends with the same replay and audit a user would run). rich is imported by
the functions that build a console or a table, so commands that print only JSON or plain lines
(``verify``, ``export``, ``grants``…) never load it.

Text that came from a worker (error messages, tracebacks, reasons, owners, cursors) never
reaches the terminal raw: :func:`printable` writes control characters as escapes (an ESC in an
exception message must not repaint the operator's screen), and every table cell is escaped
for rich's markup too (a message holding ``[/]`` is text, not a style).
"""

from __future__ import annotations

import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from ledger import (
    Cancelled,
    Claimed,
    Completed,
    Created,
    Failed,
    LeaseRenewed,
    Released,
    Reset,
    Retried,
    Yielded,
    apply,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from rich.console import Console
    from rich.table import Table

    from ledger import CheckpointEvent, CheckpointState, JSONValue
    from projections import CheckpointSummary, FailureRecord, StuckCheckpoint, TimelineEntry

__all__ = [
    "KIND_STYLES",
    "PIPE_WIDTH",
    "Step",
    "cell",
    "echo_json",
    "echo_line",
    "escape_json_text",
    "event_attempt",
    "event_detail",
    "event_kind",
    "failure_context",
    "failures_table",
    "fmt_idle",
    "fmt_time",
    "fmt_value",
    "idle_seconds",
    "make_console",
    "pending_table",
    "printable",
    "settled_summary",
    "states_table",
    "stuck_table",
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
    # emoji=False: a ":thumbs_up:" in an error message is text, not a picture.
    return Console(
        stderr=stderr,
        highlight=highlight,
        emoji=False,
        width=PIPE_WIDTH if redirected else None,
    )


# Characters a terminal may act on rather than show: C0 and C1 controls and DEL, the line and
# paragraph separators, and the bidirectional overrides and isolates ("Trojan Source").
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
# In JSON text, json.dumps has escaped C0 controls in strings already; the newlines left are
# the indentation's own.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_UNSAFE_IN_BLOCK = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]"
)


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"  # noqa: PLR2004


def printable(text: str, *, block: bool = False) -> str:
    r"""``text`` with every control character written as an escape (``\\x1b``, ``\\u202e``).

    ``block``: keep newlines and tabs (a traceback shown as lines); otherwise the text is one
    line, so a newline is escaped too.
    """
    return (_UNSAFE_IN_BLOCK if block else _UNSAFE).sub(_escape_char, text)


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_json_text(text: str) -> str:
    r"""JSON text with the controls JSON leaves as they are (DEL, C1, bidi) as ``\uXXXX``.

    For JSON written by ``json.dumps(ensure_ascii=False)`` or pydantic, whose strings hold C0
    controls as escapes already: the same characters to a JSON reader, inert on a terminal.
    """
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


def echo_json(document: object, *, ascii_only: bool = False) -> None:
    r"""Print one JSON document (indented) on stdout: every ``--json`` goes through here.

    ``ascii_only``: write every non-ASCII character as a JSON escape, as ``verify``, ``export``,
    ``import`` and ``archive`` always have: their documents hold file paths from argv, whose
    undecodable bytes (surrogates) only an escape can print. Otherwise the controls JSON does
    not escape itself (DEL, C1, bidirectional overrides) are escaped all the same: they can
    only occur inside strings, where ``\\uXXXX`` is the same character to a JSON reader.
    """
    text = json.dumps(document, indent=2, ensure_ascii=ascii_only)
    click.echo(text if ascii_only else _UNSAFE_IN_JSON.sub(_json_escape, text))


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
    Claimed: "claimed",
    LeaseRenewed: "renewed",
    Released: "released",
    Cancelled: "cancelled",
}
KIND_STYLES = {
    "completed": "green",
    "failed": "red",
    "permanent": "red",
    "retried": "yellow",
    "reset": "magenta",
    "takeover": "yellow",
    "cancelled": "blue",
}
"""The colour of an event's or audit row's word (rich styles, also click colour names)."""


def cell(text: str) -> str:
    """Text a user or worker chose, for a rich cell or title: controls escaped, markup as text."""
    from rich.markup import escape  # noqa: PLC0415  (only commands that draw load rich)

    return escape(printable(text))


def _styled(word: str) -> str:
    style = KIND_STYLES.get(word, "")
    return f"[{style}]{word}[/{style}]" if style else word


def idle_seconds(now: datetime, last_activity: datetime) -> float:
    """Seconds since a checkpoint's last event of any kind, on the ledger's clock (never < 0)."""
    return max(0.0, (now - last_activity).total_seconds())


def fmt_idle(seconds: float) -> str:
    """An idle time for people: ``42s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


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
    if value is None:
        return ""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(_json_escape, text)


def event_kind(event: CheckpointEvent) -> str:
    """The one word for an event (``yield``, ``takeover``…), as tables and streams show it.

    created, yield, completed, failed, retried, reset, claimed, takeover (a claim of an
    expired lease), renewed, released, cancelled.
    """
    if isinstance(event, Claimed) and event.taken_over:
        return "takeover"
    return _KINDS.get(type(event), event.topic)


def event_attempt(event: CheckpointEvent) -> int:
    """The attempt an event belongs to (a create starts attempt 1)."""
    attempt = getattr(event, "attempt", 1)
    return attempt if isinstance(attempt, int) else 1


def event_detail(event: CheckpointEvent) -> str:
    """What an event says beyond cursor and items (control characters escaped)."""
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
    elif isinstance(event, Reset | Cancelled):
        detail = f"reason: {event.reason}"
    else:
        detail = _lease_detail(event)
    return printable(detail)


def _lease_detail(event: CheckpointEvent) -> str:
    """What a claim, renewal or release says: who, until when, and whom a takeover replaced."""
    if isinstance(event, Claimed):
        until = fmt_time(event.lease_expires_at)
        detail = f"owner {event.owner!r}, lease {event.ttl:g}s until {until}"
        if event.taken_over:
            detail += f"; the lease of {event.previous_owner!r} had expired"
        if event.retried:
            detail += "; retries after a transient failure, from the last cursor"
        return detail
    if isinstance(event, LeaseRenewed):
        return f"lease until {fmt_time(event.lease_expires_at)}"
    if isinstance(event, Released):
        return "lease released"
    return ""


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
        entry = step.entry
        table.add_row(
            str(entry.position),
            at(entry.at),
            str(entry.batch_index),
            str(event_attempt(entry.event)),
            _styled(step.kind),
            cell(fmt_value(step.state.cursor)),
            str(step.state.items_processed),
            cell(event_detail(entry.event)),
        )
    return table


def _outcome(state: CheckpointState) -> str:
    if state.status == "completed":
        return f"result={fmt_value(state.result)}"
    if state.error is not None and state.status == "failed":
        kind = "transient" if state.error.transient else "permanent"
        return f"{kind} {state.error.type}: {state.error.message}"
    if state.status == "cancelled":
        return f"cancelled: {state.cancel_reason}"
    if state.owner is not None:
        expiry = state.lease_expires_at
        until = "" if expiry is None else f" until {fmt_time(expiry)}"
        return f"leased by {state.owner!r}{until}"
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
        table.add_row(
            str(batch),
            _styled(state.status),
            str(state.attempt),
            cell(fmt_value(state.cursor)),
            str(state.items_processed),
            str(state.yields),
            at(state.updated_at),
            cell(_outcome(state)),
        )
    return table


def settled_summary(states: Iterable[CheckpointState]) -> str:
    """'3 batches: 2 completed, 1 failed, 0 open' (of N when the run declared a total).

    Cancelled batches are counted after the open ones when there are any.
    """
    listed = list(states)
    counts = {"completed": 0, "failed": 0, "open": 0, "cancelled": 0}
    for state in listed:
        counts[state.status] += 1
    totals = [s.total_batches for s in listed if s.total_batches is not None]
    of = f" of {max(totals)}" if totals else ""
    cancelled = f", {counts['cancelled']} cancelled" if counts["cancelled"] else ""
    return (
        f"{len(listed)}{of} batches: {counts['completed']} completed, "
        f"{counts['failed']} failed, {counts['open']} open{cancelled}"
    )


def _record_kind(record: FailureRecord) -> str:
    """What the audit row is: a transient or permanent failure, a takeover or a cancel."""
    if record.kind == "failure":
        return "transient" if record.transient else "[red]permanent[/red]"
    return _styled("takeover" if record.kind == "takeover" else "cancelled")


def failures_table(
    records: Sequence[FailureRecord], title: str | None = None, *, show_run: bool = True
) -> Table:
    """The audit: when, where, which attempt, what, and what became of it.

    One row per failure, takeover of an expired lease and cancel (the records' ``kind``).
    ``show_run=False`` leaves out the run column (for the rows of one run).
    """
    table = _table(title)
    time_header, at = _time_column((record.failed_at for record in records), "at")
    for name in (time_header, "run", "batch", "att") if show_run else (time_header, "batch", "att"):
        table.add_column(name, no_wrap=True)
    table.add_column("what", overflow="fold", min_width=12)
    table.add_column("message", overflow="fold", min_width=12)
    for name in ("cursor", "items"):
        table.add_column(name, overflow="fold")
    table.add_column("then", no_wrap=True)
    for record in records:
        where = [cell(record.run_id)] if show_run else []
        table.add_row(
            at(record.failed_at),
            *where,
            str(record.batch_index),
            str(record.attempt),
            f"{_record_kind(record)} {cell(record.error_type)}",
            cell(record.message),
            cell(fmt_value(record.cursor)),
            str(record.items_processed),
            record.resolution or "-",
        )
    return table


def failure_context(record: FailureRecord) -> list[str]:
    """``ckl audit --verbose``: a record's header line, then its traceback's lines (escaped).

    Lines of plain text (no markup): print them with ``markup=False``.
    """
    where = []
    if record.host is not None:
        where.append(f"host {record.host}")
    if record.pid is not None:
        where.append(f"pid {record.pid}")
    origin = f" on {', '.join(where)}" if where else ""
    head = (
        f"{record.run_id}/{record.batch_index} attempt {record.attempt} {record.kind} "
        f"at {fmt_time(record.failed_at)}{origin}: {record.error_type}: {record.message}"
    )
    lines = [printable(head)]
    if record.traceback:
        lines += ["    " + line for line in printable(record.traceback, block=True).splitlines()]
    elif record.kind == "failure":
        lines.append("    (no traceback: failed with a message or an exception never raised)")
    return lines


def pending_table(
    summaries: Sequence[CheckpointSummary], now: datetime, title: str | None = None
) -> Table:
    """Open checkpoints: where each one would resume, who holds it and how long it has been idle.

    ``now``: the ledger's clock (``Ledger.now()``), which idle times are measured against.
    """
    table = _table(title)
    time_header, at = _time_column((summary.updated_at for summary in summaries), "updated")
    for name in ("batch", "att", "cursor", "items", "yields", "owner", "idle", time_header):
        table.add_column(name, no_wrap=True, min_width=len(name))
    # The id gives way first on a narrow terminal (cut short, the rest stays readable).
    table.add_column("checkpoint id", overflow="ellipsis")
    for summary in summaries:
        table.add_row(
            str(summary.batch_index),
            str(summary.attempt),
            cell(fmt_value(summary.cursor)),
            str(summary.items_processed),
            str(summary.yields),
            "-" if summary.owner is None else cell(summary.owner),
            fmt_idle(idle_seconds(now, summary.last_activity)),
            at(summary.updated_at),
            str(summary.checkpoint_id),
        )
    return table


def stuck_table(rows: Sequence[StuckCheckpoint], title: str | None = None) -> Table:
    """Stuck checkpoints: run, batch, status, attempt, owner, idle time, lease, reason.

    The lease column says when the lease ran out (or runs out) relative to the query's moment,
    ``expired 12m04s ago``: what an operator needs at a glance (``--json`` has the times).
    """
    table = _table(title)
    for name in ("run", "batch", "status", "att", "owner", "idle", "lease", "reason"):
        table.add_column(name, no_wrap=True)
    for row in rows:
        table.add_row(
            cell(row.run_id),
            str(row.batch_index),
            _styled(row.status),
            str(row.attempt),
            "-" if row.owner is None else cell(row.owner),
            fmt_idle(row.idle_seconds),
            _lease_when(row),
            row.reason,
        )
    return table


def _lease_when(row: StuckCheckpoint) -> str:
    if row.lease_expires_at is None:
        return "-"
    now = row.last_activity + timedelta(seconds=row.idle_seconds)
    left = (row.lease_expires_at - now).total_seconds()
    return f"expires in {fmt_idle(left)}" if left > 0 else f"expired {fmt_idle(-left)} ago"
