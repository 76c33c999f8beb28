"""`ckl retry`, `cancel` and `stuck`; owners, idle times, takeovers and cancels in the others.

Each test records its own runs on a fresh store (SQLite file and PostgreSQL) and runs `ckl`
as a user does, in a subprocess. Leases that must have expired are taken with a ledger whose
clock is set two hours back, so nothing waits on the wall clock.
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import UTC, datetime, timedelta

import pytest

from ckl.cli.live import _bar_status
from ledger import CheckpointCancelled, Ledger
from tests.ckl.cli.conftest import ckl, one_error_line


class Clock:
    """A clock under the test's control: ``advance`` it; each reading is a microsecond later."""

    def __init__(self, start: datetime) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(microseconds=1)
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


def past_ledger(url: str, hours: float = 2.0) -> tuple[Ledger, Clock]:
    """A ledger whose clock starts ``hours`` ago: its leases have expired by the real clock."""
    clock = Clock(datetime.now(UTC) - timedelta(hours=hours))
    return Ledger.open(url, clock=clock), clock


def events(url: str) -> int:
    with Ledger.open(url) as ledger:
        return ledger.count_events()


# ------------------------------------------------------------------------------- retry


def _retry_run(url: str) -> None:
    """``rt``: 0 transient at 40, 1 permanent, 2 open, 3 completed, 4 transient, 5 cancelled."""
    with Ledger.open(url) as ledger:
        tokens = [ledger.create_checkpoint("rt", i, total_batches=6) for i in range(6)]
        ledger.checkpoint_yield(tokens[0], 40, 40)
        ledger.fail_checkpoint(tokens[0], TimeoutError("upstream slow"), transient=True)
        ledger.checkpoint_yield(tokens[1], 7, 7)
        ledger.fail_checkpoint(tokens[1], ValueError("bad row 8"), transient=False)
        ledger.checkpoint_yield(tokens[2], 10, 10)
        ledger.complete_checkpoint(tokens[3], {"rows": 1})
        ledger.fail_checkpoint(tokens[4], ConnectionError("reset by peer"), transient=True)
        ledger.cancel_checkpoint(tokens[5], "not needed")


def test_retry_refuses_what_a_retry_cannot_resume_and_says_what_to_do(store_url: str) -> None:
    _retry_run(store_url)
    before = events(store_url)
    refusals = {
        "1": ("failed permanently (ValueError: bad row 8)", "`ckl reset rt 1 --reason TEXT`"),
        "2": ("is open (attempt 1, cursor=10, items 10)", "nothing to retry"),
        "3": ("is completed", "nothing to retry: its result is durable"),
        "5": ("cancelled (not needed)", "reopened only by `ckl reset rt 5 --reason TEXT`"),
    }
    for batch, (state, advice) in refusals.items():
        done = ckl("retry", "rt", batch, store=store_url)
        assert done.returncode == 1, done.stderr
        line = one_error_line(done)
        assert state in line
        assert advice in line
        assert done.stdout == ""
    # A permanent failure is the only case that points at a reset, and it says why.
    assert "same input would fail again" in one_error_line(ckl("retry", "rt", "1", store=store_url))
    for args in (["retry", "nope", "0"], ["retry", "nope", "--all-transient"]):
        missing = ckl(*args, store=store_url)
        assert missing.returncode == 1
        assert one_error_line(missing).startswith("error: run 'nope' does not exist")
    for args in (["retry", "rt"], ["retry", "rt", "0", "--all-transient"]):
        usage = ckl(*args, store=store_url)
        assert usage.returncode == 2
        assert "give BATCH, or --all-transient (not both)" in usage.stderr
    assert events(store_url) == before


