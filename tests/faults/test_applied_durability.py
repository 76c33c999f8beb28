"""``durability="applied"``: a command returns once the synchronous standby has replayed it.

A real primary and a synchronous hot standby (``tests/fix_replica.py``). With replay paused on
the standby (``pg_wal_replay_pause()``), a ``full`` command still returns (the standby has
flushed its WAL, which is all ``synchronous_commit=on`` waits for) and a reader on the standby
does not see it; an ``applied`` command does not return until replay resumes, and once it has
returned the standby's readers see it (``ledger.reader``, on the standby, returns the state the
command returned). So read-your-writes holds on the standby for an ``applied`` ledger.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import psycopg

from ledger import CheckpointState, Ledger, LedgerSettings
from ledger.store.postgres import PostgresLedgerRecorder

if TYPE_CHECKING:
    from uuid import UUID

    from tests.fix_replica import ReplicaPairMaker

HELD = 0.5
"""Seconds an ``applied`` command must stay unanswered while replay is paused."""
TIMEOUT = 30.0


def standby_version(url: str, checkpoint_id: UUID) -> int:
    """The newest version of a checkpoint the standby has replayed (0: none)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(max(originator_version), 0) FROM ckl_events WHERE originator_id = %s",
            (checkpoint_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def set_replay(superuser_url: str, *, paused: bool) -> None:
    """Pause or resume WAL replay on the standby, and wait until it has."""
    call, wanted = (
        ("pg_wal_replay_pause", "paused") if paused else ("pg_wal_replay_resume", "not paused")
    )
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute(f"SELECT {call}()")
        deadline = time.monotonic() + TIMEOUT
        while conn.execute("SELECT pg_get_wal_replay_pause_state()").fetchone() != (wanted,):
            assert time.monotonic() < deadline, f"replay is not {wanted}"
            time.sleep(0.01)


def test_an_applied_command_returns_only_once_the_standby_replayed_it(
    replica_pairs: ReplicaPairMaker,
) -> None:
    pair = replica_pairs(synchronous=True)
    url = pair.create_database("ckl_applied")
    on_standby = pair.standby_url("ckl_applied")
    applied_settings = LedgerSettings(store=url, reader_store=on_standby, durability="applied")
    with (
        Ledger.open(settings=applied_settings) as applied,
        Ledger.open(settings=LedgerSettings(store=url, durability="full")) as full,
    ):
        assert isinstance(applied.recorder, PostgresLedgerRecorder)
        with applied.recorder._conn() as conn:
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("remote_apply",)
        token = applied.create_checkpoint("applied", 0)
        other = full.create_checkpoint("full", 0)
        # Replay running: every applied command is on the standby when it returns.
        for n in range(1, 21):
            state = applied.checkpoint_yield(token, n, n)
            assert standby_version(on_standby, token.checkpoint_id) == state.version
            assert applied.reader.get_checkpoint(token) == state  # read-your-writes there
        before = standby_version(on_standby, token.checkpoint_id)
        set_replay(pair.standby.url, paused=True)
        try:
            # full: returns (the standby flushed it) although the standby has not replayed it.
            state = full.checkpoint_yield(other, 1, 1)
            assert standby_version(on_standby, other.checkpoint_id) < state.version
            # applied: held until the standby replays it.
            answered: list[CheckpointState] = []
            worker = threading.Thread(
                target=lambda: answered.append(applied.checkpoint_yield(token, 100, 100))
            )
            worker.start()
            worker.join(HELD)
            assert worker.is_alive()
            assert not answered
            assert standby_version(on_standby, token.checkpoint_id) == before
        finally:
            set_replay(pair.standby.url, paused=False)
        worker.join(TIMEOUT)
        assert answered, "the applied command never returned after replay resumed"
        assert standby_version(on_standby, token.checkpoint_id) == answered[0].version
        assert answered[0].version == before + 1
        assert applied.reader.get_checkpoint(token) == answered[0]
