"""Interleaved rounds: every variant of one comparison runs in turn, round after round.

A round runs a batch of each variant, the variants alternating operation by operation (ABAB…,
the first one rotating from round to round), and keeps each batch's mean cost per operation
(the mean, not the median, so periodic costs such as a snapshot every 200 events or a WAL
checkpoint stay in the figure, amortised). A ratio is taken per round, between two variants of
that round, and the figures reported are the median of the round figures and their spread:
what the machine did in the same moments is in both sides of every ratio.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Comparison",
    "Op",
    "Spread",
    "Timing",
    "Variant",
    "log",
    "measure",
    "run_interleaved",
    "stop_line_process",
    "timed",
]

Timing: TypeAlias = tuple[float, float]
"""Seconds of wall-clock time and of this process's CPU time."""
Op: TypeAlias = Callable[[], Timing]
"""One operation; returns what its measured part took (set-up around it is not counted)."""


def log(message: str) -> None:
    """Progress, on stderr (stdout carries the report)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(action: Callable[[], object]) -> Timing:
    """Run ``action``; the wall-clock and CPU seconds it took."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def timed(action: Callable[[], object]) -> Op:
    """An operation that measures the whole of ``action``."""
    return lambda: measure(action)


@dataclass(frozen=True)
class Variant:
    """One way of doing the operation under test."""

    name: str
    op: Op
    batch: int
    """Operations per round."""


@dataclass(frozen=True)
class Spread:
    """The median of some round figures, their quartiles and their extremes."""

    median: float
    p25: float
    p75: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        """Summarise ``values`` (at least one)."""
        if len(values) == 1:
            (only,) = values
            return cls(only, only, only, only, only)
        p25, median, p75 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(median, p25, p75, min(values), max(values))

    def scaled(self, factor: float) -> Spread:
        """The same spread in other units."""
        return Spread(*(v * factor for v in (self.median, self.p25, self.p75, self.low, self.high)))


@dataclass
class Comparison:
    """The round figures of one comparison."""

    title: str
    names: list[str]
    per_round: dict[str, list[float]] = field(default_factory=dict)
    """Mean seconds per operation of each variant, one entry per round."""
    cpu_per_round: dict[str, list[float]] = field(default_factory=dict)
    """Likewise, CPU seconds of this process (the client's own work, waits excluded)."""
    operations: dict[str, int] = field(default_factory=dict)

    def cost_us(self, name: str) -> Spread:
        """Microseconds per operation of ``name``, over the rounds."""
        return Spread.of(self.per_round[name]).scaled(1e6)

    def cpu_us(self, name: str) -> Spread:
        """Client CPU microseconds per operation of ``name``, over the rounds."""
        return Spread.of(self.cpu_per_round[name]).scaled(1e6)

    def ratio(self, name: str, against: str) -> Spread:
        """``name``'s cost over ``against``'s, taken round by round."""
        pairs = zip(self.per_round[name], self.per_round[against], strict=True)
        return Spread.of([a / b for a, b in pairs])

    def difference_us(self, name: str, against: str) -> Spread:
        """Microseconds ``name`` costs more than ``against``, taken round by round."""
        pairs = zip(self.per_round[name], self.per_round[against], strict=True)
        return Spread.of([(a - b) * 1e6 for a, b in pairs])

    @property
    def rounds(self) -> int:
        """How many rounds were run."""
        return len(next(iter(self.per_round.values()), []))


def _schedule(variants: Sequence[Variant], shift: int) -> list[Variant]:
    """One round's operations: each variant's spread evenly over the round (ABAB…)."""
    count = len(variants)
    slots = [
        ((k + 0.5) / variant.batch, (index - shift) % count, variant)
        for index, variant in enumerate(variants)
        for k in range(variant.batch)
    ]
    slots.sort(key=lambda slot: (slot[0], slot[1]))
    return [variant for _, _, variant in slots]


def run_interleaved(
    title: str, variants: Sequence[Variant], *, rounds: int, warmup: int
) -> Comparison:
    """Run ``warmup`` untimed operations of each variant, then ``rounds`` interleaved rounds.

    Inside a round the variants alternate operation by operation (the first one rotates from
    round to round), so that whatever the disk and the CPU are doing affects all of them alike.
    """
    started = time.perf_counter()
    for _ in range(warmup):
        for variant in variants:
            variant.op()
    result = Comparison(title, [v.name for v in variants])
    for variant in variants:
        result.per_round[variant.name] = []
        result.cpu_per_round[variant.name] = []
        result.operations[variant.name] = 0
    for index in range(rounds):
        walls = dict.fromkeys(result.names, 0.0)
        cpus = dict.fromkeys(result.names, 0.0)
        # As timeit does: no collection inside a round, where one variant's garbage would be
        # collected on another's clock; the garbage of the round is collected after it.
        gc.disable()
        try:
            for variant in _schedule(variants, index % len(variants)):
                wall, cpu = variant.op()
                walls[variant.name] += wall
                cpus[variant.name] += cpu
        finally:
            gc.enable()
        gc.collect()
        for variant in variants:
            result.per_round[variant.name].append(walls[variant.name] / variant.batch)
            result.cpu_per_round[variant.name].append(cpus[variant.name] / variant.batch)
            result.operations[variant.name] += variant.batch
    log(f"{title}: {rounds} rounds in {time.perf_counter() - started:.1f}s")
    return result


def stop_line_process(proc: subprocess.Popen[str], timeout: float) -> None:
    """Send ``quit`` to a child speaking the bench's line protocol, wait (or kill), close pipes."""
    if proc.poll() is None:
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()
