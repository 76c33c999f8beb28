"""ckl.plotting: charts drawn from a real run on a SQLite file, and bad input refused.

The charts are checked twice: as files (real PNGs, decoded by Pillow) and as drawings (the
lines and markers on the axes carry the run's numbers), so a chart that is written but wrong
fails too.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from PIL import Image

from ckl.plotting import (
    draw_failures,
    draw_run_progress,
    plot_failures,
    plot_run_progress,
)
from ledger import InvalidInput, Ledger, LedgerError, PlotUnavailable
from projections import FailureRecord, Projections, TimelineEntry
from tests.streams._support import ROOT

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from matplotlib.axes import Axes


class Run:
    """One run recorded on a real store, and what its projections say about it."""

    def __init__(self, timeline: list[TimelineEntry], failures: list[FailureRecord]) -> None:
        self.timeline, self.failures = timeline, failures


def record_run(ledger: Ledger, run_id: str) -> None:
    """Record a run with every kind of event.

    Batch 0 completes; batch 1 fails transiently, is retried and completes; batch 2 fails
    permanently, is reset, and is left open at 10 items.
    """
    first = ledger.create_checkpoint(run_id, 0, total_batches=3)
    ledger.checkpoint_yield(first, cursor=50, items_processed=50)
    ledger.checkpoint_yield(first, cursor=100, items_processed=100)
    ledger.complete_checkpoint(first, result={"rows": 100})

    second = ledger.create_checkpoint(run_id, 1, total_batches=3)
    ledger.checkpoint_yield(second, cursor=40, items_processed=40)
    ledger.fail_checkpoint(second, TimeoutError("upstream slow"), transient=True)
    ledger.retry_checkpoint(second)
    ledger.checkpoint_yield(second, cursor=100, items_processed=100)
    ledger.complete_checkpoint(second, result={"rows": 100})

    third = ledger.create_checkpoint(run_id, 2, total_batches=3)
    ledger.checkpoint_yield(third, cursor=30, items_processed=30)
    ledger.fail_checkpoint(third, ValueError("row 31 is malformed"), transient=False)
    ledger.reset_checkpoint(third, reason="row 31 fixed")
    ledger.checkpoint_yield(third, cursor=10, items_processed=10)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty directory for the charts (the SQLite store lives beside it)."""
    charts = tmp_path / "out"
    charts.mkdir()
    return charts


@pytest.fixture
def views(sqlite_url: str) -> Iterator[Projections]:
    with Ledger.open(sqlite_url) as ledger, Projections(ledger) as projections:
        yield projections


@pytest.fixture
def run(views: Projections) -> Run:
    run_id = f"plot-{uuid4().hex[:8]}"
    record_run(views.ledger, run_id)
    views.sync()
    return Run(views.timeline(run_id), views.failures(run_id=run_id))


def assert_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    with Image.open(path) as image:
        assert image.size == size


def xs_ys(line: Line2D) -> tuple[list[float], list[float]]:
    return (
        np.asarray(line.get_xdata(), dtype=float).tolist(),
        np.asarray(line.get_ydata(), dtype=float).tolist(),
    )


def marks(ax: Axes) -> dict[str, list[tuple[float, float]]]:
    """The marker series on the axes, by legend label: (x, y) of each marker."""
    found: dict[str, list[tuple[float, float]]] = {}
    for line in ax.get_lines():
        assert isinstance(line, Line2D)
        if line.get_linestyle() == "None":
            found[str(line.get_label())] = list(zip(*xs_ys(line), strict=True))
    return found


# ------------------------------------------------------------------------- run progress


def test_run_progress_is_written_as_a_png_and_returns_its_path(run: Run, out: Path) -> None:
    target = out / "progress.png"
    written = plot_run_progress(run.timeline, str(target), title="nightly import")
    assert written == target
    assert_png(target, (1000, 500))
    assert [path.name for path in out.iterdir()] == ["progress.png"]  # no temporary left


def test_run_progress_replaces_an_existing_chart(run: Run, out: Path) -> None:
    target = out / "progress.PNG"
    target.write_bytes(b"an old chart")
    plot_run_progress(run.timeline, target)
    assert_png(target, (1000, 500))


