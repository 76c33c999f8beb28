"""Fixtures of the CLI tests: a store populated once per module and backend, and `ckl` itself."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg
import pytest

from ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from tests.fix_postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[3]


def ckl_env(store: str | None = None) -> dict[str, str]:
    """The environment of a user's shell: no CKL_* of ours, a wide terminal, this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "200"
    if store is not None:
        env["CKL_STORE"] = store
    return env


def ckl(
    *args: str, store: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ckl ARGS` as a user would (a subprocess), with the store in $CKL_STORE."""
    return subprocess.run(
        [sys.executable, "-m", "ckl", *args],
        capture_output=True,
        text=True,
        env=ckl_env(store),
        cwd=cwd or ROOT,
        timeout=120,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (and that there is no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@dataclass(frozen=True)
class Populated:
    """A store with two runs whose every event the tests know.

    Run ``r1`` (total_batches=3, total_items=100 per batch):
    batch 0: yield 50, yield 100, complete;
    batch 1: yield 40, transient TimeoutError, retry, yield 100, complete;
    batch 2: yield 30, permanent ValueError.
    Run ``r2``: batch 0: yield 10, permanent KeyError, reset, yield 5 (open).
    """

    url: str
    after_transient: datetime
    """Just after r1/1's transient failure (before its retry)."""
    events: int


R1_KINDS = [
    "created", "yield", "yield", "completed",
    "created", "yield", "failed", "retried", "yield", "completed",
    "created", "yield", "failed",
]  # fmt: skip


def _populate(url: str) -> Populated:
    with Ledger.open(url) as ledger:
        meta = {"total_items": 100}
        t0 = ledger.create_checkpoint("r1", 0, total_batches=3, metadata=meta)
        ledger.checkpoint_yield(t0, 50, 50)
        ledger.checkpoint_yield(t0, 100, 100, {"sum": 7})
        ledger.complete_checkpoint(t0, {"sum": 7})
        t1 = ledger.create_checkpoint("r1", 1, total_batches=3, metadata=meta)
        ledger.checkpoint_yield(t1, 40, 40)
        after = ledger.fail_checkpoint(t1, TimeoutError("upstream slow"), transient=True)
        ledger.retry_checkpoint(t1)
        ledger.checkpoint_yield(t1, 100, 100)
        ledger.complete_checkpoint(t1, {"sum": 8})
        t2 = ledger.create_checkpoint("r1", 2, total_batches=3, metadata=meta)
        ledger.checkpoint_yield(t2, 30, 30)
        ledger.fail_checkpoint(t2, ValueError("bad row 31"), transient=False)
        u0 = ledger.create_checkpoint("r2", 0)
        ledger.checkpoint_yield(u0, "k10", 10)
        ledger.fail_checkpoint(u0, KeyError("k11"), transient=False)
        ledger.reset_checkpoint(u0, "operator redo")
        ledger.checkpoint_yield(u0, "k5", 5)
        return Populated(url, after.updated_at, ledger.count_events())


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def populated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Populated]:
    """One populated store per test module and backend, shared by its read-only tests."""
    if request.param == "sqlite":
        yield _populate(f"sqlite:///{tmp_path_factory.mktemp('populated')}/ledger.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ckl_cli_{uuid4().hex[:12]}"
    url = server.create_database(name)
    yield _populate(url)
    with contextlib.suppress(psycopg.Error):
        server.drop_database(name)
