"""The processes of the concurrent-writers benchmark: writers and the tail, one command a line.

``python -m bench._scale_worker writer STORE RAW INDEX`` opens a ``Ledger`` on ``STORE`` (the
default settings, so durable), creates its own checkpoint ``(RUN_ID, INDEX)``, opens a raw
connection on ``RAW`` (a SQLite file path, or a PostgreSQL URL whose ``raw_events`` table the
parent created) and says ``ready``. Then, one line each:

* ``run ledger START END`` / ``run raw START END``: sleeps until ``time.monotonic_ns()`` reaches
  ``START``, then appends until ``END``, one ``checkpoint_yield`` (or one raw single-row INSERT +
  COMMIT) after the other; answers one JSON line ``{"commits": [[position, ns], ...]}``: every
  append's log position (0 for raw rows) and the moment it committed (read in a
  ``Ledger.add_listener`` callback, which runs right after the append committed; for raw rows,
  when the autocommit statement returned);
* ``warm applied``: opens a second ``Ledger`` with ``durability="applied"``, creates its own
  checkpoint ``(RUN_ID, APPLIED_BATCHES + INDEX)`` and yields to it three times; answers
  ``{"warm": ["applied"]}``;
* ``run applied START END``: as ``ledger``, through that second ``Ledger`` (opened here if no
  ``warm`` came first);
* ``quit``.

``python -m bench._scale_worker tail STORE POLL`` subscribes ``run_stream(ledger, RUN_ID)`` and
notes each event's position and the moment its subscriber got it; then, one line each:

* ``drain POSITION TIMEOUT``: waits until it has seen an event at ``POSITION`` or later (or for
  ``TIMEOUT`` seconds), answers ``{"seen": [[position, ns], ...], "cpu": seconds}`` (what it saw
  and the CPU time this process used since the last drain) and forgets them;
* ``pause``: disposes the subscription (answers ``{"paused": true}``); ``resume``: subscribes
  again after the last position it kept, catching up on what was appended meanwhile;
* ``quit``.

``CLOCK_MONOTONIC`` is one clock for every process of a Linux machine, so the parent can
subtract these times from each other.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._baselines import PostgresRaw, SQLiteRaw
from bench._harness import stop_line_process
from bench._workload import Feed, open_ledger, representative_state
from ledger import Ledger, LedgerSettings
from streams import run_stream

if TYPE_CHECKING:
    from reactivex.abc import DisposableBase

    from ledger import Recorded
    from streams import StreamEvent

__all__ = ["RUN_ID", "WorkerProcess", "main"]

RUN_ID = "bench-scale"
APPLIED_BATCHES = 100_000
"""Batch indexes of the ``applied`` ledgers' checkpoints start here."""
ROOT = Path(__file__).resolve().parents[1]
_WARMUP = 3


def _answer(payload: object) -> None:
    print(json.dumps(payload, separators=(",", ":")), flush=True)


