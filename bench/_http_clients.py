"""The processes of section 11's stream benchmark: paced writers and SSE subscribers.

``python -m bench._http_clients writer STORE RUN INDEX RATE PHASE`` opens a ``Ledger`` on
``STORE`` (default settings: durable), creates checkpoint ``(RUN, INDEX)``, makes a few untimed
yields and says ``ready POSITION`` (its last event's log position). Then, one line each:

* ``run START END``: from ``time.monotonic_ns()`` = ``START`` + ``PHASE`` / ``RATE`` seconds,
  one ``checkpoint_yield`` every 1 / ``RATE`` seconds until ``END`` (a late one is not made up
  for: the next is due one interval after it); answers ``{"commits": [[position, ns], ...]}``,
  each append's log position and the moment it committed (read in a ``Ledger.add_listener``
  callback, which runs right after the commit);
* ``quit``.

``python -m bench._http_clients subscribe HOST PORT RUN COUNT TARGET`` opens ``COUNT``
``GET /v1/runs/RUN/stream`` connections from the start of the run, read by one thread with raw
non-blocking sockets and a selector (HTTP/1.1 chunked transfer decoded by hand, SSE frames
split on blank lines, only each frame's ``id:`` parsed), and says ``ready`` once every stream
has seen the position ``TARGET``. Each frame is noted with the moment the ``recv`` that
completed it returned. A stream the server ends (a ``closing`` event, or the connection
closed) is opened again with ``Last-Event-ID``. Then, one line each:

* ``drain POSITION TIMEOUT``: waits until every stream has seen ``POSITION`` (or ``TIMEOUT``
  seconds), answers ``{"seen": [[positions, ns], ...] (one per stream), "cpu": seconds of
  this process since ready, "wall": seconds since ready, "reconnects": n}``;
* ``quit``.

``CLOCK_MONOTONIC`` is one clock for every process of a Linux machine, so the parent can
subtract the writers' commit times from the subscribers' receipt times.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._harness import stop_line_process

if TYPE_CHECKING:
    from ledger import Recorded

__all__ = ["ClientProcess", "main"]

ROOT = Path(__file__).resolve().parents[1]
_WARMUP = 3
_RECV = 1 << 18


def _answer(payload: object) -> None:
    print(json.dumps(payload, separators=(",", ":")), flush=True)


def writer(store: str, run_id: str, index: int, rate: float, phase: float) -> int:
    """Serve ``run`` commands until ``quit`` or the end of stdin."""
    from bench._workload import Feed, open_ledger  # noqa: PLC0415  (subscribers skip the ledger)

    last = [(0, 0)]

    def on_recorded(recorded: Recorded) -> None:
        last[0] = (recorded.position, time.monotonic_ns())

    with open_ledger(store) as ledger:
        feed = Feed(ledger.create_checkpoint(run_id, index))
        ledger.add_listener(on_recorded)
        for _ in range(_WARMUP):
            feed.yield_on(ledger)
        print(f"ready {last[0][0]}", flush=True)
        interval = 1e9 / rate
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            if command != "run":
                _answer({"error": f"unknown command {command!r}"})
                continue
            start, end = int(args[0]), int(args[1])
            commits: list[tuple[int, int]] = []
            due = start + phase * interval
            while due < end:
                delay = (due - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                feed.yield_on(ledger)
                commits.append(last[0])
                due = max(due + interval, time.monotonic_ns())
            _answer({"commits": commits})
    return 0


class _Stream:
    """One SSE connection: its socket, its decoding state and what it saw."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.positions: list[int] = []
        self.times: list[int] = []
        self.last = 0
        self.sock = self._connect()
        self._reset()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        resume = f"Last-Event-ID: {self.last}\r\n" if self.last else ""
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\n{resume}\r\n"
        )
        sock.sendall(request.encode())
        sock.setblocking(False)  # noqa: FBT003
        return sock

    def _reset(self) -> None:
        self.raw = bytearray()
        self.body = bytearray()
        self.head_done = False
        self.data_left = 0
        self.crlf_left = 0
        self.ended = False

    def reconnect(self) -> None:
        """Open the stream again after the last position seen."""
        self.sock.close()
        self.sock = self._connect()
        self._reset()

    def feed(self, data: bytes, now: int) -> None:
        """Decode what ``recv`` returned at ``now``; ``ended`` says the stream is over."""
        raw = self.raw
        raw += data
        if not self.head_done:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).decode("latin-1")
            if not head.startswith("HTTP/1.1 200"):
                raise RuntimeError(f"stream refused: {head.splitlines()[0]}")
            if "transfer-encoding: chunked" not in head.lower():
                raise RuntimeError(f"expected a chunked stream, got headers {head!r}")
            del raw[: end + 4]
            self.head_done = True
        taken = 0
        while taken < len(raw):
            if self.data_left:
                piece = raw[taken : taken + self.data_left]
                self.body += piece
                self.data_left -= len(piece)
                taken += len(piece)
            elif self.crlf_left:
                step = min(self.crlf_left, len(raw) - taken)
                self.crlf_left -= step
                taken += step
            else:
                eol = raw.find(b"\r\n", taken)
                if eol < 0:
                    break
                size = int(bytes(raw[taken:eol]).split(b";")[0], 16)
                taken = eol + 2
                if size == 0:
                    self.ended = True
                    break
                self.data_left, self.crlf_left = size, 2
        del raw[:taken]
        self._frames(now)

    def _frames(self, now: int) -> None:
        body = self.body
        start = 0
        while (end := body.find(b"\n\n", start)) >= 0:
            if body.startswith(b"id: ", start):
                eol = body.index(b"\n", start)
                position = int(body[start + 4 : eol])
                self.positions.append(position)
                self.times.append(now)
                self.last = max(self.last, position)
            elif body.startswith(b"event: closing", start):
                self.ended = True
            start = end + 2
        del body[:start]


