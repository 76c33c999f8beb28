"""Concurrent writer processes: total events/s against raw writers, and the tail's lag.

Eight writer processes and one tail process are started once per backend (their start-up is
not measured). A round runs, for each writer count N (1, 2, 4, 8, the order rotating from round
to round), one window of ``window`` seconds in which N writers call ``checkpoint_yield`` as fast
as they can and one in which the same N processes run raw single-row INSERT + COMMITs (the order
of the variants rotates). Every writer starts at one agreed ``time.monotonic_ns()``. The figure
of a window is the appends committed inside it, over its length; the ratio ours ÷ raw is taken
per round, between windows of the same N that ran side by side.

The tail process follows the run with ``run_stream``. Our writers run twice per N and round:
once with the tail following live, once with the tail paused (its subscription disposed; it
subscribes again after the window and catches up), so that the throughput can be read with and
without a follower competing for the CPUs. After each of our windows the tail hands over what it
saw, and every append a writer committed must be there exactly once, in increasing position
order: skipped, duplicated, out-of-order and unexpected events are counted (all must be 0).
The lag of an event (live windows only) is the moment the tail's subscriber got it minus the
moment its writer's append committed.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench._baselines import PostgresRaw, SQLiteRaw
from bench._harness import Spread, log
from bench._scale_worker import WorkerProcess
from bench._workload import open_ledger, representative_state

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FULL", "QUICK", "Check", "Concurrency", "ScaleProfile", "run_concurrency"]

_LEAD_NS = 150_000_000
"""How far ahead of the command the writers' common start is (they sleep until then)."""
_DRAIN_TIMEOUT = 30.0
VARIANTS = ("ledger", "raw", "ledger-untailed")
"""Our writers with the tail following, raw writers, our writers with the tail paused."""


@dataclass(frozen=True)
class ScaleProfile:
    """How much to measure in the concurrency and DBOS sections."""

    name: str
    writers: tuple[int, ...]
    window: float
    """Seconds of each window."""
    rounds: int
    dbos_rounds: int
    dbos_batch: int
    dbos_warmup: int
    dbos_workflow_rounds: int
    dbos_workflow_batch: int


@dataclass
class Check:
    """What the tail saw of one window, against what the writers committed."""

    committed: int = 0
    skipped: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    unexpected: int = 0

    def add(self, other: Check) -> None:
        """Accumulate another window's counts."""
        self.committed += other.committed
        self.skipped += other.skipped
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order
        self.unexpected += other.unexpected


@dataclass
class Concurrency:
    """What the concurrency section measured on one backend."""

    backend: str
    kind: str
    poll_interval: float
    window: float
    writers: tuple[int, ...]
    rates: dict[str, dict[int, list[float]]] = field(default_factory=dict)
    """Events/s of each window, by variant (``ledger``, ``raw``) and writer count."""
    lags: dict[int, list[float]] = field(default_factory=dict)
    """Seconds from commit to the tail's subscriber, every event of our windows."""
    checks: dict[int, Check] = field(default_factory=dict)
    tail_cpu: dict[int, list[float]] = field(default_factory=dict)
    """The tail process's CPU seconds per event it delivered, one figure per window."""

    @property
    def rounds(self) -> int:
        """How many rounds were run."""
        return len(self.rates.get("raw", {}).get(self.writers[0], []))

    def rate(self, variant: str, writers: int) -> Spread:
        """Events/s of ``variant`` with ``writers`` processes, over the rounds."""
        return Spread.of(self.rates[variant][writers])

    def ratio(self, writers: int, variant: str = "ledger") -> Spread:
        """Ours (``variant``) ÷ raw events/s, round by round."""
        pairs = zip(self.rates[variant][writers], self.rates["raw"][writers], strict=True)
        return Spread.of([ours / raw for ours, raw in pairs])


def _check(commits: list[tuple[int, int]], seen: list[tuple[int, int]]) -> Check:
    """Compare the tail's deliveries with the writers' commits of one window."""
    expected = {position for position, _ in commits}
    low, high = min(expected), max(expected)
    positions = [position for position, _ in seen]
    counts: dict[int, int] = {}
    for position in positions:
        counts[position] = counts.get(position, 0) + 1
    return Check(
        committed=len(expected),
        skipped=len(expected - counts.keys()),
        duplicated=sum(count - 1 for count in counts.values()),
        out_of_order=sum(1 for a, b in itertools.pairwise(positions) if b <= a),
        unexpected=sum(1 for p in counts if p not in expected and low <= p <= high),
    )


def _commits(reply: dict[str, object]) -> list[tuple[int, int]]:
    rows = reply["commits"]
    assert isinstance(rows, list)
    return [(int(position), int(moment)) for position, moment in rows]


