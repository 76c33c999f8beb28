"""The ledger side of the benchmarks: realistic yields, populated histories, cold opens."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from uuid import uuid4

from bench._harness import log, measure
from ledger import Ledger
from ledger._mapper import EventMapper
from ledger.events import Yielded
from ledger.settings import LedgerSettings

if TYPE_CHECKING:
    from eventsourcing.persistence import StoredEvent

    from bench._harness import Op, Timing
    from ledger import JSONObject
    from ledger.checkpoint import CheckpointToken
    from ledger.store import LedgerRecorder

__all__ = [
    "ITEMS_PER_YIELD",
    "Feed",
    "LeasedFeed",
    "StoredFeed",
    "cold_yield_op",
    "open_ledger",
    "populate",
    "representative_state",
    "warm_yield_op",
    "yield_payload",
]

ITEMS_PER_YIELD = 500
"""Items a batch processes between two yields, in every benchmark's workload."""


def yield_payload(step: int) -> tuple[int, int, dict[str, int]]:
    """The ``step``-th yield of a batch: cursor, items_processed and a small results dict."""
    items = step * ITEMS_PER_YIELD
    return (
        items,
        items,
        {"rows_ok": items - step, "rows_skipped": step, "amount_cents": items * 1234},
    )


class Feed:
    """Successive yields of one checkpoint, whichever ``Ledger`` writes them."""

    def __init__(self, token: CheckpointToken) -> None:
        self.token = token
        self.step = 0

    def yield_on(self, ledger: Ledger) -> None:
        """Record the next yield through ``ledger``."""
        self.step += 1
        cursor, items, results = yield_payload(self.step)
        ledger.checkpoint_yield(
            self.token, cursor=cursor, items_processed=items, accumulated_results=results
        )


class LeasedFeed(Feed):
    """Successive yields of one checkpoint under a lease, as a shared run's worker makes them.

    Each yield is fenced by the lease and renews it, in the same append: the difference from
    :class:`Feed` is the lease's cost, which the issue bounds at 1.1 times.
    """

    def __init__(self, ledger: Ledger, token: CheckpointToken) -> None:
        super().__init__(token)
        self.lease = ledger.claim_checkpoint(token, "bench-worker", 3600.0)

    def yield_on(self, ledger: Ledger) -> None:
        """Record the next yield through ``ledger``, under the lease."""
        self.step += 1
        cursor, items, results = yield_payload(self.step)
        ledger.checkpoint_yield(
            self.token,
            cursor=cursor,
            items_processed=items,
            accumulated_results=results,
            lease=self.lease,
        )


def open_ledger(store: str, durability: Literal["full", "fast", "applied"] = "full") -> Ledger:
    """A ledger with the default settings (not the ``CKL_*`` environment) but for ``durability``."""
    return Ledger.open(settings=LedgerSettings(store=store, durability=durability))


def warm_yield_op(ledger: Ledger, feed: Feed) -> Op:
    """One yield through a ledger that has the checkpoint in its cache."""
    return lambda: measure(lambda: feed.yield_on(ledger))


def cold_yield_op(store: str, feed: Feed) -> Op:
    """The first yield of a freshly opened ledger: load (snapshot + tail), decide, append.

    Opening and closing the ledger are not counted.
    """

    def op() -> Timing:
        with open_ledger(store) as ledger:
            return measure(lambda: feed.yield_on(ledger))

    return op


class StoredFeed:
    """Yielded events of a fresh originator, already mapped to rows: the recorder's input."""

    def __init__(self) -> None:
        self.originator_id = uuid4()
        self.version = 0
        self.mapper = EventMapper()

    def next_row(self) -> StoredEvent:
        """The next row, built exactly as ``Ledger`` builds it."""
        self.version += 1
        cursor, items, results = yield_payload(self.version)
        accumulated: JSONObject = {**results}
        event = Yielded(
            originator_id=self.originator_id,
            originator_version=self.version,
            timestamp=datetime.now(UTC),
            attempt=1,
            cursor=cursor,
            items_processed=items,
            accumulated_results=accumulated,
        )
        return self.mapper.to_stored_event(event)

    def insert_op(self, recorder: LedgerRecorder) -> Op:
        """One ``recorder.insert_events([row])``; building the row is not counted."""

        def op() -> Timing:
            row = self.next_row()
            return measure(lambda: recorder.insert_events([row]))

        return op


def representative_state() -> bytes:
    """The stored JSON of a typical yield: the raw baselines write rows of this size."""
    feed = StoredFeed()
    feed.version = 1_000
    return feed.next_row().state


def populate(store: str, run_id: str, sizes: tuple[int, ...]) -> dict[int, Feed]:
    """One checkpoint per size, with that many yields, written fast (``durability="fast"``).

    Written through the public API, so the snapshots are the ones a real history has.
    """
    started = time.perf_counter()
    feeds: dict[int, Feed] = {}
    with open_ledger(store, durability="fast") as ledger:
        for size in sizes:
            feed = Feed(ledger.create_checkpoint(run_id, size))
            for _ in range(size):
                feed.yield_on(ledger)
            feeds[size] = feed
    log(f"populated {sum(sizes):,} yields in {time.perf_counter() - started:.1f}s")
    return feeds