def test_each_batch_is_a_step_line_of_its_items_processed(run: Run) -> None:
    ax = draw_run_progress(Figure().add_subplot(), run.timeline)
    lines = {
        str(line.get_label()): [int(y) for y in xs_ys(line)[1]]
        for line in ax.get_lines()
        if str(line.get_label()).startswith("batch")
    }
    assert lines == {
        # created, yields…, complete/fail/retry/reset keep or drop the count
        "batch 0": [0, 50, 100, 100],
        "batch 1": [0, 40, 40, 40, 100, 100],
        "batch 2": [0, 30, 30, 0, 10],
    }
    batch_lines = [line for line in ax.get_lines() if str(line.get_label()).startswith("batch")]
    xs = [x for line in batch_lines for x in xs_ys(line)[0]]
    assert min(xs) == 0.0
    assert xs == sorted(xs)  # batches ran one after another, so time only moves forward
    assert ax.get_title() == f"run {run.timeline[0].event.run_id}: items processed per batch"  # type: ignore[attr-defined]


def test_failures_retries_resets_and_completions_are_marked_apart(run: Run) -> None:
    ax = draw_run_progress(Figure().add_subplot(), run.timeline)
    found = {label: [int(y) for _, y in points] for label, points in marks(ax).items()}
    assert found == {
        "completed": [100, 100],
        "transient failure": [40],
        "permanent failure": [30],
        "retry": [40],
        "reset": [30],
    }
    styles = {
        str(line.get_label()): line.get_marker()
        for line in ax.get_lines()
        if line.get_linestyle() == "None"
    }
    assert styles["transient failure"] != styles["permanent failure"]
    legend = ax.get_legend()
    assert legend is not None
    labels = [text.get_text() for text in legend.get_texts()]
    assert {"transient failure", "permanent failure", "retry", "reset"} <= set(labels)
    annotations = sorted(child.get_text() for child in ax.texts)
    assert annotations == ["TimeoutError", "ValueError"]


def test_takeovers_and_cancels_are_marked_and_named_in_the_legend(sqlite_url: str) -> None:
    moment = [datetime(2026, 11, 23, 12, 0, tzinfo=UTC)]

    def clock() -> datetime:
        return moment[0]

    with Ledger.open(sqlite_url, clock=clock) as ledger, Projections(ledger) as views:
        run_id = f"many-{uuid4().hex[:8]}"
        first, second = (ledger.create_checkpoint(run_id, i) for i in range(2))
        lease = ledger.claim_checkpoint(first, "w0", 30.0)
        ledger.checkpoint_yield(first, cursor=20, items_processed=20, lease=lease)
        moment[0] += timedelta(seconds=60)
        ledger.claim_checkpoint(first, "w1", 30.0)  # w0's lease expired: taken over at 20
        ledger.checkpoint_yield(second, cursor=7, items_processed=7)
        ledger.cancel_checkpoint(second, "input withdrawn")
        views.sync()
        timeline = views.timeline(run_id)
    ax = draw_run_progress(Figure().add_subplot(), timeline)
    found = {label: [int(y) for _, y in points] for label, points in marks(ax).items()}
    assert found == {"takeover": [20], "cancelled": [7]}
    legend = ax.get_legend()
    assert legend is not None
    assert {"takeover", "cancelled"} <= {text.get_text() for text in legend.get_texts()}


def test_a_timeline_read_from_a_later_position_still_plots(run: Run, out: Path) -> None:
    # No Created events: the run cannot be named, but its progress is still drawn.
    later = [entry for entry in run.timeline if entry.topic != "checkpoint.Created"]
    plot_run_progress(later, out / "later.png")
    assert_png(out / "later.png", (1000, 500))


# ------------------------------------------------------------------------- failure audit


def test_failures_are_written_as_a_png(run: Run, out: Path) -> None:
    assert plot_failures(run.failures, out / "audit.png") == out / "audit.png"
    assert_png(out / "audit.png", (1100, 450))


