"""The JavaScript client (ckl/clients/js/ckl-client.mjs) against a real `ckl serve`, in real Node.

Each test runs ``node`` as a subprocess on a real server (SQLite and PostgreSQL), then reads
the store back through a Python :class:`~ledger.Ledger` to check what the client wrote: the
Effect seed's sequence (ckl/clients/js/effect-sequence.mjs), the SSE reader across a server
restart (every event once, in order), and the Idempotency-Key retries behind a proxy that
loses replies after the server applied the command (applied once).
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger import Completed, Created, Failed, Ledger, Retried, Yielded
from tests.ckl.server.conftest import ROOT, Server
from tests.fix_postgres import in_ci

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ledger import CheckpointEvent

JS = ROOT / "ckl" / "clients" / "js"
SCRIPTS = Path(__file__).resolve().parent / "js"
NODE_TIMEOUT = 60


@pytest.fixture(scope="module")
def node() -> str:
    """The ``node`` on PATH (v20 or later: global fetch, ReadableStream)."""
    found = shutil.which("node")
    if found is None:
        message = "the JavaScript client's tests need Node.js 20+ on PATH (apt-get install nodejs)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    version = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert int(version.lstrip("v").split(".")[0]) >= 20, f"node {version} is older than 20"
    return found


def run_events(store: str, run_id: str) -> list[tuple[int, int, CheckpointEvent]]:
    """(position, batch, event) of the run's events in the log, read by a fresh Ledger."""
    with Ledger.open(store) as ledger:
        found = []
        for position, event in ledger.iter_log():
            token = ledger.token_for(event.originator_id)
            if token is not None and token.run_id == run_id:
                found.append((position, token.batch_index, event))
        return found


