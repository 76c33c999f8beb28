"""The sample job behind ``ckl demo``: a batch worker written the way the seeds ask.

Three batches of numbers are summed in chunks. After each chunk the worker yields a checkpoint
(cursor, items_processed, the running sum). Batch 1 hits a transient failure halfway; the
worker records it, retries, and the new attempt resumes from the last durable cursor instead
of starting over. Progress is reported only after a batch's completion is confirmed by reading
it back (the Effect seed's save → confirm → progress). Run it again with the same ``--run-id``
and it resumes where it stopped. It ends with the replay and the audit of the run it made,
the same tables as ``ckl replay RUN`` and ``ckl audit --run RUN``.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.markup import escape

from ckl.cli._output import failures_table, settled_summary, timeline_steps, timeline_table
from ledger import CheckpointState, CheckpointToken, InvalidTransition, check_run_id
from projections import Projections

if TYPE_CHECKING:
    from rich.console import Console

    from ledger import Ledger

__all__ = ["SimulatedOutage", "new_run_id", "replay_and_audit", "run_demo"]

BATCHES = 3


def new_run_id() -> str:
    """A fresh demo run id: ``demo-<UTC time to the second>-<6 random hex digits>``.

    The time keeps ids sortable and readable; the random part (24 bits from ``secrets``) keeps
    two demos started in the same second, on one machine or two sharing a store, apart.
    """
    return f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class SimulatedOutage(ConnectionError):
    """The demo's stand-in for a flaky upstream."""


def _process_batch(
    ledger: Ledger,
    token: CheckpointToken,
    *,
    items: int,
    chunk: int,
    console: Console,
    fail_at: int | None,
) -> CheckpointState:
    state = ledger.get_checkpoint(token)
    while True:
        if state.is_settled:
            return state
        if state.status == "failed":
            state = ledger.retry_checkpoint(token)
            console.print(
                f"  [yellow]retry[/yellow]     attempt {state.attempt} resumes from "
                f"cursor={json.dumps(state.checkpoint_cursor)} "
                f"items={state.checkpoint_items_processed}"
            )
        # Resume from the last durable cursor: the tasker seed's BatchWorkerContext accessors.
        cursor = state.checkpoint_cursor
        start = cursor if isinstance(cursor, int) else 0
        done = (state.accumulated_results or {}).get("sum", 0)
        total = done if isinstance(done, int) else 0
        try:
            for offset in range(start, items, chunk):
                end = min(offset + chunk, items)
                if fail_at is not None and offset <= fail_at < end and state.attempt == 1:
                    msg = f"upstream timed out reading items {offset}..{end - 1}"
                    raise SimulatedOutage(msg)  # noqa: TRY301  (the demo's failure point)
                total += sum(range(offset, end))
                state = ledger.checkpoint_yield(
                    token, cursor=end, items_processed=end, accumulated_results={"sum": total}
                )
                console.print(
                    f"  yield     cursor={end:<6} items={end}/{items}  sum so far={total}"
                )
        except SimulatedOutage as exc:
            state = ledger.fail_checkpoint(token, exc, transient=True)
            assert state.error is not None  # noqa: S101  (fail_checkpoint just set it)
            console.print(
                f"  [red]failed[/red]    transient {state.error.type}: {state.error.message} "
                f"(attempt {state.attempt}, last durable cursor={state.checkpoint_cursor})"
            )
            continue
        state = ledger.complete_checkpoint(token, result={"sum": total, "items": items})


def run_demo(
    ledger: Ledger, run_id: str, *, items_per_batch: int, chunk: int, console: Console
) -> list[CheckpointState]:
    """Run (or resume) the demo job on ``ledger``; returns each batch's final state."""
    # Checked before anything is printed: a run id from argv may hold undecodable bytes, and
    # one with square brackets would otherwise be read as rich markup.
    check_run_id(run_id)
    if items_per_batch < 1 or chunk < 1:
        raise InvalidTransition(run_id, "not started", "demo", "items and chunk must be ≥ 1")
    shown = escape(run_id)
    console.print(
        f"[bold]checkpoint-ledger demo[/bold]  run [cyan]{shown}[/cyan]  "
        f"store {ledger.store_display}"
    )
    events_before = ledger.count_events()
    finals: list[CheckpointState] = []
    completed = 0
    for batch in range(BATCHES):
        token = ledger.create_checkpoint(
            run_id,
            batch,
            total_batches=BATCHES,
            metadata={"source": "demo", "total_items": items_per_batch},
        )
        console.print(f"[bold]batch {batch}[/bold]  created ({escape(str(token))})")
        fail_at = items_per_batch // 2 if batch == 1 else None
        state = _process_batch(
            ledger, token, items=items_per_batch, chunk=chunk, console=console, fail_at=fail_at
        )
        finals.append(state)
        # Confirm: read the completion back from the store before reporting progress.
        confirmed = ledger.get_checkpoint(token)
        if confirmed.status != "completed":
            console.print(f"  [red]stopped[/red]   batch {batch} is {confirmed.status}")
            break
        completed += 1
        console.print(
            f"  [green]completed[/green] result={json.dumps(confirmed.result)}  "
            f"progress {completed}/{BATCHES} batches"
        )
    written = ledger.count_events() - events_before
    console.print(
        f"[bold]done[/bold]: {completed}/{BATCHES} batches completed, {written} events appended. "
        f"Inspect one with: ckl show {shown} 1"
    )
    return finals


def replay_and_audit(ledger: Ledger, run_id: str, *, console: Console) -> None:
    """Print the run's timeline and its failure audit, read back from the projections."""
    with Projections(ledger) as views:
        views.sync(timeout=60.0)
        entries = views.timeline(run_id)
        failures = views.failures(run_id=run_id)
    steps, states = timeline_steps(entries)
    console.print()
    console.print(
        timeline_table(
            steps,
            title=f"[bold]replay[/bold] (ckl replay {escape(run_id)}): {len(steps)} events, "
            f"{settled_summary(states.values())}",
        )
    )
    console.print(
        failures_table(
            failures,
            title=f"[bold]audit[/bold] (ckl audit --run {escape(run_id)}): "
            f"{len(failures)} failure(s)",
            show_run=False,
        )
    )
