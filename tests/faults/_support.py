"""Shared parts of the fault tests: the mode, figures, worker processes, log checks.

Mode: quick by default (CI); ``CKL_FAULTS=long`` runs the long mode (by hand, minutes). Every
test picks its sizes with :func:`pick`. Figures (kills, events, recovery times) are printed, and
appended as JSON lines to the file named by ``CKL_FAULTS_REPORT`` when it is set, so that
``docs/reliability.md`` can quote one actual run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from eventsourcing.persistence import PersistenceError

from ledger import Yielded
from tests.streams._support import Worker, processes_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ledger import CheckpointEvent, Ledger
    from projections import Projections

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

MODE = "long" if os.environ.get("CKL_FAULTS", "").strip().lower() == "long" else "quick"
LONG = MODE == "long"


def pick(quick: T, long: T) -> T:
    """The quick-mode or the long-mode value of a size, by ``CKL_FAULTS``."""
    return long if LONG else quick


def record_figures(test: str, **figures: object) -> None:
    """Print a test's measured figures, and append them to ``$CKL_FAULTS_REPORT`` if set."""
    line = json.dumps({"test": test, "mode": MODE, **figures}, sort_keys=True)
    sys.stdout.write(f"FIGURES {line}\n")
    target = os.environ.get("CKL_FAULTS_REPORT")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (``fraction`` in 0..1)."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


# ------------------------------------------------------------------------------ processes


class FaultWorker(Worker):
    """One ``python -m tests.faults._fault_worker`` process; its JSON stdout lines on a queue."""

    module: ClassVar[str] = "tests.faults._fault_worker"


@contextlib.contextmanager
def fault_workers(*argvs: list[str]) -> Iterator[list[FaultWorker]]:
    """One fault worker per argv for the ``with`` block; any still running at the end is killed."""
    with processes_of(FaultWorker, *argvs) as started:
        yield started


# ------------------------------------------------------------------------------ the log


def whole_log(ledger: Ledger, timeout: float = 30.0) -> list[tuple[int, CheckpointEvent]]:
    """Every event committed to the store so far, in global order.

    Reads go up to the visible horizon only (PostgreSQL): right after the writers stop, another
    transaction on the server (the views' follower, a notify) may still hold committed events
    above it for a moment, so read until the newest committed position has been read.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:  # after a server restart a pooled connection fails on its first use
            committed = ledger.recorder.max_notification_id() or 0
            break
        except PersistenceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    rows: list[tuple[int, CheckpointEvent]] = []
    position = 0
    while True:
        while batch := ledger.read_log(after=position, limit=1000):
            rows.extend(batch)
            position = batch[-1][0]
        if position >= committed or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)


def assert_prefix_consistent(log: list[tuple[int, CheckpointEvent]]) -> None:
    """Positions strictly rise, and each checkpoint's versions are 1, 2, 3… in log order."""
    positions = [pos for pos, _ in log]
    assert positions == sorted(set(positions)), "positions repeat or go backwards"
    versions: dict[object, list[int]] = defaultdict(list)
    for _, event in log:
        versions[event.originator_id].append(event.originator_version)
    for oid, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"checkpoint {oid} has versions {seen}"


def check_writers_in_log(ledger: Ledger, done: dict[str, dict[str, int]]) -> list[Any]:
    """The log is prefix-consistent and holds each writer's yields and events exactly once."""
    log = whole_log(ledger)
    assert_prefix_consistent(log)
    yields = Counter(
        token.run_id
        for _, event in log
        if isinstance(event, Yielded) and (token := ledger.token_for(event.originator_id))
    )
    assert yields == {run: d["yields"] for run, d in done.items()}
    assert len(log) == sum(d["events"] for d in done.values())
    return log


VIEW_TABLES = {
    "ckl_view_cursor": "checkpoint_id",
    "ckl_view_history": "checkpoint_id, seq",
    "ckl_view_failures": "position",
    "ckl_view_timeline": "position",
}


def dump_views(views: Projections) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view, in key order (to compare with a rebuild)."""
    return {
        table: views._query(f"SELECT * FROM {table} ORDER BY {key}")
        for table, key in VIEW_TABLES.items()
    }
