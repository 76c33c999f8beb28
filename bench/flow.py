"""Benchmark the read side and the completion signals; write docs/benchmarks-flow.md.

    python -m bench.flow                       # full run, both backends (~10 min)
    python -m bench.flow --quick               # smoke run (< 1 min): prints, writes nothing
    python -m bench.flow --backend sqlite --out /tmp/flow.md

Measured (issues 3 and 4, "Speed"), each against a baseline of the same run: read-your-writes
latency, projection catch-up rate, view update cost at few and many yields, timeline replay
beside many other runs, and completion latency in-process and across processes.

PostgreSQL is a fresh cluster started for the run with ``tests/fix_postgres.py``'s
``PostgresServer`` (as the ``postgres`` OS user when run as root) and destroyed afterwards;
SQLite stores are files in a temporary directory under /tmp.
"""

from __future__ import annotations

import itertools
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench._cli import parse, publish
from bench._flow_raw import eventsourcing_wait
from bench._flow_report import FlowRun, render
from bench._flow_sections import FULL, QUICK, Backend, BackendFlow, FlowProfile, run_backend
from bench._harness import log
from bench._machine import load, machine_facts, postgres_facts

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

DEFAULT_OUT = Path("docs/benchmarks-flow.md")
EVENTSOURCING_DELAY = 0.001


def _run_sqlite(profile: FlowProfile, workdir: Path) -> BackendFlow:
    numbers = itertools.count()

    def new_store(name: str) -> str:
        return f"sqlite:///{workdir}/{name}-{next(numbers)}.db"

    return run_backend(Backend("SQLite", "sqlite", new_store), profile)


def _run_postgres(profile: FlowProfile, facts: dict[str, str]) -> BackendFlow:
    # tests/fix_postgres.py imports pytest (a test dependency) but needs no pytest session.
    from tests.fix_postgres import PostgresServer  # noqa: PLC0415

    log("starting PostgreSQL")
    server = PostgresServer.initdb()
    numbers = itertools.count()

    def new_store(name: str) -> str:
        return server.create_database(f"ckl_flow_{name}_{next(numbers)}")

    try:
        facts.update(postgres_facts(server.url))
        return run_backend(Backend("PostgreSQL", "postgres", new_store), profile)
    finally:
        server.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the report was produced."""
    args = parse(
        argv,
        prog="python -m bench.flow",
        description="Benchmark read-your-writes, projections and completion signals.",
        default_out=DEFAULT_OUT,
        quick_help="small sizes and few rounds: a smoke run (< 1 min)",
    )
    profile = QUICK if args.quick else FULL
    command = " ".join(["python -m bench.flow", *(sys.argv[1:] if argv is None else argv)])
    started, clock = datetime.now(UTC), time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ckl-flow-", dir="/tmp"))
    facts = machine_facts(workdir)
    flows: list[BackendFlow] = []
    try:
        if args.backend in {"sqlite", "all"}:
            flows.append(_run_sqlite(profile, workdir))
        if args.backend in {"postgres", "all"}:
            flows.append(_run_postgres(profile, facts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    waits = eventsourcing_wait(profile.eventsourcing_samples, EVENTSOURCING_DELAY)
    facts["load average (1/5/15 min) at the end"] = load()
    run = FlowRun(
        command, started, time.perf_counter() - clock, profile, facts, waits, EVENTSOURCING_DELAY
    )
    report = render(run, flows)
    publish(report, args.out, clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
