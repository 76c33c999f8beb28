"""Workers running ``run_batches`` are SIGKILLed at random points; nothing is lost or ahead.

Each round starts a worker (``_fault_worker batches``) and kills it with a real SIGKILL at a
seeded random point of one of three kinds:

* ``after-yield``: the worker kills itself right after its N-th ``checkpoint_yield`` returned;
* ``mid-chunk``: in the middle of its N-th chunk (half summed, not yielded);
* ``timed``: the parent kills it after a random delay, wherever it is (starting up, inside an
  append, completing, awaiting the confirmation, reporting progress).

After every kill, before the restart, the test checks the durable store against what the
worker had reported (its fsynced log): every yield it saw return is in the store, every
progress it reported is a durable ``Completed`` (of that batch and all before it), and the log
is prefix-consistent. When a run finishes, its results must equal an uninterrupted run, and
every batch must have yielded each chunk exactly once. The seed is printed; rerun one with
``CKL_FAULTS_SEED=<seed>``.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from ledger import Completed, Created, Ledger, Yielded
from streams import Coordinator, run_batches
from tests.faults._fault_worker import ChunkedSum, DurableLog
from tests.faults._support import (
    FaultWorker,
    assert_prefix_consistent,
    pick,
    record_figures,
    whole_log,
)

if TYPE_CHECKING:
    from pathlib import Path

    from ledger import JSONValue

KILLS = pick(25, 150)  # per backend: 50 in all in quick mode (25 SQLite + 25 PostgreSQL)
BATCHES, ITEMS, CHUNK = 6, 40, 5  # 8 chunks (yields) per batch
TIMEOUT = 120.0


def expected_results() -> list[JSONValue]:
    return [
        {"batch": b, "sum": sum(range(b * ITEMS, (b + 1) * ITEMS)), "items": ITEMS}
        for b in range(BATCHES)
    ]


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    # A SIGKILL can only cut the last line short if it hit during the write; fsync happens
    # after, so a cut line was never reported as done: ignore it.
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def check_nothing_reported_ahead(
    ledger: Ledger, run_id: str, reported: list[dict[str, Any]]
) -> None:
    """Every yield and progress the worker reported is durable in the store right now."""
    states = {}
    for batch in range(BATCHES):
        token = ledger.find_checkpoint(run_id, batch)
        states[batch] = None if token is None else ledger.get_checkpoint(token)
    for line in reported:
        if "yielded" in line:
            batch, cursor = line["yielded"]
            state = states[batch]
            assert state is not None, f"yield {line} reported, checkpoint not in the store"
            durable = ITEMS if state.status == "completed" else state.checkpoint_cursor
            assert isinstance(durable, int)
            assert durable >= cursor, f"yield {line} reported, store has cursor {durable}"
        if "progress" in line:
            batch, result = line["progress"]
            for earlier in range(batch + 1):
                state = states[earlier]
                assert state is not None
                assert state.status == "completed", f"{line} reported, batch {earlier} open"
            state = states[batch]
            assert state is not None
            assert state.result == result


def check_each_chunk_yielded_once(ledger: Ledger, run_id: str) -> None:
    for batch in range(BATCHES):
        token = ledger.find_checkpoint(run_id, batch)
        if token is None:
            continue
        events = ledger.checkpoint_events(token)
        assert isinstance(events[0], Created)
        cursors = [e.cursor for e in events if isinstance(e, Yielded)]
        assert cursors == list(range(CHUNK, CHUNK * (len(cursors) + 1), CHUNK)), cursors
        assert all(isinstance(e, Created | Yielded | Completed) for e in events)


def uninterrupted_results(store_url: str, tmp_path: Path) -> list[JSONValue]:
    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coord:
        job = ChunkedSum(ITEMS, CHUNK, DurableLog(str(tmp_path / "reference.log")))
        return run_batches(coord, f"ref-{uuid4().hex}", list(range(BATCHES)), job).results


def kill_once(rng: random.Random, store_url: str, run_id: str, log: Path) -> tuple[str, int]:
    """Start a worker on the run and kill it at a random point; (kind of kill, exit code)."""
    argv = ["batches", store_url, run_id, str(BATCHES), str(ITEMS), str(CHUNK), str(log)]
    kind = rng.choice(["after-yield", "mid-chunk", "timed"])
    delay = rng.uniform(0.0, 0.25)  # after the store is open
    if kind == "after-yield":
        argv += ["--kill-after-yield", str(rng.randint(1, 4))]
    elif kind == "mid-chunk":
        argv += ["--kill-mid-chunk", str(rng.randint(1, 4))]
    worker = FaultWorker(*argv)
    try:
        if kind == "timed":
            worker.wait_for("opened", TIMEOUT)
            try:
                worker.proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(worker.proc.pid, signal.SIGKILL)
        code = worker.finish(TIMEOUT)
        assert code in {0, -signal.SIGKILL}, f"worker exited {code}:\n{worker.stderr}"
        if code == 0:
            assert worker.reports[-1]["results"] == expected_results()
    finally:
        worker.stop()
    return kind, code


def finish_run(store_url: str, run_id: str, log: Path) -> object:
    """Run the job to its end in a worker that is not killed; its results."""
    worker = FaultWorker(
        "batches", store_url, run_id, str(BATCHES), str(ITEMS), str(CHUNK), str(log)
    )
    try:
        assert worker.finish(TIMEOUT) == 0, worker.stderr
    finally:
        worker.stop()
    return worker.reports[-1]["results"]


@pytest.mark.slow
def test_workers_killed_at_random_points_resume_and_lose_nothing(
    store_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CKL_FAULTS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed={seed} (rerun with CKL_FAULTS_SEED={seed})")  # noqa: T201
    rng = random.Random(seed)  # noqa: S311  (reproducible kill points, not secrets)
    kinds: dict[str, int] = {"after-yield": 0, "mid-chunk": 0, "timed": 0}
    kills = runs = 0
    started = time.monotonic()
    with Ledger.open(store_url) as ledger:
        while kills < KILLS:
            runs += 1
            run_id, log = f"killed-{runs}-{uuid4().hex[:8]}", tmp_path / f"run-{runs}.log"
            while kills < KILLS:
                kind, code = kill_once(rng, store_url, run_id, log)
                if code == 0:
                    break  # the run finished before the next kill
                kills += 1
                kinds[kind] += 1
                context = f"seed={seed} kill={kills} kind={kind}"
                try:
                    check_nothing_reported_ahead(ledger, run_id, read_lines(log))
                    check_each_chunk_yielded_once(ledger, run_id)
                except AssertionError as exc:
                    raise AssertionError(f"{context}: {exc}") from exc
            # Finish the run without killing it: it resumes and must give the plain results.
            assert finish_run(store_url, run_id, log) == expected_results(), f"seed={seed}"
            check_nothing_reported_ahead(ledger, run_id, read_lines(log))
            check_each_chunk_yielded_once(ledger, run_id)
        assert_prefix_consistent(whole_log(ledger))
    assert expected_results() == uninterrupted_results(store_url, tmp_path)
    backend = store_url.split(":", 1)[0]
    record_figures(
        f"worker_killed[{backend}]",
        kills=kills,
        kinds=kinds,
        runs=runs,
        seconds=round(time.monotonic() - started, 1),
        seed=seed,
    )
