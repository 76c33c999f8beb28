"""A lost acknowledgement while another process writes: every command applied exactly once.

PostgreSQL: a loopback TCP proxy (``tests.faults._proxy``) sits between a ``Ledger`` and the
server and loses the reply to one INSERT: the server commits, the client's connection breaks
instead of reading ``INSERT 0 1``. Between that commit and the client's retry another process
(a real subprocess, on a direct connection) writes to the same checkpoint: resets it, retries
it, yields further. The ledger must then find its own committed command by its id instead of
taking the version clash for another writer's win and deciding again. Afterwards the log is
read back directly (the table's ``command_id`` column and each event's ``command_id``): one
event per command id, and no event the caller did not ask for.

SQLite has no wire to cut: the same "applied, not acknowledged" situation is a caller that
re-sends a command (its ``command_id``) from a second ``Ledger`` with a fresh cache after
another writer's event. It must be found and not applied again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias
from uuid import uuid4

import psycopg
import pytest

from ledger import (
    Cancelled,
    CheckpointState,
    CheckpointToken,
    Completed,
    Created,
    Failed,
    Ledger,
    LedgerSettings,
    Reset,
    Retried,
    StoreUnavailable,
    Yielded,
)
from tests.faults._proxy import PostgresProxy
from tests.faults._support import ROOT, record_figures

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ledger import CheckpointEvent
    from tests.faults._proxy import LostReply

TIMEOUT = 60.0
Log: TypeAlias = "Sequence[tuple[type[CheckpointEvent], str]]"
"""A checkpoint's events as (event type, command id), in version order."""

# The other process: one command on one checkpoint, on its own direct connection.
OTHER_WRITER = """
import json, sys
from ledger import CheckpointToken, Ledger
url, run_id, batch, action, command_id = sys.argv[1:6]
token = CheckpointToken.for_batch(run_id, int(batch))
with Ledger.open(url) as ledger:
    if action == "reset":
        state = ledger.reset_checkpoint(token, "other writer", command_id=command_id)
    elif action == "retry":
        state = ledger.retry_checkpoint(token, command_id=command_id)
    elif action == "yield":
        state = ledger.checkpoint_yield(token, "other", 7, command_id=command_id)
    else:
        raise SystemExit(f"unknown action {action}")
print(json.dumps({"version": state.version, "attempt": state.attempt}))
"""


def other_process(url: str, token: CheckpointToken, action: str, command_id: str) -> None:
    """Run one command on the checkpoint in another process; raise if it did not succeed."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            OTHER_WRITER,
            url,
            token.run_id,
            str(token.batch_index),
            action,
            command_id,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)


def stored_rows(url: str, token: CheckpointToken) -> list[tuple[str, str | None]]:
    """``(topic, command_id)`` of each of the checkpoint's rows, in version order, by SQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT topic, command_id FROM ckl_events WHERE originator_id = %s "
            "ORDER BY originator_version",
            (token.checkpoint_id,),
        ).fetchall()
    return [(str(topic), command_id) for topic, command_id in rows]


def assert_once_each(url: str, token: CheckpointToken, expected: Log) -> None:
    """The checkpoint's log is exactly ``expected`` (event type, command id), read back directly.

    Both the command id column (the unique index's) and the id inside each event's state.
    """
    with Ledger.open(url) as fresh:
        events = fresh.checkpoint_events(token)
    assert [(type(e), e.command_id) for e in events] == expected
    assert stored_rows(url, token) == [(kind.topic, cid) for kind, cid in expected]
    assert all(n == 1 for n in Counter(cid for _, cid in expected).values())


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[PostgresProxy]:
    """A lossy proxy in front of the test's database server."""
    with PostgresProxy.in_front_of(postgres_url) as started:
        yield started


def proxied_ledger(proxy: PostgresProxy, url: str, *, store_retries: int) -> Ledger:
    """A ledger whose connections go through the proxy; quick retries."""
    return Ledger.open(
        settings=LedgerSettings(
            store=proxy.url(url),
            store_retries=store_retries,
            store_retry_delay=0.01,
            connect_timeout=5.0,
        )
    )


def lose_reply_during(
    proxy: PostgresProxy, then: Callable[[], None], command: Callable[[], CheckpointState]
) -> tuple[CheckpointState | StoreUnavailable, LostReply]:
    """Run ``command`` with the reply to its INSERT lost and ``then`` run before the retry."""
    lost = proxy.lose_next_insert_reply(then)
    try:
        outcome: CheckpointState | StoreUnavailable = command()
    except StoreUnavailable as exc:
        outcome = exc
    finally:
        proxy.disarm()
    lost.wait(TIMEOUT)
    assert lost.tag == "INSERT 0 1"
    return outcome, lost


def started(ledger: Ledger, run_id: str) -> tuple[CheckpointToken, str]:
    """A checkpoint created through ``ledger``, and its Created's command id."""
    created = f"create-{uuid4().hex}"
    token = ledger.create_checkpoint(run_id, 0, command_id=created)
    return token, created