def test_the_effect_sequence_runs_over_http_and_writes_the_seeds_events(
    node: str, served: Server
) -> None:
    done = subprocess.run(
        [node, str(JS / "effect-sequence.mjs"), served.url, "effect-js"],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
        cwd=JS,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "FAIL" not in out
    assert out.index("progress 1/2") < out.index("await reported: CheckpointFailedError")
    assert "progress 1/2 (blocked: batch 1 failed)" in out
    assert "refused: InvalidTransition (409)" in out
    assert out.index("retried, attempt 2 resumes from cursor 200") < out.index("progress 2/2")
    assert out.rstrip().endswith("all expectations held")

    events = run_events(served.store, "effect-js")
    kinds = [(batch, type(event).__name__) for _, batch, event in events]
    assert kinds == [
        (0, "Created"),
        (0, "Yielded"),
        (0, "Yielded"),
        (0, "Yielded"),
        (0, "Completed"),
        (1, "Created"),
        (1, "Yielded"),
        (1, "Yielded"),
        (1, "Failed"),
        (1, "Retried"),
        (1, "Yielded"),
        (1, "Completed"),
    ]
    by_batch = {b: [e for _, bb, e in events if bb == b] for b in (0, 1)}
    created = by_batch[1][0]
    assert isinstance(created, Created)
    assert (created.total_batches, created.metadata) == (2, {"total_items": 300})
    failed = by_batch[1][3]
    assert isinstance(failed, Failed)
    assert (failed.error_type, failed.transient, failed.cursor) == ("UpstreamTimeout", True, 200)
    assert failed.message == "upstream timed out reading items 200..299"
    assert failed.traceback is not None
    assert "processBatch" in failed.traceback
    assert isinstance(by_batch[1][4], Retried)
    resumed = by_batch[1][5]
    assert isinstance(resumed, Yielded)
    assert (resumed.attempt, resumed.cursor, resumed.items_processed) == (2, 300, 300)
    results = [e.result for e in (by_batch[0][-1], by_batch[1][-1]) if isinstance(e, Completed)]
    assert results == [{"sum": sum(range(300))}, {"sum": sum(range(300, 600))}]


class _Lines:
    """A subprocess's stdout lines as they come (read by a thread, handed over by a queue)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.lines.put(line.rstrip("\n"))
            self.lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def take(self, count: int, timeout: float = 30.0) -> Iterator[str]:
        deadline = time.monotonic() + timeout
        for _ in range(count):
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, "the stream script ended early"
            yield line


def _append(store: str, run_id: str, batch: int, yields: int) -> None:
    """Create batch ``batch`` and yield ``yields`` times (Python, straight to the store)."""
    with Ledger.open(store) as ledger:
        token = ledger.create_checkpoint(run_id, batch)
        for step in range(1, yields + 1):
            ledger.checkpoint_yield(token, step, step)


def _publish(path: Path, url: str) -> None:
    staged = path.with_suffix(".tmp")
    staged.write_text(url)
    staged.replace(path)


def test_the_stream_reader_delivers_every_event_once_in_order_across_a_server_restart(
    node: str, store_url: str, tmp_path: Path
) -> None:
    run_id = "streamed"
    _append(store_url, "other-run", 0, 1)  # another run's events are not in this stream
    _append(store_url, run_id, 0, 3)
    server = Server(store_url, "--poll-interval", "0.05").start()
    url_file = tmp_path / "url"
    _publish(url_file, server.url)
    total = 4 + 3 + 3
    script = subprocess.Popen(
        [node, str(SCRIPTS / "stream_across_restart.mjs"), str(url_file), run_id, str(total)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _Lines(script)
        got = list(lines.take(4))  # caught up with what was there
        server.stop()  # SIGTERM: its stream ends with `event: closing` (shutdown)
        _append(store_url, run_id, 1, 2)  # written while no server runs
        server.start()  # same store, a new port
        _publish(url_file, server.url)
        got += list(lines.take(3))  # caught up again after Last-Event-ID
        _append(store_url, run_id, 2, 2)  # live
        got += list(lines.take(3))
        _, errors = script.communicate(timeout=NODE_TIMEOUT)
    finally:
        script.kill()
        server.stop()
    assert script.returncode == 0, errors
    delivered = [json.loads(line) for line in got]
    expected = [
        {"position": p, "topic": e.topic, "batch_index": b}
        for p, b, e in run_events(store_url, run_id)
    ]
    assert len(expected) == total
    assert delivered == expected  # every event once, in order, none of the other run's
    # The stopped server's stream ended with `event: closing`; the reader resumed after it.
    assert f"reconnect shutdown after {delivered[3]['position']}" in errors


@pytest.fixture
def tokens(tmp_path: Path) -> tuple[Path, str, str, str]:
    """Tokens of a worker (read, write), a viewer (read), an operator: (file, *tokens)."""
    worker, viewer, oncall = (f"{name}-token-0123456789" for name in ("worker", "viewer", "oncall"))
    path = tmp_path / "tokens"
    path.write_text(
        f"worker read,write {worker}\nviewer read {viewer}\noncall read,write,operate {oncall}\n"
    )
    return path, worker, viewer, oncall


def test_retries_after_lost_replies_and_a_503_apply_each_command_once_and_errors_are_typed(
    node: str, sqlite_url: str, tokens: tuple[Path, str, str, str], tmp_path: Path
) -> None:
    # The client's side of idempotency: one backend is enough (the ledger's repeat of a
    # command id is tested on both in tests/ledger).
    store_url = sqlite_url
    token_file, worker, viewer, oncall = tokens
    run_id = "jobs/faults #1"  # a run id that needs encoding in a URL path
    archives = tmp_path / "archives"
    archives.mkdir()
    server = Server(
        store_url, "--token-file", str(token_file), "--archive-dir", str(archives)
    ).start()
    try:
        done = subprocess.run(
            [node, str(SCRIPTS / "client_faults.mjs"), server.url, run_id, worker, viewer, oncall],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)

    # The yield's reply was lost after the server applied it: the retry, with the same
    # generated key, got the recorded outcome. The completion met a 503 (Retry-After: 1, so
    # it waited; the 503 came from the proxy) and then a lost reply. What reached the server:
    # create, the yield twice (one key), the stale yield, the completion twice (one key).
    paths = [path for path, _ in out["forwarded"]]
    assert paths == ["0", "yield", "yield", "yield", "complete", "complete"]
    keys = [key for _, key in out["forwarded"]]
    assert len(set(keys[:4])) == 3
    assert keys[1] == keys[2]
    assert keys[4:] == ["complete-once", "complete-once"]
    assert out["yielded"] == [10, 10, 2]
    assert out["completed"] == ["completed", 3]
    # GET …/events gives each event its own fields (cursor, result), not only the base's.
    assert out["events"] == [[1, None, None], [2, 10, None], [3, None, {"rows": 10}]]
    assert out["completeWaitedMs"] >= 900
    # One event per command, read from the archive file (the run was archived at the end).
    assert out["exported"] == [True] * 4  # the header, then the run's three events
    assert out["archived"] == [run_id, 3, True]
    (archive,) = archives.iterdir()
    header, *lines = archive.read_text().splitlines()
    assert json.loads(header)["events"] == 3
    rows = sorted((json.loads(line) for line in lines), key=lambda row: row["position"])
    assert [row["topic"] for row in rows] == [
        "checkpoint.Created",
        "checkpoint.Yielded",
        "checkpoint.Completed",
    ]
    assert [row["state"]["command_id"] for row in rows][1:] == [keys[1], "complete-once"]

    def refusal(label: str) -> tuple[str, int, list[bool]]:
        return out[label]["name"], out[label]["status"], out[label]["instances"]

    assert refusal("badInput") == ("InvalidInput", 400, [True])
    assert out["badInput"]["fields"]["field"] == "items_processed"
    assert refusal("unknownRun") == ("RunNotFound", 404, [True, True])
    assert refusal("completedAgain") == ("InvalidTransition", 409, [True])
    assert refusal("stale") == ("StaleAttempt", 409, [True, True])
    assert out["stale"]["fields"] == {
        "checkpoint": f"{run_id}/0",
        "attempt": 7,
        "current": 1,
        "hint": out["stale"]["fields"]["hint"],
    }
    assert refusal("outOfScope") == ("OutOfScope", 403, [True])
    assert out["outOfScope"]["fields"]["needed"] == "operate"
    assert refusal("readOnly") == ("OutOfScope", 403, [True])
    assert refusal("noToken") == ("Unauthorized", 401, [True])
    assert out["readable"] == 1
    assert refusal("writeArchived") == ("RunArchived", 410, [True])
    assert refusal("unreachable") == ("NetworkError", 0, [True])
