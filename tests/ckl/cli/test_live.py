"""`ckl tail` (JSON lines, progress bars in a terminal, Ctrl-C), `await` and `reset`."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from typing import IO, Any

from ledger import Ledger
from tests.ckl.cli.conftest import ROOT, Populated, ckl, ckl_env, one_error_line


def _popen(*args: str, store: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ckl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ckl_env(store),
        cwd=ROOT,
    )


def _json_lines(stream: IO[str], count: int) -> list[dict[str, Any]]:
    return [json.loads(stream.readline()) for _ in range(count)]


def test_tail_catches_up_then_follows_live_and_exits_130_on_ctrl_c(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("live", 0, total_batches=1)
        ledger.checkpoint_yield(token, 10, 10)
        other = ledger.create_checkpoint("other", 0)
        proc = _popen("tail", "live", "--json", store=store_url)
        assert proc.stdout is not None
        assert proc.stderr is not None
        caught_up = _json_lines(proc.stdout, 2)
        assert [e["topic"] for e in caught_up] == ["checkpoint.Created", "checkpoint.Yielded"]
        first = str(caught_up[0]["position"])
        everything = _popen("tail", "--json", "--from", first, store=store_url)
        assert everything.stdout is not None
        try:
            ledger.checkpoint_yield(token, 20, 20)  # written while it runs: the live part
            ledger.complete_checkpoint(token, {"n": 20})
            ledger.complete_checkpoint(other, None)
            live = _json_lines(proc.stdout, 2)
            assert [(e["topic"], e["run_id"]) for e in live] == [
                ("checkpoint.Yielded", "live"),
                ("checkpoint.Completed", "live"),
            ]
            assert live[1]["event"]["result"] == {"n": 20}
            positions = [e["position"] for e in caught_up + live]
            assert positions == sorted(positions)
            # Without RUN: every run's events after --from (the first event's position).
            seen = _json_lines(everything.stdout, 5)
            assert [e["topic"] for e in seen].count("checkpoint.Completed") == 2
            assert {e["run_id"] for e in seen} == {"live", "other"}
            assert [e["position"] for e in seen] == sorted({e["position"] for e in seen})
            assert all(e["position"] > caught_up[0]["position"] for e in seen)
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 130
            assert proc.stderr.read().strip() == "interrupted"
        finally:
            for p in (proc, everything):
                p.kill()
                p.wait()
                for stream in (p.stdout, p.stderr):
                    if stream is not None:
                        stream.close()


def test_tail_human_lines_name_each_event(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("words", 0)
        ledger.fail_checkpoint(token, ConnectionError("gone"), transient=True)
    proc = _popen("tail", "words", store=store_url)
    assert proc.stdout is not None
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert "words/0  created" in first
        assert "words/0  failed    attempt 1" in second
        assert "transient ConnectionError: gone" in second
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()


def _read_until_exit(fd: int, proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_tail_progress_shows_live_bars_in_a_terminal_until_the_run_settles(
    store_url: str,
) -> None:
    with Ledger.open(store_url) as ledger:
        first = ledger.create_checkpoint("bars", 0, total_batches=2, metadata={"total_items": 80})
        ledger.checkpoint_yield(first, 20, 20)
        controller, terminal = pty.openpty()
        env = ckl_env(store_url)
        env.update(COLUMNS="120", LINES="30", TERM="xterm-256color")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ckl", "tail", "bars", "--progress"],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=env,
            cwd=ROOT,
        )
        os.close(terminal)
        try:
            seen = b""
            while b"20/80" not in seen:  # the bar of the caught-up yield is on screen
                seen += _read_until_exit(controller, proc, 0.5)
                assert proc.poll() is None, seen
            ledger.checkpoint_yield(first, 80, 80)
            ledger.complete_checkpoint(first, None)
            second = ledger.create_checkpoint("bars", 1, total_batches=2)  # no total: a count
            ledger.checkpoint_yield(second, 7, 7)
            ledger.fail_checkpoint(second, ValueError("bad input"), transient=False)
            seen += _read_until_exit(controller, proc, 60)
            assert proc.wait(timeout=30) == 0, seen
        finally:
            proc.kill()
            proc.wait()
            os.close(controller)
    raw = seen.decode(errors="replace")
    assert "\x1b[" in raw  # a live display (cursor movement, colour), not plain lines
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert "80/80" in screen
    assert "7/?" in screen
    assert "batch 1  failed  permanent ValueError: bad input" in screen
    assert "bars settled: 2 of 2 batches: 1 completed, 1 failed, 0 open" in screen
    assert "Traceback" not in screen


def test_tail_progress_needs_a_run() -> None:
    done = ckl("tail", "--progress")
    assert done.returncode == 2
    assert "--progress needs a RUN" in done.stderr


def test_await_exits_0_completed_1_failed_2_timed_out(populated: Populated) -> None:
    completed = ckl("await", "r1", "0", store=populated.url)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == 'completed r1/0 result={"sum": 7}\n'
    failed = ckl("await", "r1", "2", "--json", store=populated.url)
    assert failed.returncode == 1, failed.stderr
    doc = json.loads(failed.stdout)
    assert doc["outcome"] == "failed"
    assert doc["state"]["error"]["type"] == "ValueError"
    human = ckl("await", "r1", "2", store=populated.url)
    assert human.stdout.startswith("failed r1/2 (permanent, attempt 1) ValueError: bad row 31")
    timed_out = ckl("await", "r2", "0", "--timeout", "0.2", store=populated.url)
    assert timed_out.returncode == 2, timed_out.stderr
    assert timed_out.stdout.startswith("timed out after 0.2s: r2/0 has not completed or failed yet")
    assert "(status open, attempt 2, items 5)" in timed_out.stdout


def test_await_unknown_checkpoint_or_bad_timeout_is_one_line(populated: Populated) -> None:
    for args, code, message in (
        (["await", "r1", "9"], 1, "error: checkpoint r1/9 does not exist"),
        (["await", "nope", "0"], 1, "error: run 'nope' does not exist"),
        (["await", "r1", "0", "--timeout", "-1"], 2, "error: Invalid value for '--timeout'"),
    ):
        done = ckl(*args, store=populated.url)
        assert done.returncode == code
        assert one_error_line(done).startswith(message)


def test_await_wakes_when_another_process_completes(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("waited", 0)
        proc = _popen("await", "waited", "0", "--timeout", "60", "--json", store=store_url)
        try:
            # The awaiter may start before or after the completion: either way it sees it.
            ledger.complete_checkpoint(token, {"ok": True})
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert (doc["outcome"], doc["state"]["result"]) == ("completed", {"ok": True})


def test_reset_starts_a_new_attempt_and_bad_input_writes_nothing(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("redo", 0)
        ledger.checkpoint_yield(token, 30, 30)
        ledger.fail_checkpoint(token, ValueError("bad"), transient=False)
        before = ledger.count_events()
    for args, code in (
        (["reset", "redo", "0"], 2),  # --reason is required
        (["reset", "redo", "5", "--reason", "x"], 1),
        (["reset", "nope", "0", "--reason", "x"], 1),
        (["reset", "redo", "0", "--reason", ""], 1),  # an empty reason is invalid input
    ):
        done = ckl(*args, store=store_url)
        assert done.returncode == code, (args, done.stderr)
        assert "Traceback" not in done.stderr
    with Ledger.open(store_url) as ledger:
        assert ledger.count_events() == before
    done = ckl("reset", "redo", "0", "--reason", "fixed the input", store=store_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reset redo/0: was failed (attempt 1, cursor=30, items 30)")
    assert "attempt 2 starts from scratch" in done.stdout
    state = json.loads(ckl("show", "redo", "0", "--json", store=store_url).stdout)
    assert (state["status"], state["attempt"], state["cursor"]) == ("open", 2, None)
    assert state["last_reset_reason"] == "fixed the input"
