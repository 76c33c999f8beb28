"""The five flow measurements on one backend, each with its baseline in the same rounds."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._flow_harness import sample_interleaved, wait_for_thread
from bench._flow_populate import (
    LogBuilder,
    check,
    checkpoint_specs,
    interleave,
    loader_for,
    prepare_store,
    run_specs,
)
from bench._flow_raw import RawConnection, RawInsert, event_hop, sqlite_path
from bench._flow_writer import WriterProcess
from bench._harness import log
from bench._workload import yield_payload
from ledger import CheckpointToken, Completed, Ledger, LedgerSettings
from ledger.store import EVENTS_TABLE
from projections import Projections
from projections.fold import decode
from streams import await_checkpoint, completion

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from bench._flow_harness import Probe, Samples
    from bench._flow_populate import Spec
    from ledger import Recorded

__all__ = ["FULL", "QUICK", "Backend", "BackendFlow", "FlowProfile", "run_backend"]

SETTLE = 0.005
"""Seconds an awaiter is given to block before the commit it waits for (it needs ~1 ms)."""
SQLITE_POLL = 0.05
RAW_CHANNEL = "ckl_bench_raw"


@dataclass(frozen=True)
class FlowProfile:
    """How much to measure."""

    name: str
    ryw_rounds: int
    ryw_per_round: int
    catchup_events: int
    catchup_rounds: int
    flat_sizes: tuple[int, int]
    flat_rounds: int
    flat_per_round: int
    timeline_events: int
    timeline_others: int
    timeline_rounds: int
    await_rounds: int
    await_per_round: int
    poll_samples: int
    eventsourcing_samples: int


FULL = FlowProfile(
    name="full",
    ryw_rounds=10,
    ryw_per_round=40,
    catchup_events=50_000,
    catchup_rounds=3,
    flat_sizes=(10, 100_000),
    flat_rounds=10,
    flat_per_round=30,
    timeline_events=100_000,
    timeline_others=1_000_000,
    timeline_rounds=4,
    await_rounds=10,
    await_per_round=30,
    poll_samples=200,
    eventsourcing_samples=10,
)
QUICK = FlowProfile(
    name="quick",
    ryw_rounds=4,
    ryw_per_round=15,
    catchup_events=2_000,
    catchup_rounds=2,
    flat_sizes=(10, 5_000),
    flat_rounds=4,
    flat_per_round=10,
    timeline_events=2_000,
    timeline_others=20_000,
    timeline_rounds=3,
    await_rounds=4,
    await_per_round=10,
    poll_samples=30,
    eventsourcing_samples=3,
)


@dataclass(frozen=True)
class Backend:
    """Where the stores of one backend live: ``new_store(name)`` gives an empty one's URL."""

    name: str
    kind: str
    new_store: Callable[[str], str]


@dataclass
class BackendFlow:
    """What the sections measured on one backend, for the report."""

    backend: str
    kind: str
    ryw: Samples | None = None
    catchup: Samples | None = None
    catchup_events: int = 0
    flat: Samples | None = None
    flat_sizes: tuple[int, int] = (0, 0)
    timeline: Samples | None = None
    timeline_sizes: tuple[int, int] = (0, 0)
    timeline_bytes: dict[str, int] = field(default_factory=dict)
    timeline_plans: dict[str, str] = field(default_factory=dict)
    """The plan the database chose for the timeline's query, in each store."""
    await_local: Samples | None = None
    await_remote: Samples | None = None
    poll_interval: float = 0.0
    facts: dict[str, str] = field(default_factory=dict)


def _open(store: str, **settings: object) -> Ledger:
    """A ledger with the default settings (not the ``CKL_*`` environment) but ``settings``."""
    return Ledger.open(settings=LedgerSettings.model_validate({"store": store, **settings}))


def _populate(store: str, specs: Iterator[Spec], *, views: bool = True) -> int:
    """Bulk-write ``specs`` (and their view rows) into ``store``; how many events."""
    started = time.perf_counter()
    prepare_store(store)
    loader = loader_for(store)
    try:
        builder = LogBuilder(loader, views=views)
        count = builder.write(specs)
        builder.finish()
    finally:
        loader.close()
    log(f"populated {count:,} events in {time.perf_counter() - started:.1f}s")
    return count


