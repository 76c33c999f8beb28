"""A primary and a hot standby: tail lag on each, replication lag, a synchronous standby's cost.

One `tests.fix_replica.ReplicaPair` (asynchronous as started) holds the run's store. W writer
processes (``bench._scale_worker``'s, unchanged: each its own `Ledger` on the primary and its
own checkpoint) append at full speed in timed windows, as in section 5; two tail processes
(``bench._replica_worker``) follow the run with ``run_stream``, one reading the primary
(``Ledger.open(primary)``) and one the standby (``Ledger.open(primary, reader_store=standby)``:
the API's reader store, which watches the standby's replay). After each window both tails hand
over what they saw, and each must have seen every acknowledged append exactly once, in order.

The lag of an event is the moment a tail's subscriber got it minus the moment its writer's
command returned (read in the writer's ``Ledger.add_listener`` callback, right after the
commit; ``CLOCK_MONOTONIC`` is one clock for every process), on each tail: so the standby's
figure against the primary's is the reader's price of the replica, measured on the same events.

The replication lag is probed from the parent while the windows run: it reads the primary's
``pg_current_wal_flush_lsn()`` (every acknowledged commit is below it) and then asks the standby
for ``pg_last_wal_replay_lsn()`` every `_PROBE_POLL` until it has replayed that far; the time
between is one sample (resolution `_PROBE_POLL`). The same query samples
``pg_stat_replication``'s ``flush_lag`` and ``replay_lag`` and the bytes the standby's flush
and replay are behind, as the primary reports them: what the standby had not flushed is what
a failover to it would lose.

Modes: ``async`` (as started) and ``sync``: ``ALTER SYSTEM SET synchronous_standby_names`` to
the standby and a reload, so that a commit returns only once the standby flushed it (the
ledger's sessions run ``synchronous_commit=on``). Both modes run on the same pair, their
windows alternating, with raw single-row INSERT + COMMIT writers (section 1's) in the same
processes as the baseline: sync ÷ async is taken per round, for ours and for raw. The full mode
also sweeps the writer count (1 to 16, asynchronous): what one server holds with a standby.
"""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash, division sign)

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from bench._baselines import PostgresRaw
from bench._harness import Spread, log
from bench._machine import load
from bench._markdown import table, text, times, times_spread
from bench._replica_worker import TailProcess
from bench._scale import Check, _check
from bench._scale_worker import WorkerProcess
from bench._workload import open_ledger, representative_state
from ledger import LedgerSettings

if TYPE_CHECKING:
    from tests.fix_replica import ReplicaPair

__all__ = ["FULL", "QUICK", "ReplicaProfile", "ReplicaResults", "measure", "section"]

MODES = ("async", "sync")
VARIANTS = ("ledger", "raw")
APPLIED = "applied"
"""The extra variant of the ``sync`` windows: our writers with ``durability="applied"``."""
TAILS = ("primary", "standby")
_LEAD_NS = 150_000_000
"""How far ahead of the command the writers' common start is (they sleep until then)."""
_DRAIN_TIMEOUT = 60.0
_PROBE_POLL = 0.001
"""Seconds between the probe's looks at the standby's replay position."""
_PROBE_GAP = 0.02
"""Seconds between two probes."""
_MODE_TIMEOUT = 20.0
_DATABASE = "ckl_replica"


@dataclass(frozen=True)
class ReplicaProfile:
    """How much to measure."""

    name: str
    writers: int
    """Writer processes of the async/sync comparison."""
    window: float
    rounds: int
    sweep: tuple[int, ...]
    """Writer counts of the asynchronous sweep (empty: no sweep)."""
    sweep_window: float
    fsync: bool
    """Whether the pair flushes to disk (as section 5's server does)."""


FULL = ReplicaProfile(
    name="full",
    writers=8,
    window=6.0,
    rounds=6,
    sweep=(1, 2, 4, 8, 16),
    sweep_window=3.0,
    fsync=True,
)
QUICK = ReplicaProfile(
    name="quick", writers=4, window=1.0, rounds=1, sweep=(), sweep_window=1.0, fsync=False
)


