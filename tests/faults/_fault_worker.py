"""Worker processes of the fault tests: killed at random points, or writing through outages.

Run as ``python -m tests.faults._fault_worker COMMAND …`` with the repository root on
``PYTHONPATH``. Reports go to stdout, one JSON object a line, flushed at once.

* ``batches STORE RUN TOTAL ITEMS CHUNK LOG [--kill-after-yield N | --kill-mid-chunk N]``:
  :func:`streams.run_batches` over ``TOTAL`` batches of :class:`ChunkedSum`. Every yield that
  returned and every progress reported is appended to ``LOG`` as a JSON line **and fsynced**
  before the worker goes on, so the parent can check, after a SIGKILL, that nothing was ever
  reported ahead of the durable log. ``--kill-after-yield N`` makes the process SIGKILL itself
  right after its ``N``-th yield returned; ``--kill-mid-chunk N`` in the middle of its ``N``-th
  chunk (half the chunk summed, nothing yielded). Without either, it may be killed by the parent
  at any moment. It says ``{"opened": …}`` once the store is open, and last
  ``{"results": […]}``.
* ``writer STORE RUN BATCHES (--events N | --until-stop)``: the writer of the restart and load
  tests. It says ``{"ready": …}`` and waits for a line on stdin (the start barrier), creates
  ``BATCHES`` checkpoints, yields to them in turn, and completes them. With ``--events N`` it
  appends ``N`` events in all; with ``--until-stop`` it yields until it reads ``stop`` on
  stdin, saying ``{"written": [n, wall-clock time]}`` every 25 yields. A command that raises
  ``StoreUnavailable`` is repeated (the documented contract: repeating an applied command is a
  no-op); each outage is reported as ``{"stalled": [start, end]}`` (wall-clock seconds; ``end``
  is when the command finally succeeded). Last line ``{"done": {"yields": …, "events": …}}``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ledger import Ledger, StoreUnavailable
from streams import BatchContext, BatchProgress, Coordinator, run_batches

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import JSONValue

T = TypeVar("T")
STALL = 0.5  # seconds: a command slower than this counts as an outage the writer waited out


def report(**fields: object) -> None:
    """Write one JSON line on stdout and flush it."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def die() -> None:
    """SIGKILL this process: no cleanup, no flush, exactly like ``kill -9``."""
    os.kill(os.getpid(), signal.SIGKILL)


class DurableLog:
    """An append-only JSON-lines file; each line is fsynced before ``write`` returns."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, **fields: object) -> None:
        """Append one line and fsync it."""
        os.write(self._fd, (json.dumps(fields) + "\n").encode())
        os.fsync(self._fd)


@dataclass
class ChunkedSum:
    """Sum batch ``b``'s numbers ``b*items … (b+1)*items-1`` in chunks, resumable.

    After each chunk it yields ``cursor = offset reached`` with the running sum, and it resumes
    from ``ctx.checkpoint_cursor`` and ``ctx.accumulated_results``: a run that neither skips
    nor repeats a chunk gives the uninterrupted result.
    """

    items: int
    chunk: int
    log: DurableLog
    kill_after_yield: int | None = None
    kill_mid_chunk: int | None = None
    yields: int = field(default=0)
    chunks: int = field(default=0)

    def __call__(self, ctx: BatchContext[int]) -> JSONValue:
        """Process one batch (``run_batches``'s ``process``)."""
        cursor = ctx.checkpoint_cursor
        start = cursor if isinstance(cursor, int) else 0
        previous = (ctx.accumulated_results or {}).get("sum", 0)
        total = previous if isinstance(previous, int) else 0
        self.log.write(start=[ctx.batch, ctx.attempt, start])
        base = ctx.batch * self.items
        for offset in range(start, self.items, self.chunk):
            end = min(offset + self.chunk, self.items)
            self.chunks += 1
            for position, number in enumerate(range(base + offset, base + end)):
                total += number
                if self.chunks == self.kill_mid_chunk and position == (end - offset) // 2:
                    die()
            ctx.checkpoint_yield(end, end, {"sum": total})
            self.yields += 1
            self.log.write(yielded=[ctx.batch, end])
            if self.yields == self.kill_after_yield:
                die()
        return {"batch": ctx.batch, "sum": total, "items": self.items}


def _batches(args: argparse.Namespace) -> int:
    log = DurableLog(args.log)
    job = ChunkedSum(args.items, args.chunk, log, args.kill_after_yield, args.kill_mid_chunk)

    def on_progress(progress: BatchProgress) -> None:
        log.write(progress=[progress.batch_index, progress.result])

    with Ledger.open(args.store_url) as ledger, Coordinator(ledger) as coord:
        report(opened=args.run_id)
        outcome = run_batches(
            coord, args.run_id, list(range(args.total)), job, on_progress=on_progress
        )
    report(results=outcome.results)
    return 0


class Writer:
    """Appends through outages, repeating a command that raised ``StoreUnavailable``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.commands = 0

    def run(self, call: Callable[[], T]) -> T:
        """Run ``call`` until it succeeds; report the outage if it had to wait."""
        started = time.time()
        while True:
            try:
                result = call()
            except StoreUnavailable:
                # Repeating is safe (an applied command repeated is a no-op); a short pause
                # keeps a down server from being hammered.
                threading.Event().wait(0.05)
                continue
            break
        ended = time.time()
        if ended - started > STALL:
            report(stalled=[started, ended])
        self.commands += 1
        return result


def _writer(args: argparse.Namespace) -> int:
    stop = threading.Event()
    with Ledger.open(args.store_url) as ledger:
        report(ready=args.run_id)
        sys.stdin.readline()  # the start barrier
        if args.until_stop:

            def wait_for_stop() -> None:
                for line in sys.stdin:
                    if line.strip() == "stop":
                        break
                stop.set()

            threading.Thread(target=wait_for_stop, daemon=True).start()
        writer = Writer(ledger)
        tokens = [
            writer.run(partial(ledger.create_checkpoint, args.run_id, b))
            for b in range(args.batches)
        ]
        budget = None if args.events is None else args.events - 2 * args.batches
        yields = 0
        while not stop.is_set() if budget is None else yields < budget:
            token = tokens[yields % len(tokens)]
            step = yields // len(tokens) + 1
            writer.run(partial(ledger.checkpoint_yield, token, step, step, {"n": step}))
            yields += 1
            if budget is None and yields % 25 == 0:
                report(written=[yields, time.time()])
        for batch, token in enumerate(tokens):
            writer.run(partial(ledger.complete_checkpoint, token, {"batch": batch}))
    report(done={"yields": yields, "events": writer.commands})
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.faults._fault_worker")
    commands = parser.add_subparsers(dest="command", required=True)

    batches = commands.add_parser("batches")
    batches.add_argument("store_url")
    batches.add_argument("run_id")
    batches.add_argument("total", type=int)
    batches.add_argument("items", type=int)
    batches.add_argument("chunk", type=int)
    batches.add_argument("log")
    batches.add_argument("--kill-after-yield", type=int, default=None)
    batches.add_argument("--kill-mid-chunk", type=int, default=None)
    batches.set_defaults(run=_batches)

    writer = commands.add_parser("writer")
    writer.add_argument("store_url")
    writer.add_argument("run_id")
    writer.add_argument("batches", type=int)
    how_long = writer.add_mutually_exclusive_group(required=True)
    how_long.add_argument("--events", type=int, default=None)
    how_long.add_argument("--until-stop", action="store_true")
    writer.set_defaults(run=_writer)
    return parser


def main(argv: list[str]) -> int:
    """Run one command; its exit code."""
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
