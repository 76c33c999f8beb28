"""`ckl replay`, `pending` and `audit` on a populated store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone
from typing import TYPE_CHECKING

from ledger import Ledger
from tests.ckl.cli.conftest import R1_KINDS, Populated, ckl, one_error_line

if TYPE_CHECKING:
    from pathlib import Path


def test_replay_prints_every_event_in_order_and_each_batch_state(populated: Populated) -> None:
    done = ckl("replay", "r1", store=populated.url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"run r1: {len(R1_KINDS)} events" in out
    assert "transient TimeoutError: upstream slow" in out
    assert "permanent ValueError: bad row 31" in out
    assert "now: 3 of 3 batches: 2 completed, 1 failed, 0 open" in out
    words = [w for line in out.splitlines() for w in line.split() if w in set(R1_KINDS)]
    # Each event row names its kind once, in the log's order (the state table comes after).
    assert words[: len(R1_KINDS)] == R1_KINDS


def test_replay_json_is_the_timeline_with_the_state_after_each_event(
    populated: Populated,
) -> None:
    done = ckl("replay", "r1", "--json", store=populated.url)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    timeline = doc["timeline"]
    assert [e["kind"] for e in timeline] == R1_KINDS
    positions = [e["position"] for e in timeline]
    assert positions == sorted(positions)
    retried = timeline[R1_KINDS.index("retried")]
    assert (retried["batch_index"], retried["attempt"], retried["cursor"]) == (1, 2, 40)
    assert retried["items_processed"] == 40
    assert timeline[6]["event"]["error_type"] == "TimeoutError"
    assert [b["status"] for b in doc["batches"]] == ["completed", "completed", "failed"]
    assert doc["as_of"] is None
    assert doc["plot"] is None


def test_replay_as_of_shows_the_state_at_that_moment_naive_meaning_utc(
    populated: Populated,
) -> None:
    moment = populated.after_transient
    naive = moment.astimezone(UTC).replace(tzinfo=None).isoformat()
    shifted = moment.astimezone(UTC).astimezone(timezone_plus_2()).isoformat()
    docs = []
    for given in (naive, shifted):
        done = ckl("replay", "r1", "--as-of", given, "--json", store=populated.url)
        assert done.returncode == 0, done.stderr
        docs.append(json.loads(done.stdout))
    assert docs[0]["timeline"] == docs[1]["timeline"]
    doc = docs[0]
    assert [e["kind"] for e in doc["timeline"]] == R1_KINDS[:7]
    assert [(b["status"], b["attempt"]) for b in doc["batches"]] == [
        ("completed", 1),
        ("failed", 1),
    ]
    human = ckl("replay", "r1", "--as-of", naive, store=populated.url)
    assert human.returncode == 0, human.stderr
    assert "2 of 3 batches: 1 completed, 1 failed, 0 open" in human.stdout
    assert "retried" not in human.stdout


def timezone_plus_2() -> timezone:
    return timezone(timedelta(hours=2))


def test_replay_as_of_before_the_run_says_nothing_had_happened(populated: Populated) -> None:
    done = ckl("replay", "r1", "--as-of", "2000-01-01", store=populated.url)
    assert done.returncode == 0, done.stderr
    assert "nothing had happened yet" in done.stdout


def test_replay_plot_writes_a_png(populated: Populated, tmp_path: Path) -> None:
    target = tmp_path / "r1.png"
    done = ckl("replay", "r1", "--plot", str(target), "--json", store=populated.url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["plot"] == str(target)
    assert target.read_bytes().startswith(b"\x89PNG")


def test_replay_of_an_unknown_run_is_an_error_not_an_empty_table(populated: Populated) -> None:
    done = ckl("replay", "no-such-run", store=populated.url)
    assert done.returncode == 1
    assert one_error_line(done).startswith("error: run 'no-such-run' does not exist")
    assert done.stdout == ""


def test_a_bad_time_is_one_line_exit_2_and_writes_nothing(populated: Populated) -> None:
    for args in (["replay", "r1", "--as-of", "yesterday"], ["audit", "--since", "2026-13-01"]):
        done = ckl(*args, store=populated.url)
        assert done.returncode == 2
        assert "is not an ISO-8601 time" in one_error_line(done)
    with Ledger.open(populated.url) as ledger:
        assert ledger.count_events() == populated.events


def test_pending_lists_open_checkpoints_and_where_they_resume(populated: Populated) -> None:
    done = ckl("pending", "r2", "--json", store=populated.url)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    [only] = doc["pending"]
    assert (only["batch_index"], only["attempt"], only["cursor"]) == (0, 2, "k5")
    assert doc["progress"]["open"] == 1
    settled = json.loads(ckl("pending", "r1", "--json", store=populated.url).stdout)
    assert settled["pending"] == []
    assert (settled["progress"]["completed"], settled["progress"]["failed"]) == (2, 1)
    human = ckl("pending", "r2", store=populated.url)
    assert human.returncode == 0, human.stderr
    assert "run r2: 1 pending" in human.stdout
    assert '"k5"' in human.stdout


def test_pending_of_an_unknown_run_is_an_error(populated: Populated) -> None:
    done = ckl("pending", "nope", store=populated.url)
    assert done.returncode == 1
    assert "run 'nope' does not exist" in one_error_line(done)


def test_audit_lists_failures_and_filters_them(populated: Populated) -> None:
    def audit(*args: str) -> list[tuple[str, int, str, bool, str | None]]:
        done = ckl("audit", *args, "--json", store=populated.url)
        assert done.returncode == 0, done.stderr
        return [
            (f["run_id"], f["batch_index"], f["error_type"], f["transient"], f["resolution"])
            for f in json.loads(done.stdout)
        ]

    everything = [
        ("r1", 1, "TimeoutError", True, "retried"),
        ("r1", 2, "ValueError", False, None),
        ("r2", 0, "KeyError", False, "reset"),
    ]
    assert audit() == everything
    assert audit("--run", "r1") == everything[:2]
    assert audit("--transient") == everything[:1]
    assert audit("--permanent") == everything[1:]
    assert audit("--error-type", "KeyError") == everything[2:]
    later = (populated.after_transient + timedelta(microseconds=1)).isoformat()
    assert audit("--since", later) == everything[1:]
    assert audit("--run", "nope") == []
    human = ckl("audit", "--permanent", store=populated.url)
    assert human.returncode == 0, human.stderr
    assert "2 failure(s), 2 permanent" in human.stdout
    assert "bad row 31" in human.stdout
    assert "TimeoutError" not in human.stdout


def test_show_reads_one_checkpoint(populated: Populated) -> None:
    done = ckl("show", "r1", "1", "--json", store=populated.url)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert (state["status"], state["attempt"], state["result"]) == ("completed", 2, {"sum": 8})
    human = ckl("show", "r1", "2", store=populated.url)
    assert "permanent ValueError: bad row 31" in human.stdout
    for args, message in (
        (["show", "r1", "7"], "error: checkpoint r1/7 does not exist"),
        (["show", "nope", "0"], "error: run 'nope' does not exist"),
    ):
        missing = ckl(*args, store=populated.url)
        assert missing.returncode == 1
        assert one_error_line(missing).startswith(message)