# ------------------------------------------------------------------ (a) complete, other resets


@pytest.mark.postgres
@pytest.mark.parametrize("store_retries", [2, 0])
def test_a_completion_whose_reply_was_lost_while_another_process_reset_completes_once(
    proxy: PostgresProxy, postgres_url: str, store_retries: int
) -> None:
    with proxied_ledger(proxy, postgres_url, store_retries=store_retries) as ledger:
        token, created = started(ledger, f"lost-complete-{uuid4().hex[:8]}")
        complete, reset = f"complete-{uuid4().hex}", f"reset-{uuid4().hex}"
        outcome, _ = lose_reply_during(
            proxy,
            lambda: other_process(postgres_url, token, "reset", reset),
            lambda: ledger.complete_checkpoint(token, {"sum": 1}, command_id=complete),
        )
        expected: Log = [(Created, created), (Completed, complete), (Reset, reset)]
        assert_once_each(postgres_url, token, expected)
        if isinstance(outcome, StoreUnavailable):
            assert store_retries == 0
            assert outcome.command_id == complete
        else:
            # The outcome: the command stands as applied; the checkpoint has moved on since.
            assert outcome.version == len(expected)
            assert outcome.status == "open"
            assert outcome.attempt == 2
        # Re-sending the command, on this ledger and on a fresh one, writes nothing.
        again = ledger.complete_checkpoint(token, {"sum": 1}, command_id=complete)
        assert again.status == "open"
        assert again.version == len(expected)
        with Ledger.open(postgres_url) as fresh:
            fresh.complete_checkpoint(token, {"sum": 1}, command_id=complete)
        assert_once_each(postgres_url, token, expected)
        connections = proxy.connections
    record_figures(
        "lost_ack[complete+reset]",
        store_retries=store_retries,
        outcome=type(outcome).__name__,
        proxied_connections=connections,
    )


# ------------------------------------------------------------------ (b) fail, other retries


@pytest.mark.postgres
def test_a_transient_failure_whose_reply_was_lost_does_not_fail_the_retried_attempt(
    proxy: PostgresProxy, postgres_url: str
) -> None:
    with proxied_ledger(proxy, postgres_url, store_retries=2) as ledger:
        token, _ = started(ledger, f"lost-fail-{uuid4().hex[:8]}")
        lease = ledger.claim_checkpoint(token, "worker-1", 30.0)
        fail, retry = f"fail-{uuid4().hex}", f"retry-{uuid4().hex}"
        outcome, _ = lose_reply_during(
            proxy,
            lambda: other_process(postgres_url, token, "retry", retry),
            lambda: ledger.fail_checkpoint(
                token, "flaky disk", transient=True, lease=lease, command_id=fail
            ),
        )
        assert isinstance(outcome, CheckpointState)
        # Attempt 2 is open and was failed by nobody.
        assert (outcome.status, outcome.attempt, outcome.error) == ("open", 2, None)
        with Ledger.open(postgres_url) as fresh:
            events = fresh.checkpoint_events(token)
            now = fresh.get_checkpoint(token)
        assert (now.status, now.attempt, now.error) == ("open", 2, None)
        failed = [e for e in events if isinstance(e, Failed)]
        assert [(e.attempt, e.command_id) for e in failed] == [(1, fail)]
        retried = [e for e in events if isinstance(e, Retried)]
        assert [(e.attempt, e.command_id) for e in retried] == [(2, retry)]
        assert events[-2:] == [failed[0], retried[0]]
        before = len(events)
        ledger.fail_checkpoint(token, "flaky disk", transient=True, lease=lease, command_id=fail)
        assert len(stored_rows(postgres_url, token)) == before


# ------------------------------------------------------------------ (c) a yield that landed


@pytest.mark.postgres
@pytest.mark.parametrize("other", ["yield", "reset"])
def test_a_yield_whose_reply_was_lost_is_found_not_refused(
    proxy: PostgresProxy, postgres_url: str, other: str
) -> None:
    """No false ``ProgressWentBackwards`` (other yield) or ``StaleAttempt`` (reset)."""
    with proxied_ledger(proxy, postgres_url, store_retries=2) as ledger:
        token, created = started(ledger, f"lost-yield-{uuid4().hex[:8]}")
        first = f"yield-{uuid4().hex}"
        ledger.checkpoint_yield(token, 1, 1, command_id=first)
        mine, theirs = f"yield-{uuid4().hex}", f"{other}-{uuid4().hex}"
        outcome, _ = lose_reply_during(
            proxy,
            lambda: other_process(postgres_url, token, other, theirs),
            # Fenced by attempt 1: after the other's reset the yield would be stale, had it
            # not landed before the reset.
            lambda: ledger.checkpoint_yield(token, 5, 5, {"sum": 15}, attempt=1, command_id=mine),
        )
        assert isinstance(outcome, CheckpointState), outcome
        theirs_type: type[CheckpointEvent] = Yielded if other == "yield" else Reset
        expected: Log = [
            (Created, created),
            (Yielded, first),
            (Yielded, mine),
            (theirs_type, theirs),
        ]
        assert_once_each(postgres_url, token, expected)
        with Ledger.open(postgres_url) as fresh:
            landed = fresh.checkpoint_events(token)[2]
        assert isinstance(landed, Yielded)
        assert (landed.items_processed, landed.accumulated_results) == (5, {"sum": 15})
        again = ledger.checkpoint_yield(token, 5, 5, {"sum": 15}, attempt=1, command_id=mine)
        assert again.version == len(expected)
        assert_once_each(postgres_url, token, expected)