@dataclass
class Probe:
    """One replication-lag probe."""

    at: int
    """``time.monotonic_ns()`` when it read the primary's position."""
    replayed: float
    """Seconds until the standby had replayed that position."""
    flush_lag: float | None
    """``pg_stat_replication.flush_lag`` at the same moment, seconds (None: idle)."""
    replay_lag: float | None
    """``pg_stat_replication.replay_lag`` likewise."""
    unflushed: int | None
    """Bytes between the primary's flush position and what the standby reported flushed."""
    unreplayed: int | None
    """Bytes between the primary's flush position and what the standby reported replayed."""
    sync_state: str | None


@dataclass
class Window:
    """One timed window."""

    block: str
    """``modes`` (the async/sync comparison) or ``sweep``."""
    round: int
    mode: str
    variant: str
    writers: int
    seconds: float
    rate: float
    """Appends acknowledged inside the window, per second."""
    lags: dict[str, list[float]] = field(default_factory=dict)
    """Seconds from acknowledgement to each tail's subscriber, by tail."""
    gap: list[float] = field(default_factory=list)
    """Seconds from the primary's tail getting an event to the standby's tail getting it."""
    checks: dict[str, Check] = field(default_factory=dict)
    probes: list[Probe] = field(default_factory=list)


@dataclass
class ReplicaResults:
    """What the replica part measured."""

    profile: ReplicaProfile
    windows: list[Window] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def of(self, block: str, mode: str, variant: str, writers: int) -> list[Window]:
        """The windows of one kind, in round order."""
        return [
            w
            for w in self.windows
            if (w.block, w.mode, w.variant, w.writers) == (block, mode, variant, writers)
        ]

    def rate(self, block: str, mode: str, variant: str, writers: int) -> Spread:
        """Events/s over the rounds."""
        return Spread.of([w.rate for w in self.of(block, mode, variant, writers)])

    def applied_ratio(self, writers: int) -> Spread:
        """``applied`` ÷ ``full`` events/s of ours with the synchronous standby, round by round."""
        return _per_round(
            self.of("modes", "sync", APPLIED, writers), self.of("modes", "sync", "ledger", writers)
        )

    def ratio(self, variant: str, writers: int) -> Spread:
        """Sync ÷ async events/s of ``variant``, round by round."""
        return _per_round(
            self.of("modes", "sync", variant, writers), self.of("modes", "async", variant, writers)
        )


def _per_round(tops: list[Window], bottoms: list[Window]) -> Spread:
    """Events/s of ``tops`` ÷ those of ``bottoms``, window by window (one each a round)."""
    return Spread.of([t.rate / b.rate for t, b in zip(tops, bottoms, strict=True)])


class _Prober:
    """Replication-lag probes on a thread of the parent, from `start` until `stop`."""

    _PRIMARY = """
        SELECT pg_current_wal_flush_lsn()::text,
               extract(epoch FROM r.flush_lag)::float8,
               extract(epoch FROM r.replay_lag)::float8,
               pg_wal_lsn_diff(pg_current_wal_flush_lsn(), r.flush_lsn)::bigint,
               pg_wal_lsn_diff(pg_current_wal_flush_lsn(), r.replay_lsn)::bigint,
               r.sync_state
        FROM (SELECT 1) AS one
        LEFT JOIN pg_stat_replication AS r ON r.application_name = %s
    """

    def __init__(self, primary: str, standby: str, name: str) -> None:
        self.primary, self.standby, self.name = primary, standby, name
        self.probes: list[Probe] = []
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="replay-probe", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=30)
        if self.errors:
            raise RuntimeError(f"the replication probe failed: {self.errors[0]!r}")

    def _run(self) -> None:
        try:
            with (
                psycopg.connect(self.primary, autocommit=True) as primary,
                psycopg.connect(self.standby, autocommit=True) as standby,
            ):
                while not self.stopping.is_set():
                    self._probe(primary, standby)
                    self.stopping.wait(_PROBE_GAP)
        except BaseException as exc:
            self.errors.append(exc)

    def _probe(
        self,
        primary: psycopg.Connection[tuple[object, ...]],
        standby: psycopg.Connection[tuple[object, ...]],
    ) -> None:
        at = time.monotonic_ns()
        row = primary.execute(self._PRIMARY, [self.name]).fetchone()
        assert row is not None
        lsn, flush_lag, replay_lag, unflushed, unreplayed, sync_state = row
        while not self.stopping.is_set():
            done = standby.execute(
                "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", [lsn]
            ).fetchone()
            if done == (True,):
                break
            time.sleep(_PROBE_POLL)
        else:
            return
        self.probes.append(
            Probe(
                at=at,
                replayed=(time.monotonic_ns() - at) / 1e9,
                flush_lag=_number(flush_lag),
                replay_lag=_number(replay_lag),
                unflushed=None if unflushed is None else int(str(unflushed)),
                unreplayed=None if unreplayed is None else int(str(unreplayed)),
                sync_state=None if sync_state is None else str(sync_state),
            )
        )


