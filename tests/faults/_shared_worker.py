"""One worker of a shared run, for ``tests/faults/test_shared_run.py``.

Run as ``python -m tests.faults._shared_worker STORE RUN OWNER TOTAL ITEMS EVERY TTL
[--item-delay S] [--pause-at CURSOR]`` with the repository root on ``PYTHONPATH``. It opens the
store, says ``{"opened": OWNER}`` and waits for a line on stdin (the start barrier), then runs
:func:`streams.run_batches` with ``owner=OWNER`` over ``TOTAL`` batches of :class:`CountItems`.
Reports on stdout, one JSON object a line, flushed at once:

* ``{"started": {batch, attempt, cursor, taken_over, previous_owner}}`` at each attempt;
* ``{"yielded": {batch, attempt, cursor}}`` after each yield returned (so it is durable);
* ``{"paused": {batch, attempt, cursor}}`` with ``--pause-at CURSOR``: right after the first
  batch it processes yielded ``CURSOR``, the worker blocks on stdin (its heartbeat goes on), so
  that the parent can kill or stop it at exactly that point;
* ``{"progress": {batch, here}}`` per confirmed batch, and last ``{"report": {results,
  completed_here, cancelled}}``.

``run_batches`` logs abandoned attempts (a lost lease) on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field

from ledger import JSONValue, Ledger
from streams import BatchContext, BatchProgress, Coordinator, run_batches


def report(**fields: object) -> None:
    """Write one JSON line on stdout and flush it, so the parent sees it at once."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


@dataclass
class CountItems:
    """Batch ``b`` holds items ``b * items`` … ``(b + 1) * items - 1``; its result sums them.

    Every ``every`` items it yields the cursor with the running sum and the list of the item ids
    counted so far (carried over from the attempt it resumes), so an item counted twice, or
    skipped, shows in the result.
    """

    items: int
    every: int
    item_delay: float
    pause_at: int | None
    first: bool = field(default=True)

    def __call__(self, ctx: BatchContext[int]) -> JSONValue:
        """Process one batch (``run_batches``'s ``process``)."""
        lease = ctx.lease
        report(
            started={
                "batch": ctx.batch,
                "attempt": ctx.attempt,
                "cursor": ctx.checkpoint_cursor,
                "taken_over": lease is not None and lease.taken_over,
                "previous_owner": None if lease is None else lease.previous_owner,
            }
        )
        pause = self.pause_at if self.first else None
        self.first = False
        cursor = ctx.checkpoint_cursor
        start = cursor if isinstance(cursor, int) else 0
        carried = ctx.accumulated_results or {}
        total = carried.get("sum", 0)
        ids = carried.get("ids", [])
        assert isinstance(total, int)
        assert isinstance(ids, list)
        ids = list(ids)
        base = ctx.batch * self.items
        for offset in range(start, self.items):
            time.sleep(self.item_delay)
            total += base + offset
            ids.append(base + offset)
            done = offset + 1
            if done % self.every == 0 or done == self.items:
                ctx.checkpoint_yield(done, done, {"sum": total, "ids": ids})
                where = {"batch": ctx.batch, "attempt": ctx.attempt, "cursor": done}
                report(yielded=where)
                if done == pause:
                    report(paused=where)
                    sys.stdin.readline()  # the parent kills or stops us here
        return {"batch": ctx.batch, "sum": total, "ids": ids}


def main(argv: list[str]) -> int:
    """Run one worker; its exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults._shared_worker")
    for name in ("store_url", "run_id", "owner"):
        parser.add_argument(name)
    for name in ("total", "items", "every"):
        parser.add_argument(name, type=int)
    parser.add_argument("ttl", type=float)
    parser.add_argument("--item-delay", type=float, default=0.0)
    parser.add_argument("--pause-at", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    def on_progress(progress: BatchProgress) -> None:
        report(progress={"batch": progress.batch_index, "here": progress.completed_here})

    job = CountItems(args.items, args.every, args.item_delay, args.pause_at)
    with Ledger.open(args.store_url) as ledger, Coordinator(ledger) as coord:
        report(opened=args.owner)
        sys.stdin.readline()  # the start barrier
        outcome = run_batches(
            coord,
            args.run_id,
            list(range(args.total)),
            job,
            owner=args.owner,
            lease_ttl=args.ttl,
            retry_delay=0.05,
            on_progress=on_progress,
        )
    report(
        report={
            "results": outcome.results,
            "completed_here": list(outcome.completed_here),
            "cancelled": list(outcome.cancelled),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
