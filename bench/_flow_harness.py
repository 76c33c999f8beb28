"""Latency samples taken in interleaved rounds, kept one by one (for p50, p99 and ratios).

``bench._harness.run_interleaved`` keeps one mean per variant and round; a latency needs every
sample (its p99 is the point). Here a round runs ``per_round`` operations of each variant,
alternating A B A B… (the first one rotating from round to round), and every operation returns
one or more named durations. Ratios are taken round by round, between the medians of two series
in that round, so what the machine did in the same seconds is on both sides of each ratio.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from bench._harness import Spread, log

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "Latency",
    "Probe",
    "Samples",
    "sample_interleaved",
    "wait_for_thread",
]

Probe: TypeAlias = "Callable[[], Mapping[str, float]]"
"""One operation; named durations in seconds (set-up around what it measures is not counted)."""


@dataclass(frozen=True)
class Latency:
    """Percentiles of a series of samples."""

    count: int
    p50: float
    p25: float
    p75: float
    p99: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Latency:
        """Summarise ``values`` (at least two)."""
        ordered = sorted(values)
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        return cls(len(ordered), cuts[49], cuts[24], cuts[74], cuts[98], ordered[-1])

    def scaled(self, factor: float) -> Latency:
        """The same percentiles in other units."""
        return Latency(
            self.count,
            self.p50 * factor,
            self.p25 * factor,
            self.p75 * factor,
            self.p99 * factor,
            self.high * factor,
        )


@dataclass
class Samples:
    """Every sample of one comparison, round by round."""

    title: str
    rounds: list[dict[str, list[float]]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The series, in the order they first appeared."""
        seen: dict[str, None] = {}
        for one in self.rounds:
            seen.update(dict.fromkeys(one))
        return list(seen)

    def values(self, name: str) -> list[float]:
        """Every sample of ``name`` (seconds)."""
        return [v for one in self.rounds for v in one.get(name, [])]

    def latency(self, name: str) -> Latency:
        """Percentiles of ``name`` over every round (seconds)."""
        return Latency.of(self.values(name))

    def round_medians(self, name: str) -> list[float]:
        """The median of ``name`` in each round."""
        return [statistics.median(one[name]) for one in self.rounds]

    def ratio(self, name: str, against: str) -> Spread:
        """``name`` over ``against``, median against median, round by round."""
        pairs = zip(self.round_medians(name), self.round_medians(against), strict=True)
        return Spread.of([a / b for a, b in pairs])

    def spread(self, name: str) -> Spread:
        """The round medians of ``name`` (seconds)."""
        return Spread.of(self.round_medians(name))

    @property
    def count(self) -> int:
        """How many rounds were run."""
        return len(self.rounds)


def sample_interleaved(
    title: str,
    probes: Mapping[str, Probe],
    *,
    rounds: int,
    per_round: int,
    warmup: int = 0,
) -> Samples:
    """Run ``warmup`` untimed operations of each probe, then ``rounds`` interleaved rounds.

    As ``timeit`` does, the garbage collector is off inside a round and run between rounds,
    so that one variant's garbage is not collected on another's clock.
    """
    started = time.perf_counter()
    for _ in range(warmup):
        for probe in probes.values():
            probe()
    result = Samples(title)
    names = list(probes)
    for index in range(rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        taken: dict[str, list[float]] = {}
        gc.disable()
        try:
            for _ in range(per_round):
                for name in order:
                    for series, seconds in probes[name]().items():
                        taken.setdefault(series, []).append(seconds)
        finally:
            gc.enable()
        gc.collect()
        result.rounds.append(taken)
    log(f"{title}: {rounds} rounds in {time.perf_counter() - started:.1f}s")
    return result


def wait_for_thread(name: str, timeout: float = 5.0) -> None:
    """Block until a thread called ``name`` is alive (a subscriber's reader has started).

    Raises:
        TimeoutError: no such thread within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not any(t.name == name for t in threading.enumerate()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"thread {name!r} did not start within {timeout}s")
        time.sleep(0.0002)
