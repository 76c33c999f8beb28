"""docs/benchmarks.md: the figures of one run, as markdown."""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash, division sign)

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench._markdown import (
    breakdown,
    cost_table,
    micros,
    micros_spread,
    span,
    table,
    text,
    times,
    times_spread,
    verdict,
)
from bench._replay import ReplayResults
from bench._replay import section as replay_section
from bench._report_scale import ScaleResults, scale_sections, scale_summary_rows
from bench._startup import StartupResults
from bench._startup import section as startup_section
from bench._steps import WAIT

if TYPE_CHECKING:
    from datetime import datetime

    from bench._harness import Comparison
    from bench._sections import BackendResults, Profile

__all__ = ["Run", "render"]

RAW_GOAL = 1.3
LEASE_GOAL = 1.1
"""A yield under a lease against one without (issue 12)."""
TASKER_GOAL, TASKER_GOAL_AT = 40.0, 10_000  # issue #7: ours at least 40 times faster at 10k
FLAT_GOAL = 1.1


@dataclass(frozen=True)
class Run:
    """What the report says about the run itself."""

    command: str
    started: datetime
    seconds: float
    profile: Profile
    facts: dict[str, str]


def _raw_backend(backend: BackendResults, result: Comparison) -> list[str]:
    ratio = result.ratio("yield", "raw")
    extra = result.difference_us("yield", "raw").median
    per_round = result.operations["raw"] // result.rounds
    goal = text(
        f"Goal ≤ {RAW_GOAL}×: {times(ratio.median)} — {verdict(ratio.median, RAW_GOAL)}. ",
        f"A yield costs {micros(extra)} µs more than the raw insert, so the goal holds while a ",
        f"raw durable insert costs at least {micros(extra / (RAW_GOAL - 1))} µs: on a disk that ",
        "flushes faster than that, the same code misses it.",
    )
    leased = result.ratio("yield-lease", "yield")
    lease = text(
        "A yield under a lease (fenced by it and renewing it in the same append, as a shared ",
        f"run's worker writes): {times(leased.median)} a yield without one, goal ≤ ",
        f"{LEASE_GOAL}× — {verdict(leased.median, LEASE_GOAL)}; the command id every command ",
        "carries is in both, and adds no round trip.",
    )
    return [
        f"### {backend.backend}",
        "",
        text(
            f"Durability: raw {backend.durability['raw']}; ",
            f"ledger {backend.durability['ledger']}. Row state: {backend.state_bytes} bytes. ",
            f"{result.rounds} rounds × {per_round} operations per variant.",
        ),
        "",
        cost_table(result, "raw"),
        "",
        goal,
        "",
        lease,
        "",
        breakdown(result),
        "",
        *_steps_table(backend, result),
    ]


def _steps_table(backend: BackendResults, result: Comparison) -> list[str]:
    """A yield's client CPU step by step: the Python steps alone, the store's from section 1."""
    if not backend.steps:
        return []
    whole = result.cpu_us("yield").median
    store = result.cpu_us("recorder").median
    raw = result.cpu_us("raw").median
    rows = [[step.name, micros(step.cpu_us), step.remedy] for step in backend.steps]
    python = sum(step.cpu_us for step in backend.steps)
    rows += [
        [
            "the store: the append statement and its commit (the `recorder` variant above)",
            micros(store),
            (
                f"of which the raw insert's own CPU: {micros(raw)} µs; the rest is the driver "
                "call and the schema's guards (triggers, the command index)"
            ),
        ],
        [
            "not attributed: the calls between the steps, and caches gone cold (below)",
            micros(whole - python - store),
            "less Python per yield (each line above), or a compiled write path",
        ],
        ["**a whole `checkpoint_yield`** (section 1's `yield`)", micros(whole), ""],
    ]
    return [
        text(
            "Where a yield's client CPU goes, step by step: each Python step of the write path ",
            "timed alone on a warm checkpoint (`bench/_steps.py`; median µs of CPU per call), ",
            "the store's part and the whole yield from the rounds above:",
        ),
        "",
        table(["step", "CPU µs", "what would remove it"], rows),
        "",
        *_cold_caches(backend),
    ]