class _Subscribers:
    """Every stream of this process, read by one thread."""

    def __init__(self, host: str, port: int, run_id: str, count: int) -> None:
        path = f"/v1/runs/{run_id}/stream"
        self.streams = [_Stream(host, port, path) for _ in range(count)]
        self.selector = selectors.DefaultSelector()
        for stream in self.streams:
            self.selector.register(stream.sock, selectors.EVENT_READ, stream)
        self.changed = threading.Condition()
        self.low = 0
        self.reconnects = 0
        self.stopping = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="subscribers", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.stopping:
                ready = self.selector.select(0.1)
                with self.changed:
                    for key, _ in ready:
                        self._read(key.data)
                    low = min(stream.last for stream in self.streams)
                    if low != self.low:
                        self.low = low
                        self.changed.notify_all()
        except BaseException as exc:  # reported to the parent by drain
            with self.changed:
                self.error = exc
                self.changed.notify_all()

    def _read(self, stream: _Stream) -> None:
        try:
            data = stream.sock.recv(_RECV)
        except BlockingIOError:
            return
        now = time.monotonic_ns()
        if data:
            stream.feed(data, now)
        if not data or stream.ended:
            self.selector.unregister(stream.sock)
            stream.reconnect()
            self.reconnects += 1
            self.selector.register(stream.sock, selectors.EVENT_READ, stream)

    def wait(self, position: int, timeout: float) -> None:
        """Until every stream has seen ``position`` (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while self.error is None and self.low < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.changed.wait(left)
            if self.error is not None:
                raise RuntimeError(f"subscriber loop failed: {self.error!r}")

    def seen(self) -> list[tuple[list[int], list[int]]]:
        with self.changed:
            return [(s.positions[:], s.times[:]) for s in self.streams]

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        for stream in self.streams:
            stream.sock.close()


def subscribe(host: str, port: int, run_id: str, count: int, target: int) -> int:
    """Open the streams, say ready when they reached ``target``; serve ``drain`` commands."""
    subscribers = _Subscribers(host, port, run_id, count)
    try:
        subscribers.wait(target, 60.0)
        if subscribers.low < target:
            print(f"not ready: streams at {subscribers.low} of {target}", flush=True)
            return 1
        print("ready", flush=True)
        cpu, wall = time.process_time(), time.monotonic()
        for line in sys.stdin:
            command, *args = line.split()
            if command == "quit":
                break
            if command != "drain":
                _answer({"error": f"unknown command {command!r}"})
                continue
            subscribers.wait(int(args[0]), float(args[1]))
            _answer(
                {
                    "seen": subscribers.seen(),
                    "cpu": time.process_time() - cpu,
                    "wall": time.monotonic() - wall,
                    "reconnects": subscribers.reconnects,
                }
            )
    finally:
        subscribers.close()
    return 0


def main(argv: list[str]) -> int:
    """``writer STORE RUN INDEX RATE PHASE`` or ``subscribe HOST PORT RUN COUNT TARGET``."""
    role, *args = argv
    if role == "writer":
        return writer(args[0], args[1], int(args[2]), float(args[3]), float(args[4]))
    if role == "subscribe":
        return subscribe(args[0], int(args[1]), args[2], int(args[3]), int(args[4]))
    print(f"unknown role {role!r}", file=sys.stderr)
    return 2


class ClientProcess:
    """The parent's handle on one writer or subscriber process (stderr goes to the parent's)."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._http_clients", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.name = f"{args[0]} process"

    def line(self) -> str:
        """The next line it writes.

        Raises:
            RuntimeError: the process ended.
        """
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(f"the {self.name} ended (exit {code}); see its stderr")
        return line.strip()

    def ready(self) -> str:
        """Block until it says ``ready``; the rest of that line.

        Raises:
            RuntimeError: it said something else, or ended.
        """
        line = self.line()
        word, _, rest = line.partition(" ")
        if word != "ready":
            raise RuntimeError(f"the {self.name} said {line!r} instead of ready")
        return rest

    def send(self, *words: object) -> None:
        """Send one command line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(" ".join(str(word) for word in words) + "\n")
        self.proc.stdin.flush()

    def answer(self) -> dict[str, Any]:
        """The JSON answer to the last command.

        Raises:
            RuntimeError: the process died or reported an error.
        """
        reply = json.loads(self.line())
        assert isinstance(reply, dict)
        if "error" in reply:
            raise RuntimeError(f"the {self.name} reported {reply}")
        return reply

    def close(self) -> None:
        """Ask the process to stop, and wait for it."""
        stop_line_process(self.proc, timeout=15)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