def test_failures_are_counted_by_error_type_and_batch_transient_and_permanent(
    views: Projections, run: Run
) -> None:
    other = f"plot-other-{uuid4().hex[:8]}"
    token = views.ledger.create_checkpoint(other, 7)
    views.ledger.fail_checkpoint(token, TimeoutError("again"), transient=True)
    views.sync()
    records = run.failures + views.failures(run_id=other)
    figure = Figure()
    by_type, by_batch = draw_failures(figure, records)

    def bars(ax: Axes, attribute: str) -> dict[str, list[int]]:
        """Label of each bar → [transient, permanent] sizes (the two stacked series)."""
        ticks = ax.get_yticklabels() if attribute == "width" else ax.get_xticklabels()
        labels = [tick.get_text() for tick in ticks]
        sizes: dict[str, list[int]] = {label: [] for label in labels}
        for container in ax.containers:
            assert isinstance(container, BarContainer)
            for label, patch in zip(labels, container.patches, strict=True):
                sizes[label].append(int(getattr(patch, f"get_{attribute}")()))
        return sizes

    assert bars(by_type, "width") == {"TimeoutError": [2, 0], "ValueError": [0, 1]}
    run_id = run.failures[0].run_id
    assert bars(by_batch, "height") == {
        f"{run_id}/1": [1, 0],
        f"{run_id}/2": [0, 1],
        f"{other[:17]}…/7": [1, 0],
    }
    assert figure.get_suptitle() == "2 runs: 3 failures (2 transient, 1 permanent)"


def test_failures_of_one_run_are_labelled_by_batch(run: Run) -> None:
    _, by_batch = draw_failures(Figure(), run.failures, title="audit")
    assert [tick.get_text() for tick in by_batch.get_xticklabels()] == ["batch 1", "batch 2"]


# ------------------------------------------------------------------------- bad input


def test_an_empty_timeline_is_refused_and_nothing_is_written(out: Path) -> None:
    with pytest.raises(InvalidInput, match=r"entries.*empty") as caught:
        plot_run_progress([], out / "empty.png")
    assert caught.value.field == "entries"
    assert list(out.iterdir()) == []


def test_timelines_of_two_runs_are_refused_and_nothing_is_written(
    views: Projections, run: Run, out: Path
) -> None:
    other = f"plot-{uuid4().hex[:8]}"
    record_run(views.ledger, other)
    views.sync()
    mixed = run.timeline + views.timeline(other)
    with pytest.raises(InvalidInput, match="2 runs"):
        plot_run_progress(mixed, out / "mixed.png")
    # Without their Created events the runs are told apart by their checkpoints.
    without_created = [entry for entry in mixed if entry.topic != "checkpoint.Created"]
    with pytest.raises(InvalidInput, match="several runs"):
        plot_run_progress(without_created, out / "mixed.png")
    # One run's timeline, plus yields of another run's checkpoint under a batch it never had.
    strays = [
        entry.model_copy(update={"batch_index": 9})
        for entry in views.timeline(other)
        if entry.topic == "checkpoint.Yielded" and entry.batch_index == 0
    ]
    stray = [*run.timeline, *strays]
    with pytest.raises(InvalidInput, match=r"is not an event of run"):
        plot_run_progress(stray, out / "mixed.png")
    with pytest.raises(InvalidInput, match="several runs"):
        draw_run_progress(Figure().add_subplot(), without_created)
    assert list(out.iterdir()) == []


def test_the_same_entry_twice_is_refused(run: Run, out: Path) -> None:
    with pytest.raises(InvalidInput, match=f"position {run.timeline[0].position} appears twice"):
        plot_run_progress([*run.timeline, run.timeline[0]], out / "twice.png")
    assert list(out.iterdir()) == []


