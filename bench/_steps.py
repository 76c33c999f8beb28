"""Where a yield's client CPU goes, step by step: each step of the write path timed alone.

Section 1 measures whole operations against a raw insert; this takes ``checkpoint_yield``
apart into the steps ``Ledger._command`` runs, and times each on its own with the real objects
of a warm checkpoint (its state, a decided event, its stored row), many times in a row, so the
report can say where every microsecond of the difference goes and what would remove it. Steps
that need the database (the append statement and its commit) are section 1's own variants:
the ``recorder`` row there is the store's share, measured in the same rounds as the raw insert.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench._workload import Feed, yield_payload
from ledger import Ledger, application
from ledger.chain import chain_hash
from ledger.checkpoint import apply, check_token, decide_yield
from ledger.checks import check_count

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import JSONObject

__all__ = ["WAIT", "StepCost", "profile_steps", "python_of_a_yield"]

WAIT = 0.0003
"""Seconds the idle store of :func:`python_of_a_yield` sleeps: a durable commit's order."""


@dataclass(frozen=True)
class StepCost:
    """One step of a yield: median client CPU microseconds, and what would remove it."""

    name: str
    cpu_us: float
    remedy: str


def _cpu_us(action: Callable[[], object], *, rounds: int, batch: int) -> float:
    """Median over ``rounds`` of the CPU microseconds per call of ``batch`` calls in a row."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(batch):
            action()
        samples.append((time.process_time() - started) / batch * 1e6)
    return statistics.median(samples)


def profile_steps(
    ledger: Ledger, *, chained_in_python: bool, rounds: int, batch: int
) -> list[StepCost]:
    """The Python steps of a warm yield, on a checkpoint of its own (open, in the cache).

    Nothing is appended but that checkpoint's creation; its cached state is replaced by the
    ones the steps compute, so no other checkpoint of ``ledger`` is touched.
    ``chained_in_python``: the backend hashes the chain in the client (SQLite) rather than in
    its append statement (PostgreSQL).
    """
    settings = ledger.settings
    token = ledger.create_checkpoint("bench-steps", 0)
    step = 10_000_000  # far past any yield the checkpoint has, so every decision appends
    cursor, items, counts = yield_payload(step)
    results: JSONObject = {**counts}
    state = ledger.get_checkpoint(token)
    now = ledger.now()
    cid = application._new_command_id()  # noqa: SLF001  (the step itself)
    event = decide_yield(state, now, cursor, items, results, command_id=cid)
    assert event is not None
    stored = ledger.mapper.to_stored_event(event)
    new_state = apply(state, event)
    oid = token.checkpoint_id
    payload = application._json_payload  # noqa: SLF001
    adapter = application._object_adapter  # noqa: SLF001

    def checks() -> None:
        check_token(token)
        check_count(items, "items_processed")
        payload(
            adapter,
            results,
            "accumulated_results",
            settings.max_accumulated_results_bytes,
            "CKL_MAX_ACCUMULATED_RESULTS_BYTES",
        )

    def cache() -> None:
        ledger._get_cached(oid)  # noqa: SLF001
        ledger._put_cached(new_state)  # noqa: SLF001

    steps: list[tuple[str, Callable[[], object], str]] = [
        (
            "argument checks: token, items, accumulated_results (types, finite, size)",
            checks,
            "nothing safe: every check refuses bad input before anything is written",
        ),
        (
            "a command id",
            application._new_command_id,  # noqa: SLF001
            "a caller's own id (Idempotency-Key) costs only its check",
        ),
        ("the ledger's clock", ledger.now, "—"),
        (
            "decide: fencing, status, progress rules, the event",
            lambda: decide_yield(state, now, cursor, items, results, command_id=cid),
            "—",
        ),
        (
            "map: the event to its JSON row (pydantic-core)",
            lambda: ledger.mapper.to_stored_event(event),
            "a hand-written encoder for Yielded only; the JSON must stay the mapper's",
        ),
        (
            "apply: the new state (the model rebuilt from the old one's fields)",
            lambda: apply(state, event),
            "a mutable state, which would give up the frozen states callers hold",
        ),
        ("the state cache (LRU under a lock)", cache, "—"),
    ]
    if chained_in_python:
        steps.append(
            (
                "the hash chain: sha256 over the previous hash and the row",
                lambda: chain_hash(
                    b"\0" * 32, oid, stored.originator_version, stored.topic, stored.state
                ),
                "hashing in SQL, as PostgreSQL does (SQLite has no sha256 built in)",
            )
        )
    return [
        StepCost(name, _cpu_us(action, rounds=rounds, batch=batch), remedy)
        for name, action, remedy in steps
    ]


def python_of_a_yield(*, rounds: int, batch: int, wait: float = WAIT) -> tuple[float, float]:
    """Client CPU µs of a whole yield on a store that does nothing: at once, and after a wait.

    The store returns at once, then after sleeping ``wait`` seconds as a durable commit waits
    (the thread switched out). The same Python both times; the second pays for caches gone
    cold while the thread waited (a commit's wait on the disk or the server does that to every
    yield).
    """
    with Ledger.open("memory://") as ledger:
        token = ledger.create_checkpoint("bench-steps", 0)
        recorder = ledger.recorder
        feed = Feed(token)

        def idle(*_: object, **__: object) -> list[int]:
            return [1]

        def waiting(*_: object, **__: object) -> list[int]:
            time.sleep(wait)
            return [1]

        costs = []
        for store in (idle, waiting):
            # The instance attribute shadows the method: a store that keeps nothing, for the
            # measurement only (the checkpoint's state lives in the ledger's cache meanwhile).
            recorder.insert_events = store  # type: ignore[method-assign]
            recorder.insert_snapshot = idle  # type: ignore[method-assign,assignment]
            costs.append(_cpu_us(lambda: feed.yield_on(ledger), rounds=rounds, batch=batch))
    return costs[0], costs[1]
