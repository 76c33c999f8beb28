"""A partitioned ``ckl_events`` against a plain one: append throughput, and detach against purge.

    python -m bench._partitions            # quick: ~5 minutes here, a 100 k-event run
    python -m bench._partitions --retention  # only the detach-against-purge part
    CKL_LONG=1 python -m bench._partitions # longer windows, a 1 M-event run

Throughput: N writer processes (1 and 4) call ``checkpoint_yield`` on checkpoints of their own
for a window, on three stores of one fresh PostgreSQL cluster, in rounds whose order rotates:
``plain`` (one table), ``partitioned`` (the default size: the appends land in one partition)
and ``partitioned-24`` (24 range partitions attached, each a probe of the cross-partition
checks). The figure of a window is yields committed in it over its length; the ratio to
``plain`` is taken per round, the median reported with its range.

Retention: one finished run of R events is written (50,000 events a transaction) into three
stores, beside a small other run: two plain, one partitioned with 64-transaction partitions,
so that the run fills one partition. On a plain store ``archive_run`` (export, read back and
check the file, then the purge: a permit and a ``DELETE`` per checkpoint), on the second plain
store the purge transaction alone, on the partitioned one ``archive_run`` (the same, with a
marker instead of the purge) followed by ``detach_partition(drop=True)``. The stores are
analysed after the load (as autovacuum would have by the time a run is archived). VACUUM
after the ``DELETE`` is not counted (the detach leaves nothing to vacuum).

Prints a Markdown report on stdout; progress on stderr. Not registered in ``bench/run.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from ledger import Ledger, archive_run
from ledger.partitions import create_partitions, detach_partition, enable_partitions

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from eventsourcing.persistence import StoredEvent

    from tests.fix_postgres import PostgresServer

__all__ = ["main"]

LONG = os.environ.get("CKL_LONG") == "1"
WINDOW = 6.0 if LONG else 2.5
ROUNDS = 5 if LONG else 3
WRITERS = (1, 4)
RUN_EVENTS = 1_000_000 if LONG else 100_000
_CHUNK = 50_000  # events per insert_events call: one transaction each (at most 65535)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _writer(  # noqa: PLR0917  (a process target's arguments are positional)
    url: str,
    name: str,
    ready: Any,  # noqa: ANN401  (multiprocessing's queues and values are untyped)
    start: Event,
    stop_at: Any,  # noqa: ANN401
    out: Any,  # noqa: ANN401
) -> None:
    with Ledger.open(url) as ledger:
        token = ledger.create_checkpoint(f"bench-{name}", 0)
        ready.put(1)
        start.wait()
        deadline = stop_at.value
        begin = time.monotonic()
        count = 0
        while time.monotonic() < deadline:
            ledger.checkpoint_yield(token, cursor=count, items_processed=count)
            count += 1
        out.put((count, time.monotonic() - begin))


def _window(url: str, writers: int, tag: str) -> float:
    ctx = mp.get_context("spawn")
    ready, out = ctx.Queue(), ctx.Queue()
    start = ctx.Event()
    stop_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_writer, args=(url, f"{tag}-{i}", ready, start, stop_at, out))
        for i in range(writers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    stop_at.value = time.monotonic() + WINDOW
    start.set()
    results: list[tuple[int, float]] = [out.get(timeout=WINDOW + 60) for _ in procs]
    for p in procs:
        p.join(30)
    return sum(c for c, _ in results) / max(s for _, s in results)


def _database(server: PostgresServer, name: str) -> str:
    return server.create_database(name)


def throughput(server: PostgresServer) -> list[str]:
    """The throughput table's lines."""
    stores: dict[str, str] = {}
    stores["plain"] = _database(server, "bench_plain")
    stores["partitioned"] = _database(server, "bench_part")
    stores["partitioned-24"] = _database(server, "bench_part24")
    with Ledger.open(stores["plain"]):
        pass
    with Ledger.open(stores["partitioned"]) as ledger:
        enable_partitions(ledger)
    with Ledger.open(stores["partitioned-24"]) as ledger:
        enable_partitions(ledger, size=1 << 20)
        create_partitions(ledger, ahead=22)
    figures: dict[tuple[str, int], list[float]] = {}
    ratios: dict[tuple[str, int], list[float]] = {}
    names = list(stores)
    for round_ in range(ROUNDS):
        for writers in WRITERS:
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            this: dict[str, float] = {}
            for name in order:
                rate = _window(stores[name], writers, f"{name}-{round_}-{writers}")
                this[name] = rate
                figures.setdefault((name, writers), []).append(rate)
                _log(f"round {round_} {writers} writer(s) {name}: {rate:,.0f} yields/s")
            for name in names[1:]:
                ratios.setdefault((name, writers), []).append(this[name] / this["plain"])
    lines = [
        "| store | writers | yields/s (median) | ÷ plain (median, range) |",
        "|---|---:|---:|---:|",
    ]
    for writers in WRITERS:
        for name in names:
            rate = statistics.median(figures[(name, writers)])
            if name == "plain":
                ratio = "1"
            else:
                r = ratios[(name, writers)]
                ratio = f"{statistics.median(r):.2f} ({min(r):.2f} to {max(r):.2f})"
            lines.append(f"| {name} | {writers} | {rate:,.0f} | {ratio} |")
    return lines