def _number(value: object) -> float | None:
    return None if value is None else float(str(value))


def _set_mode(url: str, mode: str, standby_name: str) -> None:
    """Make the primary's commits wait for the standby (``sync``) or not (``async``)."""
    names = standby_name if mode == "sync" else ""
    wanted = "sync" if mode == "sync" else "async"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(names))
        )
        conn.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + _MODE_TIMEOUT
        while True:
            row = conn.execute(
                "SELECT current_setting('synchronous_standby_names'), "
                "(SELECT sync_state FROM pg_stat_replication WHERE application_name = %s)",
                [standby_name],
            ).fetchone()
            if row == (names, wanted):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the primary did not switch to {mode} replication: {row}")
            time.sleep(0.02)
    # The checkpointer publishes the new setting to the committing backends on its reload.
    time.sleep(0.2)


def _commits(reply: dict[str, object]) -> list[tuple[int, int]]:
    rows = reply["commits"]
    assert isinstance(rows, list)
    return [(int(position), int(moment)) for position, moment in rows]


class _Fleet:
    """The writer processes and the two tails."""

    def __init__(self, primary: str, standby: str, poll: float, count: int) -> None:
        self.writers: list[WorkerProcess] = []
        self.tails: dict[str, TailProcess] = {}
        try:
            self.writers = [
                WorkerProcess("writer", primary, primary, str(index)) for index in range(count)
            ]
            self.tails = {
                "primary": TailProcess(primary, poll, None, "primary"),
                "standby": TailProcess(primary, poll, standby, "standby"),
            }
            for process in [*self.writers, *self.tails.values()]:
                process.wait_ready()
            for writer in self.writers:
                writer.send("warm", APPLIED)
            for writer in self.writers:
                writer.answer()
        except BaseException:
            self.close()
            raise

    def window(
        self, variant: str, count: int, seconds: float
    ) -> tuple[int, int, list[tuple[int, int]]]:
        start = time.monotonic_ns() + _LEAD_NS
        end = start + int(seconds * 1e9)
        active = self.writers[:count]
        for writer in active:
            writer.send("run", variant, start, end)
        commits = [c for writer in active for c in _commits(writer.answer())]
        return start, end, commits

    def drain(self, name: str, position: int) -> list[tuple[int, int]]:
        tail = self.tails[name]
        tail.send("drain", position, _DRAIN_TIMEOUT)
        seen = tail.answer()["seen"]
        assert isinstance(seen, list)
        return [(int(p), int(moment)) for p, moment in seen]

    def close(self) -> None:
        for process in [*self.writers, *self.tails.values()]:
            process.close()


