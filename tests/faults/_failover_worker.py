"""One writer of the failover tests (``tests/faults/test_failover.py``), through a failover.

Run as ``python -m tests.faults._failover_worker URL NAME CHECKPOINTS YIELDS [--pace S]
[--deadline S] [--hold]`` with the repository root on ``PYTHONPATH``. ``URL`` is a libpq
multi-host URL with ``target_session_attrs=read-write``: after the primary is killed and the
standby promoted, the same URL reaches the new primary. The worker

1. opens ``Ledger.open(URL)`` and creates ``CHECKPOINTS`` checkpoints of run ``NAME`` (batches
   0…), then says ``{"ready": NAME}`` and waits for a line on stdin (the start barrier: the
   test waits until the standby has the checkpoints);
2. yields ``YIELDS`` times, round-robin over its checkpoints, yield ``n`` with the explicit
   command id ``NAME-n`` (cursor and items processed ``n + 1``), ``--pace`` seconds apart;
3. with ``--hold``, says ``{"held": NAME}`` and waits for another line on stdin (the test lets
   it go once the failover is over, so that no writer finishes before the kill, however the
   scheduler ran it);
4. completes each checkpoint (command id ``NAME-done-B``) and says ``{"done": …}``.

Every command is run under the library's documented contract across outages: on
``StoreUnavailable`` the SAME command with the SAME command id is repeated after a short pause
(it applies at most once), until it succeeds or ``--deadline`` seconds have passed since the
outage began. Each acknowledged command is reported at once (flushed) as one line
``{"ack": {"cid", "version", "cursor", "position", "t", "retried"}}`` (``position``: the log
position this process appended it at, ``None`` when the command was answered without an
append; ``t``: wall-clock time of the acknowledgement; ``retried``: how many
``StoreUnavailable`` it waited out), and each outage waited out as ``{"outage": [start, end]}``.

Exit 0 once done; anything else (a ``LedgerError`` such as "too many writers on one
checkpoint", an outage past the deadline) is reported as ``{"error": …}`` and on stderr, exit 1.
The library's warnings (``logging``, e.g. "acknowledged and then lost") go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
import traceback
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ledger import CheckpointState, Ledger, LedgerError, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import CheckpointToken, Recorded

T = TypeVar("T")
RETRY_PAUSE = 0.05  # seconds between two sends of a command the store did not take


def report(**fields: object) -> None:
    """Write one JSON line on stdout and flush it, so the parent sees it at once."""
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


class Writer:
    """Runs commands through outages and reports each acknowledgement."""

    def __init__(self, ledger: Ledger, deadline: float) -> None:
        self.ledger = ledger
        self.deadline = deadline
        self.positions: dict[str, int] = {}  # command id -> position appended at, here
        ledger.add_listener(self._recorded)

    def _recorded(self, recorded: Recorded) -> None:
        cid = recorded.event.command_id
        if cid is not None:
            self.positions[cid] = recorded.position

    def run(self, cid: str, call: Callable[[], T]) -> T:
        """``call()`` (a command sent with id ``cid``) until it succeeds; report the ack."""
        retried = 0
        began = 0.0
        while True:
            try:
                result = call()
            except StoreUnavailable as exc:
                if not retried:
                    began = time.time()
                retried += 1
                if time.time() - began > self.deadline:
                    msg = f"{cid}: the store was unavailable for over {self.deadline:g} s: {exc}"
                    raise TimeoutError(msg) from exc
                threading.Event().wait(RETRY_PAUSE)
                continue
            break
        now = time.time()
        if retried:
            report(outage=[began, now])
        version = cursor = None
        if isinstance(result, CheckpointState):
            version, cursor = result.version, result.cursor
        position = self.positions.pop(cid, None)
        report(
            ack={
                "cid": cid,
                "version": version,
                "cursor": cursor,
                "position": position,
                "t": now,
                "retried": retried,
            }
        )
        return result


def write(args: argparse.Namespace) -> dict[str, int]:
    """Open, create, wait for the barrier, yield, complete; the counts."""
    began = time.monotonic()
    while True:  # the primary may be down at the very start of a long-mode round
        try:
            ledger = Ledger.open(args.url)
            break
        except StoreUnavailable:
            if time.monotonic() - began > args.deadline:
                raise
            time.sleep(RETRY_PAUSE)
    with ledger:
        writer = Writer(ledger, args.deadline)
        tokens: list[CheckpointToken] = []
        for batch in range(args.checkpoints):
            cid = f"{args.name}-create-{batch}"
            create = partial(ledger.create_checkpoint, args.name, batch, command_id=cid)
            tokens.append(writer.run(cid, create))
        report(ready=args.name)
        sys.stdin.readline()  # the start barrier
        for n in range(args.yields):
            token = tokens[n % len(tokens)]
            cid = f"{args.name}-{n}"
            step = n + 1
            writer.run(
                cid,
                partial(ledger.checkpoint_yield, token, step, step, {"n": step}, command_id=cid),
            )
            if args.pace:
                time.sleep(args.pace)
        if args.hold:
            report(held=args.name)
            sys.stdin.readline()  # the finish barrier
        for batch, token in enumerate(tokens):
            cid = f"{args.name}-done-{batch}"
            writer.run(
                cid, partial(ledger.complete_checkpoint, token, {"batch": batch}, command_id=cid)
            )
    return {"yields": args.yields, "checkpoints": args.checkpoints}


def main(argv: list[str]) -> int:
    """Run one writer; its exit code (0: every command acknowledged)."""
    parser = argparse.ArgumentParser(prog="python -m tests.faults._failover_worker")
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("checkpoints", type=int)
    parser.add_argument("yields", type=int)
    parser.add_argument("--pace", type=float, default=0.0)
    parser.add_argument("--deadline", type=float, default=60.0)
    parser.add_argument("--hold", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        done = write(args)
    except (LedgerError, TimeoutError) as exc:
        traceback.print_exc()
        report(error=f"{type(exc).__name__}: {exc}")
        return 1
    report(done=done)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
