"""One writer on the primary, for ``tests/faults/test_replica_reads.py``.

Run as ``python -m tests.faults._replica_writer STORE RUN BATCHES YIELDS`` with the repository
root on ``PYTHONPATH``. It opens the store, says ``{"ready": RUN}`` and waits for a line on
stdin (the start barrier), then creates ``BATCHES`` checkpoints of run ``RUN``, yields ``YIELDS``
times to them round robin and completes them, every command with a command id of its own
(``RUN/b/create``, ``RUN/b/y<n>``, ``RUN/b/complete``). A command that raises
``StoreUnavailable`` is sent again with the same id (applied at most once). Last line
``{"done": {"commands": N}}``, on stdout, one JSON object a line, flushed at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ledger import Ledger, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

T = TypeVar("T")


def report(**fields: object) -> None:
    """Write one JSON line on stdout and flush it."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def repeated(call: Callable[[], T]) -> T:
    """``call`` until it is not refused for an outage (it carries its command id)."""
    while True:
        try:
            return call()
        except StoreUnavailable:
            threading.Event().wait(0.05)  # a down server is not hammered


def main(argv: list[str]) -> int:
    """Run one writer; its exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults._replica_writer")
    parser.add_argument("store_url")
    parser.add_argument("run_id")
    parser.add_argument("batches", type=int)
    parser.add_argument("yields", type=int)
    args = parser.parse_args(argv)
    run: str = args.run_id
    commands = 0
    with Ledger.open(args.store_url) as ledger:
        report(ready=run)
        sys.stdin.readline()  # the start barrier
        tokens = [
            repeated(partial(ledger.create_checkpoint, run, b, command_id=f"{run}/{b}/create"))
            for b in range(args.batches)
        ]
        commands += len(tokens)
        for n in range(args.yields):
            b, step = n % len(tokens), n // len(tokens) + 1
            yield_ = partial(ledger.checkpoint_yield, tokens[b], step, step, {"n": step})
            repeated(partial(yield_, command_id=f"{run}/{b}/y{step}"))
            commands += 1
        for b, token in enumerate(tokens):
            complete = partial(ledger.complete_checkpoint, token, {"batch": b})
            repeated(partial(complete, command_id=f"{run}/{b}/complete"))
            commands += 1
    report(done={"commands": commands})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