def _window(fleet: _Fleet, prober: _Prober, spec: Window) -> Window:
    start, end, commits = fleet.window(spec.variant, spec.writers, spec.seconds)
    spec.rate = sum(1 for _, moment in commits if start <= moment <= end) / spec.seconds
    spec.probes = [p for p in prober.probes if start <= p.at <= end]
    if spec.variant == "raw":
        return spec
    top = max(position for position, _ in commits)
    received: dict[str, dict[int, int]] = {}
    for name in TAILS:
        seen = fleet.drain(name, top)
        spec.checks[name] = _check(commits, seen)
        when = received[name] = dict(seen)
        spec.lags[name] = [(when[p] - moment) / 1e9 for p, moment in commits if p in when]
    first, second = received["primary"], received["standby"]
    spec.gap = [(second[p] - first[p]) / 1e9 for p in first if p in second]
    return spec


def _plan(profile: ReplicaProfile, index: int) -> list[tuple[str, str, str, int, float]]:
    """One round's windows (block, mode, variant, writers, seconds), the orders rotating."""
    modes = MODES[index % 2 :] + MODES[: index % 2]
    variants = VARIANTS[index % 2 :] + VARIANTS[: index % 2]
    three: tuple[str, ...] = (*VARIANTS, APPLIED)
    synced = three[index % 3 :] + three[: index % 3]
    plan = [
        ("modes", m, v, profile.writers, profile.window)
        for m in modes
        for v in (synced if m == "sync" else variants)
    ]
    if profile.sweep:
        shift = index % len(profile.sweep)
        counts = profile.sweep[shift:] + profile.sweep[:shift]
        sweep = [("sweep", "async", v, n, profile.sweep_window) for n in counts for v in variants]
        # The sweep runs next to the round's asynchronous windows: one switch of mode a round.
        plan = sweep + plan if modes[0] == "async" else plan + sweep
    return plan


def measure(profile: ReplicaProfile) -> ReplicaResults:
    """Start a replica pair, run the windows, destroy the pair."""
    # tests/fix_replica.py imports pytest (a test dependency) but needs no pytest session.
    from tests.fix_replica import STANDBY_NAME, ReplicaPair  # noqa: PLC0415

    results = ReplicaResults(profile)
    began = time.perf_counter()
    results.facts["load average (1/5/15 min) at start"] = load()
    log(f"replica: starting a primary and a standby (fsync {'on' if profile.fsync else 'off'})")
    with ReplicaPair.start(fsync=profile.fsync) as pair:
        results.facts.update(_pair_facts(pair))
        primary = pair.create_database(_DATABASE)
        standby = pair.standby_url(_DATABASE)
        raw = PostgresRaw(primary, representative_state())
        raw.close()
        with open_ledger(primary):
            pass
        pair.wait_replayed()
        count = max(profile.writers, *profile.sweep) if profile.sweep else profile.writers
        poll = LedgerSettings().poll_interval
        fleet = _Fleet(primary, standby, poll, count)
        prober = _Prober(primary, standby, STANDBY_NAME)
        log(f"replica: {count} writers and two tails ready")
        try:
            fleet.drain("primary", 0)  # the writers' warm-up yields
            fleet.drain("standby", 0)
            prober.start()
            mode = "async"
            for index in range(profile.rounds):
                for block, wanted, variant, writers, seconds in _plan(profile, index):
                    if wanted != mode:
                        _set_mode(primary, wanted, STANDBY_NAME)
                        mode = wanted
                    spec = Window(block, index, wanted, variant, writers, seconds, 0.0)
                    results.windows.append(_window(fleet, prober, spec))
        finally:
            prober.stop()
            fleet.close()
    results.facts["load average (1/5/15 min) at the end"] = load()
    results.seconds = time.perf_counter() - began
    log(f"replica: {profile.rounds} rounds in {results.seconds:.1f}s")
    return results


def _pair_facts(pair: ReplicaPair) -> dict[str, str]:
    names = ["server_version", "fsync", "synchronous_commit", "wal_sync_method", "shared_buffers"]
    with psycopg.connect(pair.primary_url(), autocommit=True) as conn:
        values = {}
        for name in names:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
            values[name] = "?" if row is None else str(row[0])
    where = pair.primary.data_dir
    fsync = pair.primary.settings["fsync"] == "on"
    under = where.parent.parent if where else "?"
    return {
        "PostgreSQL": values.pop("server_version"),
        "pair": (
            f"`tests/fix_replica.py` `ReplicaPair.start(fsync={fsync})`: primary and hot "
            f"standby on 127.0.0.1, streaming, clusters under {under}; started in "
            f"{pair.start_seconds:.1f} s"
        ),
        "primary settings": ", ".join(f"{k}={v}" for k, v in values.items()),
    }


