"""The four measurements, on each backend, each with its baseline in the same rounds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench._baselines import EventsourcingBaseline, PostgresRaw, SQLiteRaw, TaskerJsonb
from bench._harness import Comparison, Variant, log, run_interleaved, timed
from bench._steps import StepCost, profile_steps, python_of_a_yield
from bench._workload import (
    Feed,
    LeasedFeed,
    StoredFeed,
    cold_yield_op,
    open_ledger,
    populate,
    representative_state,
    warm_yield_op,
)
from ledger.settings import LedgerSettings
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.sqlite import SQLiteLedgerRecorder

if TYPE_CHECKING:
    from pathlib import Path

    from bench._harness import Op, Timing
    from ledger import Ledger

__all__ = ["BackendResults", "Profile", "run_postgres", "run_sqlite"]


@dataclass(frozen=True)
class Profile:
    """How much to measure."""

    name: str
    sizes: tuple[int, ...]
    rounds: int
    batch: int
    warmup: int
    history_rounds: int
    history_batch: int
    cold_rounds: int
    cold_batch: int
    tasker_rounds: int
    tasker_batches: tuple[int, ...]
    """Updates per round of the tasker JSONB variant, for each size (they cost O(history))."""


STEP_BATCH = 200
"""Calls of one step in a row, per round of the per-step profile."""

FULL = Profile(
    name="full",
    sizes=(0, 1_000, 10_000, 50_000),
    rounds=60,
    batch=10,
    warmup=200,
    history_rounds=40,
    history_batch=10,
    cold_rounds=30,
    cold_batch=4,
    tasker_rounds=15,
    tasker_batches=(20, 10, 4, 2),
)
QUICK = Profile(
    name="quick",
    sizes=(0, 1_000, 5_000),
    rounds=8,
    batch=5,
    warmup=20,
    history_rounds=6,
    history_batch=5,
    cold_rounds=4,
    cold_batch=2,
    tasker_rounds=3,
    tasker_batches=(8, 4, 2),
)


@dataclass
class BackendResults:
    """What one backend's sections measured, for the report."""

    backend: str
    state_bytes: int = 0
    raw: Comparison | None = None
    warm: Comparison | None = None
    cold: Comparison | None = None
    warm_range: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Earlier yields of each size's checkpoint during the warm rounds: first, last."""
    cold_tails: dict[int, list[int]] = field(default_factory=dict)
    """Events after the latest snapshot that each cold load read, by size."""
    cold_range: dict[int, tuple[int, int]] = field(default_factory=dict)
    cold_samples: list[tuple[int, float]] = field(default_factory=list)
    """Every cold yield: events its load read after the snapshot, seconds it took."""
    snapshot_interval: int = 0
    tasker: Comparison | None = None
    tasker_bytes: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Each tasker step at the end: history entries, stored bytes of its checkpoint column."""
    tasker_range: dict[int, tuple[int, int]] = field(default_factory=dict)
    eventsourcing: Comparison | None = None
    eventsourcing_state_bytes: int = 0
    durability: dict[str, str] = field(default_factory=dict)
    steps: list[StepCost] = field(default_factory=list)
    """The Python steps of a warm yield, each timed alone (bench._steps)."""
    python_warm_cold: tuple[float, float] | None = None
    """A whole yield's Python with a store doing nothing: at once, after a wait (µs CPU)."""


def durability_of(ledger: Ledger) -> str:
    """The durability setting the ledger's own connection runs with, read back from it."""
    recorder = ledger.recorder
    # Private access on purpose: the benchmark checks the connection it measures.
    if isinstance(recorder, SQLiteLedgerRecorder):
        with recorder._connection() as conn:  # noqa: SLF001
            level = conn.execute("PRAGMA synchronous").fetchone()[0]
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        return f"journal_mode={mode}, synchronous={ {1: 'NORMAL', 2: 'FULL'}.get(level, level) }"
    if isinstance(recorder, PostgresLedgerRecorder):
        with recorder._conn() as conn:  # noqa: SLF001
            row = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
        return f"synchronous_commit={row[0] if row else '?'}"
    return "?"


def _steps(feeds: dict[int, Feed]) -> dict[int, int]:
    return {size: feed.step for size, feed in feeds.items()}


