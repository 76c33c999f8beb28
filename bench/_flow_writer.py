"""The writer of the cross-process completion figures, in a process of its own.

``python -m bench._flow_writer STORE POLL`` opens a ledger on ``STORE``, says ``ready`` and then
answers one command a line on stdin, one line on stdout each:

* ``complete RUN BATCH``: completes that checkpoint (created by another process); answers
  ``ok NS SENT RETURNED``: ``NS`` is ``time.monotonic_ns()`` taken in a ``Ledger.add_listener``
  callback, right after the append committed; ``SENT`` and ``RETURNED`` were taken just before
  the recorder's ``insert_events`` was called and just after it returned (this process wraps
  its own recorder's method to read them);
* ``notify CHANNEL`` (PostgreSQL): ``SELECT pg_notify(CHANNEL, '')`` in autocommit on a plain
  psycopg connection; answers ``ok NS SENT``: ``NS`` taken when the statement (and so its
  commit) returned, ``SENT`` just before it was sent;
* ``quit``.

``CLOCK_MONOTONIC`` is one clock for every process of a Linux machine, so the parent can
subtract these times from its own.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._harness import stop_line_process
from ledger import CheckpointToken, Completed, Ledger, LedgerSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import StoredEvent

    from ledger import Recorded

__all__ = ["WriterProcess", "main"]

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str]) -> int:
    """Serve commands until ``quit`` or the end of stdin."""
    store, poll = argv[0], float(argv[1])
    committed: list[int] = [0]

    def on_recorded(recorded: Recorded) -> None:
        if isinstance(recorded.event, Completed):
            committed[0] = time.monotonic_ns()

    raw: Any = None
    with Ledger.open(settings=LedgerSettings(store=store, poll_interval=poll)) as ledger:
        ledger.add_listener(on_recorded)
        sent: list[int] = [0, 0]
        insert_events = ledger.recorder.insert_events

        def timed_insert(stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int]:  # noqa: ANN401
            sent[0] = time.monotonic_ns()
            ids = insert_events(stored_events, **kwargs)
            sent[1] = time.monotonic_ns()
            assert ids is not None
            return ids

        ledger.recorder.insert_events = timed_insert  # type: ignore[method-assign]
        print("ready", flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "complete":
                run_id, batch = args[0], int(args[1])
                ledger.complete_checkpoint(CheckpointToken.for_batch(run_id, batch), {"rows": 1})
                print(f"ok {committed[0]} {sent[0]} {sent[1]}", flush=True)
            elif command == "notify":
                if raw is None:
                    import psycopg  # noqa: PLC0415  (PostgreSQL only)

                    raw = psycopg.connect(store, autocommit=True)
                started = time.monotonic_ns()
                raw.execute("SELECT pg_notify(%s, '')", (args[0],), prepare=True)
                print(f"ok {time.monotonic_ns()} {started}", flush=True)
            elif command == "quit":
                break
            else:
                print(f"error unknown command {command!r}", flush=True)
    if raw is not None:
        raw.close()
    return 0


class WriterProcess:
    """The parent's handle on a writer process."""

    def __init__(self, store: str, poll: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._flow_writer", store, str(poll)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        ready = self._read()
        if ready != "ready":
            self.close()
            raise RuntimeError(f"the writer process did not start: {ready!r}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, *words: str) -> None:
        """Send one command (its answer is read by :meth:`answer`)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(words) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> list[int]:
        """The times the last command reported (``time.monotonic_ns()``), its commit first.

        Raises:
            RuntimeError: the writer answered something else.
        """
        reply = self._read().split()
        if len(reply) < 2 or reply[0] != "ok":
            raise RuntimeError(f"the writer process answered {reply!r}")
        return [int(word) for word in reply[1:]]

    def close(self) -> None:
        """Ask the writer to stop, and wait for it."""
        stop_line_process(self.proc, timeout=10)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
