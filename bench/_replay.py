"""Section 9: ``ckl replay RUN`` of big runs, written to a pipe: time and peak memory.

For each run size (10 k, 100 k and, in the full mode, 1 M events, written by the bulk loader
of ``bench/_flow_populate.py`` as 1,000-event batches) and backend, three child processes are
started one after the other, each writing into a pipe that this process drains:

- the baseline: a raw SELECT of the run's rows (the timeline view joined to the log, by
  position) writing each row out with ``json.dumps`` (the event document parsed and dumped
  again), through a streaming cursor;
- ``ckl replay RUN --json``;
- ``ckl replay RUN`` (the human table).

Time is wall time from start to exit; peak memory is the child's ``ru_maxrss`` from
``os.wait4``. The children are started with ``posix_spawn`` (no copy of this process's
memory), as a fork would give the child this process's resident size as its starting peak.
"""

# ruff: noqa: RUF001  (the report's typography: multiplication sign)

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from bench._flow_populate import LogBuilder, loader_for, prepare_store, run_specs
from bench._harness import log
from bench._markdown import table, text

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "FULL",
    "QUICK",
    "ReplayProfile",
    "ReplayResults",
    "measure_store",
    "run_measured",
    "section",
]

ROOT = Path(__file__).resolve().parents[1]
RUN_ID = "big"
BATCH_EVENTS = 1000


@dataclass(frozen=True)
class ReplayProfile:
    """Run sizes measured (events)."""

    name: str
    sizes: tuple[int, ...]


QUICK = ReplayProfile("quick", (2_000,))
FULL = ReplayProfile("full", (10_000, 100_000, 1_000_000))


@dataclass(frozen=True)
class Measured:
    """One child: wall seconds and peak resident memory (MB)."""

    seconds: float
    peak_mb: float


@dataclass
class ReplayResults:
    """Per backend and size: the baseline, ``--json`` and the human table."""

    profile: ReplayProfile
    rows: dict[tuple[str, int], dict[str, Measured]] = field(default_factory=dict)


# Started by posix_spawn, a child's ru_maxrss starts at its parent's peak (Linux folds the
# memory the child shared until its exec into the figure): so a bare interpreter, a few MB,
# starts each measured command and reports its child's rusage in a file.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "with open(sys.argv[1], 'w') as report:\n"
    "    report.write(f'{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}')\n"
)


def run_measured(
    argv: Sequence[str], env: dict[str, str], sink: BinaryIO | None = None
) -> tuple[int, Measured]:
    """Run ``argv`` with stdout into a pipe this process drains; exit code, time, peak RSS.

    The peak is the command's own (its ``ru_maxrss``), not this process's: see ``_LAUNCHER``.
    ``sink`` receives what the command wrote (default: dropped).
    """
    read_end, write_end = os.pipe()
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as report:
        started = time.perf_counter()
        pid = os.posix_spawn(
            sys.executable,
            [sys.executable, "-S", "-c", _LAUNCHER, report.name, *argv],
            env,
            file_actions=[(os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_CLOSE, read_end)],
        )
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            while chunk := pipe.read(1 << 16):
                if sink is not None:
                    sink.write(chunk)
        _, status, _ = os.wait4(pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            return os.waitstatus_to_exitcode(status), Measured(seconds, 0.0)
        code, maxrss = report.read().split()
    return int(code), Measured(seconds, int(maxrss) / 1024)


def _env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env.update(PYTHONPATH=str(ROOT), CKL_STORE=store)
    return env


def _load(store: str, events: int) -> None:
    prepare_store(store)
    loader = loader_for(store)
    try:
        builder = LogBuilder(loader)
        builder.write(run_specs(RUN_ID, events // BATCH_EVENTS, BATCH_EVENTS))
        builder.finish()
    finally:
        loader.close()


def measure_store(results: ReplayResults, backend: str, store_for: dict[int, str]) -> None:
    """Measure every size on one backend (``store_for``: an empty store per size)."""
    for events, store in store_for.items():
        log(f"replay: {backend}, {events:,} events: loading")
        _load(store, events)
        env = _env(store)
        cases = {
            "raw": [sys.executable, "-m", "bench._replay_raw", store, RUN_ID],
            "json": [sys.executable, "-m", "ckl", "replay", RUN_ID, "--json"],
            "human": [sys.executable, "-m", "ckl", "replay", RUN_ID],
        }
        row = {}
        for name, argv in cases.items():
            code, measured = run_measured(argv, env)
            if code != 0:
                raise RuntimeError(f"{name} of {events} events exited {code}")
            log(
                f"replay: {backend} {events:,} {name}: "
                f"{measured.seconds:.2f}s {measured.peak_mb:.0f}MB"
            )
            row[name] = measured
        results.rows[backend, events] = row


def section(results: ReplayResults) -> list[str]:
    """The report's section 9."""
    rows = []
    for (backend, events), row in results.rows.items():
        raw, as_json, human = row["raw"], row["json"], row["human"]
        rows.append(
            [
                backend,
                f"{events:,}",
                f"{raw.seconds:.2f} s",
                f"{as_json.seconds:.2f} s ({as_json.seconds / raw.seconds:.1f}× raw)",
                f"{human.seconds:.2f} s ({human.seconds / as_json.seconds:.2f}× json)",
                f"{raw.peak_mb:.0f} / {as_json.peak_mb:.0f} / {human.peak_mb:.0f} MB",
            ]
        )
    return [
        "## 9. `ckl replay` of big runs, written to a pipe",
        "",
        text(
            "Runs of 1,000-event batches written by the bulk loader; each command a child ",
            "process writing into a pipe, timed start to exit, its peak memory its ",
            "`ru_maxrss` (`os.wait4`). Raw: a SELECT of the same rows (timeline view joined to ",
            "the log, by position), each row written out with `json.dumps`. Goals: `--json` ",
            "≤ 5× raw, the table ≤ 2× `--json`, peak memory ≤ 100 MB at every size.",
        ),
        "",
        table(
            [
                "backend",
                "events",
                "raw SELECT + json.dumps",
                "`--json`",
                "table",
                "peak RSS raw / json / table",
            ],
            rows,
        ),
        "",
    ]
