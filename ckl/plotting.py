"""Charts of a run's progress and of the failure audit (matplotlib, an optional extra).

```python
from ckl.plotting import plot_failures, plot_run_progress

plot_run_progress(views.timeline("run-42"), "run-42.png")       # items_processed over time
plot_failures(views.failures(run_id="run-42"), "failures.png")  # by error type and by batch
```

In a notebook, draw onto axes of your own and let the notebook show them:
``draw_run_progress(ax, entries)`` and ``draw_failures(fig, records)``.

matplotlib is imported only when something is drawn; without it every function here raises
:class:`ledger.PlotUnavailable`. Files are written through matplotlib's object API on the Agg
canvas, never through ``pyplot``: writing a PNG needs no display and leaves the backend of a
notebook or a GUI session alone. Bad input raises :class:`ledger.InvalidInput` before anything
is drawn, and a PNG appears at its path only once it is complete (it is written next to it, then
renamed).
"""

from __future__ import annotations

import itertools
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from uuid import uuid4

from ledger import (
    Cancelled,
    Claimed,
    Completed,
    Created,
    Failed,
    InvalidInput,
    PlotUnavailable,
    Reset,
    Retried,
    Yielded,
    checkpoint_id_for,
)
from projections.models import FailureRecord, TimelineEntry

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "draw_failures",
    "draw_run_progress",
    "plot_failures",
    "plot_run_progress",
]

MarkKind = Literal[
    "completed", "transient failure", "permanent failure", "retry", "reset", "takeover", "cancelled"
]

# Shapes differ as well as colours, so the kinds stay apart in grey print and for colour-blind
# readers; the colours stay clear of the first batch colours of matplotlib's default cycle.
_MARK_STYLE: dict[MarkKind, tuple[str, str, float]] = {
    "completed": ("o", "#2ca02c", 7.0),
    "transient failure": ("v", "#f5a623", 10.0),
    "permanent failure": ("X", "#d62728", 12.0),
    "retry": ("^", "#4c6ef5", 7.0),
    "reset": ("s", "#9467bd", 8.0),
    "takeover": ("P", "#15aabf", 9.0),
    "cancelled": ("*", "#495057", 12.0),
}
_KIND_COLOUR = {
    True: _MARK_STYLE["transient failure"][1],
    False: _MARK_STYLE["permanent failure"][1],
}
_PNG_DPI = 100


# ------------------------------------------------------------------------- run progress


