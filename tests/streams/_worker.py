"""Stream clients in their own process, for the cross-process tests of ``tests/streams``.

Run as ``python -m tests.streams._worker COMMAND STORE_URL RUN_ID [ARGS…]`` with the repository
root on ``PYTHONPATH``. Every command reports on stdout, one JSON object a line, flushed at once,
so the parent can wait on a line (never on the clock):

* ``yield-many STORE RUN BATCH COUNT``: opens the store, says ``{"ready": …}`` and blocks until
  it reads a line from stdin (the start barrier), then creates the checkpoint of ``BATCH`` and
  yields ``COUNT`` times; ``--complete`` completes it afterwards. Last line ``{"done": COUNT}``.
* ``await STORE RUN BATCH TIMEOUT``: ``Coordinator(ledger).await_checkpoint``; says
  ``{"waiting": …}`` just before it blocks, then ``{"result": …}`` (exit 0), or
  ``{"failed": {error_type, message, transient, attempt}}`` (exit 3), or ``{"timeout": …}``
  (exit 4). Exit 1 stays what it is in Python: an unexpected error, traceback on stderr.
* ``batches STORE RUN TOTAL ITEMS CHUNK``: :func:`streams.run_batches` over ``TOTAL`` batches of
  :class:`SumBatch`. It reports every start (``{"started": …}``, with the cursor ``process``
  resumed from), yield and progress, and finally ``{"results": […]}``. With ``--pause-in B
  --pause-at CURSOR`` it says ``{"paused": …}`` right after batch ``B`` yielded ``CURSOR`` and
  blocks on stdin, so that the parent can kill it at that exact point.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from ledger import AwaitTimeout, CheckpointFailedError, CheckpointToken, JSONValue, Ledger
from streams import BatchContext, BatchProgress, Coordinator, run_batches

EXIT_FAILED, EXIT_TIMEOUT = 3, 4

Hook: TypeAlias = Callable[[BatchContext[int], int], None]


def report(**fields: object) -> None:
    """Write one JSON line on stdout and flush it, so the parent sees it at once."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


@dataclass(frozen=True)
class SumBatch:
    """The job every ``run_batches`` test runs: sum batch ``b``'s numbers in chunks.

    Batch ``b`` holds the numbers ``b * items`` to ``(b + 1) * items - 1``. After each chunk it
    yields ``cursor = offset reached`` with the running sum, and it resumes from
    ``ctx.checkpoint_cursor`` and ``ctx.accumulated_results``. So any mix of crashes, retries
    and resumes that neither skips nor repeats a chunk gives the uninterrupted result.
    """

    items: int
    chunk: int
    on_start: Callable[[BatchContext[int]], None] | None = None
    after_yield: Hook | None = None

    def __call__(self, ctx: BatchContext[int]) -> JSONValue:
        """Process one batch (``run_batches``'s ``process``)."""
        if self.on_start is not None:
            self.on_start(ctx)
        cursor = ctx.checkpoint_cursor
        start = cursor if isinstance(cursor, int) else 0
        so_far = (ctx.accumulated_results or {}).get("sum", 0)
        total = so_far if isinstance(so_far, int) else 0
        base = ctx.batch * self.items
        for offset in range(start, self.items, self.chunk):
            end = min(offset + self.chunk, self.items)
            total += sum(range(base + offset, base + end))
            ctx.checkpoint_yield(end, end, {"sum": total})
            if self.after_yield is not None:
                self.after_yield(ctx, end)
        return {"batch": ctx.batch, "sum": total, "items": self.items}


def _yield_many(args: argparse.Namespace) -> int:
    with Ledger.open(args.store_url) as ledger:
        report(ready=args.batch_index)
        sys.stdin.readline()  # the barrier: returns when the parent says go
        token = ledger.create_checkpoint(args.run_id, args.batch_index)
        for i in range(args.count):
            ledger.checkpoint_yield(token, f"b{args.batch_index}-{i}", i + 1)
        if args.complete:
            ledger.complete_checkpoint(token, {"yields": args.count})
    report(done=args.count)
    return 0


def _await(args: argparse.Namespace) -> int:
    token = CheckpointToken.for_batch(args.run_id, args.batch_index)
    with Ledger.open(args.store_url) as ledger, Coordinator(ledger) as coord:
        report(waiting=str(token))
        try:
            result = coord.await_checkpoint(token, timeout=args.timeout)
        except CheckpointFailedError as exc:
            report(
                failed={
                    "checkpoint": exc.checkpoint,
                    "error_type": exc.error_type,
                    "message": exc.message,
                    "transient": exc.transient,
                    "attempt": exc.attempt,
                }
            )
            return EXIT_FAILED
        except AwaitTimeout as exc:
            report(timeout=exc.timeout)
            return EXIT_TIMEOUT
    report(result=result)
    return 0


def _batches(args: argparse.Namespace) -> int:
    def on_start(ctx: BatchContext[int]) -> None:
        report(
            started={"batch": ctx.batch, "cursor": ctx.checkpoint_cursor, "attempt": ctx.attempt}
        )

    def after_yield(ctx: BatchContext[int], cursor: int) -> None:
        report(yielded={"batch": ctx.batch, "cursor": cursor})
        if ctx.batch == args.pause_in and cursor == args.pause_at:
            report(paused={"batch": ctx.batch, "cursor": cursor})
            sys.stdin.readline()  # the parent kills us here; a line (or EOF) lets us go on

    def on_progress(progress: BatchProgress) -> None:
        report(progress={"batch": progress.batch_index, "resumed": progress.resumed})

    job = SumBatch(args.items, args.chunk, on_start=on_start, after_yield=after_yield)
    with Ledger.open(args.store_url) as ledger, Coordinator(ledger) as coord:
        outcome = run_batches(
            coord, args.run_id, list(range(args.total)), job, on_progress=on_progress
        )
    report(results=outcome.results)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.streams._worker")
    commands = parser.add_subparsers(dest="command", required=True)

    many = commands.add_parser("yield-many")
    many.add_argument("store_url")
    many.add_argument("run_id")
    many.add_argument("batch_index", type=int)
    many.add_argument("count", type=int)
    many.add_argument("--complete", action="store_true")
    many.set_defaults(run=_yield_many)

    wait = commands.add_parser("await")
    wait.add_argument("store_url")
    wait.add_argument("run_id")
    wait.add_argument("batch_index", type=int)
    wait.add_argument("timeout", type=float)
    wait.set_defaults(run=_await)

    batches = commands.add_parser("batches")
    batches.add_argument("store_url")
    batches.add_argument("run_id")
    batches.add_argument("total", type=int)
    batches.add_argument("items", type=int)
    batches.add_argument("chunk", type=int)
    batches.add_argument("--pause-in", type=int, default=None)
    batches.add_argument("--pause-at", type=int, default=None)
    batches.set_defaults(run=_batches)
    return parser


def main(argv: list[str]) -> int:
    """Run one command; its exit code."""
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
