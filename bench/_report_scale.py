"""docs/benchmarks.md, sections 5 and 6: concurrent writers, and DBOS Transact."""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash, division sign)

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bench._markdown import cost_table, micros_spread, table, text, times, times_spread

if TYPE_CHECKING:
    from bench._dbos_peer import DbosResults
    from bench._harness import Spread
    from bench._scale import Concurrency, ScaleProfile

__all__ = ["SCALE_GOAL", "ScaleResults", "scale_sections", "scale_summary_rows"]

SCALE_GOAL = 0.7
"""Ours ÷ raw events/s with the most writers: at least this (issue 7)."""


@dataclass
class ScaleResults:
    """What the concurrency and DBOS sections measured."""

    profile: ScaleProfile
    concurrency: list[Concurrency] = field(default_factory=list)
    dbos: DbosResults | None = None
    dbos_error: str | None = None
    """Why DBOS could not be measured, when it could not."""


def _floor(value: float, goal: float) -> str:
    return "met" if value >= goal else "**missed**"


def _rate(spread: Spread) -> str:
    return f"{spread.median:,.0f} ({spread.p25:,.0f}–{spread.p75:,.0f})"


def _ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _percentile(values: list[float], cut: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[cut - 1]


def _exactly_once(result: Concurrency) -> tuple[int, int]:
    """Events checked, and anomalies (skipped + duplicated + out of order + unexpected)."""
    checks = result.checks.values()
    bad = sum(c.skipped + c.duplicated + c.out_of_order + c.unexpected for c in checks)
    return sum(c.committed for c in checks), bad


def scale_summary_rows(scale: ScaleResults) -> list[list[str]]:
    """Rows of the summary table."""
    rows: list[list[str]] = []
    for result in scale.concurrency:
        top = max(result.writers)
        ratio = result.ratio(top)
        untailed = result.ratio(top, "ledger-untailed")
        rows.append(
            [
                (
                    f"{result.backend}: {top} writer processes, our total events/s ÷ {top} raw "
                    "INSERT + COMMIT writers (a tail following)"
                ),
                f"≥ {SCALE_GOAL}×",
                (
                    f"{times_spread(ratio)}: {result.rate('ledger', top).median:,.0f} against "
                    f"{result.rate('raw', top).median:,.0f} events/s; with the tail paused "
                    f"{times_spread(untailed)}"
                ),
                _floor(ratio.median, SCALE_GOAL),
            ]
        )
        checked, bad = _exactly_once(result)
        lags = result.lags.get(top, [])
        rows.append(
            [
                f"{result.backend}: the tail (`run_stream`, another process), live or catching up",
                "every event exactly once, in order",
                (
                    f"{checked:,} events checked, {bad} skipped/duplicated/out of order; lag with "
                    f"{top} writers p50 {_ms(_percentile(lags, 50))} ms, "
                    f"p99 {_ms(_percentile(lags, 99))} ms"
                ),
                "met" if bad == 0 and checked > 0 else "**missed**",
            ]
        )
    if scale.dbos is not None:
        step = scale.dbos.step.ratio("dbos-step", "yield")
        workflow = scale.dbos.workflow.ratio("dbos-workflow", "yield")
        rows.append(
            [
                "PostgreSQL: DBOS step checkpoint ÷ our `checkpoint_yield`",
                "> 1× (ours faster)",
                times_spread(step),
                "met" if step.median > 1 else "**missed**",
            ]
        )
        rows.append(
            [
                "PostgreSQL: DBOS one-step workflow ÷ our `checkpoint_yield`",
                "reference",
                times_spread(workflow),
                "",
            ]
        )
    elif scale.dbos_error is not None:
        rows.append(["PostgreSQL: DBOS step checkpoint", "> 1×", "not measured (section 6)", ""])
    return rows


def _concurrency_backend(result: Concurrency) -> list[str]:
    rows = []
    first = min(result.writers)
    for count in result.writers:
        check = result.checks.get(count)
        lags = result.lags.get(count, [])
        cpu = statistics.median(result.tail_cpu.get(count, [float("nan")]))
        scaling = statistics.median(
            a / b
            for a, b in zip(
                result.rates["ledger"][count], result.rates["ledger"][first], strict=True
            )
        )
        rows.append(
            [
                str(count),
                _rate(result.rate("raw", count)),
                _rate(result.rate("ledger", count)),
                f"**{times_spread(result.ratio(count))}**",
                _rate(result.rate("ledger-untailed", count)),
                times_spread(result.ratio(count, "ledger-untailed")),
                times(scaling),
                f"{_ms(_percentile(lags, 50))} / {_ms(_percentile(lags, 99))}",
                (
                    f"{check.committed:,}: {check.skipped} / {check.duplicated} / "
                    f"{check.out_of_order} / {check.unexpected}"
                    if check
                    else "—"
                ),
                f"{cpu * 1e6:,.0f}",
            ]
        )
    header = [
        "writers",
        "raw events/s",
        "ours events/s (tail following)",
        "ours ÷ raw",
        "ours, tail paused, events/s",
        "tail paused ÷ raw",
        "ours × 1 writer",
        "tail lag p50 / p99 ms",
        "tail: events checked: skipped / duplicated / out of order / unexpected",
        "tail CPU µs/event",
    ]
    top = max(result.writers)
    ratio = result.ratio(top).median
    where = (
        f"SQLite, its `poll_interval` set to {result.poll_interval * 1e3:.0f} ms (no "
        "notifications across processes: the tail polls)"
        if result.kind == "sqlite"
        else "PostgreSQL, woken by `LISTEN/NOTIFY` (default settings)"
    )
    return [
        f"### {result.backend}",
        "",
        text(
            f"{result.rounds} rounds × one {result.window:g} s window per writer count and ",
            f"variant. Tail: {where}. Events/s and ratios: median (p25–p75) over the rounds; ",
            "lag: every event of our windows.",
        ),
        "",
        table(header, rows),
        "",
        text(
            f"Goal ≥ {SCALE_GOAL}× with {top} writers: {times(ratio)} — ",
            f"{_floor(ratio, SCALE_GOAL)} (tail paused: ",
            f"{times(result.ratio(top, 'ledger-untailed').median)}). Lag: windows with the tail ",
            "following; events checked: both kinds of windows.",
        ),
        "",
    ]


def _section_concurrency(scale: ScaleResults) -> list[str]:
    if not scale.concurrency:
        return []
    out = [
        "## 5. Concurrent writer processes",
        "",
        text(
            "N writer processes (N = 1, 2, 4, 8) append at once, each to its own checkpoint, ",
            "each as fast as it can: `checkpoint_yield` in one window, and in another, the same ",
            "N processes each running raw single-row INSERT + COMMITs of section 1 (same ",
            "driver, same durability, same row shape and size, the same server or a SQLite ",
            "file beside the ledger's). Every writer starts at one agreed moment and stops at ",
            "the window's end; a window's figure is the appends committed inside it over its ",
            "length. The order of the writer counts and of the variants rotates from round to ",
            "round, so the ratio ours ÷ raw is taken per round between windows that ran side by ",
            "side. The processes (and the connections they open) are started once, before the ",
            "rounds, and warmed up with three appends each. A tail process follows the run with ",
            "`run_stream(ledger, run_id)` (the public API, its default batch size). Our writers ",
            "run twice per round: once with the tail following live (it competes for the same ",
            "2 CPUs, which the raw writers do not share: the goal is read on this one), once ",
            "with the tail paused (its subscription disposed; it subscribes again after the ",
            "window, from its last position, and catches up). After each of our windows the ",
            "tail's deliveries are checked against what every writer committed: each committed ",
            "event delivered exactly once, positions strictly increasing, nothing else between ",
            "them. The lag of an event runs from its commit ",
            "(read in the writer's `Ledger.add_listener` callback) to the tail's subscriber ",
            "receiving it (`CLOCK_MONOTONIC` is one clock for all processes); it includes the ",
            "time the reader waits for older transactions still in flight, if the append path ",
            "makes it wait. Issue 7's goal: with 8 writers, ours ≥ 0.7× raw with zero skipped ",
            "events. Measured on the code at the commit in the machine table, whatever its ",
            "PostgreSQL append path is.",
        ),
        "",
    ]
    for result in scale.concurrency:
        out += _concurrency_backend(result)
    return out


def _section_dbos(scale: ScaleResults) -> list[str]:
    out = ["## 6. DBOS Transact: a step checkpoint on the same PostgreSQL", ""]
    dbos = scale.dbos
    if dbos is None:
        if scale.dbos_error is None:
            return []
        return [*out, f"Not measured: DBOS could not run here: `{scale.dbos_error}`.", ""]
    step = dbos.step.ratio("dbos-step", "yield")
    per_round = dbos.step.operations["yield"] // max(1, dbos.step.rounds)
    out += [
        text(
            f"DBOS Transact {dbos.version} (`pip install dbos`, the `bench` extra) records a ",
            "workflow's input when it starts, each step's output when the step returns, and ",
            "the outcome when it ends, in its system database on PostgreSQL ",
            "(`dbos.workflow_status`, `dbos.operation_outputs`); a resumed workflow gets a ",
            "recorded step's output back instead of running it again. So a batch job's ",
            "checkpoint in DBOS is a step. Its system database is a database of its own on the ",
            f"ledger's server ({dbos.durability}, set on that database; DBOS does not change ",
            "it), configured with `DBOSConfig(name, system_database_url)` and nothing else. ",
            "`DBOS.launch()` (migrations, background threads) is not counted. A step call ",
            "includes DBOS's read of an already recorded output, the call, serialising the ",
            "output (pickle, base64) and the insert of its row (one durable commit). The step ",
            "returns the cursor, items_processed and accumulated_results a yield records: ",
            f"{dbos.output_bytes:.0f} bytes stored on average against our {dbos.state_bytes}. ",
            "The comparison runs inside one long workflow (every step a checkpoint of the ",
            "same job), interleaved with our yield and section 1's raw insert: ",
            f"{dbos.step.rounds} rounds × {per_round} operations per variant. DBOS recorded ",
            f"{dbos.steps_recorded:,} step outputs for {dbos.steps_called:,} step calls.",
        ),
        "",
        cost_table(dbos.step, "raw"),
        "",
        text(
            f"DBOS step ÷ our `checkpoint_yield`: {times_spread(step)}; the step costs ",
            f"{micros_spread(dbos.step.difference_us('dbos-step', 'yield'))} µs more than a ",
            "yield (median of the per-round differences). Goal (issue 7): our yield faster.",
        ),
        "",
        text(
            "A job that makes each batch a workflow of its own also pays for the workflow's ",
            "status row and outcome: a one-step workflow, started and awaited, against our ",
            f"yield ({dbos.workflow.rounds} rounds):",
        ),
        "",
        cost_table(dbos.workflow, "yield", "× yield"),
        "",
    ]
    return out


def scale_sections(scale: ScaleResults) -> list[str]:
    """Sections 5 and 6."""
    return [*_section_concurrency(scale), *_section_dbos(scale)]