def plot_run_progress(
    entries: Sequence[TimelineEntry],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Write a PNG of ``items_processed`` over time, one step line per batch, to ``path``.

    ``entries`` is one run's timeline (``Projections.timeline(run_id)``). Failures are marked
    (transient and permanent with different markers), and so are retries, resets, takeovers
    of an expired lease, cancels and completions; the legend names them.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidInput: no entries, entries of several runs, or a path that is not ``.png`` or
            whose directory does not exist; no file is written.
        PlotUnavailable: matplotlib is not installed.
    """
    target = _png_target(path)
    progress = _RunProgressLines.build(entries)
    figure = _agg_figure(figsize=(10.0, 5.0))
    _draw_progress(figure.add_subplot(), progress, title)
    return _save_png(figure, target)


def draw_run_progress(
    ax: Axes, entries: Sequence[TimelineEntry], *, title: str | None = None
) -> Axes:
    """Draw what :func:`plot_run_progress` writes onto ``ax`` (say, a notebook's axes).

    Raises:
        InvalidInput: no entries, or entries of several runs; nothing is drawn.
        PlotUnavailable: matplotlib is not installed.
    """
    _require_matplotlib()
    _draw_progress(ax, _RunProgressLines.build(entries), title)
    return ax


@dataclass(frozen=True)
class _Mark:
    kind: MarkKind
    batch_index: int
    at: datetime
    items: int
    note: str = ""


@dataclass
class _RunProgressLines:
    """One run's timeline as step lines (per batch) and marks; no matplotlib needed."""

    run_id: str | None
    start: datetime
    lines: dict[int, tuple[list[datetime], list[int]]] = field(default_factory=dict)
    marks: list[_Mark] = field(default_factory=list)

    @classmethod
    def build(cls, entries: Sequence[TimelineEntry]) -> _RunProgressLines:
        ordered = _checked_timeline(entries)
        progress = cls(run_id=_run_id_of(ordered), start=ordered[0].at)
        items: dict[int, int] = {}
        for entry in ordered:
            batch, event, at = entry.batch_index, entry.event, entry.at
            before = items.get(batch, event.items_processed if isinstance(event, Failed) else 0)
            after = before
            if isinstance(event, Yielded):
                after = event.items_processed
            elif isinstance(event, Reset):
                after = 0
                progress.marks.append(_Mark("reset", batch, at, before, event.reason))
            elif isinstance(event, Failed):
                kind: MarkKind = "transient failure" if event.transient else "permanent failure"
                progress.marks.append(_Mark(kind, batch, at, before, event.error_type))
            elif isinstance(event, Retried):
                progress.marks.append(_Mark("retry", batch, at, before))
            elif isinstance(event, Completed):
                progress.marks.append(_Mark("completed", batch, at, before))
            elif isinstance(event, Cancelled):
                progress.marks.append(_Mark("cancelled", batch, at, before, event.reason))
            elif isinstance(event, Claimed) and event.taken_over:
                owner = event.previous_owner or ""
                progress.marks.append(_Mark("takeover", batch, at, before, owner))
            items[batch] = after
            times, values = progress.lines.setdefault(batch, ([], []))
            times.append(at)
            values.append(after)
        return progress

    def scale(self) -> tuple[float, str]:
        """Seconds per unit of the time axis, and the unit's name, for this run's span."""
        end = max(times[-1] for times, _ in self.lines.values())
        span = (end - self.start).total_seconds()
        if span < 120:  # noqa: PLR2004  (two minutes and under read best in seconds)
            return 1.0, "seconds"
        if span < 2 * 3600:
            return 60.0, "minutes"
        return 3600.0, "hours"

    def offset(self, at: datetime, unit: float) -> float:
        return (at - self.start).total_seconds() / unit


def _draw_progress(ax: Axes, progress: _RunProgressLines, title: str | None) -> None:
    unit, unit_name = progress.scale()
    for batch in sorted(progress.lines):
        times, values = progress.lines[batch]
        xs = [progress.offset(at, unit) for at in times]
        ax.step(xs, values, where="post", linewidth=1.8, label=f"batch {batch}")
    for kind, (marker, colour, size) in _MARK_STYLE.items():
        marks = [mark for mark in progress.marks if mark.kind == kind]
        if not marks:
            continue
        ax.plot(
            [progress.offset(mark.at, unit) for mark in marks],
            [mark.items for mark in marks],
            linestyle="none",
            marker=marker,
            markersize=size,
            markerfacecolor=colour,
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=4 if kind == "retry" else 3,  # a retry sits on its failure: keep it seen
            label=kind,
        )
        if kind.endswith("failure"):
            for mark in marks:
                ax.annotate(
                    mark.note,
                    (progress.offset(mark.at, unit), mark.items),
                    xytext=(6, 6),
                    textcoords="offset points",
                    fontsize=8,
                    color=colour,
                )
    ax.set_xlabel(
        f"{unit_name} since the run's first event ({progress.start:%Y-%m-%d %H:%M:%S %Z})"
    )
    ax.set_ylabel("items_processed")
    ax.set_ylim(bottom=0)
    ax.grid(visible=True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    run = f"run {progress.run_id}: " if progress.run_id else ""
    ax.set_title(title if title is not None else f"{run}items processed per batch")


def _checked_timeline(entries: Sequence[TimelineEntry]) -> list[TimelineEntry]:
    """The entries in log order, each a TimelineEntry, each once."""
    if isinstance(entries, (str, bytes)) or not hasattr(entries, "__iter__"):
        raise InvalidInput("entries", f"must be a sequence of TimelineEntry, got {entries!r:.80}")
    ordered = list(entries)
    if not ordered:
        raise InvalidInput(
            "entries",
            "is empty: there is nothing to plot (is the run id right, and are the "
            "projections caught up? Projections.sync() waits for them)",
        )
    wrong = [entry for entry in ordered if not isinstance(entry, TimelineEntry)]
    if wrong:
        raise InvalidInput(
            "entries", f"must all be TimelineEntry (Projections.timeline), got {wrong[0]!r:.80}"
        )
    ordered.sort(key=lambda entry: entry.position)
    for earlier, later in itertools.pairwise(ordered):
        if earlier.position == later.position:
            raise InvalidInput("entries", f"position {later.position} appears twice")
    return ordered


def _run_id_of(ordered: list[TimelineEntry]) -> str | None:
    """The run's id (from its ``Created`` events), checked against every entry's checkpoint."""
    run_ids = sorted({entry.event.run_id for entry in ordered if isinstance(entry.event, Created)})
    if len(run_ids) > 1:
        shown = ", ".join(repr(run_id) for run_id in run_ids[:3])
        raise InvalidInput(
            "entries", f"come from {len(run_ids)} runs ({shown}); plot one run's timeline at a time"
        )
    checkpoints: dict[int, set[UUID]] = defaultdict(set)
    for entry in ordered:
        checkpoints[entry.batch_index].add(entry.event.originator_id)
    shared = sorted(batch for batch, ids in checkpoints.items() if len(ids) > 1)
    if shared:
        raise InvalidInput(
            "entries",
            f"hold {len(checkpoints[shared[0]])} different checkpoints for batch {shared[0]}, "
            "so they come from several runs; plot one run's timeline at a time",
        )
    if not run_ids:
        return None  # a timeline read from a later position: nothing to name or check it by
    run_id = run_ids[0]
    for entry in ordered:
        if entry.event.originator_id != checkpoint_id_for(run_id, entry.batch_index):
            raise InvalidInput(
                "entries",
                f"position {entry.position} is not an event of run {run_id!r}; "
                "plot one run's timeline at a time",
            )
    return run_id


# ------------------------------------------------------------------------- failure audit


def plot_failures(
    records: Sequence[FailureRecord],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Write a PNG of failure counts by error type and by batch, transient vs permanent.

    ``records`` is the failure audit (``Projections.failures(...)``), of one run or several
    (then batches are labelled ``run/batch``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        InvalidInput: no records, or a path that is not ``.png`` or whose directory does not
            exist; no file is written.
        PlotUnavailable: matplotlib is not installed.
    """
    target = _png_target(path)
    checked = _checked_failures(records)
    figure = _agg_figure(figsize=(11.0, 4.5))
    _draw_failure_counts(figure, checked, title)
    return _save_png(figure, target)


def draw_failures(
    fig: Figure, records: Sequence[FailureRecord], *, title: str | None = None
) -> tuple[Axes, Axes]:
    """Draw what :func:`plot_failures` writes onto ``fig``; returns (by error type, by batch).

    Raises:
        InvalidInput: no records; nothing is drawn.
        PlotUnavailable: matplotlib is not installed.
    """
    _require_matplotlib()
    return _draw_failure_counts(fig, _checked_failures(records), title)


def _checked_failures(records: Sequence[FailureRecord]) -> list[FailureRecord]:
    if isinstance(records, (str, bytes)) or not hasattr(records, "__iter__"):
        raise InvalidInput("records", f"must be a sequence of FailureRecord, got {records!r:.80}")
    checked = list(records)
    if not checked:
        raise InvalidInput(
            "records", "is empty: there are no failures to plot (check the audit's filters)"
        )
    wrong = [record for record in checked if not isinstance(record, FailureRecord)]
    if wrong:
        raise InvalidInput(
            "records", f"must all be FailureRecord (Projections.failures), got {wrong[0]!r:.80}"
        )
    return checked


def _draw_failure_counts(
    fig: Figure, records: list[FailureRecord], title: str | None
) -> tuple[Axes, Axes]:
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415  (matplotlib is optional)

    by_type, by_batch = fig.subplots(1, 2, width_ratios=(1.0, 1.3))
    runs = sorted({record.run_id for record in records})

    def batch_label(key: tuple[str, int]) -> str:
        return f"batch {key[1]}" if len(runs) == 1 else f"{_short(key[0])}/{key[1]}"

    types = Counter(record.error_type for record in records)
    type_names = sorted(types, key=lambda name: (-types[name], name))
    batches = sorted({(record.run_id, record.batch_index) for record in records})
    left = [0] * len(type_names)
    bottom = [0] * len(batches)
    for transient in (True, False):
        kind = "transient" if transient else "permanent"
        chosen = [record for record in records if record.transient is transient]
        per_type = Counter(record.error_type for record in chosen)
        per_batch = Counter((record.run_id, record.batch_index) for record in chosen)
        widths = [per_type[name] for name in type_names]
        heights = [per_batch[key] for key in batches]
        colour = _KIND_COLOUR[transient]
        by_type.barh(
            type_names, widths, left=left, height=0.6, color=colour, edgecolor="black", label=kind
        )
        by_batch.bar(
            [batch_label(key) for key in batches],
            heights,
            bottom=bottom,
            width=0.6,
            color=colour,
            edgecolor="black",
            label=kind,
        )
        left = [a + b for a, b in zip(left, widths, strict=True)]
        bottom = [a + b for a, b in zip(bottom, heights, strict=True)]
    by_type.invert_yaxis()  # the most frequent error type on top
    by_type.set_title("by error type")
    by_type.set_xlabel("failures")
    by_type.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_batch.set_title("by batch")
    by_batch.set_ylabel("failures")
    by_batch.yaxis.set_major_locator(MaxNLocator(integer=True))
    by_batch.tick_params(axis="x", labelrotation=30 if len(batches) > 6 else 0)  # noqa: PLR2004
    # Stacked bars make each total a sticky edge, which margins cannot pass: set the limits.
    by_type.set_xlim(0, max(left) * 1.1)
    by_batch.set_ylim(0, max(bottom) * 1.1)
    for ax, axis in ((by_type, "x"), (by_batch, "y")):
        ax.grid(visible=True, axis=axis, alpha=0.3)
    handles, labels = by_batch.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, frameon=False)
    transients = sum(record.transient for record in records)
    where = f"run {runs[0]}" if len(runs) == 1 else f"{len(runs)} runs"
    fig.suptitle(
        title
        if title is not None
        else f"{where}: {len(records)} failures "
        f"({transients} transient, {len(records) - transients} permanent)"
    )
    return by_type, by_batch


def _short(run_id: str, width: int = 18) -> str:
    return run_id if len(run_id) <= width else f"{run_id[: width - 1]}…"


# ------------------------------------------------------------------------- files


def _require_matplotlib() -> None:
    try:
        import matplotlib as mpl  # noqa: F401, PLC0415  (optional: imported on first use)
    except ImportError as exc:
        raise PlotUnavailable(str(exc)) from exc


def _png_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, once it is certain a PNG can be written there."""
    try:
        target = Path(os.fspath(path))
    except TypeError as exc:
        raise InvalidInput(
            "path", f"must be a str or os.PathLike, got {type(path).__name__}"
        ) from exc
    if target.suffix.lower() != ".png":
        raise InvalidInput("path", f"{str(target)!r} does not end in .png; charts are PNG files")
    if not target.parent.is_dir():
        raise InvalidInput(
            "path", f"directory {str(target.parent)!r} does not exist; create it first"
        )
    if target.is_dir():
        raise InvalidInput("path", f"{str(target)!r} is a directory")
    return target


def _agg_figure(*, figsize: tuple[float, float]) -> Figure:
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg, no display needed
    return figure


def _save_png(figure: Figure, target: Path) -> Path:
    """Render beside ``target`` under a unique name, then rename: never a half-written PNG."""
    temporary = target.with_name(f".{target.name}.{uuid4().hex}.tmp")
    try:
        with temporary.open("xb") as file:  # "x": never someone else's file; mode from umask
            figure.savefig(file, format="png", dpi=_PNG_DPI)
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
