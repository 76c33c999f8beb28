"""The read side and the completion signals: one part of ``python -m bench.run``.

    python -m bench.flow --quick        # the same as: python -m bench.run --only flow --quick

Measured (issues 3 and 4, "Speed"), each against a baseline of the same run: read-your-writes
latency, projection catch-up rate, view update cost at few and many yields, timeline replay
beside many other runs, and completion latency in-process and across processes. The full run
of ``python -m bench.run`` writes them to docs/benchmarks-flow.md.
"""

from __future__ import annotations

import itertools
import sys
from typing import TYPE_CHECKING

from bench._flow_raw import eventsourcing_wait
from bench._flow_sections import Backend, BackendFlow, FlowProfile, run_backend

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from tests.fix_postgres import PostgresServer

__all__ = ["EVENTSOURCING_DELAY", "eventsourcing_wait", "flow_postgres", "flow_sqlite", "main"]

EVENTSOURCING_DELAY = 0.001


def flow_sqlite(profile: FlowProfile, workdir: Path) -> BackendFlow:
    """Every flow section on SQLite files in ``workdir``."""
    numbers = itertools.count()

    def new_store(name: str) -> str:
        return f"sqlite:///{workdir}/flow-{name}-{next(numbers)}.db"

    return run_backend(Backend("SQLite", "sqlite", new_store), profile)


def flow_postgres(profile: FlowProfile, server: PostgresServer) -> BackendFlow:
    """Every flow section on ``server``, each store a new database."""
    numbers = itertools.count()

    def new_store(name: str) -> str:
        return server.create_database(f"ckl_flow_{name}_{next(numbers)}")

    return run_backend(Backend("PostgreSQL", "postgres", new_store), profile)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.run --only flow`` with the same arguments."""
    from bench.run import main as run_main  # noqa: PLC0415  (bench.run imports this module)

    return run_main(["--only", "flow", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