def _cold_caches(backend: BackendResults) -> list[str]:
    if backend.python_warm_cold is None:
        return []
    warm, cold = backend.python_warm_cold
    return [
        text(
            "Why the steps do not add up: the same Python costs more right after a wait. A ",
            "whole `checkpoint_yield` on a store that does nothing costs ",
            f"{micros(warm)} µs of CPU; with a store that sleeps {WAIT * 1e6:.0f} µs instead ",
            f"(as a durable commit waits for the disk or the server), {micros(cold)} µs: ",
            f"{times(cold / warm)}. While the thread waits, the CPU runs other work and the ",
            "caches lose the interpreter's state, so every yield's Python runs cold. A raw ",
            "insert has a few lines of Python to lose; the ledger's validation, decision, ",
            "mapping and state have more.",
        ),
        "",
    ]


def _section_raw(results: list[BackendResults]) -> list[str]:
    out = [
        "## 1. `checkpoint_yield` against a raw INSERT + COMMIT",
        "",
        text(
            "Same driver, same durability, same row shape (a table with `ckl_events`' columns, ",
            "keys and indexes, without its append-only triggers), rows of the same byte size ",
            "(the stored JSON of a typical yield: an int cursor, items_processed and a ",
            "three-key accumulated_results). PostgreSQL: the same database, the raw insert on ",
            "its own connection. SQLite: a file of its own beside the ledger's, so that neither ",
            "connection has its page cache invalidated by the other's writes. ",
            f"Goal: `checkpoint_yield` ≤ {RAW_GOAL}× raw.",
        ),
        "",
    ]
    for backend in results:
        if backend.raw is not None:
            out += _raw_backend(backend, backend.raw)
    return out


def _history_backend(backend: BackendResults, sizes: tuple[int, ...]) -> list[str]:
    warm, cold = backend.warm, backend.cold
    if warm is None or cold is None:
        return []
    first, top = sizes[0], sizes[-1]
    rows = []
    for size in sizes:
        tails = backend.cold_tails.get(size, [0])
        rows.append(
            [
                f"{size:,}",
                span(backend.warm_range[size]),
                micros_spread(warm.cost_us(f"warm@{size}")),
                times_spread(warm.ratio(f"warm@{size}", f"warm@{first}")),
                span(backend.cold_range[size]),
                micros_spread(cold.cost_us(f"cold@{size}")),
                times_spread(cold.ratio(f"cold@{size}", f"cold@{first}")),
                f"{min(tails)}–{max(tails)}",
            ]
        )
    header = [
        "history",
        "warm: earlier yields",
        "warm µs/yield",
        "warm × at 0",
        "cold: earlier yields",
        "cold µs/first yield",
        "cold × at 0",
        "cold: events read after the snapshot",
    ]
    read = [float(tail) for tail, _ in backend.cold_samples]
    micros = [seconds * 1e6 for _, seconds in backend.cold_samples]
    fit = statistics.linear_regression(read, micros) if len(set(read)) > 1 else None
    warm_ratio = warm.ratio(f"warm@{top}", f"warm@{first}").median
    cold_ratio = cold.ratio(f"cold@{top}", f"cold@{first}").median
    return [
        f"### {backend.backend}",
        "",
        text(
            f"Durability: {backend.durability['history']}. ",
            f"Warm: {warm.rounds} rounds × {warm.operations[f'warm@{top}'] // warm.rounds} ",
            f"yields per size; cold: {cold.rounds} rounds × ",
            f"{cold.operations[f'cold@{top}'] // cold.rounds} fresh ledgers per size. ",
            "Cells: median (p25 to p75) of the round figures.",
        ),
        "",
        table(header, rows),
        "",
        text(
            f"Goal ≤ {FLAT_GOAL}× at {top:,}: warm {times(warm_ratio)} — ",
            f"{verdict(warm_ratio, FLAT_GOAL)}; cold {times(cold_ratio)} — ",
            f"{verdict(cold_ratio, FLAT_GOAL)}.",
        ),
        "",
        *_cold_fit(fit, backend.snapshot_interval, len(read)),
    ]


