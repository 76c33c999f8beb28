"""`ckl serve`'s SSE streams and clean shutdown, on a real uvicorn subprocess.

Catch-up then live, resume with Last-Event-ID across restarts (SIGTERM and SIGKILL), slow
clients cut off and resumed, keep-alives, and a clean shutdown (streams closed, long-polls
answered 503, no half-written state).

The reference is always the store's own log, read through a Ledger in this process: a stream
is right when it holds every event of its scope once, in the log's order, with ``id`` the
event's global position. Writers are a Ledger in this process (SQLite's server polls every
50 ms for them, PostgreSQL's is woken by NOTIFY) or real HTTP clients.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
import pytest

from ckl.server.run import GRACEFUL_SECONDS
from ledger import CheckpointToken, Ledger, verify_chains
from ledger.events import Yielded
from tests.ckl.server._sse import Comment, SseEvent, SseStream
from tests.ckl.server.conftest import Server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

POLL = ("--poll-interval", "0.05")
WAIT = 20.0
"""Longest wait for something a test expects (a failure, not a pace)."""


# ----------------------------------------------------------------- helpers


class Row(NamedTuple):
    """One event, as the store's log and a stream both tell it."""

    position: int
    run_id: str
    checkpoint_id: str
    version: int
    topic: str


def log_of(store: str, run_id: str | None = None) -> list[Row]:
    """The store's log (or one run's part of it), in order."""
    with Ledger.open(store) as ledger:
        rows = []
        for position, event in ledger.iter_log():
            token = ledger.token_for(event.originator_id)
            assert token is not None
            if run_id is None or token.run_id == run_id:
                rows.append(
                    Row(
                        position,
                        token.run_id,
                        str(event.originator_id),
                        event.originator_version,
                        event.topic,
                    )
                )
        return rows


def seen(events: list[SseEvent]) -> list[Row]:
    """What a stream delivered, in the shape of :func:`log_of`, its frames checked on the way."""
    rows = []
    for event in events:
        data = event.json()
        assert event.id == data["position"], event
        assert event.event == data["topic"], event
        assert data["checkpoint_id"] == data["event"]["originator_id"], event
        rows.append(
            Row(
                data["position"],
                data["run_id"],
                data["checkpoint_id"],
                data["event"]["originator_version"],
                data["topic"],
            )
        )
    return rows


def read_until(stream: SseStream, last: int) -> list[SseEvent]:
    """Events until one with id ``last`` (a ``closing`` first fails the test)."""
    events = []
    for event in stream.events():
        assert event.event != "closing", f"closed early: {event.data}"
        events.append(event)
        if event.id is not None and event.id >= last:
            return events
    pytest.fail(f"the stream ended ({stream.ended}) before id {last}: {events[-1:]}")


def read_to_end(stream: SseStream, last: int, timeout: float = WAIT) -> list[SseEvent]:
    """Events until the body ends, or until the one with id ``last``, within ``timeout``."""
    events: list[SseEvent] = []
    deadline = time.monotonic() + timeout
    for item in stream.items():
        if isinstance(item, SseEvent):
            events.append(item)
            if item.id is not None and item.id >= last:
                break
        if time.monotonic() > deadline:
            pytest.fail(f"the stream went on past {timeout}s: {events[-1:]}")
    return events


def collect(stream: SseStream, into: list[SseEvent]) -> threading.Thread:
    """A thread appending the stream's events to ``into`` until it ends or is closed."""

    def read() -> None:
        with contextlib.suppress(OSError):  # closed by the test when it is done
            into.extend(stream.events())  # one by one, as they come

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def write(ledger: Ledger, tokens: list[CheckpointToken], count: int, start: int = 0) -> None:
    """``count`` yields, round robin over ``tokens`` (cursor = item count = its number)."""
    for n in range(start, start + count):
        token = tokens[n % len(tokens)]
        ledger.checkpoint_yield(token, n, n)


