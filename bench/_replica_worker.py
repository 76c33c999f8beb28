"""The tail processes of the replica benchmark: one on the primary, one on the hot standby.

``python -m bench._replica_worker tail PRIMARY POLL READER`` opens
``Ledger.open(PRIMARY, reader_store=READER)`` (``READER`` ``-``: none, the tail reads where it
would write) and follows ``run_stream(ledger, RUN_ID)``, which reads and watches on
``ledger.reader``: the standby when ``READER`` names it. It speaks the line protocol of
``bench._scale_worker``'s tail (``drain POSITION TIMEOUT``, ``quit``), with the same
subscription (``_Follower``): only where it reads differs, which is what the benchmark compares.

The writers are ``bench._scale_worker``'s, unchanged.
"""

from __future__ import annotations

import subprocess
import sys
import time

from bench._scale_worker import ROOT, WorkerProcess, _answer, _Follower, _take
from ledger import Ledger, LedgerSettings

__all__ = ["TailProcess", "main"]


def tail(store: str, poll: float, reader: str | None) -> int:
    """Follow the run's events on ``reader`` (or ``store``); serve commands until ``quit``."""
    settings = LedgerSettings(store=store, reader_store=reader, poll_interval=poll)
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
                if command == "drain":
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


class TailProcess(WorkerProcess):
    """The parent's handle on one tail process of this module."""

    def __init__(self, store: str, poll: float, reader: str | None, name: str) -> None:
        # WorkerProcess's methods, on a process of this module rather than _scale_worker's.
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench._replica_worker",
                "tail",
                store,
                str(poll),
                reader or "-",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.name = f"tail on the {name}"


def main(argv: list[str]) -> int:
    """``tail STORE POLL READER``."""
    if len(argv) != 4 or argv[0] != "tail":
        print(f"usage: tail STORE POLL READER|-, not {argv!r}", file=sys.stderr)
        return 2
    _, store, poll, reader = argv
    return tail(store, float(poll), None if reader == "-" else reader)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