def _cold_fit(fit: statistics.LinearRegression | None, interval: int, count: int) -> list[str]:
    """What a cold load costs per event it reads after the snapshot."""
    if fit is None:
        return []
    worst = fit.intercept + fit.slope * (interval - 1)
    return [
        text(
            f"A cold first yield costs about {micros(fit.intercept)} µs ",
            f"+ {micros(fit.slope)} µs per ",
            f"event read after the snapshot (least squares over the {count} cold yields of ",
            "all sizes; the fixed part includes a new connection's first statements). With a ",
            f"snapshot every {interval} events a load never reads more than {interval - 1} ",
            f"events, so a cold yield stays under about {micros(worst)} µs whatever the history.",
        ),
        "",
    ]


def _section_history(results: list[BackendResults], sizes: tuple[int, ...]) -> list[str]:
    top = sizes[-1]
    out = [
        "## 2. Yield cost against history size",
        "",
        text(
            f"`checkpoint_yield` on checkpoints with 0 to {top:,} earlier yields (populated ",
            "through the API with `durability='fast'`, snapshots included; measured with ",
            "`durability='full'`). **Warm**: one `Ledger` that has the checkpoint in its cache. ",
            "**Cold**: a freshly opened `Ledger` whose first yield loads the latest snapshot ",
            "and the events after it, then appends (opening and closing it are not counted; ",
            "the warm ledger stays open meanwhile, as other workers would). ",
            "The sizes advance in step, so every size's cold load reads as many events after ",
            "its snapshot as the others (last column); the 0 row has no snapshot yet and reads ",
            "all its events. ",
            f"Goal: at {top:,}, within {FLAT_GOAL}× of the cost at 0.",
        ),
        "",
    ]
    for backend in results:
        out += _history_backend(backend, sizes)
    return out


def _section_tasker(backend: BackendResults, sizes: tuple[int, ...]) -> list[str]:
    result = backend.tasker
    if result is None:
        return []
    first = sizes[0]
    rows = []
    for size in sizes:
        length, stored = backend.tasker_bytes.get(size, (0, 0))
        rows.append(
            [
                f"{size:,}",
                micros_spread(result.cost_us(f"tasker@{size}")),
                micros_spread(result.cost_us(f"ours@{size}")),
                times_spread(result.ratio(f"tasker@{size}", f"ours@{size}")),
                times_spread(result.ratio(f"tasker@{size}", f"tasker@{first}")),
                times_spread(result.ratio(f"ours@{size}", f"ours@{first}")),
                f"{length:,} entries, {stored / 1024:,.0f} KiB",
            ]
        )
    header = [
        "history",
        "tasker UPDATE µs",
        "our yield µs",
        "tasker ÷ ours",
        "tasker × its cost at 0",
        "ours × at 0",
        "tasker column at the end",
    ]
    ours = ", ".join(span(backend.tasker_range[size]) for size in sizes)
    return [
        "## 3. The tasker seed's JSONB history (PostgreSQL)",
        "",
        text(
            "The seed's yield is one autocommit `UPDATE tasker_workflow_steps SET checkpoint = ",
            "jsonb_set($doc::jsonb, '{history}', COALESCE(checkpoint->'history', '[]'::jsonb) ",
            "|| jsonb_build_array(jsonb_build_object('cursor', $cursor::jsonb, 'timestamp', ",
            "to_jsonb(now()))))`, where `$doc` is the new checkpoint (cursor, items_processed, ",
            "timestamp, accumulated_results): the seed's own statement, with the same driver, ",
            "server and `synchronous_commit=on`. Its history starts with the given number of ",
            "entries (seeded in one statement). Ours: section 2's checkpoints, warm (earlier ",
            f"yields during the rounds: {ours}). {result.rounds} interleaved rounds; the tasker ",
            "batches are smaller at the large sizes, where each update rewrites the whole ",
            "history. Cells: median (p25 to p75).",
        ),
        "",
        table(header, rows),
        "",
    ]