# --- the report ---------------------------------------------------------------------------


def _quantile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _ms(seconds: float) -> str:
    value = seconds * 1e3
    if math.isnan(value):  # nothing measured
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _lag(values: list[float]) -> str:
    if not values:
        return "—"
    return f"{_ms(_quantile(values, 50))} / {_ms(_quantile(values, 99))} / {_ms(max(values))}"


def _rate(spread: Spread) -> str:
    return f"{spread.median:,.0f} ({spread.p25:,.0f}–{spread.p75:,.0f})"


def _pooled(windows: list[Window], tail: str) -> list[float]:
    return [lag for w in windows for lag in w.lags.get(tail, [])]


def _probes(windows: list[Window]) -> list[Probe]:
    return [p for w in windows for p in w.probes]


def _checked(windows: list[Window], tail: str) -> str:
    total, bad = 0, 0
    for w in windows:
        check = w.checks.get(tail)
        if check is not None:
            total += check.committed
            bad += check.skipped + check.duplicated + check.out_of_order + check.unexpected
    return f"{total:,} / {bad}"


def _lag_ratio(windows: list[Window], q: int) -> float:
    return _quantile(_pooled(windows, "standby"), q) / _quantile(_pooled(windows, "primary"), q)


def _states(probes: list[Probe]) -> str:
    counts: dict[str, int] = {}
    for p in probes:
        key = p.sync_state or "none"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _stat(values: list[float], count: int) -> str:
    if not values:
        return "— (NULL: idle)"
    return f"{_ms(_quantile(values, 50))} / {_ms(_quantile(values, 99))} ({len(values)} of {count})"


def _kib(values: list[int | None]) -> str:
    found = [float(v) for v in values if v is not None]
    if not found:
        return "—"
    parts = (_quantile(found, 50), _quantile(found, 99), max(found))
    return " / ".join(f"{v / 1024:,.1f}" for v in parts)


def _modes_rows(results: ReplicaResults) -> list[list[str]]:
    writers = results.profile.writers
    rows = []
    for mode in MODES:
        ours = results.of("modes", mode, "ledger", writers)
        raw = results.of("modes", mode, "raw", writers)
        rows.append(
            [
                mode,
                _rate(results.rate("modes", mode, "ledger", writers)),
                _rate(results.rate("modes", mode, "raw", writers)),
                times_spread(_per_round(ours, raw)),
                _lag(_pooled(ours, "primary")),
                _lag(_pooled(ours, "standby")),
                f"{times(_lag_ratio(ours, 50))} / {times(_lag_ratio(ours, 99))}",
                _lag([g for w in ours for g in w.gap]),
                f"{_checked(ours, 'primary')}; {_checked(ours, 'standby')}",
            ]
        )
    return rows


_MODES_HEADER = [
    "standby",
    "ours events/s acknowledged",
    "raw INSERT events/s",
    "ours ÷ raw",
    "tail on the primary: lag p50 / p99 / max ms",
    "tail on the standby: lag p50 / p99 / max ms",
    "standby ÷ primary lag, p50 / p99",
    "the standby's tail after the primary's, p50 / p99 / max ms",
    "events checked / anomalies: primary; standby",
]


_APPLIED_HEADER = [
    "durability (synchronous standby)",
    "ours events/s acknowledged",
    "÷ `full`, same rounds",
    "tail on the primary: lag p50 / p99 / max ms",
    "tail on the standby: lag p50 / p99 / max ms",
    "events checked / anomalies: primary; standby",
]


