"""Run the benchmarks and write docs/benchmarks.md.

    python -m bench.run                      # full run, both backends, rewrites docs/benchmarks.md
    python -m bench.run --quick              # CI smoke (~1 min): prints the report, writes nothing
    python -m bench.run --backend sqlite --out /tmp/b.md

PostgreSQL is a fresh cluster started for the run with ``tests/fix_postgres.py``'s
``PostgresServer`` (as the ``postgres`` OS user when run as root) and destroyed afterwards.
"""

from __future__ import annotations

import argparse
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

from bench._harness import log
from bench._report import Run, render
from bench._sections import FULL, QUICK, run_postgres, run_sqlite

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench._sections import BackendResults, Profile

__all__ = ["main"]

DEFAULT_OUT = Path("docs/benchmarks.md")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark checkpoint_yield against baselines measured in the same run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few rounds: a smoke run (~1 min)"
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
    """The commit measured, and whether the work tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "ledger"],
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
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "psycopg": version("psycopg"),
        "eventsourcing": version("eventsourcing"),
        "pydantic": version("pydantic"),
        "storage": f"{_filesystem(workdir)} (SQLite files and the PostgreSQL cluster under /tmp)",
        "code measured": _revision(),
        "load average (1/5/15 min) at start": _load(),
    }


def _postgres_facts(url: str) -> dict[str, str]:
    names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"]
    with psycopg.connect(url, autocommit=True) as conn:
        values = {
            name: str(conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0])  # type: ignore[index]
            for name in names
        }
    return {
        "PostgreSQL": values.pop("server_version"),
        "PostgreSQL settings": ", ".join(f"{k}={v}" for k, v in values.items())
        + " (a fresh cluster from `tests/fix_postgres.py`)",
    }


def _run_postgres(profile: Profile, facts: dict[str, str]) -> BackendResults:
    # tests/fix_postgres.py imports pytest (a test dependency) but needs no pytest session.
    from tests.fix_postgres import PostgresServer  # noqa: PLC0415

    log("starting PostgreSQL")
    server = PostgresServer.initdb()
    try:
        url = server.create_database("ckl_bench")
        facts.update(_postgres_facts(url))
        return run_postgres(profile, url)
    finally:
        server.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the report was produced."""
    args = _parse(argv)
    profile = QUICK if args.quick else FULL
    out: Path | None = args.out if args.out is not None or args.quick else DEFAULT_OUT
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    started, clock = datetime.now(UTC), time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ckl-bench-", dir="/tmp"))
    facts = _machine_facts(workdir)
    results: list[BackendResults] = []
    try:
        if args.backend in {"sqlite", "all"}:
            results.append(run_sqlite(profile, workdir))
        if args.backend in {"postgres", "all"}:
            results.append(_run_postgres(profile, facts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    facts["load average (1/5/15 min) at the end"] = _load()
    run = Run(command, started, time.perf_counter() - clock, profile, facts)
    report = render(run, results)
    print(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")
    log(f"done in {time.perf_counter() - clock:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