def _run_events(events: int) -> list[StoredEvent]:
    """The stored events of one finished run of about ``events`` events (made in memory)."""
    yields_per = 1000
    batches = max(1, events // (yields_per + 2))
    with Ledger.open("memory://") as ledger:
        for b in range(batches):
            token = ledger.create_checkpoint("big", b, total_batches=batches)
            for i in range(yields_per):
                ledger.checkpoint_yield(token, cursor=i, items_processed=i)
            ledger.complete_checkpoint(token)
        rows: list[StoredEvent] = []
        for b in range(batches):
            found = ledger.find_checkpoint("big", b)
            if found is None:  # pragma: no cover  (created just above)
                raise LookupError(b)
            rows.extend(ledger.recorder.select_events(found.checkpoint_id))
    return rows


def _load(url: str, rows: list[StoredEvent]) -> None:
    with Ledger.open(url) as ledger:
        for i in range(0, len(rows), _CHUNK):
            ledger.recorder.insert_events(rows[i : i + _CHUNK], run_id="big")


def _other_run(url: str) -> None:
    with Ledger.open(url) as ledger:
        token = ledger.create_checkpoint("other", 0)
        for i in range(100):
            ledger.checkpoint_yield(token, cursor=i, items_processed=i)


def _purge_only(url: str) -> float:
    """Seconds of the purge ``ckl archive`` runs on one table: permits, deletes, marker-free."""
    with Ledger.open(url) as ledger:
        begin = time.perf_counter()
        with ledger.recorder.transaction() as tx:
            tx.lock_appends()
            tx.purge_checkpoints(tx.run_checkpoint_ids("big"))
        return time.perf_counter() - begin


def retention(server: PostgresServer, workdir: Path) -> list[str]:
    """The retention table's lines."""
    _log(f"making a run of ~{RUN_EVENTS:,} events")
    rows = _run_events(RUN_EVENTS)
    plain = _database(server, "bench_ret_plain")
    purge = _database(server, "bench_ret_purge")
    part = _database(server, "bench_ret_part")
    for url in (plain, purge, part):
        _other_run(url)
    with Ledger.open(part) as ledger:
        enable_partitions(ledger, size=64)
        create_partitions(ledger, ahead=RUN_EVENTS // (_CHUNK * 64) + 2)
    for url in (plain, purge, part):
        _load(url, rows)
        with psycopg.connect(url, autocommit=True) as conn:  # as autovacuum would have by now
            conn.execute("ANALYZE")
    # Let the run's partition become final: the horizon must pass its end.
    with psycopg.connect(part, autocommit=True) as conn:
        for _ in range(130):
            conn.execute("SELECT pg_current_xact_id()")
        names = {
            str(r[0])
            for r in conn.execute(
                "SELECT DISTINCT tableoid::regclass::text FROM ckl_events WHERE run_id = 'big'"
            )
        }
    timings: dict[str, float] = {}
    _log("archiving")
    with Ledger.open(plain) as ledger:
        begin = time.perf_counter()
        archive_run(ledger, "big", workdir / "plain.jsonl")
        timings["archive plain"] = time.perf_counter() - begin
    timings["purge"] = _purge_only(purge)
    with Ledger.open(part) as ledger:
        begin = time.perf_counter()
        archive_run(ledger, "big", workdir / "part.jsonl")
        timings["archive partitioned"] = time.perf_counter() - begin
        begin = time.perf_counter()
        detach_partition(ledger, *sorted(names), drop=True)  # together: nothing left to delete
        timings["detach"] = time.perf_counter() - begin
    return [
        f"A run of {len(rows):,} events in {len(names)} partition(s) of the partitioned store:",
        "",
        "| step | plain | partitioned |",
        "|---|---:|---:|",
        (
            "| `ckl archive` (export, read back, check, then purge or marker) | "
            f"{timings['archive plain']:.2f} s | {timings['archive partitioned']:.2f} s |"
        ),
        (
            "| the purge alone (permits + `DELETE`s, a third store) | "
            f"{timings['purge']:.2f} s | - |"
        ),
        f"| `ckl partitions detach --drop` | - | {timings['detach']:.3f} s |",
        (
            f"| events removed per second | {len(rows) / max(timings['purge'], 1e-9):,.0f} | "
            f"{len(rows) / max(timings['detach'], 1e-9):,.0f} |"
        ),
    ]


def main() -> int:
    """Start a cluster, measure, print the report, destroy the cluster."""
    from tests.fix_postgres import PostgresServer  # noqa: PLC0415

    server = PostgresServer.initdb()
    try:
        with tempfile.TemporaryDirectory(prefix="ckl-bench-part-") as tmp:
            print("## Partitioned log\n")
            if "--retention" not in sys.argv:
                print(f"Windows of {WINDOW} s, {ROUNDS} rounds, writer processes {WRITERS}.\n")
                for line in throughput(server):
                    print(line)
                print()
            for line in retention(server, Path(tmp)):
                print(line)
    finally:
        server.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