# ------------------------------------------------------------------ (d) the user repeats


def _complete(ledger: Ledger, token: CheckpointToken, cid: str | None) -> CheckpointState:
    return ledger.complete_checkpoint(token, {"sum": 3}, command_id=cid)


def _fail(ledger: Ledger, token: CheckpointToken, cid: str | None) -> CheckpointState:
    return ledger.fail_checkpoint(token, "timeout", transient=True, command_id=cid)


def _yield(ledger: Ledger, token: CheckpointToken, cid: str | None) -> CheckpointState:
    return ledger.checkpoint_yield(token, 3, 3, command_id=cid)


def _cancel(ledger: Ledger, token: CheckpointToken, cid: str | None) -> CheckpointState:
    return ledger.cancel_checkpoint(token, "operator", command_id=cid)


def _reset(ledger: Ledger, token: CheckpointToken, cid: str | None) -> CheckpointState:
    return ledger.reset_checkpoint(token, "operator", command_id=cid)


# command, its event, what the other process does after it landed, that event.
Command = Callable[[Ledger, CheckpointToken, str | None], CheckpointState]
REPEATS: dict[str, tuple[Command, type[CheckpointEvent], str, type[CheckpointEvent]]] = {
    "complete": (_complete, Completed, "reset", Reset),
    "fail": (_fail, Failed, "retry", Retried),
    "yield": (_yield, Yielded, "yield", Yielded),
    "cancel": (_cancel, Cancelled, "reset", Reset),
    "reset": (_reset, Reset, "yield", Yielded),
}


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(REPEATS))
@pytest.mark.parametrize("given_id", [True, False], ids=["given-id", "generated-id"])
def test_a_command_repeated_after_store_unavailable_with_its_id_applies_once(
    proxy: PostgresProxy, postgres_url: str, name: str, given_id: bool
) -> None:
    """No store retries: the caller gets ``StoreUnavailable`` and repeats, as the docs say."""
    command, kind, action, other_kind = REPEATS[name]
    with proxied_ledger(proxy, postgres_url, store_retries=0) as ledger:
        token, created = started(ledger, f"repeat-{name}-{uuid4().hex[:8]}")
        theirs = f"{action}-{uuid4().hex}"
        cid = f"{name}-{uuid4().hex}" if given_id else None
        outcome, _ = lose_reply_during(
            proxy,
            lambda: other_process(postgres_url, token, action, theirs),
            lambda: command(ledger, token, cid),
        )
        assert isinstance(outcome, StoreUnavailable)
        assert outcome.command_id is not None
        if given_id:
            assert outcome.command_id == cid
        assert "command_id=" in str(outcome)
        # The user repeats it with the error's command id: found, nothing written.
        command(ledger, token, outcome.command_id)
        expected: Log = [(Created, created), (kind, outcome.command_id), (other_kind, theirs)]
        assert_once_each(postgres_url, token, expected)
        with Ledger.open(postgres_url) as fresh:
            command(fresh, token, outcome.command_id)
        assert_once_each(postgres_url, token, expected)


# ------------------------------------------------------------------ SQLite: no wire


@pytest.mark.parametrize("name", sorted(REPEATS))
def test_on_sqlite_a_command_resent_from_a_fresh_ledger_after_another_write_applies_once(
    sqlite_url: str, name: str
) -> None:
    """Applied but unacknowledged: re-sent by a second ``Ledger`` (fresh cache) after another's."""
    command, kind, action, other_kind = REPEATS[name]
    run_id = f"resend-{name}-{uuid4().hex[:8]}"
    with Ledger.open(sqlite_url) as ledger:
        token, created = started(ledger, run_id)
        cid = f"{name}-{uuid4().hex}"
        command(ledger, token, cid)  # applied; say its acknowledgement was lost
    theirs = f"{action}-{uuid4().hex}"
    other_process(sqlite_url, token, action, theirs)
    with Ledger.open(sqlite_url) as second:
        command(second, token, cid)
        events = second.checkpoint_events(token)
    assert [(type(e), e.command_id) for e in events] == [
        (Created, created),
        (kind, cid),
        (other_kind, theirs),
    ]