def _section_eventsourcing(backend: BackendResults) -> list[str]:
    result = backend.eventsourcing
    if result is None:
        return []
    es = result.ratio("eventsourcing", "raw")
    save_only = result.ratio("eventsourcing-save", "raw")
    ours = result.ratio("yield", "raw")
    versus = result.ratio("eventsourcing", "yield")
    return [
        "## 4. eventsourcing's default PostgreSQL recorder",
        "",
        text(
            "An `eventsourcing` `Application` with `PERSISTENCE_MODULE=eventsourcing.postgres` ",
            "(settings passed as `env=`, nothing else changed; `POSTGRES_ENABLE_DB_FUNCTIONS` ",
            "off, its default) and a plain `Aggregate` whose `@event` method records a yield. ",
            "One variant times the `@event` method and the `save()` of its one new event: the ",
            "same work as one `checkpoint_yield`; the other times `save()` alone. Same server ",
            "and database, interleaved with the raw insert and our yield. Its stored event: ",
            f"{backend.eventsourcing_state_bytes} bytes; ours: {backend.state_bytes}.",
        ),
        "",
        cost_table(result, "raw"),
        "",
        text(
            f"eventsourcing's default recorder: command + `save()` {times(es.median)} raw, ",
            f"`save()` alone {times(save_only.median)} raw (issue 2 measured ~2.1×); ",
            f"our `checkpoint_yield`: {times(ours.median)} raw; eventsourcing (command + ",
            f"`save()`) ÷ our yield: {times_spread(versus)}.",
        ),
        "",
    ]


def _summary_rows(results: list[BackendResults], sizes: tuple[int, ...]) -> list[list[str]]:
    rows = []
    for backend in results:
        if backend.raw is not None:
            ratio = backend.raw.ratio("yield", "raw")
            rows.append(
                [
                    f"{backend.backend}: `checkpoint_yield` ÷ raw INSERT",
                    f"≤ {RAW_GOAL}×",
                    times_spread(ratio),
                    verdict(ratio.median, RAW_GOAL),
                ]
            )
            leased = backend.raw.ratio("yield-lease", "yield")
            rows.append(
                [
                    f"{backend.backend}: yield under a lease ÷ yield",
                    f"≤ {LEASE_GOAL}×",
                    times_spread(leased),
                    verdict(leased.median, LEASE_GOAL),
                ]
            )
        for kind, result in (("warm", backend.warm), ("cold", backend.cold)):
            if result is not None:
                ratio = result.ratio(f"{kind}@{sizes[-1]}", f"{kind}@{sizes[0]}")
                rows.append(
                    [
                        f"{backend.backend}: {kind} yield at {sizes[-1]:,} ÷ at 0",
                        f"≤ {FLAT_GOAL}×",
                        times_spread(ratio),
                        verdict(ratio.median, FLAT_GOAL),
                    ]
                )
        if backend.tasker is not None and TASKER_GOAL_AT in sizes:
            ratio = backend.tasker.ratio(f"tasker@{TASKER_GOAL_AT}", f"ours@{TASKER_GOAL_AT}")
            rows.append(
                [
                    f"{backend.backend}: tasker JSONB update ÷ our yield, at {TASKER_GOAL_AT:,}",
                    f"≥ {TASKER_GOAL}× (ours faster)",
                    times_spread(ratio),
                    "met" if ratio.median >= TASKER_GOAL else "**missed**",
                ]
            )
        if backend.tasker is not None:
            ratio = backend.tasker.ratio(f"tasker@{sizes[-1]}", f"ours@{sizes[-1]}")
            rows.append(
                [
                    f"{backend.backend}: tasker JSONB update ÷ our yield, at {sizes[-1]:,}",
                    "reference",
                    times_spread(ratio),
                    "",
                ]
            )
        if backend.eventsourcing is not None:
            for name, what in (
                ("eventsourcing-save", "`save()` alone"),
                ("eventsourcing", "`@event` method + `save()`"),
            ):
                rows.append(
                    [
                        f"{backend.backend}: eventsourcing default recorder, {what} ÷ raw",
                        "reference (~2.1×)",
                        times_spread(backend.eventsourcing.ratio(name, "raw")),
                        "",
                    ]
                )
    return rows