def _applied_row(results: ReplicaResults) -> list[str]:
    writers = results.profile.writers
    ours = results.of("modes", "sync", APPLIED, writers)
    return [
        "`applied`",
        _rate(results.rate("modes", "sync", APPLIED, writers)),
        times_spread(results.applied_ratio(writers)),
        _lag(_pooled(ours, "primary")),
        _lag(_pooled(ours, "standby")),
        f"{_checked(ours, 'primary')}; {_checked(ours, 'standby')}",
    ]


def _replication_rows(results: ReplicaResults) -> list[list[str]]:
    writers = results.profile.writers
    rows = []
    for mode in MODES:
        ours = results.of("modes", mode, "ledger", writers)
        probes = _probes(ours)
        flush = [p.flush_lag for p in probes if p.flush_lag is not None]
        rate = results.rate("modes", mode, "ledger", writers).median
        at_risk = (
            "none: a commit returns once the standby flushed it"
            if mode == "sync"
            else f"{rate * _quantile(flush, 99):,.1f} / {rate * max(flush):,.1f}"
            if flush
            else "—"
        )
        rows.append(
            [
                mode,
                _lag([p.replayed for p in probes]),
                _stat(flush, len(probes)),
                _stat([p.replay_lag for p in probes if p.replay_lag is not None], len(probes)),
                _kib([p.unflushed for p in probes]),
                _kib([p.unreplayed for p in probes]),
                at_risk,
                _states(probes),
            ]
        )
    return rows


_REPLICATION_HEADER = [
    "standby",
    "replay probe p50 / p99 / max ms",
    "`flush_lag` p50 / p99 ms (samples)",
    "`replay_lag` p50 / p99 ms (samples)",
    "not yet flushed there p50 / p99 / max KiB",
    "not yet replayed there p50 / p99 / max KiB",
    "acknowledged events a failover could lose: events/s × `flush_lag` p99 / max",
    "`sync_state` seen by the probes",
]


def _sweep_rows(results: ReplicaResults) -> list[list[str]]:
    rows = []
    first = min(results.profile.sweep)
    base = results.of("sweep", "async", "ledger", first)
    for count in results.profile.sweep:
        ours = results.of("sweep", "async", "ledger", count)
        raw = results.of("sweep", "async", "raw", count)
        scaling = _per_round(ours, base)
        replayed = _lag([p.replayed for p in _probes(ours)])
        rows.append(
            [
                str(count),
                _rate(results.rate("sweep", "async", "ledger", count)),
                _rate(results.rate("sweep", "async", "raw", count)),
                times_spread(_per_round(ours, raw)),
                times(scaling.median),
                _lag(_pooled(ours, "primary")),
                _lag(_pooled(ours, "standby")),
                replayed,
                f"{_checked(ours, 'primary')}; {_checked(ours, 'standby')}",
            ]
        )
    return rows


_SWEEP_HEADER = [
    "writers",
    "ours events/s acknowledged",
    "raw INSERT events/s",
    "ours ÷ raw",
    "ours × 1 writer",
    "tail on the primary: lag p50 / p99 / max ms",
    "tail on the standby: lag p50 / p99 / max ms",
    "replay probe p50 / p99 / max ms",
    "events checked / anomalies: primary; standby",
]


def summary_rows(results: ReplicaResults) -> list[list[str]]:
    """Lines for a summary table: figure, goal, measured, verdict."""
    writers = results.profile.writers
    ours = results.of("modes", "async", "ledger", writers)
    return [
        [
            (
                f"PostgreSQL + hot standby: tail lag on the standby ÷ on the primary, {writers} "
                "writers (same events)"
            ),
            "reference",
            f"p50 {times(_lag_ratio(ours, 50))}, p99 {times(_lag_ratio(ours, 99))}",
            "",
        ],
        [
            (
                f"PostgreSQL + synchronous standby: {writers} writers' events/s, "
                '`durability="applied"` ÷ `"full"`'
            ),
            "reference (the price of read-your-writes on the standby)",
            times_spread(results.applied_ratio(writers)),
            "",
        ],
        [
            f"PostgreSQL: {writers} writers' events/s, synchronous ÷ asynchronous standby",
            "reference (the price of zero-loss failover)",
            (
                f"ours {times_spread(results.ratio('ledger', writers))}; raw INSERT "
                f"{times_spread(results.ratio('raw', writers))}"
            ),
            "",
        ],
    ]