class _Fleet:
    """The writer processes and the tail of one backend."""

    def __init__(self, kind: str, store: str, raw_target: str, poll: float, count: int) -> None:
        self.writers: list[WorkerProcess] = []
        self.tail: WorkerProcess | None = None
        try:
            self.writers = [
                WorkerProcess("writer", store, raw_target, str(index)) for index in range(count)
            ]
            for writer in self.writers:
                writer.wait_ready()
            self.tail = WorkerProcess("tail", store, str(poll))
            self.tail.wait_ready()
        except BaseException:
            self.close()
            raise
        self.kind = kind

    def window(
        self, variant: str, count: int, seconds: float
    ) -> tuple[int, int, list[tuple[int, int]]]:
        """One window of ``count`` writers: its start and end (ns) and every commit."""
        start = time.monotonic_ns() + _LEAD_NS
        end = start + int(seconds * 1e9)
        active = self.writers[:count]
        for writer in active:
            writer.send("run", variant, start, end)
        commits = [c for writer in active for c in _commits(writer.answer())]
        return start, end, commits

    def tail_command(self, command: str) -> None:
        """``pause`` or ``resume`` the tail."""
        assert self.tail is not None
        self.tail.send(command)
        self.tail.answer()

    def drain(self, position: int) -> tuple[list[tuple[int, int]], float]:
        """What the tail saw since the last drain, once it reached ``position``; its CPU."""
        assert self.tail is not None
        self.tail.send("drain", position, _DRAIN_TIMEOUT)
        reply = self.tail.answer()
        seen, cpu = reply["seen"], reply["cpu"]
        assert isinstance(seen, list)
        assert isinstance(cpu, float)
        return [(int(p), int(moment)) for p, moment in seen], cpu

    def close(self) -> None:
        for process in [*self.writers, *([self.tail] if self.tail else [])]:
            process.close()


def run_concurrency(
    profile: ScaleProfile, *, backend: str, store: str, raw_target: str | Path, poll: float
) -> Concurrency:
    """The concurrency section on one backend (``raw_target``: a SQLite file or a URL)."""
    state = representative_state()
    # The schemas exist before eight processes open them together.
    raw = (
        PostgresRaw(raw_target, state)
        if isinstance(raw_target, str)
        else SQLiteRaw(raw_target, state)
    )
    raw.close()
    with open_ledger(store):
        pass
    kind = "postgres" if isinstance(raw_target, str) else "sqlite"
    result = Concurrency(backend, kind, poll, profile.window, profile.writers)
    for variant in VARIANTS:
        result.rates[variant] = {n: [] for n in profile.writers}
    started = time.perf_counter()
    fleet = _Fleet(kind, store, str(raw_target), poll, max(profile.writers))
    log(f"{backend}: {max(profile.writers)} writers and a tail ready")
    try:
        fleet.drain(0)  # the warm-up yields
        for index in range(profile.rounds):
            shift = index % len(profile.writers)
            order = profile.writers[shift:] + profile.writers[:shift]
            turn = index % len(VARIANTS)
            variants = VARIANTS[turn:] + VARIANTS[:turn]
            for count in order:
                for variant in variants:
                    _window(fleet, result, variant, count, profile.window)
    finally:
        fleet.close()
    log(
        f"{backend}: concurrent writers, {profile.rounds} rounds in "
        f"{time.perf_counter() - started:.1f}s"
    )
    return result


def _window(fleet: _Fleet, result: Concurrency, variant: str, count: int, seconds: float) -> None:
    tailed = variant == "ledger"
    if variant == "ledger-untailed":
        fleet.tail_command("pause")
    start, end, commits = fleet.window("raw" if variant == "raw" else "ledger", count, seconds)
    inside = sum(1 for _, moment in commits if start <= moment <= end)
    result.rates[variant][count].append(inside / seconds)
    if variant == "raw":
        return
    if not tailed:
        fleet.tail_command("resume")  # it catches up on the window from where it stopped
    seen, cpu = fleet.drain(max(position for position, _ in commits))
    check = _check(commits, seen)
    result.checks.setdefault(count, Check()).add(check)
    if not tailed:
        return
    when = dict(seen)
    lags = result.lags.setdefault(count, [])
    lags += [(when[p] - moment) / 1e9 for p, moment in commits if p in when]
    result.tail_cpu.setdefault(count, []).append(cpu / max(1, len(seen)))


FULL = ScaleProfile(
    name="full",
    writers=(1, 2, 4, 8),
    window=3.0,
    rounds=5,
    dbos_rounds=40,
    dbos_batch=10,
    dbos_warmup=30,
    dbos_workflow_rounds=20,
    dbos_workflow_batch=5,
)
QUICK = ScaleProfile(
    name="quick",
    writers=(1, 2, 4, 8),
    window=0.4,
    rounds=1,
    dbos_rounds=4,
    dbos_batch=3,
    dbos_warmup=5,
    dbos_workflow_rounds=3,
    dbos_workflow_batch=2,
)
