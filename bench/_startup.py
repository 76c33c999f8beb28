"""Section 7: start-up, as ratios to a bare ``python -c pass`` measured in the same rounds.

Each round starts every case once, in a fresh interpreter, in the same order: the bare
interpreter first, then ``ckl --help`` and the imports of the three layers. A round's ratio is
the case's wall time over that round's bare start, so load on a shared machine moves both.
"""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash)

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench._harness import Spread, log
from bench._markdown import table, text, times_spread

__all__ = ["CASES", "FULL_ROUNDS", "QUICK_ROUNDS", "StartupResults", "measure", "section"]

ROOT = Path(__file__).resolve().parents[1]

BARE = "python -c pass"
CASES: dict[str, list[str]] = {
    "`ckl --help`": ["-m", "ckl", "--help"],
    "`import ledger`": ["-c", "import ledger"],
    "`import projections`": ["-c", "import projections"],
    "`import streams`": ["-c", "import streams"],
}
"""What is started, as arguments of the interpreter (``ckl`` is ``python -m ckl``)."""

QUICK_ROUNDS, FULL_ROUNDS = 5, 21


@dataclass
class StartupResults:
    """Wall seconds of each start, round by round (the bare interpreter's included)."""

    rounds: int
    seconds: dict[str, list[float]] = field(default_factory=dict)

    def ratios(self, case: str) -> Spread:
        """The case's start over the same round's bare start."""
        return Spread.of(
            [run / bare for run, bare in zip(self.seconds[case], self.seconds[BARE], strict=True)]
        )

    def millis(self, case: str) -> float:
        """The case's median start, in milliseconds."""
        return Spread.of(self.seconds[case]).median * 1000


def _start(arguments: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, *arguments],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )
    return time.perf_counter() - started


def measure(rounds: int) -> StartupResults:
    """Start every case ``rounds`` times, interleaved with the bare interpreter."""
    log(f"start-up: {rounds} rounds")
    starts = {BARE: ["-c", "pass"], **CASES}
    results = StartupResults(rounds, {name: [] for name in starts})
    for arguments in starts.values():
        _start(arguments)  # warm the OS file cache and .pyc files: every round then starts alike
    for _ in range(rounds):
        for name, arguments in starts.items():
            results.seconds[name].append(_start(arguments))
    return results


def section(results: StartupResults) -> list[str]:
    """The report's section 7."""
    rows = [
        [case, times_spread(results.ratios(case)), f"{results.millis(case):.0f} ms"]
        for case in CASES
    ]
    rows.append([f"`{BARE}` (the baseline)", "1", f"{results.millis(BARE):.0f} ms"])
    return [
        "## 7. Start-up",
        "",
        text(
            f"{results.rounds} rounds; each starts a fresh interpreter for every case, the bare ",
            f"`{BARE}` first, and a case's ratio is its wall time over the same round's bare ",
            "start. `ckl --help` imports no command module (the registry holds the command ",
            "list), so it loads neither the ledger nor rich, psycopg or prometheus_client.",
        ),
        "",
        table(["start", "÷ bare python: median (p25–p75)", "median wall time"], rows),
        "",
    ]
