"""Streamed output of ``ckl replay`` and ``ckl audit``: written as it is read, memory flat.

A run of a million events cannot be one rich ``Table`` (rich measures every cell before it
draws one) nor one ``json.dumps`` of a list. Here each timeline entry or audit record becomes
one fixed-width line, or one element of the JSON document, the moment its page is read; what
is kept is one state per batch.

The per-event work is the ledger's own: the event decoded by the mapper and folded with
``ledger.apply`` (so the state after each event is the library's, not a re-implementation).
The JSON of a step is written directly, the event's document as pydantic serialises it, the
same JSON as :meth:`ckl.cli._output.Step.to_json` (tests compare the two); building that dict
through ``model_dump`` for every event would cost more than the fold itself.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

import click
from pydantic_core import to_json

from ckl.cli._output import (
    KIND_STYLES,
    escape_json_text,
    event_attempt,
    event_detail,
    event_kind,
    fmt_time,
    fmt_value,
    printable,
)
from ledger import CheckpointToken, apply

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ledger import CheckpointState, Ledger
    from projections import FailureRecord, TimelineEntry

__all__ = [
    "KIND_TOPICS",
    "AuditWriter",
    "StepFold",
    "TimelineWriter",
    "consume",
    "kind_filter",
    "record_kind",
    "stdout",
    "step_json",
]

KIND_TOPICS: dict[str, str] = {
    "created": "checkpoint.Created",
    "yield": "checkpoint.Yielded",
    "completed": "checkpoint.Completed",
    "failed": "checkpoint.Failed",
    "retried": "checkpoint.Retried",
    "reset": "checkpoint.Reset",
    "claimed": "checkpoint.Claimed",
    "takeover": "checkpoint.Claimed",
    "renewed": "checkpoint.LeaseRenewed",
    "released": "checkpoint.Released",
    "cancelled": "checkpoint.Cancelled",
}
"""``--kind`` words (the replay's event column) and the topic each is stored under."""


def kind_filter(kinds: Iterable[str]) -> tuple[list[str] | None, frozenset[str] | None]:
    """The topics to read for ``--kind`` words, and the words to keep of what is read.

    ``claimed`` and ``takeover`` share a topic; the second set tells them apart after the
    read (``None``: keep everything read).
    """
    words = frozenset(kinds)
    if not words:
        return None, None
    topics = sorted({KIND_TOPICS[word] for word in words})
    shared = {"claimed", "takeover"}
    return topics, (words if words & shared and not shared <= words else None)


class StepFold:
    """Each batch's state after each event, folded as the entries come (one state per batch).

    An entry that does not follow the last one folded for its batch (a filtered or backwards
    read skips events) starts from the ledger's state at that event's version instead, which
    is exact whatever was skipped.
    """

    def __init__(self, ledger: Ledger, run_id: str) -> None:
        self.ledger, self.run_id = ledger, run_id
        self.states: dict[int, CheckpointState] = {}

    def step(self, entry: TimelineEntry) -> CheckpointState:
        """The batch's state right after ``entry``."""
        batch = entry.batch_index
        previous = self.states.get(batch)
        if previous is not None and previous.version == entry.version - 1:
            state = apply(previous, entry.event)
        elif entry.version == 1:
            state = apply(None, entry.event)
        else:
            token = CheckpointToken(
                run_id=self.run_id, batch_index=batch, checkpoint_id=entry.event.originator_id
            )
            state = self.ledger.get_checkpoint(token, as_of=entry.version)
        self.states[batch] = state
        return state


def step_json(entry: TimelineEntry, state: CheckpointState) -> str:
    """One step of ``ckl replay --json`` (the entry and the state after it), as JSON text."""
    event = entry.event
    text = (
        b'{"position":%d,"at":%s,"batch_index":%d,"version":%d,"topic":%s,"event":%s,'
        b'"kind":"%s","attempt":%d,"status":"%s","cursor":%s,"items_processed":%d}'
        % (
            entry.position,
            to_json(entry.at),
            entry.batch_index,
            entry.version,
            to_json(entry.topic),
            event.__pydantic_serializer__.to_json(event),
            event_kind(event).encode(),
            state.attempt,
            state.status.encode(),
            to_json(state.cursor),
            state.items_processed,
        )
    ).decode()
    return escape_json_text(text)


def _style(word: str, width: int, *, colour: bool) -> str:
    padded = f"{word:<{width}}"
    fg = KIND_STYLES.get(word)
    return click.style(padded, fg=fg) if colour and fg else padded


class TimelineWriter:
    """Writes a run's steps as they come: fixed-width lines, or one streamed JSON document."""

    def __init__(
        self,
        out: TextIO,
        *,
        as_json: bool,
        position_width: int,
        batch_width: int,
        colour: bool | None = None,
    ) -> None:
        self.out, self.as_json = out, as_json
        self.pw, self.bw = max(position_width, 3), max(batch_width, 5)
        self.colour = out.isatty() if colour is None else colour
        self.count = 0

    def begin(self, run_id: str, as_of: str | None) -> None:
        """The JSON document's head (the column header comes with the first line)."""
        if self.as_json:
            head = json.dumps({"run_id": run_id, "as_of": as_of}, ensure_ascii=False)[:-1]
            self.out.write(escape_json_text(head) + ', "timeline": [')

    def _header(self) -> None:
        self.out.write(
            f"{'pos':>{self.pw}}  {'time (UTC)':<27}  {'batch':>{self.bw}}  att  "
            f"{'event':<9}  {'cursor':>12}  {'items':>9}  detail\n"
        )

    def write(self, entry: TimelineEntry, state: CheckpointState) -> None:
        """One step."""
        if self.as_json:
            self.out.write(("\n" if self.count == 0 else ",\n") + step_json(entry, state))
        else:
            if self.count == 0:
                self._header()
            event = entry.event
            self.out.write(
                f"{entry.position:>{self.pw}}  {fmt_time(entry.at):<27}  "
                f"{entry.batch_index:>{self.bw}}  {event_attempt(event):>3}  "
                f"{_style(event_kind(event), 9, colour=self.colour)}  "
                f"{printable(fmt_value(state.cursor)):>12}  {state.items_processed:>9}  "
                f"{event_detail(event)}".rstrip()
                + "\n"
            )
        self.count += 1

    def end_json(self, batches: list[CheckpointState], plot: str | None) -> None:
        """The rest of the JSON document: the count, each batch's state, the plot."""
        tail = json.dumps(
            {
                "events": self.count,
                "batches": [state.model_dump(mode="json") for state in batches],
                "plot": plot,
            },
            indent=2,
            ensure_ascii=False,
        )
        self.out.write(("\n" if self.count else "") + "], " + escape_json_text(tail[1:]) + "\n")


def consume(
    entries: Iterator[TimelineEntry],
    fold: StepFold,
    writer: TimelineWriter,
    keep: frozenset[str] | None,
) -> None:
    """Fold and write every entry (``keep``: only those of these kinds)."""
    for entry in entries:
        if keep is not None and event_kind(entry.event) not in keep:
            continue
        writer.write(entry, fold.step(entry))


def record_kind(record: FailureRecord) -> str:
    """An audit row's word: transient, permanent, takeover or cancelled."""
    if record.kind == "failure":
        return "transient" if record.transient else "permanent"
    return "takeover" if record.kind == "takeover" else "cancelled"


class AuditWriter:
    """Writes audit records as they come: fixed-width lines, or a streamed JSON array."""

    def __init__(self, out: TextIO, *, as_json: bool, show_run: bool) -> None:
        self.out, self.as_json, self.show_run = out, as_json, show_run
        self.colour = out.isatty()
        self.counts = {"failure": 0, "permanent": 0, "takeover": 0, "cancel": 0}

    def begin(self) -> None:
        """The array's opening (the column header comes with the first line)."""
        if self.as_json:
            self.out.write("[")

    def _header(self) -> None:
        run = f"{'run':<16}  " if self.show_run else ""
        self.out.write(
            f"{'at (UTC)':<27}  {run}{'batch':>5}  att  {'what':<9}  {'then':<7}  "
            f"{'items':>9}  {'cursor':>12}  error: message\n"
        )

    def write(self, record: FailureRecord) -> None:
        """One record."""
        if self.as_json:
            first = not any(self.counts.values())
            text = json.dumps(record.model_dump(mode="json"), indent=2, ensure_ascii=False)
            self.out.write(("\n" if first else ",\n") + escape_json_text(text))
        else:
            if not any(self.counts.values()):
                self._header()
            run = f"{printable(record.run_id):<16}  " if self.show_run else ""
            self.out.write(
                f"{fmt_time(record.failed_at):<27}  {run}{record.batch_index:>5}  "
                f"{record.attempt:>3}  {_style(record_kind(record), 9, colour=self.colour)}  "
                f"{record.resolution or '-':<7}  {record.items_processed:>9}  "
                f"{printable(fmt_value(record.cursor)):>12}  "
                f"{printable(record.error_type)}: {printable(record.message)}\n"
            )
        self.counts[record.kind] += 1
        if record.kind == "failure" and not record.transient:
            self.counts["permanent"] += 1

    def end(self) -> str | None:
        """Close the array; for people, the summary line (``None`` when nothing matched)."""
        if self.as_json:
            self.out.write(("\n" if any(self.counts.values()) else "") + "]\n")
            return None
        if not any(self.counts.values()):
            return None
        summary = f"{self.counts['failure']} failure(s), {self.counts['permanent']} permanent"
        for word in ("takeover", "cancel"):
            if self.counts[word]:
                summary += f", {self.counts[word]} {word}(s)"
        return summary


def stdout() -> TextIO:
    """The stream the commands write to (``sys.stdout``, looked up when called)."""
    return sys.stdout
