"""Run the benchmarks and write docs/benchmarks.md.

    python -m bench.run                      # full run, both backends, rewrites docs/benchmarks.md
    python -m bench.run --quick              # CI smoke (~1 min): prints the report, writes nothing
    python -m bench.run --backend sqlite --out /tmp/b.md

PostgreSQL is a fresh cluster started for the run with ``tests/fix_postgres.py``'s
``PostgresServer`` (as the ``postgres`` OS user when run as root) and destroyed afterwards.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench._cli import parse, publish
from bench._harness import log
from bench._machine import load, machine_facts, postgres_facts
from bench._report import Run, render
from bench._sections import FULL, QUICK, run_postgres, run_sqlite

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench._sections import BackendResults, Profile

__all__ = ["main"]

DEFAULT_OUT = Path("docs/benchmarks.md")


def _run_postgres(profile: Profile, facts: dict[str, str]) -> BackendResults:
    # tests/fix_postgres.py imports pytest (a test dependency) but needs no pytest session.
    from tests.fix_postgres import PostgresServer  # noqa: PLC0415

    log("starting PostgreSQL")
    server = PostgresServer.initdb()
    try:
        url = server.create_database("ckl_bench")
        facts.update(postgres_facts(url))
        return run_postgres(profile, url)
    finally:
        server.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the report was produced."""
    args = parse(
        argv,
        prog="python -m bench.run",
        description="Benchmark checkpoint_yield against baselines measured in the same run.",
        default_out=DEFAULT_OUT,
        quick_help="small sizes and few rounds: a smoke run (~1 min)",
    )
    profile = QUICK if args.quick else FULL
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    started, clock = datetime.now(UTC), time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ckl-bench-", dir="/tmp"))
    facts = machine_facts(workdir)
    results: list[BackendResults] = []
    try:
        if args.backend in {"sqlite", "all"}:
            results.append(run_sqlite(profile, workdir))
        if args.backend in {"postgres", "all"}:
            results.append(_run_postgres(profile, facts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    facts["load average (1/5/15 min) at the end"] = load()
    run = Run(command, started, time.perf_counter() - clock, profile, facts)
    report = render(run, results)
    publish(report, args.out, clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
