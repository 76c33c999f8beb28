"""PostgreSQL restarted under a live stream and under an await: both wait it out and resume.

After the restart the new events come from another process, so only the reconnected LISTEN (or
the head poll) can bring them in; the stream must resume from its last position, so that
nothing is missed and nothing is seen twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from ledger import Completed, Created, Ledger, LedgerSettings, Yielded
from streams import completion, run_stream
from tests.streams._support import OnCompleted, OnNext, log_of, subscribed, workers

if TYPE_CHECKING:
    from tests.fix_postgres import PostgresServer

pytestmark = pytest.mark.postgres

TIMEOUT = 60.0  # seconds; the restart itself and the reconnect back-off fit well within it


def test_a_stream_waits_out_a_postgres_restart_and_resumes_exactly_once(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    run_id = f"run-{uuid4().hex}"
    config = LedgerSettings(store=postgres_url, poll_interval=0.1)
    with Ledger.open(settings=config) as ledger:
        token = ledger.create_checkpoint(run_id, 0)
        for i in range(10):
            ledger.checkpoint_yield(token, i, i)
        with subscribed(run_stream(ledger, run_id, batch_size=4)) as got:
            before = got.take(11, TIMEOUT)

            postgres_server.restart()

            with workers(["yield-many", postgres_url, run_id, "1", "20", "--complete"]) as (
                writer,
            ):
                writer.wait_for("ready", TIMEOUT)
                writer.go()
                assert writer.finish(TIMEOUT) == 0, writer.stderr
            after = got.take(22, TIMEOUT)

            ledger.complete_checkpoint(token, "sentinel")
            [sentinel] = got.take(1, TIMEOUT)
            assert got.pending() == 0

        events = [*before, *after, sentinel]
        assert [(e.position, e.event) for e in events] == log_of(ledger, run_id)
        assert [type(e.event) for e in after] == [Created] + [Yielded] * 20 + [Completed]
        assert {e.batch_index for e in after} == {1}


def test_an_await_survives_a_postgres_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    run_id = f"run-{uuid4().hex}"
    config = LedgerSettings(store=postgres_url, poll_interval=0.1)
    with Ledger.open(settings=config) as ledger:
        token = ledger.create_checkpoint(run_id, 0)
        # Subscribed (watching, its thread started) before the server goes down.
        with subscribed(completion(ledger, token)) as got:
            postgres_server.restart()
            # Completed by another process after the restart: only the reconnected LISTEN
            # or the poll can wake the awaiter.
            with workers(["yield-many", postgres_url, run_id, "0", "2", "--complete"]) as (writer,):
                writer.wait_for("ready", TIMEOUT)
                writer.go()
                assert writer.finish(TIMEOUT) == 0, writer.stderr
            notes = [got.next_notification(TIMEOUT), got.next_notification(TIMEOUT)]
        assert notes == [OnNext({"yields": 2}), OnCompleted()]
