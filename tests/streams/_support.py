"""Helpers of the stream tests: a queue-backed observer, worker processes, threads, the log.

Everything here waits on a queue or a thread with a deadline, never on the clock: a test that
hangs fails with what it was waiting for instead of stalling the suite.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from reactivex import Observable

    from ledger import CheckpointEvent, Ledger

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


# ------------------------------------------------------------------------------ observers


@dataclass(frozen=True)
class OnNext(Generic[T]):
    """An ``on_next`` the observer received."""

    value: T


@dataclass(frozen=True)
class OnError:
    """The ``on_error`` the observer received."""

    error: Exception


@dataclass(frozen=True)
class OnCompleted:
    """The ``on_completed`` the observer received."""


@dataclass
class Collector(Generic[T]):
    """An observer that puts every notification on a queue, in the order it arrived."""

    notifications: queue.Queue[OnNext[T] | OnError | OnCompleted] = field(
        default_factory=queue.Queue
    )

    def on_next(self, value: T) -> None:
        """Record a value."""
        self.notifications.put(OnNext(value))

    def on_error(self, error: Exception) -> None:
        """Record the error."""
        self.notifications.put(OnError(error))

    def on_completed(self) -> None:
        """Record the completion."""
        self.notifications.put(OnCompleted())

    def next_notification(self, timeout: float) -> OnNext[T] | OnError | OnCompleted:
        """The next notification, waiting at most ``timeout`` seconds for it."""
        try:
            return self.notifications.get(timeout=timeout)
        except queue.Empty:
            msg = f"no notification within {timeout}s"
            raise AssertionError(msg) from None

    def take(self, count: int, timeout: float) -> list[T]:
        """The next ``count`` values; fails on an error or completion, or at the deadline."""
        deadline = time.monotonic() + timeout
        values: list[T] = []
        while len(values) < count:
            remaining = deadline - time.monotonic()
            try:
                note = self.notifications.get(timeout=max(0.0, remaining))
            except queue.Empty:
                msg = f"got {len(values)} of {count} values within {timeout}s"
                raise AssertionError(msg) from None
            if not isinstance(note, OnNext):
                msg = f"the stream ended with {note!r} after {len(values)} of {count} values"
                raise AssertionError(msg)  # noqa: TRY004  (a test failure, not a type error)
            values.append(note.value)
        return values

    def pending(self) -> int:
        """Notifications received and not yet taken."""
        return self.notifications.qsize()


@contextlib.contextmanager
def subscribed(source: Observable[T]) -> Iterator[Collector[T]]:
    """Subscribe a :class:`Collector` to ``source`` for the ``with`` block, then dispose."""
    collector: Collector[T] = Collector()
    subscription = source.subscribe(
        on_next=collector.on_next,
        on_error=collector.on_error,
        on_completed=collector.on_completed,
    )
    try:
        yield collector
    finally:
        subscription.dispose()


# ------------------------------------------------------------------------------ the log


def log_of(ledger: Ledger, run_id: str | None = None) -> list[tuple[int, CheckpointEvent]]:
    """The whole log in global order, or only ``run_id``'s events: what a stream must show."""
    rows: list[tuple[int, CheckpointEvent]] = []
    position = 0
    while batch := ledger.read_log(after=position, limit=1000):
        rows.extend(batch)
        position = batch[-1][0]
    if run_id is None:
        return rows
    return [
        (pos, event)
        for pos, event in rows
        if (token := ledger.token_for(event.originator_id)) is not None and token.run_id == run_id
    ]


# ------------------------------------------------------------------------------ threads


def ckl_threads() -> set[threading.Thread]:
    """The live threads checkpoint-ledger started (they are all named ``ckl-…``)."""
    return {t for t in threading.enumerate() if t.name.startswith("ckl-")}


def still_alive(threads: Iterable[threading.Thread], timeout: float) -> list[str]:
    """Join ``threads`` within ``timeout`` seconds in all; the names of those still running."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    return sorted(t.name for t in threads if t.is_alive())


# ------------------------------------------------------------------------------ processes


def worker_env() -> dict[str, str]:
    """A copy of the environment for workers: the repository importable, no ``CKL_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Worker:
    """One ``python -m MODULE ARGV…`` worker process, its JSON stdout lines read into a queue.

    Reader threads drain stdout and stderr as they come, so the worker never blocks on a full
    pipe and the test can wait for a given line with a deadline. ``module`` is
    ``tests/streams/_worker.py`` here; ``tests/faults`` subclasses it for its own worker.
    """

    module: ClassVar[str] = "tests.streams._worker"

    def __init__(self, *argv: str) -> None:
        """Start ``python -m MODULE ARGV…``."""
        self.argv = argv
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *argv],
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
            threading.Thread(target=self._read_stdout, name="test-worker-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name="test-worker-stderr", daemon=True),
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
        self.lines.put(None)  # end of output

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
                msg = (
                    f"worker {self.argv[0]} exited {self.proc.returncode} before {key!r}:"
                    f"\n{self.stderr}"
                )
                raise AssertionError(msg)
            self.reports.append(report)
            if key in report:
                return report[key]

    def say(self, line: str) -> None:
        """Write one line on the worker's stdin."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def go(self) -> None:
        """Open the start barrier (or let a paused worker go on)."""
        self.say("go")

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
        returncode = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for reader in self._readers:
            reader.join(timeout=10)
        return returncode

    def stop(self) -> None:
        """Kill the worker if it still runs, and reap it (for ``finally`` blocks)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for reader in self._readers:  # they reach EOF now that the process is gone
            reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


W = TypeVar("W", bound=Worker)


@contextlib.contextmanager
def processes_of(kind: type[W], *argvs: list[str]) -> Iterator[list[W]]:
    """One ``kind`` per argv for the ``with`` block; any still running at the end is killed."""
    started: list[W] = []
    try:
        started.extend(kind(*argv) for argv in argvs)
        yield started
    finally:
        for worker in started:
            worker.stop()


@contextlib.contextmanager
def workers(*argvs: list[str]) -> Iterator[list[Worker]]:
    """Start one worker per argv for the ``with`` block; any still running at the end is killed."""
    with processes_of(Worker, *argvs) as started:
        yield started
