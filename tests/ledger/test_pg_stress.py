"""Stress: writer processes append at once on PostgreSQL while a tail and the views follow.

Each writer process (this module run as ``python -m tests.ledger.test_pg_stress``) mixes, with
seeded random pauses: ``checkpoint_yield`` through its ``Ledger``, several events in one append
(a new checkpoint's ``Created`` and first yields through ``recorder.insert_events``), and a
yield appended in a transaction it holds open for a random time and then commits or aborts (so
transactions commit out of the order in which they took their ids, which is the case the
visible horizon exists for). Meanwhile this process follows with ``run_stream``, a
``Ledger.read_log`` poller and a started ``Projections``. At the end each reader must have seen
every committed event exactly once, in the order of a final read of the table, and the views
must equal a rebuild.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from ledger import CheckpointToken, Created, Ledger, LedgerSettings, Yielded
from ledger.store.postgres import PostgresLedgerRecorder
from projections import Projections
from streams import run_stream
from tests.projections.test_views_state_machine import dump
from tests.streams._support import subscribed

if TYPE_CHECKING:
    from eventsourcing.persistence import StoredEvent

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- the writer process


class _Writer:
    def __init__(self, url: str, name: str, seed: int) -> None:
        self.ledger = Ledger.open(url)
        assert isinstance(self.ledger.recorder, PostgresLedgerRecorder)
        self.recorder = self.ledger.recorder
        self.conn = psycopg.connect(url, connect_timeout=10)  # for held transactions
        self.rand = random.Random(seed)  # noqa: S311  (a seeded schedule, not a secret)
        self.run_id = f"stress-{name}"
        self.batches = 0
        self.live: list[CheckpointToken] = []
        self.held = self.ledger.create_checkpoint(self.run_id, self._next_batch())
        self.held_version = 1
        self.items = 100  # above the items of the checkpoints appended several events at once
        self.committed = self.aborted = 0

    def _next_batch(self) -> int:
        self.batches += 1
        return self.batches - 1

    def step(self) -> None:
        roll = self.rand.random()
        if roll < 0.5 or not self.live:
            self._yield()
        elif roll < 0.65:
            self._many()
        elif roll < 0.9:
            self._held()
        else:
            self.ledger.complete_checkpoint(self.live.pop(0), {"by": self.run_id})
        time.sleep(self.rand.uniform(0, 0.004))

    def _yield(self) -> None:
        if not self.live or self.rand.random() < 0.1:
            self.live.append(self.ledger.create_checkpoint(self.run_id, self._next_batch()))
        token = self.rand.choice(self.live)
        self.items += 1
        self.ledger.checkpoint_yield(token, cursor=self.items, items_processed=self.items)

    def _many(self) -> None:
        token = CheckpointToken.for_batch(self.run_id, self._next_batch())
        now = datetime.now(UTC)
        events: list[Created | Yielded] = [
            Created(
                originator_id=token.checkpoint_id,
                originator_version=1,
                timestamp=now,
                run_id=token.run_id,
                batch_index=token.batch_index,
            )
        ]
        events.extend(
            Yielded(
                originator_id=token.checkpoint_id,
                originator_version=version,
                timestamp=now,
                attempt=1,
                cursor=version,
                items_processed=version,
            )
            for version in range(2, self.rand.randint(2, 6) + 1)
        )
        self.recorder.insert_events([self.ledger.mapper.to_stored_event(e) for e in events])
        self.live.append(token)

    def _held(self) -> None:
        version = self.held_version + 1
        stored: StoredEvent = self.ledger.mapper.to_stored_event(
            Yielded(
                originator_id=self.held.checkpoint_id,
                originator_version=version,
                timestamp=datetime.now(UTC),
                attempt=1,
                cursor=version,
                items_processed=version,
            )
        )
        self.conn.execute(
            self.recorder._appender.insert_one,
            (
                stored.originator_id,
                stored.originator_version,
                stored.topic,
                stored.state,
                None,
                None,
            ),
        )
        time.sleep(self.rand.uniform(0, 0.03))  # others commit meanwhile, after this one's id
        if self.rand.random() < 0.75:
            self.conn.commit()
            self.held_version = version
            self.committed += 1
        else:
            self.conn.rollback()
            self.aborted += 1

    def close(self) -> None:
        self.conn.close()
        self.ledger.close()


def _main(url: str, name: str, seed: int, steps: int) -> None:
    writer = _Writer(url, name, seed)
    sys.stdout.write(json.dumps({"ready": name}) + "\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the start barrier
    for _ in range(steps):
        writer.step()
    report = {"held_committed": writer.committed, "aborted": writer.aborted}
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()
    writer.close()


# ---------------------------------------------------------------- the test


def _start(url: str, name: str, seed: int, steps: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    argv = [sys.executable, "-m", "tests.ledger.test_pg_stress", url, name, str(seed), str(steps)]
    return subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


class _Poller(threading.Thread):
    """Follows the log with ``Ledger.read_log`` in small pages, as a hand-written tail would."""

    def __init__(self, url: str) -> None:
        super().__init__(name="test-poller", daemon=True)
        self.ledger = Ledger.open(url)
        self.seen: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        position = 0
        while not self.stop.is_set():
            rows = self.ledger.read_log(after=position, limit=7)
            self.seen.extend(p for p, _ in rows)
            if rows:
                position = rows[-1][0]
            else:
                self.stop.wait(0.002)

    def finish(self, target: int, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        while (not self.seen or self.seen[-1] < target) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.stop.set()
        self.join(timeout=10)
        self.ledger.close()
        return self.seen


@pytest.mark.postgres
@pytest.mark.parametrize("writers", [8])
def test_concurrent_writer_processes_a_tail_and_the_views_see_every_event_once(
    postgres_url: str, writers: int
) -> None:
    seed = random.randrange(2**32)  # noqa: S311
    settings = LedgerSettings(store=postgres_url, poll_interval=0.2)
    with Ledger.open(settings=settings) as ledger:
        views = Projections(ledger, batch_size=5).start()
        poller = _Poller(postgres_url)
        poller.start()
        procs = [_start(postgres_url, f"w{i}", seed + i, 100) for i in range(writers)]
        try:
            with views, subscribed(run_stream(ledger, batch_size=9)) as tail:
                for proc in procs:
                    assert proc.stdout is not None
                    assert "ready" in json.loads(proc.stdout.readline() or "{}"), f"seed {seed}"
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                reports = []
                for proc in procs:
                    out, _ = proc.communicate(timeout=120)
                    assert proc.returncode == 0, f"seed {seed}"
                    reports.append(json.loads(out.splitlines()[-1]))

                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    final = [
                        int(r[0])
                        for r in conn.execute(
                            "SELECT notification_id FROM ckl_events ORDER BY notification_id"
                        )
                    ]
                delivered = [e.position for e in tail.take(len(final), timeout=60)]
                assert delivered == final, f"seed {seed}"
                time.sleep(0.3)  # anything extra would arrive now
                assert tail.pending() == 0, f"seed {seed}"
                assert poller.finish(final[-1], timeout=60) == final, f"seed {seed}"
                assert views.wait_for(final[-1], timeout=60) == final[-1]
                rows = dump(views)
                views.rebuild()
                assert dump(views) == rows, f"seed {seed}"
        finally:
            poller.stop.set()
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=10)
    # The schedule did what it is for: transactions held open while others committed.
    assert sum(r["held_committed"] for r in reports) > 0
    assert sum(r["aborted"] for r in reports) > 0


if __name__ == "__main__":
    _main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