def _sleep_until(moment_ns: int) -> None:
    delay = (moment_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


class _Writer:
    """One writer process's ledgers, checkpoints and raw connection."""

    def __init__(
        self, stack: contextlib.ExitStack[bool | None], store: str, raw_target: str, index: int
    ) -> None:
        state = representative_state()
        self.raw: SQLiteRaw | PostgresRaw = (
            PostgresRaw(raw_target, state, create=False)
            if raw_target.startswith("postgresql://")
            else SQLiteRaw(Path(raw_target), state)
        )
        stack.callback(self.raw.close)
        self.stack, self.store, self.index = stack, store, index
        self.last: tuple[int, int] = (0, 0)
        self.ledger = stack.enter_context(open_ledger(store))
        self.feed = Feed(self.ledger.create_checkpoint(RUN_ID, index))
        self.ledger.add_listener(self.on_recorded)
        self._applied: tuple[Ledger, Feed] | None = None
        for _ in range(_WARMUP):
            self.feed.yield_on(self.ledger)
            self.raw.insert()

    def on_recorded(self, recorded: Recorded) -> None:
        self.last = (recorded.position, time.monotonic_ns())

    def applied(self) -> tuple[Ledger, Feed]:
        """The ``durability="applied"`` ledger and its checkpoint, warmed up at first use."""
        if self._applied is None:
            other = self.stack.enter_context(open_ledger(self.store, durability="applied"))
            other.add_listener(self.on_recorded)
            fed = Feed(other.create_checkpoint(RUN_ID, APPLIED_BATCHES + self.index))
            for _ in range(_WARMUP):
                fed.yield_on(other)
            self._applied = (other, fed)
        return self._applied

    def run(self, kind: str, start: int, end: int) -> list[tuple[int, int]]:
        """Append from ``start`` until ``end``; each append's position and commit moment."""
        commits: list[tuple[int, int]] = []
        if kind == "raw":
            _sleep_until(start)
            while time.monotonic_ns() < end:
                self.raw.insert()
                commits.append((0, time.monotonic_ns()))
            return commits
        ledger, feed = (self.ledger, self.feed) if kind == "ledger" else self.applied()
        _sleep_until(start)
        while time.monotonic_ns() < end:
            feed.yield_on(ledger)
            commits.append(self.last)
        return commits


def writer(store: str, raw_target: str, index: int) -> int:
    """Serve ``run`` and ``warm`` commands until ``quit`` or the end of stdin."""
    with contextlib.ExitStack() as stack:
        worker = _Writer(stack, store, raw_target, index)
        print("ready", flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            if command == "warm":
                worker.applied()
                _answer({"warm": args})
            elif command == "run":
                _answer({"commits": worker.run(args[0], int(args[1]), int(args[2]))})
            else:
                _answer({"error": f"unknown command {command!r}"})
    return 0


class _Follower:
    """The tail's subscription, which ``pause`` disposes and ``resume`` renews where it was.

    Each subscription's deliveries carry its generation: one that a disposed subscription's
    reader thread still hands over is dropped (and delivered again by the next subscription,
    which starts after the last position kept), so a pause cannot make a duplicate of its own.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seen: list[tuple[int, int]] = []
        self.changed = threading.Condition()
        self.errors: list[BaseException] = []
        self.generation = 0
        self.last = 0
        self.subscription: DisposableBase | None = None

    def resume(self) -> None:
        generation = self.generation

        def on_next(event: StreamEvent) -> None:
            now = time.monotonic_ns()
            with self.changed:
                if generation != self.generation:
                    return
                self.seen.append((event.position, now))
                self.last = event.position
                self.changed.notify_all()

        stream = run_stream(self.ledger, RUN_ID, after=self.last)
        self.subscription = stream.subscribe(on_next, self.errors.append)

    def pause(self) -> None:
        with self.changed:
            self.generation += 1
        if self.subscription is not None:
            self.subscription.dispose()
            self.subscription = None


def tail(store: str, poll: float) -> int:
    """Follow the run's events with ``run_stream``; serve commands until ``quit``."""
    settings = LedgerSettings(store=store, poll_interval=poll)
    with Ledger.open(settings=settings) as ledger:
        follower = _Follower(ledger)
        follower.resume()
        print("ready", flush=True)
        cpu = time.process_time()
        try:
            for line in sys.stdin:
                command, *args = line.split()
                if command == "quit":
                    break
                if command == "pause":
                    follower.pause()
                    _answer({"paused": True})
                elif command == "resume":
                    follower.resume()
                    _answer({"resumed": True})
                elif command == "drain":
                    taken = _take(follower, int(args[0]), float(args[1]))
                    now = time.process_time()
                    errors = [repr(e) for e in follower.errors]
                    _answer({"seen": taken, "cpu": now - cpu, "errors": errors})
                    cpu = now
                else:
                    _answer({"error": f"unknown command {command!r}"})
        finally:
            follower.pause()
    return 0


def _take(follower: _Follower, position: int, timeout: float) -> list[tuple[int, int]]:
    """Wait until the tail reaches ``position`` (or ``timeout``); hand what it saw over."""
    deadline = time.monotonic() + timeout
    seen, changed = follower.seen, follower.changed
    with changed:
        while not follower.errors and follower.last < position:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            changed.wait(left)
        taken = seen[:]
        seen.clear()
    return taken


def main(argv: list[str]) -> int:
    """``writer STORE RAW INDEX`` or ``tail STORE POLL``."""
    role, *args = argv
    if role == "writer":
        return writer(args[0], args[1], int(args[2]))
    if role == "tail":
        return tail(args[0], float(args[1]))
    print(f"unknown role {role!r}", file=sys.stderr)
    return 2


class WorkerProcess:
    """The parent's handle on one worker process (its stderr goes to the parent's)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._scale_worker", *args],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.name = " ".join(args[:1] + args[-1:])

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the {self.name} process ended (exit {code}); see its stderr")
        return line.strip()

    def wait_ready(self) -> None:
        """Block until the process said ``ready``."""
        line = self._line()
        if line != "ready":
            raise RuntimeError(f"the {self.name} process said {line!r} instead of ready")

    def send(self, *words: object) -> None:
        """Send one command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(str(word) for word in words) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, object]:
        """The JSON answer to the last command.

        Raises:
            RuntimeError: the process died or reported an error.
        """
        reply = json.loads(self._line())
        assert isinstance(reply, dict)
        if "error" in reply or reply.get("errors"):
            raise RuntimeError(f"the {self.name} process reported {reply}")
        return reply

    def close(self) -> None:
        """Ask the process to stop, and wait for it."""
        stop_line_process(self.proc, timeout=15)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
