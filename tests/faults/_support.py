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
import queue
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ledger import Yielded

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


def worker_env() -> dict[str, str]:
    """A copy of the environment for workers: the repository importable, no ``CKL_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class FaultWorker:
    """One ``python -m tests.faults._fault_worker`` process; its JSON stdout lines on a queue."""

    def __init__(self, *argv: str) -> None:
        """Start the worker with ``argv``."""
        self.argv = argv
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults._fault_worker", *argv],
            cwd=ROOT,
            env=worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.reports: list[dict[str, Any]] = []
        self._stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, name="test-fault-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="test-fault-stderr", daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                report = json.loads(line)
            except ValueError:
                report = None
            self.lines.put(report if isinstance(report, dict) else {"text": line})
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self._stderr.extend(self.proc.stderr)

    @property
    def stderr(self) -> str:
        """What the worker wrote on stderr so far."""
        return "".join(self._stderr)

    def wait_for(self, key: str, timeout: float) -> Any:
        """Read reports until one has ``key``; its value. Fails at EOF or the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                msg = f"worker {self.argv[0]} sent no {key!r} within {timeout}s:\n{self.stderr}"
                raise AssertionError(msg) from None
            if report is None:
                self.lines.put(None)
                self.proc.wait(timeout=10)
                msg = f"worker exited {self.proc.returncode} before {key!r}:\n{self.stderr}"
                raise AssertionError(msg)
            self.reports.append(report)
            if key in report:
                return report[key]

    def say(self, line: str) -> None:
        """Write one line on the worker's stdin (the start barrier, or ``stop``)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def finish(self, timeout: float) -> int:
        """Wait for the worker to exit, collecting its remaining reports; its exit code."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                report = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                msg = f"worker {self.argv[0]} did not finish within {timeout}s:\n{self.stderr}"
                raise AssertionError(msg) from None
            if report is None:
                break
            self.reports.append(report)
        code = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for reader in self._readers:
            reader.join(timeout=10)
        return code

    def stop(self) -> None:
        """Kill the worker if it still runs, and reap it (for ``finally`` blocks)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


@contextlib.contextmanager
def fault_workers(*argvs: list[str]) -> Iterator[list[FaultWorker]]:
    """One worker per argv for the ``with`` block; any still running at the end is killed."""
    started: list[FaultWorker] = []
    try:
        started.extend(FaultWorker(*argv) for argv in argvs)
        yield started
    finally:
        for worker in started:
            worker.stop()


# ------------------------------------------------------------------------------ the log


def whole_log(ledger: Ledger) -> list[tuple[int, CheckpointEvent]]:
    """Every event of the store in global order."""
    rows: list[tuple[int, CheckpointEvent]] = []
    position = 0
    while batch := ledger.read_log(after=position, limit=1000):
        rows.extend(batch)
        position = batch[-1][0]
    return rows


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