def test_retry_resumes_from_the_last_cursor_and_all_transient_retries_the_rest(
    store_url: str,
) -> None:
    _retry_run(store_url)
    one = ckl("retry", "rt", "0", "--json", store=store_url)
    assert one.returncode == 0, one.stderr
    state = json.loads(one.stdout)
    assert (state["status"], state["attempt"], state["cursor"], state["items_processed"]) == (
        "open",
        2,
        40,
        40,
    )
    rest = ckl("retry", "rt", "--all-transient", store=store_url)
    assert rest.returncode == 0, rest.stderr
    lines = rest.stdout.splitlines()
    assert lines[0].startswith("retried rt/4 after transient ConnectionError: reset by peer;")
    assert "attempt 2, cursor=-, items 0 resumes from there" in lines[0]
    assert lines[1] == "run rt: 1 transient failure(s) retried"
    assert lines[2].startswith("1 permanently failed batch(es) not retried (1): fix the cause")
    again = ckl("retry", "rt", "--all-transient", "--json", store=store_url)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["retried"] == []
    assert [(s["batch_index"], s["status"], s["transient"]) for s in doc["skipped"]] == [
        (0, "open", None),
        (1, "failed", False),
        (2, "open", None),
        (3, "completed", None),
        (4, "open", None),
        (5, "cancelled", None),
    ]


# ------------------------------------------------------------------------------- cancel


def _cancel_run(url: str) -> None:
    """Run ``cx``: 0 completed, 1 open under a live lease, 2 transient, 3 permanent."""
    with Ledger.open(url) as ledger:
        tokens = [ledger.create_checkpoint("cx", i, total_batches=4) for i in range(4)]
        ledger.complete_checkpoint(tokens[0], {"rows": 3})
        lease = ledger.claim_checkpoint(tokens[1], "worker-a", 600.0)
        ledger.checkpoint_yield(tokens[1], 5, 5, lease=lease)
        ledger.fail_checkpoint(tokens[2], TimeoutError("slow"), transient=True)
        ledger.fail_checkpoint(tokens[3], ValueError("bad"), transient=False)


def test_cancel_refuses_bad_input_and_writes_nothing(store_url: str) -> None:
    _cancel_run(store_url)
    before = events(store_url)
    no_reason = ckl("cancel", "cx", "0", store=store_url)
    assert no_reason.returncode == 2
    assert "Missing option '--reason'" in no_reason.stderr
    blank = ckl("cancel", "cx", "1", "--reason", " ", store=store_url)
    assert blank.returncode == 1
    assert one_error_line(blank).startswith("error: invalid reason: say why")
    completed = ckl("cancel", "cx", "0", "--reason", "stop", store=store_url)
    assert completed.returncode == 1
    assert "is completed; cancel_checkpoint is not allowed" in one_error_line(completed)
    missing = ckl("cancel", "nope", "--reason", "stop", store=store_url)
    assert missing.returncode == 1
    assert one_error_line(missing).startswith("error: run 'nope' does not exist")
    assert events(store_url) == before


