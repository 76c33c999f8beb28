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

import argparse
import itertools
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from bench._flow_raw import eventsourcing_wait
from bench._flow_report import FlowRun, render
from bench._flow_sections import FULL, QUICK, Backend, BackendFlow, FlowProfile, run_backend
from bench._harness import log

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]

DEFAULT_OUT = Path("docs/benchmarks-flow.md")
EVENTSOURCING_DELAY = 0.001


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.flow",
        description="Benchmark read-your-writes, projections and completion signals.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few rounds: a smoke run (< 1 min)"
    )
    parser.add_argument(
        "--backend", choices=["sqlite", "postgres", "all"], default="all", help="default: all"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"markdown file to write (default: {DEFAULT_OUT} for a full run; a quick run "
        "writes no file unless given one). The report is also printed on stdout.",
    )
    return parser.parse_args(argv)


def _first_line(path: str, prefix: str) -> str:
    try:
        with Path(path).open(encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        device, mount, fstype, *_ = line.split()
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, f"{fstype} on {device}"
    return kind


def _load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def _revision() -> str:
    """The commit measured, and whether the library's work tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "ledger", "projections", "streams"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "?"
    dirty = [line[3:] for line in changed if line.strip()]
    return head + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")


def _machine_facts(workdir: Path) -> dict[str, str]:
    memory_kib = _first_line("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(memory_kib) / 1024**2:.0f} GiB" if memory_kib.isdigit() else "?"
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _first_line("/proc/cpuinfo", "model name"),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}"
        f" (thread switch interval {sys.getswitchinterval() * 1e3:.0f} ms)",
        "SQLite": sqlite3.sqlite_version,
        "psycopg": f"{version('psycopg')} (libpq {psycopg.pq.version() / 10000:g})",
        "eventsourcing": version("eventsourcing"),
        "reactivex": version("reactivex"),
        "pydantic": version("pydantic"),
        "storage": f"{_filesystem(workdir)} (SQLite files and the PostgreSQL cluster under /tmp)",
        "code measured": _revision(),
        "load average (1/5/15 min) at start": _load(),
    }


def _postgres_facts(url: str) -> dict[str, str]:
    names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"]
    with psycopg.connect(url, autocommit=True) as conn:
        values = {}
        for name in names:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            values[name] = "?" if row is None else str(row[0])
    return {
        "PostgreSQL": values.pop("server_version"),
        "PostgreSQL settings": ", ".join(f"{k}={v}" for k, v in values.items())
        + " (a fresh cluster from `tests/fix_postgres.py`)",
    }


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
        facts.update(_postgres_facts(server.url))
        return run_backend(Backend("PostgreSQL", "postgres", new_store), profile)
    finally:
        server.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the report was produced."""
    args = _parse(argv)
    profile = QUICK if args.quick else FULL
    out: Path | None = args.out if args.out is not None or args.quick else DEFAULT_OUT
    command = " ".join(["python -m bench.flow", *(sys.argv[1:] if argv is None else argv)])
    started, clock = datetime.now(UTC), time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ckl-flow-", dir="/tmp"))
    facts = _machine_facts(workdir)
    flows: list[BackendFlow] = []
    try:
        if args.backend in {"sqlite", "all"}:
            flows.append(_run_sqlite(profile, workdir))
        if args.backend in {"postgres", "all"}:
            flows.append(_run_postgres(profile, facts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    waits = eventsourcing_wait(profile.eventsourcing_samples, EVENTSOURCING_DELAY)
    facts["load average (1/5/15 min) at the end"] = _load()
    run = FlowRun(
        command, started, time.perf_counter() - clock, profile, facts, waits, EVENTSOURCING_DELAY
    )
    report = render(run, flows)
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")
    log(f"done in {time.perf_counter() - clock:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
