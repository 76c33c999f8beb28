"""Markdown pieces of the report: numbers, spreads, tables, the cost breakdown."""

# ruff: noqa: RUF001  (the report's typography: multiplication sign, en dash, division sign)

from __future__ import annotations

from typing import TYPE_CHECKING

from bench._harness import Spread

if TYPE_CHECKING:
    from bench._harness import Comparison

__all__ = [
    "breakdown",
    "cost_table",
    "micros",
    "micros_spread",
    "span",
    "table",
    "text",
    "times",
    "times_spread",
    "verdict",
]


def text(*parts: str) -> str:
    """One paragraph from pieces (keeps long sentences readable in the source)."""
    return "".join(parts)


def micros(value: float) -> str:
    """Microseconds, to three significant figures or so."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def times(value: float) -> str:
    """A ratio."""
    return f"{value:.2f}×"


def micros_spread(spread: Spread) -> str:
    """Median (p25 to p75), in microseconds."""
    return f"{micros(spread.median)} ({micros(spread.p25)} to {micros(spread.p75)})"


def times_spread(spread: Spread) -> str:
    """Median ratio (p25 to p75)."""
    return f"{times(spread.median)} ({spread.p25:.2f}–{spread.p75:.2f})"


def verdict(value: float, goal: float) -> str:
    """Whether a median meets its goal (a ceiling)."""
    return "met" if value <= goal else "**missed**"


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def span(bounds: tuple[int, int]) -> str:
    """A range of counts."""
    return f"{bounds[0]:,}–{bounds[1]:,}"


_LABELS = {
    "raw": "raw single-row INSERT + COMMIT (baseline)",
    "+lock": "raw INSERT + `pg_advisory_xact_lock` in the same statement",
    "+notify": "raw INSERT + `pg_notify` in the same statement",
    "+lock+notify": "raw INSERT + lock + `pg_notify`, scalar parameters "
    "(the ledger's one-event statement while appends took the advisory lock, schema 1)",
    "+unnest": "raw INSERT from `unnest` of one-element arrays (the ledger's form for "
    "several events)",
    "ckl-sql": "the ledger's one-event append statement, exactly as its recorder runs it, on "
    "the raw connection",
    "recorder": "`ledger.recorder.insert_events([row])`, the row built beforehand",
    "yield": "**`ledger.checkpoint_yield(...)`**",
    "yield-memory": "`checkpoint_yield` on `memory://` (no disk: the CPU cost)",
    "eventsourcing": "eventsourcing: the aggregate's `@event` method + `Application.save()` "
    "of the one new event (its default recorder)",
    "eventsourcing-save": "eventsourcing: `Application.save()` alone (the event triggered "
    "beforehand, not counted)",
    "dbos-step": "DBOS: one `@DBOS.step()` call inside a running workflow (its output "
    "checkpointed)",
    "dbos-workflow": "DBOS: a whole `@DBOS.workflow()` of one step, started and awaited",
}


def cost_table(result: Comparison, baseline: str, against: str = "× raw") -> str:
    """Each variant's cost and its ratio to ``baseline``, round by round."""
    rows = []
    for name in result.names:
        cost = result.cost_us(name)
        ratio = result.ratio(name, baseline)
        rows.append(
            [
                _LABELS.get(name, name),
                micros(cost.median),
                f"{micros(cost.p25)}–{micros(cost.p75)}",
                f"**{times(ratio.median)}**",
                f"{ratio.p25:.2f}–{ratio.p75:.2f}",
                f"{ratio.low:.2f}–{ratio.high:.2f}",
                micros(result.cpu_us(name).median),
            ]
        )
    header = [
        "variant",
        "µs/op",
        "p25–p75",
        against,
        "× p25–p75",
        "× min–max",
        "client CPU µs/op (user + system)",
    ]
    return table(header, rows)


_STEPS = [
    ("+lock", "raw", "the advisory lock alone"),
    ("+notify", "raw", "`pg_notify` alone"),
    ("+unnest", "raw", "`unnest` alone"),
    ("ckl-sql", "raw", "the ledger's append statement over raw"),
    ("recorder", "ckl-sql", "the connection pool and the recorder's Python around it"),
    ("recorder", "raw", "the recorder (its statement and transaction handling) over raw"),
    ("yield", "recorder", "the ledger above the recorder: validation, event, mapper, state"),
    ("yield", "raw", "the whole yield over raw"),
]


def breakdown(result: Comparison) -> str:
    """Where a yield's time goes: differences between the variants of section 1."""
    lines = []
    names = set(result.names)
    for name, against, what in _STEPS:
        if {name, against} <= names:
            if (name, against) == ("recorder", "raw") and "ckl-sql" in names:
                continue
            lines.append(f"- {what}: {micros_spread(result.difference_us(name, against))} µs")
    if "yield-memory" in names:
        memory = micros_spread(result.cost_us("yield-memory"))
        lines.append(f"- a whole `checkpoint_yield` on `memory://`, no disk at all: {memory} µs")
    cpu = Spread.of(
        [
            (a - b) * 1e6
            for a, b in zip(result.cpu_per_round["yield"], result.cpu_per_round["raw"], strict=True)
        ]
    )
    lines.append(f"- client CPU of a yield over that of a raw insert: {micros_spread(cpu)} µs")
    title = "Where the time goes (median of the per-round differences, p25 to p75):"
    return title + "\n\n" + "\n".join(lines)