def test_entries_that_are_not_timeline_entries_are_refused(run: Run, out: Path) -> None:
    with pytest.raises(InvalidInput, match="TimelineEntry"):
        plot_run_progress(run.failures, out / "wrong.png")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="TimelineEntry"):
        plot_run_progress("run-42", out / "wrong.png")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="FailureRecord"):
        plot_failures(run.timeline, out / "wrong.png")  # type: ignore[arg-type]
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("name", ["progress.jpg", "progress", "progress.png.txt"])
def test_a_path_that_is_not_png_is_refused(run: Run, out: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match=r"does not end in \.png") as caught:
        plot_run_progress(run.timeline, out / name)
    assert caught.value.field == "path"
    with pytest.raises(InvalidInput, match=r"does not end in \.png"):
        plot_failures(run.failures, out / name)
    assert list(out.iterdir()) == []


def test_a_path_in_a_missing_directory_is_refused(run: Run, out: Path) -> None:
    target = out / "charts" / "progress.png"
    with pytest.raises(InvalidInput, match="does not exist; create it first"):
        plot_run_progress(run.timeline, target)
    with pytest.raises(InvalidInput, match="does not exist; create it first"):
        plot_failures(run.failures, target)
    assert list(out.iterdir()) == []


def test_a_directory_or_a_non_path_is_refused(run: Run, out: Path) -> None:
    (out / "dir.png").mkdir()
    with pytest.raises(InvalidInput, match="is a directory"):
        plot_run_progress(run.timeline, out / "dir.png")
    with pytest.raises(InvalidInput, match=r"str or os\.PathLike"):
        plot_run_progress(run.timeline, 42)  # type: ignore[arg-type]
    assert [path.name for path in out.iterdir()] == ["dir.png"]


def test_no_failures_is_refused(out: Path) -> None:
    with pytest.raises(InvalidInput, match="no failures to plot"):
        plot_failures([], out / "audit.png")
    with pytest.raises(InvalidInput, match="no failures to plot"):
        draw_failures(Figure(), [])
    assert list(out.iterdir()) == []


# ------------------------------------------------------------------------- matplotlib


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


PLOT_IN_A_FRESH_PROCESS = """
    import sys
    {prelude}
    from ckl.plotting import plot_run_progress
    from ledger import Ledger, PlotUnavailable
    from projections import Projections

    store, run_id, target = sys.argv[1:]
    with Ledger.open(store) as ledger, Projections(ledger) as views:
        views.sync()
        timeline = views.timeline(run_id)
    try:
        plot_run_progress(timeline, target)
    except PlotUnavailable as exc:
        print("PlotUnavailable:", exc)
    else:
        import matplotlib
        print("pyplot imported:", "matplotlib.pyplot" in sys.modules)
        print("backend:", matplotlib.get_backend())
"""


def test_without_matplotlib_plotting_raises_plot_unavailable_and_writes_nothing(
    sqlite_url: str, run: Run, out: Path
) -> None:
    # A fresh interpreter in which `import matplotlib` fails, as where the extra is missing.
    script = PLOT_IN_A_FRESH_PROCESS.format(prelude="sys.modules['matplotlib'] = None")
    target = out / "progress.png"
    run_id = run.timeline[0].event.run_id  # type: ignore[attr-defined]
    done = run_python(script, sqlite_url, run_id, str(target))
    assert done.returncode == 0, done.stderr
    assert "PlotUnavailable: charts need matplotlib" in done.stdout
    assert "pip install 'checkpoint-ledger[plot]'" in done.stdout
    assert not target.exists()


def test_writing_a_png_leaves_pyplot_and_the_backend_alone(
    sqlite_url: str, run: Run, out: Path
) -> None:
    script = PLOT_IN_A_FRESH_PROCESS.format(prelude="import matplotlib; matplotlib.use('svg')")
    target = out / "progress.png"
    run_id = run.timeline[0].event.run_id  # type: ignore[attr-defined]
    done = run_python(script, sqlite_url, run_id, str(target))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["pyplot imported: False", "backend: svg"]
    assert_png(target, (1000, 500))


def test_plot_unavailable_is_a_ledger_error_that_pickles() -> None:
    error = PlotUnavailable("No module named 'matplotlib'")
    assert isinstance(error, LedgerError)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301  (our own bytes)
    assert type(copy) is PlotUnavailable
    assert str(copy) == str(error)
    assert copy.detail == "No module named 'matplotlib'"
