"""Facts about the machine, the code and the server that every benchmark report records."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import psycopg

__all__ = ["load", "machine_facts", "postgres_facts"]

LIBRARY = ("ledger", "projections", "streams", "ckl")


def first_line(path: str, prefix: str) -> str:
    try:
        with Path(path).open(encoding="utf-8") as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def filesystem(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text(encoding="utf-8").splitlines():
        device, mount, fstype, *_ = line.split()
        if str(path).startswith(mount) and len(mount) > len(best):
            best, kind = mount, f"{fstype} on {device}"
    return kind


def load() -> str:
    return " / ".join(Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3])


def revision() -> str:
    """The commit measured, and whether the library's work tree differed from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", *LIBRARY],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "?"
    dirty = [line[3:] for line in changed if line.strip()]
    return head + (f" + uncommitted changes to {', '.join(dirty)}" if dirty else "")


def machine_facts(workdir: Path) -> dict[str, str]:
    memory_kib = first_line("/proc/meminfo", "MemTotal").split()[0]
    memory = f"{int(memory_kib) / 1024**2:.0f} GiB" if memory_kib.isdigit() else "?"
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": first_line("/proc/cpuinfo", "model name"),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}"
        f" (thread switch interval {sys.getswitchinterval() * 1e3:.0f} ms)",
        "SQLite": sqlite3.sqlite_version,
        "psycopg": f"{version('psycopg')} (libpq {psycopg.pq.version() / 10000:g})",
        "eventsourcing": version("eventsourcing"),
        "reactivex": version("reactivex"),
        "pydantic": version("pydantic"),
        "storage": f"{filesystem(workdir)} (SQLite files and the PostgreSQL cluster under /tmp)",
        "code measured": revision(),
        "load average (1/5/15 min) at start": load(),
    }


def postgres_facts(url: str) -> dict[str, str]:
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
