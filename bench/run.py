"""Run every benchmark; write docs/benchmarks.md and docs/benchmarks-flow.md.

    python -m bench.run                   # everything, both backends: rewrites both docs
    python -m bench.run --quick           # CI smoke (~1 min): prints the reports, writes nothing
    python -m bench.run --only scale --out /tmp/b.md   # one part (repeatable), to your own file

The parts: ``append`` (sections 1-4: yield against a raw INSERT, history sizes, the tasker JSONB
history, eventsourcing's recorder), ``scale`` (section 5: concurrent writer processes with a
tail; section 6: DBOS Transact), ``flow`` (read-your-writes, catch-up, view updates, timeline,
completion latency: docs/benchmarks-flow.md, summarised in docs/benchmarks.md), ``startup``
(section 7: ``ckl --help`` and the layers' imports against a bare ``python -c pass``),
``replay`` (section 9: ``ckl replay`` of 10 k to 1 M-event runs into a pipe, time and memory),
``http`` (section 11: ``ckl serve``, a yield over HTTP against one in-process, SSE subscribers'
delivery lag and memory), ``replica`` (section 12: a primary and a hot standby from
``tests/fix_replica.py``, a tail on each, the replication lag, a synchronous standby's cost).

PostgreSQL is one fresh cluster started for the run with ``tests/fix_postgres.py``'s
``PostgresServer`` (as the ``postgres`` OS user when run as root), each part in databases of its
own, destroyed afterwards. SQLite stores are files in a temporary directory under /tmp.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import _flow_sections, _http, _replay, _replica, _scale, _sections, _startup
from bench._cli import finish, flow_path, parse, publish
from bench._dbos_peer import run_dbos
from bench._flow_report import FlowRun, summary_rows
from bench._flow_report import render as render_flow
from bench._flow_sections import SQLITE_POLL
from bench._harness import log
from bench._machine import load, machine_facts, postgres_facts
from bench._report import Run, render
from bench._report_scale import ScaleResults
from bench._scale import run_concurrency
from bench.flow import EVENTSOURCING_DELAY, eventsourcing_wait, flow_postgres, flow_sqlite
from ledger import LedgerSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bench._cli import Options
    from bench._flow_sections import BackendFlow
    from bench._sections import BackendResults
    from tests.fix_postgres import PostgresServer

__all__ = ["main"]

DEFAULT_OUT = Path("docs/benchmarks.md")


class _Suite:
    """What one run measures, part by part, and what it found."""

    def __init__(self, args: Options) -> None:
        self.args = args
        self.append = _sections.QUICK if args.quick else _sections.FULL
        self.scale_profile = _scale.QUICK if args.quick else _scale.FULL
        self.flow_profile = _flow_sections.QUICK if args.quick else _flow_sections.FULL
        self.results: list[BackendResults] = []
        self.scale = ScaleResults(self.scale_profile) if "scale" in args.parts else None
        self.flows: list[BackendFlow] = []
        replay_profile = _replay.QUICK if args.quick else _replay.FULL
        self.replay = _replay.ReplayResults(replay_profile) if "replay" in args.parts else None
        http_profile = _http.QUICK if args.quick else _http.FULL
        self.http = _http.HttpResults(http_profile) if "http" in args.parts else None
        self.replica_profile = _replica.QUICK if args.quick else _replica.FULL
        self.replica: _replica.ReplicaResults | None = None

    def sqlite(self, workdir: Path) -> None:
        parts = self.args.parts
        if "append" in parts:
            self.results.append(_sections.run_sqlite(self.append, workdir))
        if self.scale is not None:
            self.scale.concurrency.append(
                run_concurrency(
                    self.scale_profile,
                    backend="SQLite",
                    store=f"sqlite:///{workdir / 'scale.db'}",
                    raw_target=workdir / "scale-raw.db",
                    poll=SQLITE_POLL,
                )
            )
        if "flow" in parts:
            self.flows.append(flow_sqlite(self.flow_profile, workdir))
        if self.replay is not None:
            stores = {
                n: f"sqlite:///{workdir / f'replay-{n}.db'}" for n in self.replay.profile.sizes
            }
            _replay.measure_store(self.replay, "SQLite", stores)
        if self.http is not None:
            files = {k: f"sqlite:///{workdir / f'http-{k}.db'}" for k in _http.STORES}
            _http.measure_backend(self.http, "SQLite", files, poll=SQLITE_POLL)

    def postgres(self, server: PostgresServer) -> None:
        parts = self.args.parts
        if "append" in parts:
            self.results.append(
                _sections.run_postgres(self.append, server.create_database("ckl_bench"))
            )
        if self.scale is not None:
            url = server.create_database("ckl_scale")
            self.scale.concurrency.append(
                run_concurrency(
                    self.scale_profile,
                    backend="PostgreSQL",
                    store=url,
                    raw_target=url,
                    poll=LedgerSettings().poll_interval,
                )
            )
            self._dbos(server)
        if "flow" in parts:
            self.flows.append(flow_postgres(self.flow_profile, server))
        if self.replay is not None:
            stores = {
                n: server.create_database(f"ckl_replay_{n}") for n in self.replay.profile.sizes
            }
            _replay.measure_store(self.replay, "PostgreSQL", stores)
        if self.http is not None:
            databases = {k: server.create_database(f"ckl_http_{k}") for k in _http.STORES}
            _http.measure_backend(self.http, "PostgreSQL", databases, poll=None)

    def _dbos(self, server: PostgresServer) -> None:
        assert self.scale is not None
        try:
            self.scale.dbos = run_dbos(
                self.scale_profile,
                ledger_url=server.create_database("ckl_dbos_ledger"),
                dbos_url=server.create_database("ckl_dbos_system"),
            )
        except Exception as exc:
            # The report says why; the rest of the run goes on.
            traceback.print_exc()
            self.scale.dbos_error = f"{type(exc).__name__}: {exc}"


def _run_postgres(suite: _Suite, facts: dict[str, str]) -> None:
    # tests/fix_postgres.py imports pytest (a test dependency) but needs no pytest session.
    from tests.fix_postgres import PostgresServer  # noqa: PLC0415

    log("starting PostgreSQL")
    server = PostgresServer.initdb()
    try:
        facts.update(postgres_facts(server.url))
        suite.postgres(server)
    finally:
        server.destroy()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when the reports were produced."""
    args = parse(
        argv,
        prog="python -m bench.run",
        description="Every benchmark of checkpoint-ledger, each against a baseline measured in "
        "the same run.",
        default_out=DEFAULT_OUT,
        quick_help="small sizes and few rounds: a smoke run of every part (~1 min)",
    )
    command = " ".join(["python -m bench.run", *(sys.argv[1:] if argv is None else argv)])
    started, clock = datetime.now(UTC), time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="ckl-bench-", dir="/tmp"))
    facts = machine_facts(workdir)
    suite = _Suite(args)
    try:
        if args.backend in {"sqlite", "all"}:
            suite.sqlite(workdir)
        # The replica part starts servers of its own (a primary and a standby).
        if args.backend in {"postgres", "all"} and set(args.parts) - {"replica"}:
            _run_postgres(suite, facts)
        if args.backend in {"postgres", "all"} and "replica" in args.parts:
            suite.replica = _replica.measure(suite.replica_profile)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    startup = None
    if "startup" in args.parts:
        startup = _startup.measure(_startup.QUICK_ROUNDS if args.quick else _startup.FULL_ROUNDS)
    waits = []
    if "flow" in args.parts:
        waits = eventsourcing_wait(suite.flow_profile.eventsourcing_samples, EVENTSOURCING_DELAY)
    facts["load average (1/5/15 min) at the end"] = load()
    seconds = time.perf_counter() - clock
    flow_run = FlowRun(
        command, started, seconds, suite.flow_profile, facts, waits, EVENTSOURCING_DELAY
    )
    flow_rows = summary_rows(flow_run, suite.flows) if suite.flows else []
    run = Run(command, started, seconds, suite.append, facts)
    report = render(
        run,
        suite.results,
        scale=suite.scale,
        flow_rows=flow_rows,
        startup=startup,
        replay=suite.replay,
    )
    if suite.http is not None:
        # Section 11, its summary lines at its end (docs/benchmarks.md has them in the summary).
        report = report.rstrip() + "\n\n" + "\n".join(_http.section(suite.http)).rstrip() + "\n"
    if suite.replica is not None:
        # Section 12, its summary lines at its end, as section 11's.
        lines = _replica.section(suite.replica)
        report = report.rstrip() + "\n\n" + "\n".join(lines).rstrip() + "\n"
    publish(report, args.out)
    if suite.flows:
        out = None if args.out is None else flow_path(args.out)
        publish(render_flow(flow_run, suite.flows), out)
    finish(clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
