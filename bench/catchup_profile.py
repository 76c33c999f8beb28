"""Where a catch-up's time goes: ``rebuild()`` of a bulk-written SQLite log under cProfile.

``python -m bench.catchup_profile [--events N] [--top K]``: writes N events (the catch-up
section's workload: ten runs, fifty yields a batch, a failure every fourth batch), times a raw
SELECT of the log and ``Projections.rebuild()`` twice each, then profiles one more rebuild and
prints the functions that took the most time, grouped into the steps of a page (read, decode,
fold, encode, write, commit). The figures of docs/benchmarks-flow.md's profile come from it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench._flow_populate import run_specs
from bench._flow_raw import RawConnection
from bench._flow_sections import _open, _populate
from ledger.store import EVENTS_TABLE
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Sequence

# Profile rows (file or function name fragments) → the step of a page they belong to.
_STEPS = {
    "read the log (SQL, rows, Notification objects)": (
        "fetchall",
        "_notification",
        "uuid.py",
        "listcomp",
        "select_notifications",
    ),
    "decode the JSON documents": ("decoder.py", "json/__init__.py:299", "detect_encoding"),
    "fold per checkpoint": ("fold.py",),
    "encode the values written": ("encoder.py", "json/__init__.py:183"),
    "write and commit the view rows (SQL)": ("'execute'", "'commit'", "executemany"),
}


def _step_of(where: str) -> str:
    for step, marks in _STEPS.items():
        if any(mark in where for mark in marks):
            return step
    return "the rest (the runner, tracking, Python glue)"


def main(argv: Sequence[str] | None = None) -> int:
    """Populate, time and profile; print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.catchup_profile")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args(argv)
    events = args.events - args.events % 500
    with tempfile.TemporaryDirectory() as workdir:
        store = f"sqlite:///{Path(workdir) / 'catchup.db'}"
        per_run = events // 500
        specs = (
            s for run in range(10) for s in run_specs(f"catchup-{run}", per_run, 50, fail_every=4)
        )
        _populate(store, specs, views=False)
        ledger = _open(store)
        views = Projections(ledger)
        raw = RawConnection(store)
        select = (
            "SELECT notification_id, originator_id, originator_version, topic, state"
            f" FROM {EVENTS_TABLE} ORDER BY notification_id"
        )
        try:
            for _ in range(2):
                started = time.perf_counter()
                raw.fetch_all(select)
                selected = time.perf_counter() - started
                started = time.perf_counter()
                views.rebuild()
                rebuilt = time.perf_counter() - started
                print(
                    f"raw SELECT {selected:.3f} s; rebuild {rebuilt:.3f} s "
                    f"({events / rebuilt:,.0f} events/s, {rebuilt / selected:.1f} times the SELECT)"
                )
            profile = cProfile.Profile()
            profile.enable()
            views.rebuild()
            profile.disable()
        finally:
            raw.close()
            views.close()
            ledger.close()
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    shares: dict[str, float] = {}
    for (path, line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        step = _step_of(f"{path}:{line}({name})")
        shares[step] = shares.get(step, 0.0) + row[2]
    print(f"\nprofiled rebuild: {total:.2f} s of own time (cProfile slows Python code down)")
    for step, seconds in sorted(shares.items(), key=lambda item: -item[1]):
        print(f"  {100 * seconds / total:5.1f} %  {step}")
    print()
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