def section(results: ReplicaResults, number: int = 12) -> list[str]:
    """The report's section on replicas."""
    profile = results.profile
    writers = profile.writers
    facts = "; ".join(f"{k}: {v}" for k, v in results.facts.items())
    out = [
        (
            f"## {number}. Replicas: a tail on a hot standby, replication lag, a synchronous "
            "standby (issue 15)"
        ),
        "",
        text(
            f"From `python -m bench.run --only replica` ({profile.name} mode, "
            f"{results.seconds:.0f} s). A primary and a hot standby streaming from it ",
            "(`tests/fix_replica.py`). Writer processes (section 5's) append at full speed, ",
            "each its own `Ledger` on the primary and its own checkpoint, in windows that start ",
            "at one agreed moment; two tail processes follow the run with `run_stream`, one on ",
            "the primary (`Ledger.open(primary)`), one on the standby ",
            "(`Ledger.open(primary, reader_store=standby)`). Lag: a tail's subscriber got the ",
            "event − its writer's command returned (`CLOCK_MONOTONIC`), every event of our ",
            "windows; both tails are checked for every acknowledged event exactly once, in ",
            "order. Replay probe: the primary's `pg_current_wal_flush_lsn()` read, then the ",
            "standby's `pg_last_wal_replay_lsn()` polled every 1 ms until it reached it, every ",
            "20 ms during the windows (it starts before the primary's position is read: an ",
            "upper bound); `flush_lag`, `replay_lag` and the bytes behind are ",
            "`pg_stat_replication`'s at the same moments (its lags are NULL while the standby ",
            "is caught up and idle). What a failover to an asynchronous standby can lose is what ",
            "the standby had not flushed (`flush_lag`); what a reader there has not seen yet is ",
            "what it had not replayed. `sync`: `synchronous_standby_names` set to the ",
            "standby and reloaded (a commit returns once the standby flushed its WAL); `async`: ",
            "emptied. Both modes on the same pair, alternating, with raw single-row INSERT + ",
            "COMMIT windows (section 1's, same processes) as the baseline; ratios are taken ",
            f"round by round. {profile.rounds} round(s) × one {profile.window:g} s window per ",
            f"mode and variant with {writers} writers. {facts}.",
        ),
        "",
        table(_MODES_HEADER, _modes_rows(results)),
        "",
        "Replication, probed during the same windows (ours):",
        "",
        table(_REPLICATION_HEADER, _replication_rows(results)),
        "",
        text(
            f"Synchronous ÷ asynchronous events/s with {writers} writers: ours ",
            f"{times_spread(results.ratio('ledger', writers))}, raw INSERT ",
            f"{times_spread(results.ratio('raw', writers))}.",
        ),
        "",
        text(
            '**Read-your-writes on the standby** (`durability="applied"`: the writers\' ',
            "sessions run with `synchronous_commit = remote_apply`, so a command returns once ",
            "the synchronous standby has replayed it). The same writer processes, each with a ",
            "second `Ledger` and checkpoint of its own, in a third window of each `sync` round; ",
            "the tails follow it as they follow the others:",
        ),
        "",
        table(_APPLIED_HEADER, [_applied_row(results)]),
        "",
    ]
    if profile.sweep:
        out += [
            text(
                f"**One primary with an asynchronous standby, 1 to {max(profile.sweep)} ",
                f"writers**: {profile.rounds} round(s) × one {profile.sweep_window:g} s window ",
                "per writer count and variant, the order rotating.",
            ),
            "",
            table(_SWEEP_HEADER, _sweep_rows(results)),
            "",
        ]
    out += [
        "Summary lines:",
        "",
        table(["figure", "goal", "measured", "verdict"], summary_rows(results)),
        "",
    ]
    return out
