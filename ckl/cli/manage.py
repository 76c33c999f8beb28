"""The commands that change something: demo, retry, cancel, reset, project, rebuild, migrate.

``retry`` and ``cancel`` act on one batch, or on every batch of a run that needs it. They read
each checkpoint's state from the store (``Ledger.run_states``: the truth, not the views) and
send one command per batch; a batch that settled in between is reported as skipped.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING

import click
from eventsourcing.persistence import PersistenceError

from ckl.cli._context import CliContext, find_token, pass_cli
from ckl.cli._output import echo_json, fmt_value, make_console, printable
from ckl.demo import new_run_id, replay_and_audit, run_demo
from ledger import InvalidStoreURL, InvalidTransition, RunNotFound
from ledger.store import migrate_schema, parse_store_url, store_error
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import CheckpointState, Ledger

__all__ = ["cancel", "demo", "migrate", "project", "rebuild", "reset", "retry"]


@click.command()
@click.option("--run-id", default=None, help="Run id to use (default: demo-<UTC time>-<random>).")
@click.option("--items", default=1000, show_default=True, help="Items per batch.")
@click.option("--chunk", default=250, show_default=True, help="Items per checkpoint yield.")
@pass_cli
def demo(obj: CliContext, run_id: str | None, items: int, chunk: int) -> None:
    """Run a sample job (3 batches, a transient failure, a resume), then replay and audit it."""
    run_id = run_id or new_run_id()
    console = make_console()
    with obj.open() as ledger:
        run_demo(ledger, run_id, items_per_batch=items, chunk=chunk, console=console)
        replay_and_audit(ledger, run_id, console=console)


def _where(state: CheckpointState) -> str:
    """Where a batch stands: attempt, cursor and items (what a retry resumes from)."""
    return (
        f"attempt {state.attempt}, cursor={fmt_value(state.cursor) or '-'}, "
        f"items {state.items_processed}"
    )


def _not_retryable(state: CheckpointState) -> InvalidTransition | None:
    """Why ``ckl retry`` refuses this state (``None``: a transient failure, retry it).

    Says what to do instead: a retry is the right tool only for a transient failure, and a
    reset (which throws the progress away) only for what a retry cannot fix.
    """
    token, reset = str(state.token), f"ckl reset {state.token.run_id} {state.token.batch_index}"
    if state.status == "failed" and state.error is not None and state.error.transient:
        return None
    if state.status == "failed":
        error = state.error
        what = "" if error is None else f" ({printable(error.type)}: {printable(error.message)})"
        return InvalidTransition(
            token,
            f"failed permanently{what}",
            "retry",
            "a permanent failure means the same input would fail again, so it is not resumed; "
            f"fix the cause, then `{reset} --reason TEXT` starts a new attempt from scratch",
        )
    if state.status == "open":
        owner = "" if state.owner is None else f", leased by {state.owner!r}"
        return InvalidTransition(
            token,
            f"open ({_where(state)}{owner})",
            "retry",
            "nothing to retry: only a transient failure is retried, and an open batch "
            "resumes from its cursor when a worker runs it",
        )
    if state.status == "cancelled":
        return InvalidTransition(
            token,
            f"cancelled ({printable(state.cancel_reason or '')})",
            "retry",
            f"a cancelled batch is reopened only by `{reset} --reason TEXT` (from scratch)",
        )
    return InvalidTransition(
        token, state.status, "retry", "nothing to retry: its result is durable"
    )


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="[BATCH]", type=click.IntRange(min=0), required=False)
@click.option(
    "--all-transient",
    is_flag=True,
    help="Retry every transiently failed batch of RUN (give no BATCH).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli
@click.pass_context
def retry(
    ctx: click.Context,
    obj: CliContext,
    *,
    run_id: str,
    batch_index: int | None,
    all_transient: bool,
    as_json: bool,
) -> None:
    """Retry a transient failure: the next attempt resumes from the last durable cursor.

    Give BATCH, or --all-transient for every transiently failed batch of RUN. A permanent
    failure is not retried (fix the cause, then `ckl reset` starts it over); an open batch has
    nothing to retry. With --json: the new state (BATCH), or {"run_id", "retried", "skipped"}.
    """
    if (batch_index is None) == (not all_transient):
        raise click.UsageError("give BATCH, or --all-transient (not both)", ctx)
    with obj.open(existing=True, write=True) as ledger:
        if batch_index is not None:
            token = find_token(ledger, run_id, batch_index)
            before = ledger.get_checkpoint(token)
            refusal = _not_retryable(before)
            if refusal is not None:
                raise refusal
            state = ledger.retry_checkpoint(token)
            if as_json:
                echo_json(state.model_dump(mode="json"))
            else:
                click.echo(_retried_line(before, state))
            return
        retried, skipped = _each_batch(
            ledger,
            run_id,
            lambda state: _not_retryable(state) is None,
            lambda state: ledger.retry_checkpoint(state.token),
        )
    if as_json:
        echo_json(
            {
                "run_id": run_id,
                "retried": [state.model_dump(mode="json") for _, state in retried],
                "skipped": [_skipped(state) for state in skipped],
            }
        )
        return
    for before, state in retried:
        click.echo(_retried_line(before, state))
    permanent = [s for s in skipped if s.status == "failed"]
    click.echo(
        f"run {run_id}: {len(retried)} transient failure(s) retried"
        + ("" if retried else "; nothing to retry")
    )
    if permanent:
        batches = ", ".join(str(s.token.batch_index) for s in permanent)
        click.echo(
            f"{len(permanent)} permanently failed batch(es) not retried ({batches}): fix the "
            f"cause, then `ckl reset {run_id} BATCH --reason TEXT` starts one over"
        )


def _each_batch(
    ledger: Ledger,
    run_id: str,
    wanted: Callable[[CheckpointState], bool],
    command: Callable[[CheckpointState], CheckpointState],
) -> tuple[list[tuple[CheckpointState, CheckpointState]], list[CheckpointState]]:
    """Send ``command`` to every batch of the run in ``wanted`` state, in batch order.

    Returns the (before, after) pairs and the states of the batches left alone. A batch whose
    state changed between the read and the command (a worker completed it, a claim retried
    it) is left alone too; a refusal of a batch still in a wanted state is raised.

    Raises:
        RunNotFound: the run has no checkpoint.
    """
    states = ledger.run_states(run_id)
    if not states:
        raise RunNotFound(run_id)
    done, skipped = [], []
    for index in sorted(states):
        before = states[index]
        if not wanted(before):
            skipped.append(before)
            continue
        try:
            done.append((before, command(before)))
        except InvalidTransition:
            now = ledger.get_checkpoint(before.token)
            if wanted(now):
                raise
            skipped.append(now)
    return done, skipped


def _retried_line(before: CheckpointState, state: CheckpointState) -> str:
    error = before.error
    what = "" if error is None else f" after transient {error.type}: {error.message}"
    return printable(f"retried {state.token}{what}; {_where(state)} resumes from there")


def _skipped(state: CheckpointState) -> dict[str, object]:
    """A batch a whole-run command left alone, and why (its status)."""
    transient = None if state.error is None else state.error.transient
    return {
        "batch_index": state.token.batch_index,
        "status": state.status,
        "transient": transient if state.status == "failed" else None,
        "attempt": state.attempt,
    }


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="[BATCH]", type=click.IntRange(min=0), required=False)
@click.option("--reason", required=True, help="Why (kept in the Cancelled event; required).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli
def cancel(
    obj: CliContext, *, run_id: str, batch_index: int | None, reason: str, as_json: bool
) -> None:
    """Cancel a batch, or every batch of RUN that is not settled: no more work is recorded.

    Terminal: its worker's next write raises CheckpointCancelled, and only `ckl reset` reopens
    it. Without BATCH, every open or transiently failed batch is cancelled; completed,
    permanently failed and cancelled ones are reported as skipped. With --json: the new state
    (BATCH), or {"run_id", "reason", "cancelled", "skipped"}.
    """
    with obj.open(existing=True, write=True) as ledger:
        if batch_index is not None:
            token = find_token(ledger, run_id, batch_index)
            before = ledger.get_checkpoint(token)
            state = ledger.cancel_checkpoint(token, reason)
            if as_json:
                echo_json(state.model_dump(mode="json"))
            else:
                click.echo(_cancelled_line(before, state, reason))
            return
        cancelled, skipped = _each_batch(
            ledger,
            run_id,
            lambda state: not state.is_settled,
            lambda state: ledger.cancel_checkpoint(state.token, reason),
        )
    if as_json:
        echo_json(
            {
                "run_id": run_id,
                "reason": reason,
                "cancelled": [state.model_dump(mode="json") for _, state in cancelled],
                "skipped": [_skipped(state) for state in skipped],
            }
        )
        return
    for before, state in cancelled:
        click.echo(_cancelled_line(before, state, reason))
    for state in skipped:
        click.echo(f"skipped {state.token}: {_settled_word(state)}")
    click.echo(f"run {run_id}: {len(cancelled)} cancelled, {len(skipped)} skipped (settled)")


def _settled_word(state: CheckpointState) -> str:
    if state.status == "failed":
        return "failed permanently"
    if state.status == "cancelled":
        return f"already cancelled ({printable(state.cancel_reason or '')})"
    return state.status


def _cancelled_line(before: CheckpointState, state: CheckpointState, reason: str) -> str:
    was = f"was {before.status}"
    if before.owner is not None:
        was += f", leased by {before.owner!r}"
    return f"cancelled {state.token} ({was}; {_where(before)}). Reason: {printable(reason)}"


@click.command()
@click.argument("run_id", metavar="RUN")
@click.argument("batch_index", metavar="BATCH", type=click.IntRange(min=0))
@click.option("--reason", required=True, help="Why (kept in the Reset event; required).")
@click.option("--json", "as_json", is_flag=True, help="Print the new state as one JSON document.")
@pass_cli
def reset(obj: CliContext, run_id: str, batch_index: int, reason: str, as_json: bool) -> None:
    """Reset a checkpoint (operator action): a new attempt starts from scratch.

    Cursor, progress and results are cleared. For a transient failure, `ckl retry` resumes from
    the last cursor instead and keeps the progress.
    """
    with obj.open(existing=True, write=True) as ledger:
        token = find_token(ledger, run_id, batch_index)
        before = ledger.get_checkpoint(token)
        state = ledger.reset_checkpoint(token, reason)
    if as_json:
        echo_json(state.model_dump(mode="json"))
        return
    click.echo(
        f"reset {token}: was {before.status} ({_where(before)}); "
        f"attempt {state.attempt} starts from scratch. Reason: {printable(reason)}"
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
    with obj.open(existing=True, write=True) as ledger, Projections(ledger) as views:
        started = time.perf_counter()
        position = views.rebuild()
        seconds = time.perf_counter() - started
    if as_json:
        echo_json({"position": position, "seconds": round(seconds, 3)})
    else:
        click.echo(f"rebuilt the views up to position {position} in {seconds:.2f}s")


@click.command()
@click.option(
    "--check",
    is_flag=True,
    help="Only say whether an upgrade is due (exit 1 if it is, 0 if current); writes nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_cli
@click.pass_context
def migrate(ctx: click.Context, obj: CliContext, check: bool, as_json: bool) -> None:
    """Upgrade the store's schema to this version's (idempotent); print from/to versions.

    Read commands open stores read-only and never upgrade them: an older store is refused
    with advice to run this. Stop writers of older versions first: the upgraded store refuses
    their appends.
    """
    settings = obj.settings()
    url = parse_store_url(settings.store)
    path = url.database_file
    if path is not None and not os.path.exists(path):  # noqa: PTH110
        raise InvalidStoreURL(url.display, f"there is no SQLite database at {path} to migrate")
    try:
        versions = migrate_schema(settings, check=check)
    except PersistenceError as exc:
        raise store_error(exc, url.display, "migrate", path=path) from exc
    due = versions.before < versions.code
    if as_json:
        echo_json(
            {
                "store": url.display,
                "from": versions.before,
                "to": versions.after,
                "code": versions.code,
                "due": due and check,
            }
        )
    elif check:
        click.echo(
            f"{url.display}: schema {versions.before}, this version keeps {versions.code}: "
            + ("an upgrade is due (run `ckl migrate`)" if due else "current")
        )
    elif due:
        click.echo(f"{url.display}: upgraded schema {versions.before} -> {versions.after}")
    else:
        click.echo(f"{url.display}: schema {versions.after} is current, nothing to do")
    if check and due:
        ctx.exit(1)