# ------------------------------------------------------------------- 1. read-your-writes


def read_your_writes(backend: Backend, profile: FlowProfile) -> Samples:
    """Commit of a yield (in a listener) to the return of ``views.wait_for(position)``."""
    ledger = _open(backend.new_store("ryw"))
    raw = RawInsert(backend.new_store("ryw_raw"))
    views = Projections(ledger).start()
    try:
        token = ledger.create_checkpoint("ryw", 0)
        views.sync()
        committed: list[tuple[int, int]] = []

        def on_recorded(recorded: Recorded) -> None:
            committed.append((recorded.position, time.monotonic_ns()))

        ledger.add_listener(on_recorded)
        step = 0

        def ryw() -> dict[str, float]:
            nonlocal step
            step += 1
            cursor, items, results = yield_payload(step)
            committed.clear()
            ledger.checkpoint_yield(token, cursor, items, results)
            position, started = committed[-1]
            views.wait_for(position)
            return {"ryw": (time.monotonic_ns() - started) / 1e9}

        return sample_interleaved(
            f"{backend.name}: read-your-writes",
            {"ryw": ryw, "raw": raw.probe("raw")},
            rounds=profile.ryw_rounds,
            per_round=profile.ryw_per_round,
            warmup=20,
        )
    finally:
        views.close()
        ledger.close()
        raw.close()


# ------------------------------------------------------------------- 2. catch-up rate


def catch_up_rate(backend: Backend, profile: FlowProfile) -> Samples:
    """``rebuild()`` of the views over N events, against a raw SELECT of the same rows."""
    events = profile.catchup_events
    store = backend.new_store("catchup")
    runs, per_run, size = 10, events // 500, 50
    specs = (
        s for run in range(runs) for s in run_specs(f"catchup-{run}", per_run, size, fail_every=4)
    )
    assert _populate(store, specs, views=False) == events
    ledger = _open(store)
    views = Projections(ledger)
    raw = RawConnection(store)
    select = (
        f"SELECT notification_id, originator_id, originator_version, topic, state"
        f" FROM {EVENTS_TABLE} ORDER BY notification_id"
    )
    try:

        def rebuild() -> dict[str, float]:
            started = time.perf_counter()
            position = views.rebuild()
            taken = time.perf_counter() - started
            assert position == events, position
            return {"rebuild": taken}

        def raw_select() -> dict[str, float]:
            started = time.perf_counter()
            rows = raw.fetch_all(select)
            taken = time.perf_counter() - started
            assert len(rows) == events
            return {"raw": taken}

        def read_decode() -> dict[str, float]:
            """What rebuild reads and decodes (its light decode), without applying anything."""
            started = time.perf_counter()
            position, count = 0, 0
            while notes := ledger.recorder.select_notifications(
                position, views.batch_size, inclusive_of_start=False
            ):
                for note in notes:
                    decode(note, ledger.mapper.to_event)
                position, count = notes[-1].id, count + len(notes)
            assert count == events
            return {"read+decode": time.perf_counter() - started}

        raw_select()
        read_decode()  # the page cache warm for every variant; rebuild is too slow to warm up
        return sample_interleaved(
            f"{backend.name}: catch-up of {events:,} events",
            {"rebuild": rebuild, "raw": raw_select, "read+decode": read_decode},
            rounds=profile.catchup_rounds,
            per_round=1,
        )
    finally:
        raw.close()
        ledger.close()


# ------------------------------------------------------------------- 3. view update, flat


def view_update_flat(backend: Backend, profile: FlowProfile) -> Samples:
    """Yield + ``catch_up()`` on a checkpoint with few earlier yields and one with many."""
    small, big = profile.flat_sizes
    store = backend.new_store("flat")

    def specs() -> Iterator[Spec]:
        yield from checkpoint_specs("flat", 1, 2, 1 + big, complete=False)
        yield from checkpoint_specs("flat", 0, 2, 1 + small, complete=False)

    _populate(store, specs())
    ledger = _open(store)
    views = Projections(ledger)
    try:
        views.catch_up()

        def probe(name: str, batch: int, done: int) -> Probe:
            token = CheckpointToken.for_batch("flat", batch)
            step = done

            def op() -> dict[str, float]:
                nonlocal step
                step += 1
                cursor, items, results = yield_payload(step)
                started = time.perf_counter()
                ledger.checkpoint_yield(token, cursor, items, results)
                yielded = time.perf_counter()
                views.catch_up()
                ended = time.perf_counter()
                return {name: ended - started, f"{name} views": ended - yielded}

            return op

        started = time.perf_counter()
        probes = {"small": probe("small", 0, small), "big": probe("big", 1, big)}
        for op in probes.values():
            op()  # loads each checkpoint into the ledger's cache (the big one: all its events)
        log(f"first yields (cold loads) in {time.perf_counter() - started:.1f}s")
        return sample_interleaved(
            f"{backend.name}: view update at {small:,} and {big:,} yields",
            probes,
            rounds=profile.flat_rounds,
            per_round=profile.flat_per_round,
            warmup=10,
        )
    finally:
        ledger.close()