def wait_for(
    what: str | Callable[[], str], check: Callable[[], object], timeout: float = WAIT
) -> None:
    """Poll ``check()`` until it is true (a failure after ``timeout``, saying ``what``)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what if isinstance(what, str) else what()}")
        time.sleep(0.02)


def stop(server: Server, *, kill: bool = False) -> int:
    """SIGTERM (or SIGKILL) and wait; its exit code.

    Its output pipe is closed too: conftest's ``Server.stop`` leaves it to the garbage
    collector, whose ResourceWarning would fail a test that drops a stopped server.
    """
    if kill:
        server.kill()
        code = server.process.returncode if server.process else 0
    else:
        code = server.stop()
    if server.process is not None and server.process.stdout is not None:
        if server._reader is not None:
            server._reader.join(5)
        server.process.stdout.close()
    return code


class Resumer(threading.Thread):
    """A reader that reconnects with Last-Event-ID = the last id it saw, as a browser does.

    It reads ``path`` from whatever server ``url`` names now (the test moves it to a restarted
    server), records each ``closing`` event and how each connection ended, and stops once it
    has seen an event with id ``target`` (or ``stop`` is set).
    """

    def __init__(self, url: str, path: str) -> None:
        super().__init__(daemon=True)
        self.url, self.path = url, path
        self.events: list[SseEvent] = []
        self.closings: list[tuple[dict[str, Any], int | None]] = []
        """Each ``closing`` event's data, with the last id seen before it."""
        self.ends: list[str] = []
        self.resumed_from: list[str | None] = []
        self.target: int | None = None
        self.stop = threading.Event()
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set() and not self._done():
                self._connect_once()
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def _done(self) -> bool:
        last = self.events[-1].id if self.events else None
        return self.target is not None and last is not None and last >= self.target

    def _connect_once(self) -> None:
        last = str(self.events[-1].id) if self.events else None
        stream = SseStream(self.url, self.path, last_event_id=last, timeout=5.0)
        try:
            stream.open()
        except OSError:  # no server there (yet): try again, as a browser does after retry:
            time.sleep(0.05)
            return
        self.resumed_from.append(last)
        with stream:
            assert stream.status == 200, stream.body()
            try:
                for item in stream.items():  # keep-alives too: a target set late is seen
                    if isinstance(item, SseEvent) and item.event == "closing":
                        # the last event: the body ends next
                        self.closings.append((item.json(), self.events[-1].id))
                    elif isinstance(item, SseEvent):
                        self.events.append(item)
                    if self._done() or self.stop.is_set():
                        break
            except OSError as exc:  # a reset mid-chunk (SIGKILL)
                self.ends.append(type(exc).__name__)
                return
        self.ends.append(stream.ended)
        time.sleep(0.05)  # a browser waits retry: (1 s); a test need not

    def wait_events(self, count: int) -> None:
        def check() -> bool:
            if self.failure is not None:
                raise self.failure
            return len(self.events) >= count

        wait_for(f"{count} events on {self.path} (ends {self.ends})", check)

    def finish(self, target: int) -> None:
        self.target = target
        self.join(WAIT)
        if self.failure is not None:
            raise self.failure
        assert not self.is_alive(), f"reader stuck at {self.events[-1:]} (ends {self.ends})"


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[tuple[Server, str]]:
    """One SQLite server for the tests whose subject is the HTTP layer, not the backend.

    Keep-alives and the resume parameters are decided in ckl/server/stream.py before any store
    read, the same code on both backends (the backends' catch-up and live paths are covered by
    the parametrized tests above them), so one server serves those tests, each on its own run.
    """
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{Path(folder) / 'ledger.db'}"
        with Ledger.open(store):
            pass
        server = Server(store, *POLL, "--keepalive", "0.2").start()
        try:
            yield server, store
        finally:
            with contextlib.suppress(Exception):
                stop(server)


# ----------------------------------------------------------------- 1. catch-up, then live