def _how_to_read(run: Run) -> list[str]:
    return [
        "## How to read this",
        "",
        text(
            "Each comparison runs its variants in one process, against the same server (or ",
            "SQLite files side by side), interleaved: a round runs a batch of every variant, ",
            "alternating operation by operation (A B C A B C…, the first one rotating from ",
            "round to round), and a variant's figure for the round is the mean cost per ",
            "operation of its batch (the mean, so periodic work such as the snapshot every 200 ",
            "events or a WAL checkpoint is in it, amortised; Python's garbage collector is off ",
            "inside a round and run between rounds, as `timeit` does, so that one variant's ",
            "garbage is not collected on another's clock). Ratios are taken inside each ",
            "round, between operations that ran side by side, and the tables give the median ",
            "over the rounds with the 25th–75th percentiles (p25–p75) and, for the main ratios, ",
            "the min–max of the round figures: the median is the figure, the spread says how ",
            "far to trust it. Microseconds depend on how fast this machine's disk flushes, ",
            "which varies by the second on a shared virtual disk (see the load averages below); ",
            "ratios against a raw insert shrink when flushes are slow and grow when they are ",
            "fast, so section 1 also gives the yield's extra cost in microseconds, which does ",
            "not depend on the disk. Section 5 (concurrent writer processes) is the exception to ",
            "one process: its writers run in processes of their own, in timed windows, as it ",
            "describes. Nothing here is asserted by the tests. ",
            f"Mode: {run.profile.name}; every write is durable (`synchronous=FULL`, ",
            "`synchronous_commit=on`, `fsync=on`) except the untimed population of section 2.",
        ),
        "",
    ]


def _summary(
    results: list[BackendResults],
    sizes: tuple[int, ...],
    scale: ScaleResults | None,
    flow_rows: list[list[str]],
) -> list[str]:
    rows = _summary_rows(results, sizes)
    if scale is not None:
        rows += scale_summary_rows(scale)
    if flow_rows:
        rows.append(
            [
                (
                    "**Read side and completion signals** (details in "
                    "[benchmarks-flow.md](benchmarks-flow.md))"
                ),
                "",
                "",
                "",
            ]
        )
        rows += flow_rows
    header = ["figure", "goal", "measured: median (p25–p75)", "verdict"]
    return ["## Summary", "", table(header, rows)]


def render(
    run: Run,
    results: list[BackendResults],
    *,
    scale: ScaleResults | None = None,
    flow_rows: list[list[str]] | None = None,
    startup: StartupResults | None = None,
    replay: ReplayResults | None = None,
) -> str:
    """The whole report: sections 1 to 4, then 5 to 7 if measured; ``flow_rows`` in the summary."""
    sizes = run.profile.sizes
    minutes, seconds = divmod(round(run.seconds), 60)
    lines = [
        "# Benchmarks",
        "",
        text(
            "Written by `python -m bench.run`, which runs every benchmark of the project: rerun ",
            "the command below to regenerate this file and ",
            "[benchmarks-flow.md](benchmarks-flow.md) (read models and completion signals, ",
            "whose figures are summarised here too).",
        ),
        "",
        f"- Command: `{run.command}`",
        text(
            f"- Date: {run.started:%Y-%m-%d %H:%M} UTC; mode: {run.profile.name}; ",
            f"wall time {minutes} min {seconds} s",
        ),
        "",
        *_summary(results, sizes, scale, flow_rows or []),
        "",
        *_how_to_read(run),
        "## Machine",
        "",
        table(["", ""], [[key, value] for key, value in run.facts.items()]),
        "",
    ]
    if results:
        lines += [*_section_raw(results), *_section_history(results, sizes)]
    for backend in results:
        lines += _section_tasker(backend, sizes)
        lines += _section_eventsourcing(backend)
    if scale is not None:
        lines += scale_sections(scale)
    if startup is not None:
        lines += startup_section(startup)
    if replay is not None:
        lines += replay_section(replay)
    return "\n".join(lines).rstrip() + "\n"