def _ranges(before: dict[int, int], feeds: dict[int, Feed]) -> dict[int, tuple[int, int]]:
    # During the rounds a yield at step s has s - 1 earlier yields.
    return {size: (before[size], feed.step - 1) for size, feed in feeds.items()}


def _history(profile: Profile, store: str, results: BackendResults, run_id: str) -> dict[int, Feed]:
    """Section 2: a yield's cost with 0…50k earlier yields, warm (cached) and cold."""
    feeds = populate(store, run_id, profile.sizes)
    with open_ledger(store) as ledger:
        results.durability["history"] = durability_of(ledger)
        before = _steps(feeds)
        variants = [
            Variant(f"warm@{size}", warm_yield_op(ledger, feed), profile.history_batch)
            for size, feed in feeds.items()
        ]
        results.warm = run_interleaved(
            f"{results.backend} warm yield vs history",
            variants,
            rounds=profile.history_rounds,
            warmup=3,
        )
        results.warm_range = _ranges(before, feeds)
        # The warm ledger stays open through the cold rounds, as other workers keep a store
        # open: otherwise each cold ledger would be SQLite's last connection, whose close
        # checkpoints and deletes the WAL, and the next one's first commit would pay for a new
        # WAL file (an extra flush unrelated to history).
        before = _steps(feeds)
        interval = results.snapshot_interval = LedgerSettings().snapshot_interval
        cold: list[Variant] = []
        for size, feed in feeds.items():
            tails = results.cold_tails.setdefault(size, [])
            op = _tracked(store, feed, tails, results.cold_samples, interval)
            cold.append(Variant(f"cold@{size}", op, profile.cold_batch))
        results.cold = run_interleaved(
            f"{results.backend} cold yield vs history", cold, rounds=profile.cold_rounds, warmup=0
        )
        results.cold_range = _ranges(before, feeds)
    return feeds


def _tracked(
    store: str,
    feed: Feed,
    tails: list[int],
    samples: list[tuple[int, float]],
    interval: int,
) -> Op:
    """A cold yield that also notes how many events its load read after the snapshot."""
    cold = cold_yield_op(store, feed)

    def op() -> Timing:
        version = feed.step + 1  # Created, then one event per yield
        tail = version % interval if version >= interval else version
        timing = cold()
        tails.append(tail)
        samples.append((tail, timing[0]))
        return timing

    return op


