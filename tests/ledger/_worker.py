"""A ledger client in its own process, for the cross-process tests of ``test_concurrency.py``.

Run as ``python -m tests.ledger._worker COMMAND STORE_URL RUN_ID BATCH_INDEX [ARGS…]`` with the
repository root on ``PYTHONPATH``.

The start barrier: the worker imports everything, writes ``ready`` on stdout, and blocks until
it reads a line (``go``) from stdin; only then does it run its command. A parent that writes to
every worker's stdin after reading every ``ready`` starts them all at once, without sleeping.

The worker then runs its command and writes one JSON object on stdout. Exit code 0 means the
command ran to a reported outcome (losing a race with ``ConflictingCommand`` is an outcome);
anything else is a traceback on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TypeAlias

from ledger import ConflictingCommand, Ledger

Command: TypeAlias = Callable[[Ledger, argparse.Namespace], dict[str, object]]


def _create_and_yield(ledger: Ledger, args: argparse.Namespace) -> dict[str, object]:
    token = ledger.create_checkpoint(args.run_id, args.batch_index)
    ledger.checkpoint_yield(token, cursor=f"b{args.batch_index}", items_processed=1)
    return {"checkpoint": str(token)}


def _yield_many(ledger: Ledger, args: argparse.Namespace) -> dict[str, object]:
    token = ledger.create_checkpoint(args.run_id, args.batch_index)
    for i in range(args.count):
        # "flat" keeps items_processed equal, which is allowed within an attempt.
        items = 0 if args.progress == "flat" else i + 1
        ledger.checkpoint_yield(token, cursor=f"{args.prefix}-{i}", items_processed=items)
    return {"yields": args.count}


def _complete(ledger: Ledger, args: argparse.Namespace) -> dict[str, object]:
    token = ledger.create_checkpoint(args.run_id, args.batch_index)
    try:
        ledger.complete_checkpoint(token, {"winner": args.winner})
    except ConflictingCommand:
        return {"outcome": "ConflictingCommand"}
    return {"outcome": "completed"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.ledger._worker")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, run: Command) -> argparse.ArgumentParser:
        sub = commands.add_parser(name)
        sub.add_argument("store_url")
        sub.add_argument("run_id")
        sub.add_argument("batch_index", type=int)
        sub.set_defaults(run=run)
        return sub

    command("create-and-yield", _create_and_yield)
    many = command("yield-many", _yield_many)
    many.add_argument("count", type=int)
    many.add_argument("prefix")
    many.add_argument("progress", choices=["flat", "rising"])
    command("complete", _complete).add_argument("winner", type=int)
    return parser


def main(argv: list[str]) -> int:
    """Wait at the start barrier, run one command, print its report; the exit code."""
    args = _parser().parse_args(argv)
    # Opening the store is part of the race only for create-and-yield (the tables do not exist
    # yet); the other commands open it first, so that their writes, not their start-up, overlap.
    ledger = None if args.command == "create-and-yield" else Ledger.open(args.store_url)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # the barrier: returns when the parent says go
    with ledger or Ledger.open(args.store_url) as opened:
        run: Command = args.run
        report = run(opened, args)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