def test_catch_up_then_live_by_run_and_for_all(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        a = [ledger.create_checkpoint("a", 0), ledger.create_checkpoint("a", 1)]
        b = [ledger.create_checkpoint("b", 0)]
        write(ledger, [a[0], b[0], a[1]], 30)  # before the server: all of it is catch-up
        server = Server(store_url, *POLL).start()
        try:
            before = log_of(store_url)
            with (
                SseStream(server.url, "/v1/runs/a/stream") as run_a,
                SseStream(server.url, "/v1/stream") as every,
                SseStream(server.url, "/v1/runs/c/stream") as run_c,  # no such run yet
            ):
                assert run_a.status == every.status == run_c.status == 200
                assert run_a.headers["content-type"].startswith("text/event-stream")
                caught_a = read_until(
                    run_a, max(row.position for row in before if row.run_id == "a")
                )
                caught_all = read_until(every, before[-1].position)
                assert run_a.retry == every.retry == 1000
                # live: events written while the streams are open, c's first among them
                c = ledger.create_checkpoint("c", 0)
                write(ledger, [b[0], a[0], c, a[1]], 40, start=30)
                after = log_of(store_url)
                live_a = read_until(run_a, max(row.position for row in after if row.run_id == "a"))
                live_all = read_until(every, after[-1].position)
                only_c = read_until(run_c, max(row.position for row in after if row.run_id == "c"))
        finally:
            stop(server)
    assert seen(caught_a) == [row for row in before if row.run_id == "a"]
    assert seen(caught_a + live_a) == [row for row in after if row.run_id == "a"]
    assert seen(caught_all + live_all) == after
    assert {row.run_id for row in seen(caught_all + live_all)} == {"a", "b", "c"}
    assert seen(only_c) == [row for row in after if row.run_id == "c"]
    ids = [row.position for row in seen(caught_all + live_all)]
    assert ids == sorted(set(ids))  # strictly increasing


# ----------------------------------------------------------------- 2. resume across restarts


class Writer(threading.Thread):
    """Appends ``count`` yields round robin over ``batches`` at a steady pace, on its own Ledger."""

    def __init__(self, store: str, batches: list[tuple[str, int]], count: int) -> None:
        super().__init__(daemon=True)
        self.store, self.batches, self.count = store, batches, count
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            with Ledger.open(self.store) as ledger:
                tokens = [ledger.create_checkpoint(run, batch) for run, batch in self.batches]
                for n in range(self.count):
                    ledger.checkpoint_yield(tokens[n % len(tokens)], n, n)
                    time.sleep(0.01)  # spread over the restarts below
        except BaseException as exc:  # reported by the test thread
            self.failure = exc

    def finish(self) -> None:
        self.join(WAIT * 2)
        if self.failure is not None:
            raise self.failure
        assert not self.is_alive()


def test_resume_with_last_event_id_across_sigterm_and_sigkill(store_url: str) -> None:
    """Every event of the run once, in order, through a SIGTERM and a SIGKILL of the server.

    A reader follows one run while a writer appends 300 events and the server is stopped
    (SIGTERM: a ``closing`` event, reason shutdown) and later killed (SIGKILL: the connection
    just ends); it reconnects to each new server with Last-Event-ID.
    """
    with Ledger.open(store_url):
        pass
    server = Server(store_url, *POLL, "--keepalive", "1").start()
    reader = Resumer(server.url, "/v1/runs/r/stream")
    writer = Writer(store_url, [("r", 0), ("other", 0), ("r", 1)], 300)
    reader.start()
    writer.start()
    try:
        reader.wait_events(40)
        code = stop(server)  # SIGTERM while the stream is live and the writer writes
        assert code == 0, server.output()
        wait_for("the closing event", lambda: reader.closings)
        server = Server(store_url, *POLL, "--keepalive", "1").start()
        reader.url = server.url
        reader.wait_events(120)
        stop(server, kill=True)  # SIGKILL mid-stream: no closing event
        server = Server(store_url, *POLL, "--keepalive", "1").start()
        reader.url = server.url
        writer.finish()
        expected = log_of(store_url, "r")
        reader.finish(expected[-1].position)
    finally:
        reader.stop.set()
        stop(server)
        reader.join(WAIT)
    assert seen(reader.events) == expected
    assert len(expected) == 2 + 200  # r's creates and its two thirds of the yields
    # The SIGTERM ended the stream with a closing event naming where to resume (a reconnect
    # the old server accepted just before it closed its socket gets one too: never an event)
    # and the body's last chunk; the SIGKILL just ended the connection.
    assert reader.closings
    for closing, last_seen in reader.closings:
        assert closing["reason"] == "shutdown"
        assert last_seen is not None
        assert closing["last_event_id"] >= last_seen
    assert reader.ends[: len(reader.closings)] == ["complete"] * len(reader.closings)
    assert reader.ends[len(reader.closings)] in {"eof", "reset", "ConnectionResetError"}
    # Each reconnect resumed from the last id seen.
    assert reader.resumed_from[0] is None
    assert all(last is not None for last in reader.resumed_from[1:])


# ----------------------------------------------------------------- 3. a slow client


def test_slow_client_is_cut_off_and_resumes_while_fast_ones_get_everything(
    sqlite_url: str,
) -> None:
    """A client that stops reading is cut off and resumes; one that reads is never cut.

    The slow one opens its stream after a burst bigger than its socket can hold and reads
    nothing: its catch-up fills the socket, and a keep-alive then waits on it. The events that
    follow wait for it until ``limit`` bytes are passed; then it is cut off (``closing``,
    slow_client) and resumes from the store with Last-Event-ID. The fast one reads from the
    start and gets everything, uncut, though single deliveries are bigger than the limit.

    SQLite only: the cut-off is the hub's bookkeeping on the event loop, the same on both
    backends, and its resume is the catch-up the parametrized tests above cover on both.
    """
    limit = 65536
    # What the server's socket takes before a send waits: the kernel's send buffer (autotuned
    # up to tcp_wmem's maximum), then uvicorn's transport 64 KiB more.
    kernel = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    pad = 32_000  # half of max_accumulated_results_bytes: frames of ~32 KB
    burst = (kernel + 4 * 65536) // pad
    with Ledger.open(sqlite_url) as ledger:
        r, other = ledger.create_checkpoint("r", 0), ledger.create_checkpoint("other", 0)
        server = Server(
            sqlite_url, *POLL, "--stream-buffer-bytes", str(limit), "--keepalive", "0.2"
        ).start()
        fast_events: list[SseEvent] = []

        def write_r(start: int, count: int) -> None:
            for n in range(start, start + count):
                ledger.checkpoint_yield(r, n, n, {"pad": "x" * pad})
                if n % 4 == 0:
                    ledger.checkpoint_yield(other, n, n)

        try:
            fast = SseStream(server.url, "/v1/runs/r/stream").open()
            collect(fast, fast_events)
            write_r(0, burst)
            # Once the hub has delivered the burst, the slow client's catch-up is one page
            # and it attaches at once (a client still catching up is not attached: it reads
            # the store, where nothing waits for it in memory).
            head = log_of(sqlite_url, "r")[-1].position
            wait_for("the burst", lambda: fast_events and fast_events[-1].id == head)
            slow = SseStream(server.url, "/v1/runs/r/stream", rcvbuf=4096).open()
            time.sleep(1.0)  # its catch-up fills its socket; a keep-alive waits on it
            more = 4 * limit // pad
            write_r(burst, more)  # four times the limit, live: it is cut off here...
            time.sleep(0.3)  # (the hub delivers the rest in later pages)
            write_r(burst + more, more)  # ...so these come only from the store
            expected = log_of(sqlite_url, "r")
            wait_for(
                lambda: f"the fast client (it has {fast_events[-1:]})",
                lambda: fast_events and fast_events[-1].id == expected[-1].position,
            )
            # The server answers other clients while the slow one holds its place.
            with server.client() as client:
                assert client.get("/v1/health", timeout=5).status_code == 200
            # Now the slow client reads: what was sent before the cut, then closing, then the
            # body's end.
            slow.sock.settimeout(5)
            *got, last = read_to_end(slow, expected[-1].position)
            slow.close()
            assert last.event == "closing", (last.id, last.event, len(got))
            assert slow.ended == "complete"
            closing = last.json()
            assert closing["reason"] == "slow_client", closing
            assert f"{limit} bytes" in closing["detail"]
            assert closing["last_event_id"] == got[-1].id
            assert closing["last_event_id"] < expected[-1].position  # cut before the end
            # It resumes from the store with the id the closing event gave it.
            resumed = SseStream(
                server.url, "/v1/runs/r/stream", last_event_id=str(closing["last_event_id"])
            ).open()
            with resumed:
                rest = read_until(resumed, expected[-1].position)
        finally:
            with contextlib.suppress(OSError):
                fast.close()
            stop(server)
    assert seen(got + rest) == expected
    assert seen(fast_events) == expected  # never cut: it was reading


# ----------------------------------------------------------------- 4. keep-alive


def test_keep_alive_comments_on_a_quiet_stream(quiet_server: tuple[Server, str]) -> None:
    server, _ = quiet_server
    items: list[SseEvent | Comment] = []
    with SseStream(server.url, "/v1/runs/quiet/stream") as stream:
        assert stream.headers["cache-control"] == "no-cache"
        started = time.monotonic()
        for item in stream.items():
            items.append(item)
            if time.monotonic() - started > 1.0:
                break
    assert not [i for i in items if isinstance(i, SseEvent)]
    # --keepalive 0.2: about five in a second; three leave room for a loaded machine.
    assert len([i for i in items if i == Comment("keep-alive")]) >= 3, items


# ----------------------------------------------------------------- 5. clean shutdown


def in_thread(target: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


class Hammer(threading.Thread):
    """POSTs yields to ``s/0`` one after another (cursor n), until the server goes."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.acknowledged: list[int] = []
        """The cursors of the yields that got a 200."""
        self.refused: list[httpx.Response] = []

    def run(self) -> None:
        with self.server.client() as writer:
            n = 0
            while True:
                try:
                    reply = writer.post(
                        "/v1/runs/s/checkpoints/0/yield",
                        json={"cursor": n, "items_processed": n},
                        timeout=10,
                    )
                except httpx.TransportError:
                    return  # the server is gone, or closed this connection as it stopped
                if reply.status_code != 200:
                    self.refused.append(reply)
                    return
                self.acknowledged.append(n)
                n += 1


def test_sigterm_ends_streams_and_long_polls_and_keeps_every_acknowledged_yield(
    store_url: str,
) -> None:
    server = Server(store_url, *POLL).start()
    with server.client() as client:
        for batch in (0, 1):
            assert client.post(f"/v1/runs/s/checkpoints/{batch}").status_code == 200
    streams = [
        SseStream(server.url, "/v1/stream").open(),
        SseStream(server.url, "/v1/runs/s/stream").open(),
    ]
    endings: list[list[SseEvent]] = [[], []]
    long_poll: list[httpx.Response] = []
    threads = [
        in_thread(lambda: endings[0].extend(streams[0].events())),
        in_thread(lambda: endings[1].extend(streams[1].events())),
        in_thread(
            lambda: long_poll.append(
                httpx.get(
                    f"{server.url}/v1/runs/s/checkpoints/1/await",
                    params={"timeout": 60},
                    timeout=70,
                )
            )
        ),
    ]
    hammer = Hammer(server)
    hammer.start()
    threads.append(hammer)
    try:
        wait_for("the writer", lambda: len(hammer.acknowledged) >= 30)
        started = time.monotonic()
        code = server.stop(timeout=GRACEFUL_SECONDS + 20)
        took = time.monotonic() - started
        for thread in threads:
            thread.join(WAIT)
    finally:
        for stream in streams:
            stream.close()
        stop(server, kill=True)
    acknowledged = hammer.acknowledged
    assert code == 0, server.output()
    assert not hammer.refused, [r.text for r in hammer.refused]
    # Nothing was left for uvicorn's graceful timeout to cut: every stream and the long-poll
    # ended by itself (a correctness bound, not a speed one).
    assert took < GRACEFUL_SECONDS, (took, server.output())
    for events, stream in zip(endings, streams, strict=True):
        assert events, "no closing event"
        assert events[-1].event == "closing"
        assert events[-1].json()["reason"] == "shutdown"
        assert stream.ended == "complete"
    [answer] = long_poll
    assert answer.status_code == 503
    assert answer.json()["error"] == "ServiceStopping"
    assert int(answer.headers["retry-after"]) >= 1
    # Every acknowledged yield is in the store; at most the one in flight more; chains verify.
    with Ledger.open(store_url) as ledger:
        cursors = [
            event.cursor
            for event in ledger.iter_checkpoint_events(CheckpointToken.for_batch("s", 0))
            if isinstance(event, Yielded)
        ]
        report = verify_chains(ledger)
    assert cursors[: len(acknowledged)] == acknowledged
    assert cursors == list(range(len(cursors)))
    assert len(cursors) - len(acknowledged) <= 1
    assert report.ok, report


# ----------------------------------------------------------------- 6. where a stream starts


def test_last_event_id_wins_over_after(quiet_server: tuple[Server, str]) -> None:
    server, store = quiet_server
    with Ledger.open(store) as ledger:
        token = ledger.create_checkpoint("p", 0)
        write(ledger, [token], 5)
    rows = log_of(store, "p")
    positions = [row.position for row in rows]
    path = f"/v1/runs/p/stream?after={positions[1]}"

    def first_ids(path: str, last_event_id: str | None) -> list[int | None]:
        with SseStream(server.url, path, last_event_id=last_event_id) as stream:
            assert stream.status == 200, stream.body()
            return [e.id for e in read_until(stream, positions[-1])]

    assert first_ids(path, None) == positions[2:]
    assert first_ids(path, str(positions[3])) == positions[4:]  # the header wins
    assert first_ids(path, "  ") == positions[2:]  # a blank header is no header
    assert first_ids("/v1/runs/p/stream", str(positions[0])) == positions[1:]
    with SseStream(server.url, path, last_event_id="12x") as bad:
        assert bad.status == 400
        body = bad.body().decode()
        assert '"InvalidInput"' in body
        assert "Last-Event-ID" in body