def run_sqlite(profile: Profile, workdir: Path) -> BackendResults:
    """Sections 1 and 2 on SQLite files in ``workdir``."""
    results = BackendResults("SQLite")
    state = representative_state()
    results.state_bytes = len(state)
    # Separate files: a connection whose file another connection wrote to since its last
    # statement must drop its page cache, a cost neither would pay alone.
    raw = SQLiteRaw(workdir / "raw.db", state)
    store = f"sqlite:///{workdir / 'ledger.db'}"
    stored = StoredFeed()
    with open_ledger(store) as ledger, open_ledger("memory://") as memory:
        results.durability["raw"] = "journal_mode=wal, synchronous=FULL"
        results.durability["ledger"] = durability_of(ledger)
        feed = Feed(ledger.create_checkpoint("bench-raw", 0))
        leased = LeasedFeed(ledger, ledger.create_checkpoint("bench-raw", 1))
        memory_feed = Feed(memory.create_checkpoint("bench-raw", 0))
        variants = [
            Variant("raw", timed(raw.insert), profile.batch),
            Variant("recorder", stored.insert_op(ledger.recorder), profile.batch),
            Variant("yield", warm_yield_op(ledger, feed), profile.batch),
            Variant("yield-lease", warm_yield_op(ledger, leased), profile.batch),
            Variant("yield-memory", warm_yield_op(memory, memory_feed), profile.batch),
        ]
        results.raw = run_interleaved(
            "SQLite yield vs raw insert", variants, rounds=profile.rounds, warmup=profile.warmup
        )
        results.steps = profile_steps(
            ledger, chained_in_python=True, rounds=profile.rounds, batch=STEP_BATCH
        )
        results.python_warm_cold = python_of_a_yield(rounds=profile.rounds, batch=STEP_BATCH // 4)
    raw.close()
    _history(profile, f"sqlite:///{workdir / 'history.db'}", results, "bench-history")
    return results


def run_postgres(profile: Profile, url: str) -> BackendResults:
    """Sections 1 to 4 on one PostgreSQL database."""
    results = BackendResults("PostgreSQL")
    state = representative_state()
    results.state_bytes = len(state)
    raw = PostgresRaw(url, state)
    results.durability["raw"] = f"synchronous_commit={raw.setting('synchronous_commit')}"
    stored = StoredFeed()
    with open_ledger(url) as ledger:
        results.durability["ledger"] = durability_of(ledger)
        assert isinstance(ledger.recorder, PostgresLedgerRecorder)
        # The exact SQL the ledger runs to append one event.
        statement = ledger.recorder._appender.insert_one  # noqa: SLF001
        feed = Feed(ledger.create_checkpoint("bench-raw", 0))
        leased = LeasedFeed(ledger, ledger.create_checkpoint("bench-raw", 1))
        variants = [
            Variant("raw", timed(raw.insert), profile.batch),
            *(Variant(name, op, profile.batch) for name, op in raw.part_ops().items()),
            Variant(
                "ckl-sql",
                raw.statement_op(statement, arrays=False, run_id="bench-raw"),
                profile.batch,
            ),
            Variant("recorder", stored.insert_op(ledger.recorder), profile.batch),
            Variant("yield", warm_yield_op(ledger, feed), profile.batch),
            Variant("yield-lease", warm_yield_op(ledger, leased), profile.batch),
        ]
        results.raw = run_interleaved(
            "PostgreSQL yield vs raw insert",
            variants,
            rounds=profile.rounds,
            warmup=profile.warmup,
        )
        results.steps = profile_steps(
            ledger, chained_in_python=False, rounds=profile.rounds, batch=STEP_BATCH
        )
        results.python_warm_cold = python_of_a_yield(rounds=profile.rounds, batch=STEP_BATCH // 4)
        _eventsourcing(profile, url=url, raw=raw, ledger=ledger, feed=feed, results=results)
    raw.close()
    feeds = _history(profile, url, results, "bench-history")
    _tasker(profile, url, feeds, results)
    return results


def _eventsourcing(
    profile: Profile,
    *,
    url: str,
    raw: PostgresRaw,
    ledger: Ledger,
    feed: Feed,
    results: BackendResults,
) -> None:
    """Section 4: eventsourcing's default recorder, our yield and the raw insert."""
    baseline = EventsourcingBaseline(url)
    results.durability["eventsourcing"] = (
        "synchronous_commit=on (server default; eventsourcing does not change it)"
    )
    try:
        variants = [
            Variant("raw", timed(raw.insert), profile.batch),
            Variant("yield", warm_yield_op(ledger, feed), profile.batch),
            Variant("eventsourcing", baseline.save_op(), profile.batch),
            Variant("eventsourcing-save", baseline.save_op(count_command=False), profile.batch),
        ]
        results.eventsourcing = run_interleaved(
            "PostgreSQL eventsourcing save vs raw insert",
            variants,
            rounds=profile.rounds,
            warmup=profile.warmup // 3,
        )
        results.eventsourcing_state_bytes = baseline.state_bytes()
    finally:
        baseline.close()


def _tasker(profile: Profile, url: str, feeds: dict[int, Feed], results: BackendResults) -> None:
    """Section 3: the tasker seed's JSONB history against our yield, at the same sizes."""
    tasker = TaskerJsonb(url)
    log("seeding the tasker JSONB histories")
    ops = {size: tasker.add_step(size) for size in profile.sizes}
    log("tasker histories seeded")
    try:
        with open_ledger(url) as ledger:
            before = _steps(feeds)
            variants: list[Variant] = []
            for size, batch in zip(profile.sizes, profile.tasker_batches, strict=True):
                variants.append(
                    Variant(
                        f"ours@{size}", warm_yield_op(ledger, feeds[size]), profile.history_batch
                    )
                )
                variants.append(Variant(f"tasker@{size}", ops[size], batch))
            results.tasker = run_interleaved(
                "PostgreSQL tasker JSONB vs yield",
                variants,
                rounds=profile.tasker_rounds,
                warmup=1,
            )
            results.tasker_range = _ranges(before, feeds)
        results.tasker_bytes = tasker.history_bytes()
    finally:
        tasker.close()