def test_cancelling_a_run_skips_settled_batches_and_shows_cancelled_everywhere(
    store_url: str,
) -> None:
    _cancel_run(store_url)
    done = ckl("cancel", "cx", "--reason", "wrong input file", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [(s["token"]["batch_index"], s["status"]) for s in doc["cancelled"]] == [
        (1, "cancelled"),
        (2, "cancelled"),
    ]
    assert [(s["batch_index"], s["status"]) for s in doc["skipped"]] == [
        (0, "completed"),
        (3, "failed"),
    ]
    # The worker learns it at its next write.
    with Ledger.open(store_url) as ledger:
        token = ledger.find_checkpoint("cx", 1)
        assert token is not None
        state = ledger.get_checkpoint(token)
        assert state.cancel_reason == "wrong input file"
        with pytest.raises(CheckpointCancelled) as refused:
            ledger.checkpoint_yield(token, 6, 6)
        assert refused.value.reason == "wrong input file"
    again = ckl("cancel", "cx", "--reason", "wrong input file", store=store_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[-1] == "run cx: 0 cancelled, 4 skipped (settled)"
    assert "skipped cx/1: already cancelled (wrong input file)" in again.stdout

    shown = ckl("show", "cx", "1", store=store_url)
    assert "cx/1  cancelled  attempt 1" in shown.stdout
    assert "cancelled        wrong input file" in shown.stdout
    replay = ckl("replay", "cx", store=store_url)
    assert "4 of 4 batches: 1 completed, 1 failed, 0 open, 2 cancelled" in replay.stdout
    assert "reason: wrong input file" in replay.stdout
    pending = ckl("pending", "cx", store=store_url)
    assert "run cx: 0 pending; 1/4 completed, 1 failed, 2 cancelled" in pending.stdout
    audit = ckl("audit", "--run", "cx", "--kind", "cancel", "--json", store=store_url)
    rows = json.loads(audit.stdout)
    assert [(r["batch_index"], r["kind"], r["message"]) for r in rows] == [
        (1, "cancel", "wrong input file"),
        (2, "cancel", "wrong input file"),
    ]
    # Cancelled batches are settled: the progress view ends.
    tail = ckl("tail", "cx", "--progress", store=store_url)
    assert tail.returncode == 0, tail.stderr
    assert "settled: 4 of 4 batches: 1 completed, 1 failed, 0 open, 2 cancelled" in tail.stderr
    assert "cancelled  reason: wrong input file" in tail.stderr


# ------------------------------------------------------------------------------- stuck


def _stuck_runs(url: str) -> None:
    """Runs ``st`` and ``calm``, leased and idle.

    ``st``: 0 lease of 'dead' expired, 1 lease of 'live' (live), 2 open unowned and idle two
    hours, 3 completed. ``calm``: 0 open, just created.
    """
    ledger, clock = past_ledger(url)
    with ledger:
        tokens = [ledger.create_checkpoint("st", i) for i in range(4)]
        lease = ledger.claim_checkpoint(tokens[0], "dead", 60.0)
        ledger.checkpoint_yield(tokens[0], 3, 3, lease=lease)
        ledger.checkpoint_yield(tokens[2], "k", 1)
        ledger.complete_checkpoint(tokens[3], None)
    with Ledger.open(url) as ledger:
        ledger.claim_checkpoint(tokens[1], "live", 3600.0)
        ledger.create_checkpoint("calm", 0)
    assert clock.moment < datetime.now(UTC)


def test_stuck_lists_expired_leases_and_idle_checkpoints_with_owner_and_idle_time(
    store_url: str,
) -> None:
    _stuck_runs(store_url)
    done = ckl("stuck", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    found = [(r["run_id"], r["batch_index"], r["owner"], r["reason"]) for r in rows]
    assert sorted(found) == [("st", 0, "dead", "lease expired"), ("st", 2, None, "idle")]
    assert all(r["idle_seconds"] > 7000 for r in rows)
    everything = json.loads(ckl("stuck", "st", "--idle", "0", "--json", store=store_url).stdout)
    assert sorted((r["batch_index"], r["reason"]) for r in everything) == [
        (0, "lease expired"),
        (1, "idle"),
        (2, "idle"),
    ]
    human = ckl("stuck", "st", store=store_url)
    assert human.returncode == 0, human.stderr
    assert "2 stuck checkpoint(s) in run st" in human.stdout
    [dead] = [line for line in human.stdout.splitlines() if " dead " in line]
    assert "lease expired" in dead
    assert " 2h00m " in dead or " 1h59m " in dead
    calm = ckl("stuck", "calm", store=store_url)
    assert calm.returncode == 0, calm.stderr
    assert calm.stdout.startswith("no stuck checkpoints in run calm")


def test_stuck_refuses_a_bad_idle_and_an_unknown_run(store_url: str) -> None:
    _stuck_runs(store_url)
    before = events(store_url)
    for value in ("-1", "nan", "inf"):
        done = ckl("stuck", "--idle", value, store=store_url)
        assert done.returncode == 2
        assert "is not a finite number of seconds ≥ 0" in one_error_line(done)
    words = ckl("stuck", "--idle", "soon", store=store_url)
    assert words.returncode == 2
    missing = ckl("stuck", "nope", store=store_url)
    assert missing.returncode == 1
    assert one_error_line(missing).startswith("error: run 'nope' does not exist")
    assert events(store_url) == before


def test_pending_and_show_give_each_open_checkpoint_its_owner_and_idle_time(
    store_url: str,
) -> None:
    _stuck_runs(store_url)
    done = ckl("pending", "st", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    pending = json.loads(done.stdout)["pending"]
    assert [(p["batch_index"], p["owner"]) for p in pending] == [
        (0, "dead"),
        (1, "live"),
        (2, None),
    ]
    idle = {p["batch_index"]: p["idle_seconds"] for p in pending}
    assert idle[0] > 7000
    assert 0 <= idle[1] < 600
    human = ckl("pending", "st", store=store_url)
    assert " owner " in human.stdout
    assert " idle " in human.stdout
    [live] = [line for line in human.stdout.splitlines() if " live " in line]
    assert re.search(r" (\d+s|\d+m\d\ds) ", live), live  # "12s", or "1m03s" under load
    shown = ckl("show", "st", "0", store=store_url)
    assert "owner            dead (lease expired until " in shown.stdout
    assert "idle             2h00m" in shown.stdout or "idle             1h59m" in shown.stdout
    assert (
        "owner            live (lease live until " in ckl("show", "st", "1", store=store_url).stdout
    )


def test_progress_bars_name_the_owner_and_the_idle_time_of_open_batches(store_url: str) -> None:
    _stuck_runs(store_url)
    with Ledger.open(store_url) as ledger:
        states = ledger.run_states("st")
        now = ledger.now()
    assert _bar_status(states[0], now).startswith("open, attempt 1, owner dead, idle ")
    assert _bar_status(states[0], now).endswith((" 2h00m", " 1h59m"))
    assert _bar_status(states[1], now).startswith("open, attempt 1, owner live, idle ")
    assert _bar_status(states[2], now).startswith("open, attempt 1, no owner, idle ")
    assert _bar_status(states[3], now) == "[green]completed[/green]"


# ------------------------------------------------------------------------------- audit


def _takeover_run(url: str) -> int:
    """Run ``tk``, taken over and failed; returns the failing process's pid.

    'w0' lets its lease expire, 'w1' takes over and fails with a traceback whose message holds
    an escape sequence, rich markup and an emoji code.
    """
    ledger, clock = past_ledger(url)
    with ledger:
        token = ledger.create_checkpoint("tk", 0)
        first = ledger.claim_checkpoint(token, "w0", 30.0)
        ledger.checkpoint_yield(token, 5, 5, lease=first)
        clock.advance(60.0)
        second = ledger.claim_checkpoint(token, "w1", 30.0)
        assert second.taken_over
        try:
            _hostile_failure()
        except ConnectionError as exc:
            ledger.fail_checkpoint(token, exc, transient=True, lease=second)
    return os.getpid()


def _hostile_failure() -> None:
    raise ConnectionError("\x1b[2J\x1b[31mscreen wiped [/] [red]not red[/red] :smile:")


def test_audit_shows_takeovers_and_verbose_shows_tracebacks_host_and_pid_escaped(
    store_url: str,
) -> None:
    pid = _takeover_run(store_url)
    done = ckl("audit", "--run", "tk", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["kind"], r["error_type"], r["attempt"]) for r in rows] == [
        ("takeover", "LeaseExpired", 1),
        ("failure", "ConnectionError", 2),
    ]
    assert rows[0]["message"] == "lease of 'w0' expired; taken over by 'w1'"
    assert (rows[1]["host"], rows[1]["pid"]) == (socket.gethostname(), pid)
    assert "\\u001b[2J" in done.stdout  # JSON's own escape: no raw ESC on the terminal
    only = ckl("audit", "--run", "tk", "--kind", "takeover", "--json", store=store_url)
    assert [r["kind"] for r in json.loads(only.stdout)] == ["takeover"]
    bad_kind = ckl("audit", "--kind", "crash", store=store_url)
    assert bad_kind.returncode == 2

    verbose = ckl("audit", "--run", "tk", "-v", store=store_url)
    assert verbose.returncode == 0, verbose.stderr
    out = verbose.stdout
    assert "\x1b" not in out
    assert "1 failure(s), 0 permanent, 1 takeover(s)" in out
    takeover = [line for line in out.splitlines() if "  takeover  " in line]
    assert len(takeover) == 1, out
    assert "LeaseExpired: lease of 'w0' expired; taken over by 'w1'" in takeover[0]
    # The message is text: the escape sequence shown escaped, the markup and emoji code as typed.
    assert "\\x1b[2J\\x1b[31mscreen wiped [/] [red]not red[/red] :smile:" in out
    assert "tk/0 attempt 2 failure at " in out
    assert f"on host {socket.gethostname()}, pid {pid}: ConnectionError:" in out
    assert "    Traceback (most recent call last):" in out
    assert 'raise ConnectionError("\\x1b[2J' in out
    assert "in _hostile_failure" in out
    replay = ckl("replay", "tk", store=store_url)
    assert replay.returncode == 0, replay.stderr
    assert "\x1b" not in replay.stdout
    assert " claimed " in replay.stdout
    assert " takeover " in replay.stdout
    assert "the lease of 'w0' had expired" in replay.stdout