# ------------------------------------------------------------------- 4. timeline replay


def timeline_replay(backend: Backend, profile: FlowProfile, flow: BackendFlow) -> Samples:
    """``timeline(run)`` of one big run, alone in its store and among many other runs."""
    events, others = profile.timeline_events, profile.timeline_others
    alone, crowded = backend.new_store("timeline_alone"), backend.new_store("timeline_crowded")
    per_checkpoint = 100
    checkpoints = events // per_checkpoint
    _populate(alone, run_specs("target", checkpoints, per_checkpoint))
    other_runs = max(1, others // 10_000)
    other_specs = (
        s
        for run in range(other_runs)
        for s in run_specs(f"other-{run}", others // other_runs // per_checkpoint, per_checkpoint)
    )
    every = others // events + 1
    count = _populate(
        crowded, interleave(run_specs("target", checkpoints, per_checkpoint), other_specs, every)
    )
    assert count == events + others, count
    flow.timeline_sizes = (events, others)
    ledgers = {"alone": _open(alone), "crowded": _open(crowded)}
    raws = {"alone": RawConnection(alone), "crowded": RawConnection(crowded)}
    sql = (
        "SELECT t.position, t.at, t.batch_index, t.version, e.topic, e.state, e.originator_id"
        f" FROM ckl_view_timeline t JOIN {EVENTS_TABLE} e ON e.notification_id = t.position"
        " WHERE t.run_id = %s AND t.position > %s ORDER BY t.position"
    )
    try:
        for name, store in (("alone", alone), ("crowded", crowded)):
            flow.timeline_bytes[name] = _store_bytes(raws[name], store)
            flow.timeline_plans[name] = _plan(raws[name], sql, ("target", 0))

        def probe(name: str) -> Probe:
            views = Projections(ledgers[name])
            assert views.position == ledgers[name].recorder.max_notification_id()

            def op() -> dict[str, float]:
                started = time.perf_counter()
                entries = views.timeline("target")
                taken = time.perf_counter() - started
                assert len(entries) == events, len(entries)
                return {name: taken}

            return op

        def raw_probe(name: str) -> Probe:
            def op() -> dict[str, float]:
                started = time.perf_counter()
                rows = raws[name].fetch_all(sql, ("target", 0))
                taken = time.perf_counter() - started
                assert len(rows) == events
                return {f"{name} sql": taken}

            return op

        probes = {
            "alone": probe("alone"),
            "crowded": probe("crowded"),
            "alone sql": raw_probe("alone"),
            "crowded sql": raw_probe("crowded"),
        }
        return sample_interleaved(
            f"{backend.name}: timeline of {events:,} events beside 0 and {others:,}",
            probes,
            rounds=profile.timeline_rounds,
            per_round=1,
            warmup=1,
        )
    finally:
        for ledger in ledgers.values():
            ledger.close()
        for raw in raws.values():
            raw.close()


def _plan(raw: RawConnection, sql: str, params: tuple[object, ...]) -> str:
    """The query's plan for these parameters, in one line."""
    if raw.sqlite:
        rows = raw.fetch_all(f"EXPLAIN QUERY PLAN {sql}", params)
        return "; ".join(str(row[-1]) for row in rows)
    (row,) = raw.fetch_all(f"EXPLAIN (FORMAT JSON) {sql}", params)
    nodes: list[str] = []

    def walk(node: dict[str, Any], depth: int) -> None:
        what = str(node["Node Type"])
        for key, word in (("Relation Name", "on"), ("Index Name", "using")):
            if key in node:
                what += f" {word} {node[key]}"
        nodes.append("  " * depth + what)
        for child in node.get("Plans", []):
            walk(child, depth + 1)

    walk(row[0][0]["Plan"], 0)
    return " → ".join(n.strip() for n in nodes)


def _store_bytes(raw: RawConnection, store: str) -> int:
    if raw.sqlite:
        return Path(sqlite_path(store)).stat().st_size
    rows = raw.fetch_all("SELECT pg_database_size(current_database())")
    return int(rows[0][0])


# ------------------------------------------------------------------- 5. completion latency


class _Awaiter:
    """A thread blocked in ``await_checkpoint``; the time it woke up."""

    def __init__(self, ledger: Ledger, token: CheckpointToken, timeout: float | None = 10) -> None:
        self.woke = 0
        self.error: BaseException | None = None
        self._ledger, self._token, self._timeout = ledger, token, timeout
        listeners = len(ledger._listeners)  # noqa: SLF001
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        # Subscribed: await_checkpoint waits in its caller's thread, with a ledger listener.
        deadline = time.monotonic() + 5.0
        while len(ledger._listeners) <= listeners:  # noqa: SLF001
            if time.monotonic() > deadline:
                msg = "the awaiter did not subscribe within 5 s"
                raise TimeoutError(msg)
            time.sleep(0.0005)
        time.sleep(SETTLE)  # and has read the state (open) and gone to sleep

    def _run(self) -> None:
        try:
            await_checkpoint(self._ledger, self._token, timeout=self._timeout)
            self.woke = time.monotonic_ns()
        except BaseException as exc:
            self.error = exc

    def join(self) -> int:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.woke


def completion_in_process(backend: Backend, profile: FlowProfile) -> Samples:
    """Writer and awaiter threads of one process: commit to the awaiter's return."""
    ledger = _open(backend.new_store("await_local"))
    standing = ledger.watch(lambda: None)  # the log watcher stays up, as beside a follower
    committed: list[int] = []

    def on_recorded(recorded: Recorded) -> None:
        if isinstance(recorded.event, Completed):
            committed.append(time.monotonic_ns())

    ledger.add_listener(on_recorded)  # first listener: before any awaiter's
    batch = 0
    try:

        def probe(name: str, timeout: float | None) -> Probe:
            def op() -> dict[str, float]:
                nonlocal batch
                batch += 1
                token = ledger.create_checkpoint("await-local", batch)
                awaiter = _Awaiter(ledger, token, timeout)
                ledger.complete_checkpoint(token, {"rows": batch})
                woke = awaiter.join()
                return {name: (woke - committed[-1]) / 1e9}

            return op

        def on_next_op() -> dict[str, float]:
            """The same, up to the observable's ``on_next`` (in its reader thread)."""
            nonlocal batch
            batch += 1
            token = ledger.create_checkpoint("await-local", batch)
            got: list[int] = []
            done = threading.Event()

            def on_next(_: object) -> None:
                got.append(time.monotonic_ns())
                done.set()

            subscription = completion(ledger, token).subscribe(on_next=on_next)
            try:
                wait_for_thread(f"ckl-await-{token}")
                time.sleep(SETTLE)
                ledger.complete_checkpoint(token, {"rows": batch})
                done.wait(10)
            finally:
                subscription.dispose()
            return {"on_next": (got[0] - committed[-1]) / 1e9}

        return sample_interleaved(
            f"{backend.name}: completion in-process",
            {
                "await": probe("await", 10),
                "await, no timeout": probe("await, no timeout", None),
                "on_next": on_next_op,
                "thread wake-up": event_hop(SETTLE),
            },
            rounds=profile.await_rounds,
            per_round=profile.await_per_round,
            warmup=10,
        )
    finally:
        standing()
        ledger.close()


def completion_cross_process(backend: Backend, profile: FlowProfile, poll: float) -> Samples:
    """Writer in a subprocess, awaiter here; on PostgreSQL against a raw LISTEN/NOTIFY."""
    store = backend.new_store("await_remote")
    ledger = _open(store, poll_interval=poll)
    standing = ledger.watch(lambda: None)
    writer = WriterProcess(store, poll)
    closers: list[Callable[[], None]] = [writer.close, standing, ledger.close]
    batch = 0
    try:

        def op() -> dict[str, float]:
            nonlocal batch
            batch += 1
            token = ledger.create_checkpoint("await-remote", batch)
            awaiter = _Awaiter(ledger, token)
            if backend.kind == "sqlite":
                # Commit at a random phase of the poll: else every sample lands at the same
                # moment of the watcher's cycle (the loop keeps time with it).
                time.sleep(random.uniform(0, poll))
            writer.send("complete", token.run_id, str(batch))
            woke = awaiter.join()
            committed, sent, returned = writer.answer()
            return {
                "await": (woke - committed) / 1e9,
                "await from send": (woke - sent) / 1e9,
                "append": (returned - sent) / 1e9,
            }

        probes: dict[str, Probe] = {"await": op}
        if backend.kind == "postgres":
            probes["raw"] = _raw_notify(store, writer, closers)
            probes["raw + reads"] = _raw_notify(store, writer, closers, reads=True)
            rounds, per_round = profile.await_rounds, profile.await_per_round
        else:
            rounds, per_round = 5, max(1, profile.poll_samples // 5)
        return sample_interleaved(
            f"{backend.name}: completion cross-process",
            probes,
            rounds=rounds,
            per_round=per_round,
            warmup=5,
        )
    finally:
        for close in closers:
            close()


def _raw_notify(
    store: str, writer: WriterProcess, closers: list[Callable[[], None]], *, reads: bool = False
) -> Probe:
    """The writer's ``pg_notify`` to a thread here blocked on a LISTEN connection.

    With ``reads``, the woken thread then makes the two reads the ledger's path makes after
    its wake-up (the log's head, then the checkpoint's events after a version), on a second
    connection: the floor of any awaiter that reads the store once woken.
    """
    channel = f"{RAW_CHANNEL}_reads" if reads else RAW_CHANNEL
    raw, reader = RawConnection(store), RawConnection(store)
    closers += [raw.close, reader.close]
    raw.conn.execute(f"LISTEN {channel}")
    oid = CheckpointToken.for_batch("await-remote", 1).checkpoint_id

    def op() -> dict[str, float]:
        woke: list[int] = []

        def listen() -> None:
            for _ in raw.conn.notifies(timeout=10, stop_after=1):
                if reads:
                    reader.conn.execute(
                        f"SELECT max(notification_id) FROM {EVENTS_TABLE}", prepare=True
                    ).fetchall()
                    reader.conn.execute(
                        "SELECT originator_version, topic, state FROM ckl_events"
                        " WHERE originator_id = %s AND originator_version > %s"
                        " ORDER BY originator_version",
                        (oid, 1),
                        prepare=True,
                    ).fetchall()
                woke.append(time.monotonic_ns())

        thread = threading.Thread(target=listen, daemon=True)
        thread.start()
        time.sleep(SETTLE)
        writer.send("notify", channel)
        thread.join()
        committed, sent = writer.answer()
        if not woke:
            raise RuntimeError("the raw listener got no notification within 10 s")
        if reads:
            return {"raw + reads": (woke[0] - committed) / 1e9}
        return {"raw": (woke[0] - committed) / 1e9, "raw from send": (woke[0] - sent) / 1e9}

    return op


# ------------------------------------------------------------------- all of one backend


def run_backend(backend: Backend, profile: FlowProfile) -> BackendFlow:
    """Every section on one backend."""
    flow = BackendFlow(backend.name, backend.kind)
    started = time.perf_counter()
    check(backend.new_store("check"))
    log(f"{backend.name}: bulk-written logs and views match the library's (checked)")
    flow.ryw = read_your_writes(backend, profile)
    flow.await_local = completion_in_process(backend, profile)
    poll = SQLITE_POLL if backend.kind == "sqlite" else LedgerSettings().poll_interval
    flow.poll_interval = poll
    flow.await_remote = completion_cross_process(backend, profile, poll)
    flow.catchup = catch_up_rate(backend, profile)
    flow.catchup_events = profile.catchup_events
    flow.flat = view_update_flat(backend, profile)
    flow.flat_sizes = profile.flat_sizes
    flow.timeline = timeline_replay(backend, profile, flow)
    log(f"{backend.name}: done in {time.perf_counter() - started:.0f}s")
    return flow
