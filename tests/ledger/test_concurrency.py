"""Many processes on one store: no lost write, no double create, exactly one winner.

Every test starts real worker processes (``tests/ledger/_worker.py``) released together by a
start barrier on their stdin, then checks the store through a ledger in the test's own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from ledger import Completed, Created, Ledger, Yielded

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 60.0  # seconds for a whole group of workers; generous, but a hang fails the test


@dataclass(frozen=True)
class WorkerResult:
    """How one worker process ended."""

    returncode: int
    report: dict[str, object]
    stderr: str


def _worker_env() -> dict[str, str]:
    # A copy, never os.environ itself; CKL_* variables are dropped so workers use the defaults
    # whatever the shell running the tests has set.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_ready(proc: subprocess.Popen[str], deadline: float) -> bool:
    """Wait for the worker's ``ready`` line; False if it exited or the deadline passed."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
            return False
    return proc.stdout.readline() == "ready\n"


def run_workers(*argvs: list[str]) -> list[WorkerResult]:
    """Start one worker per argv, release them all at once, and return how each ended."""
    deadline = time.monotonic() + WORKER_TIMEOUT
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ledger._worker", *argv],
            cwd=ROOT,
            env=_worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    try:
        ready = all(_wait_ready(proc, deadline) for proc in procs)
        for proc in procs:
            assert proc.stdin is not None
            if not ready:
                proc.kill()  # one worker died before the barrier: stop the others, report all
                continue
            # The barrier opens: every worker reads its "go" line at the same moment. One that
            # died since it said ready shows up below, by its exit code.
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write("go\n")
                proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
            lines = out.strip().splitlines()
            report = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
            assert isinstance(report, dict)
            results.append(WorkerResult(proc.returncode, report, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    failed = [r for r in results if r.returncode != 0]
    assert ready, "a worker never got to the start barrier:\n" + "\n".join(r.stderr for r in failed)
    assert not failed, "\n".join(f"exit {r.returncode}:\n{r.stderr}" for r in failed)
    return results


def test_eight_processes_opening_a_new_store_at_once_create_its_tables_once(
    store_url: str,
) -> None:
    run_id = f"run-{uuid4().hex}"

    run_workers(*(["create-and-yield", store_url, run_id, str(batch)] for batch in range(8)))

    with Ledger.open(store_url) as ledger:
        created = [e for _, e in ledger.read_log() if isinstance(e, Created)]
        assert sorted(e.batch_index for e in created if e.run_id == run_id) == list(range(8))
        for batch in range(8):
            token = ledger.find_checkpoint(run_id, batch)
            assert token is not None
            assert [type(e) for e in ledger.checkpoint_events(token)] == [Created, Yielded]
        assert ledger.count_events() == 16


def test_processes_writing_different_checkpoints_of_one_run_record_every_yield(
    store_url: str,
) -> None:
    run_id, yields = f"run-{uuid4().hex}", 50
    with Ledger.open(store_url):
        pass  # the tables exist first: this test is about the appends, not the schema

    run_workers(
        *(
            ["yield-many", store_url, run_id, str(batch), str(yields), f"b{batch}", "rising"]
            for batch in range(4)
        )
    )

    with Ledger.open(store_url) as ledger:
        for batch in range(4):
            token = ledger.find_checkpoint(run_id, batch)
            assert token is not None
            assert ledger.count_events(token) == 1 + yields
            events = ledger.checkpoint_events(token)
            assert [e.cursor for e in events if isinstance(e, Yielded)] == [
                f"b{batch}-{i}" for i in range(yields)
            ]
            state = ledger.get_checkpoint(token)
            assert (state.cursor, state.items_processed, state.yields) == (
                f"b{batch}-{yields - 1}",
                yields,
                yields,
            )
        assert ledger.count_events() == 4 * (1 + yields)


def test_two_processes_yielding_to_one_checkpoint_lose_no_yield(store_url: str) -> None:
    run_id, yields = f"run-{uuid4().hex}", 100
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint(run_id, 0)

    run_workers(
        *(["yield-many", store_url, run_id, "0", str(yields), f"p{k}", "flat"] for k in range(2))
    )

    with Ledger.open(store_url) as ledger:
        assert ledger.count_events(token) == 1 + 2 * yields
        events = ledger.checkpoint_events(token)
        assert [e.originator_version for e in events] == list(range(1, 2 + 2 * yields))
        cursors = Counter(e.cursor for e in events if isinstance(e, Yielded))
        expected = {f"p{k}-{i}" for k in range(2) for i in range(yields)}
        assert set(cursors) == expected
        assert set(cursors.values()) == {1}
        assert ledger.get_checkpoint(token).yields == 2 * yields


def test_of_processes_racing_to_complete_one_checkpoint_exactly_one_wins(
    store_url: str,
) -> None:
    run_id, racers = f"run-{uuid4().hex}", 4
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint(run_id, 0)

    results = run_workers(*(["complete", store_url, run_id, "0", str(k)] for k in range(racers)))

    outcomes = [str(r.report["outcome"]) for r in results]
    assert sorted(outcomes) == ["ConflictingCommand"] * (racers - 1) + ["completed"]
    winner = outcomes.index("completed")
    with Ledger.open(store_url) as ledger:
        completed = [e for e in ledger.checkpoint_events(token) if isinstance(e, Completed)]
        assert [e.result for e in completed] == [{"winner": winner}]
        assert ledger.get_checkpoint(token).result == {"winner": winner}
        assert ledger.count_events(token) == 2
