"""Streamed `ckl replay` and `ckl audit`: the old document's shape, filters, escaping, big runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest

from ckl.cli._output import timeline_steps
from ckl.cli._stream import KIND_TOPICS, StepFold, step_json
from ledger import Ledger
from ledger.events import EVENT_TYPES, Snapshot
from projections import Projections
from tests.ckl.cli.conftest import R1_KINDS, ROOT, Populated, ckl, ckl_env, one_error_line

if TYPE_CHECKING:
    from pathlib import Path

HOSTILE = "boom\x1b[2J\nsecond line\r\x9b31m\u202eevil"
"""An error message that would clear the screen, break lines and reorder text if printed raw."""


def test_kind_words_cover_every_event_topic() -> None:
    assert set(KIND_TOPICS.values()) == set(EVENT_TYPES) - {Snapshot.topic}


def test_step_json_is_the_model_path_for_every_event(populated: Populated) -> None:
    with Ledger.open(populated.url) as ledger, Projections(ledger) as views:
        for run_id in ("r1", "r2"):
            entries = views.timeline(run_id)
            steps, _ = timeline_steps(entries)
            fold = StepFold(ledger, run_id)
            fast = [json.loads(step_json(entry, fold.step(entry))) for entry in entries]
            assert fast == [step.to_json() for step in steps]


def test_streamed_replay_json_is_the_old_document(populated: Populated) -> None:
    done = ckl("replay", "r1", "--json", store=populated.url)
    assert done.returncode == 0, done.stderr
    with Ledger.open(populated.url) as ledger, Projections(ledger) as views:
        views.sync()  # read commands no longer bring the stored views up to date
        steps, states = timeline_steps(views.timeline("r1"))
        old = {
            "run_id": "r1",
            "as_of": None,
            "events": len(steps),
            "timeline": [step.to_json() for step in steps],
            "batches": [states[b].model_dump(mode="json") for b in sorted(states)],
            "plot": None,
        }
    assert json.loads(done.stdout) == old


def _kinds(*args: str, store: str) -> list[tuple[int, str]]:
    done = ckl("replay", "r1", *args, "--json", store=store)
    assert done.returncode == 0, done.stderr
    return [(e["batch_index"], e["kind"]) for e in json.loads(done.stdout)["timeline"]]


def test_replay_filters_batch_kind_time_and_last(populated: Populated) -> None:
    store = populated.url
    every = _kinds(store=store)
    assert [kind for _, kind in every] == R1_KINDS
    assert _kinds("--batch", "1", store=store) == [e for e in every if e[0] == 1]
    assert _kinds("--batch", "0", "--batch", "2", store=store) == [e for e in every if e[0] != 1]
    assert _kinds("--kind", "failed", store=store) == [(1, "failed"), (2, "failed")]
    assert _kinds("--kind", "failed", "--kind", "retried", store=store) == [
        (1, "failed"),
        (1, "retried"),
        (2, "failed"),
    ]
    assert _kinds("--last", "3", store=store) == every[-3:]
    assert _kinds("--last", "1", "--kind", "completed", store=store) == [(1, "completed")]
    moment = populated.after_transient.isoformat()
    assert _kinds("--until", moment, store=store) == every[:7]
    assert _kinds("--since", moment, store=store) == every[6:]
    # The state after each event is the batch's real one, even with the events before skipped.
    doc = json.loads(ckl("replay", "r1", "--kind", "retried", "--json", store=store).stdout)
    [retried] = doc["timeline"]
    assert (retried["attempt"], retried["cursor"], retried["items_processed"]) == (2, 40, 40)
    assert [b["status"] for b in doc["batches"]] == ["completed", "completed", "failed"]
    human = ckl("replay", "r1", "--batch", "2", store=store)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].split()[:3] == ["pos", "time", "(UTC)"]
    assert [line.split()[4] for line in lines[1:4]] == ["created", "yield", "failed"]
    assert "run r1: 3 events" in human.stdout
    assert "1 of 3 batches: 0 completed, 1 failed" in human.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["replay", "r1", "--batch", "-1"], "--batch"),
        (["replay", "r1", "--batch", "9"], "has no batch 9"),
        (["replay", "r1", "--kind", "exploded"], "--kind"),
        (["replay", "r1", "--last", "0"], "--last"),
        (["replay", "r1", "--since", "2026-02-01", "--until", "2026-01-01"], "is after"),
        (["replay", "r1", "--until", "soon"], "ISO-8601"),
        (["audit", "--batch", "1"], "--batch needs --run"),
        (["audit", "--last", "x"], "--last"),
        (["audit", "--since", "2026-02-01", "--until", "2026-01-01"], "is after"),
    ],
)
def test_bad_filters_are_one_line_exit_2_and_print_nothing(
    populated: Populated, args: list[str], says: str
) -> None:
    done = ckl(*args, store=populated.url)
    assert done.returncode == 2
    assert says in one_error_line(done)
    assert done.stdout == ""


def test_audit_streams_filters_and_keeps_its_json(populated: Populated) -> None:
    store = populated.url
    every = json.loads(ckl("audit", "--json", store=store).stdout)
    assert [r["message"] for r in every] == ["upstream slow", "bad row 31", "'k11'"]
    last = json.loads(ckl("audit", "--last", "2", "--json", store=store).stdout)
    assert last == every[1:]
    ones = json.loads(ckl("audit", "--run", "r1", "--batch", "2", "--json", store=store).stdout)
    assert ones == every[1:2]
    until = populated.after_transient.isoformat()
    assert json.loads(ckl("audit", "--until", until, "--json", store=store).stdout) == every[:1]
    assert json.loads(ckl("audit", "--run", "nope", "--json", store=store).stdout) == []
    human = ckl("audit", "--run", "r1", store=store)
    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert lines[0].startswith("at (UTC)")
    assert "transient" in lines[1]
    assert "retried" in lines[1]
    assert lines[-1] == "2 failure(s), 1 permanent"


def _assert_safe(text: str) -> None:
    for raw in ("\x1b", "\r", "\x9b", "\u202e", "second line"):
        if raw == "second line":
            # The message's newline is escaped: its second line never starts a line.
            assert not any(line.startswith(raw) for line in text.splitlines()), text
        else:
            assert raw not in text, (raw, text)


def test_hostile_text_is_escaped_in_every_human_output(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("h", 0)
        ledger.checkpoint_yield(token, HOSTILE, 1)
        ledger.fail_checkpoint(token, RuntimeError(HOSTILE), transient=True)
        ledger.retry_checkpoint(token)
        other = ledger.create_checkpoint("h", 1)
        ledger.fail_checkpoint(other, RuntimeError(HOSTILE), transient=False)
    for args in (
        ["audit"],
        ["audit", "--verbose"],
        ["replay", "h"],
        ["show", "h", "1"],
        ["show", "h", "0"],
        ["pending", "h"],
        ["stuck", "--idle", "0"],
    ):
        done = ckl(*args, store=store_url)
        assert done.returncode == 0, (args, done.stderr)
        shown = "\\x1b[2J" in done.stdout or "\\u001b[2J" in done.stdout
        assert shown or args[0] == "stuck", (args, done.stdout)
        _assert_safe(done.stdout)
    with Ledger.open(store_url) as ledger:
        head = ledger.count_events()
    with subprocess.Popen(
        [sys.executable, "-m", "ckl", "tail", "h"],
        stdout=subprocess.PIPE,
        text=True,
        env=ckl_env(store_url),
        cwd=ROOT,
    ) as tail:
        try:
            assert tail.stdout is not None
            lines = [tail.stdout.readline() for _ in range(head)]
        finally:
            tail.terminate()
            tail.wait(timeout=30)
    failed = [line for line in lines if " failed " in line]
    assert len(failed) == 2
    assert all("\\x1b[2J\\x0asecond line\\x0d" in line for line in failed)
    _assert_safe("".join(lines))


def _bulk_run(store: str, events: int) -> None:
    """A run of 100-event batches written through the benchmark's bulk loader."""
    from bench._flow_populate import LogBuilder, loader_for, prepare_store, run_specs  # noqa: PLC0415

    prepare_store(store)
    loader = loader_for(store)
    try:
        builder = LogBuilder(loader)
        builder.write(run_specs("big", events // 100, 100))
        builder.finish()
    finally:
        loader.close()


def _child_rss_mb(args: list[str], store: str, out: Path) -> tuple[int, float]:
    """Run `ckl ARGS` with stdout to a file; its exit code and its own peak RSS (MB)."""
    from bench._replay import run_measured  # noqa: PLC0415

    with out.open("wb") as sink:
        code, measured = run_measured([sys.executable, "-m", "ckl", *args], ckl_env(store), sink)
    return code, measured.peak_mb


@pytest.mark.parametrize(
    "events",
    [20_000] if os.environ.get("CKL_FAULTS") != "long" else [20_000, 200_000, 1_000_000],
)
def test_a_big_replay_streams_every_event_in_flat_memory(
    sqlite_url: str, tmp_path: Path, events: int
) -> None:
    started = time.monotonic()
    _bulk_run(sqlite_url, events)
    out = tmp_path / "replay.json"
    code, rss = _child_rss_mb(["replay", "big", "--json"], sqlite_url, out)
    assert code == 0
    with out.open() as document:
        doc = json.load(document)
    assert doc["events"] == len(doc["timeline"]) == events
    positions = [step["position"] for step in doc["timeline"]]
    assert positions == list(range(1, events + 1))
    assert len(doc["batches"]) == events // 100
    del doc, positions
    code, human_rss = _child_rss_mb(["replay", "big"], sqlite_url, tmp_path / "replay.txt")
    assert code == 0
    with (tmp_path / "replay.txt").open() as text:
        rows = sum(1 for line in text if line[:1] == " " or line[:1].isdigit())
    assert rows >= events
    # Flat, not timed: the figure that would grow with the run (2 GB at 200 k before).
    assert max(rss, human_rss) < 100, (rss, human_rss, time.monotonic() - started)
