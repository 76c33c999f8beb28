"""Server-Sent Events: every run's events (``/v1/stream``) or one run's, catch-up then live.

One :class:`StreamHub` per server reads the log once for every client (and, while no client
is attached, only moves its position to the log's head, decoding nothing): a
:class:`~ledger.LogFollower` thread reads pages by global position (on PostgreSQL only below
the visible horizon, so a position it has passed is final), encodes each event **once** as an
SSE frame, and hands the page to the event loop, which appends it to the buffer of every
client that wants it. Writers never wait for readers, and 100 clients cost one log reader.

A client's stream, from ``?after=P`` or the ``Last-Event-ID`` header (which wins, so a
browser's automatic reconnect resumes where it was):

1. **catch-up**: the events after its position up to the hub's position, read from the store
   in pages (a run's from the timeline view, once the views include that position; all runs'
   from the log), until its position is the hub's;
2. **attach**: on the event loop, where the hub delivers too, so between "caught up" and
   "attached" no page can slip by: no gap, and no duplicate, because a frame is sent only if
   its position is above the client's;
3. **live**: frames as the hub delivers them, a ``: keep-alive`` comment on a quiet stream.

Each frame's ``id:`` is the event's global position, so a reconnect (to this server, a
restarted one or another one on the same store) resumes exactly after the last event it saw.

Bounded memory: a client whose buffered frames pass ``stream_buffer_bytes`` while its socket
is full (it reads slower than the log grows) is cut off with a final ``closing`` event naming
the reason and its last id; it reconnects with ``Last-Event-ID`` and catches up from the
store. A client that is reading is never cut, however large one delivery is. Shutdown ends
every stream with a ``closing`` event too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Security
from starlette.responses import StreamingResponse

from ckl.server.errors import ErrorBody
from ckl.server.state import State, require
from ledger import InvalidInput, LogFollower, TooManyStreams, check_run_id
from ledger.follow import seen
from streams.tail import StreamEvent

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from starlette.types import Receive, Scope, Send

    from ckl.server.state import ServeOptions, ServerState
    from ledger import CheckpointEvent, Ledger

__all__ = ["Frame", "StreamHub", "router"]

log = logging.getLogger("ckl.server.stream")

PAGE = 500
"""Events per read, for the hub and for catch-up."""

PAGES_IN_FLIGHT = 4
"""Pages the hub may have handed the event loop and not yet delivered (bounds its memory)."""

RETRY_MS = 1000
"""The ``retry:`` a stream starts with: how long a browser waits before reconnecting."""

Frame = tuple[int, str, bytes]
"""(global position, run id, the encoded SSE frame)."""


def encode_frame(position: int, run_id: str, batch_index: int, event: CheckpointEvent) -> Frame:
    """One event as an SSE frame: ``id`` its position, ``event`` its topic, ``data`` its JSON."""
    item = StreamEvent(
        position=position,
        run_id=run_id,
        batch_index=batch_index,
        checkpoint_id=event.originator_id,
        topic=event.topic,
        at=event.timestamp,
        event=event,
    )
    data = item.model_dump_json()
    return position, run_id, f"id: {position}\nevent: {event.topic}\ndata: {data}\n\n".encode()


def closing_frame(reason: str, detail: str, last_event_id: int) -> bytes:
    """The last frame of a stream the server ends: why, and where to resume."""
    data = json.dumps({"reason": reason, "detail": detail, "last_event_id": last_event_id})
    return f"event: closing\ndata: {data}\n\n".encode()


class _Client:
    """One open stream, as the hub sees it (touched only on the event loop)."""

    __slots__ = ("buffered", "closed", "cut", "frames", "position", "ready", "run_id", "sending")

    def __init__(self, run_id: str | None, position: int) -> None:
        self.run_id, self.position = run_id, position
        self.frames: deque[Frame] = deque()
        self.buffered = 0
        self.cut = self.closed = False
        self.sending = False
        """Its last chunk is not sent yet: the socket is full, the client is not reading."""
        self.ready = asyncio.Event()

    def drain(self) -> bytes:
        """The frames buffered for the client above its position, joined; they are gone."""
        chunk: list[bytes] = []
        while self.frames:
            position, _, frame = self.frames.popleft()
            if position > self.position:
                chunk.append(frame)
                self.position = position
        self.buffered = 0
        return b"".join(chunk)

    async def wait(self, stopping: asyncio.Event, keepalive: float) -> bool:
        """Sleep until frames arrive or the server stops (True), or ``keepalive`` passes."""
        self.ready.clear()
        stop = asyncio.ensure_future(stopping.wait())
        ready = asyncio.ensure_future(self.ready.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, stop}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ready.cancel()
            stop.cancel()
        return bool(done)


class StreamHub:
    """The one log reader of a server's SSE streams; see the module docstring."""

    def __init__(
        self, ledger: Ledger, loop: asyncio.AbstractEventLoop, options: ServeOptions
    ) -> None:
        self.ledger, self.loop, self.options = ledger, loop, options
        start = ledger.recorder.log_head().readable or 0
        self.position = start
        """The position delivered to every attached client (read and written on the loop)."""
        self._clients: set[_Client] = set()
        self._per_client: dict[str, int] = {}
        self._in_flight = threading.Semaphore(PAGES_IN_FLIGHT)
        self._follower = LogFollower(
            ledger,
            self._read_page,
            name="ckl-sse-hub",
            what="streams",
            log=log,
            position=start,
            resume=ledger.resume_position,
        )

    # ------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start reading the log."""
        self._follower.start()

    def stop(self) -> None:
        """Stop reading the log; every stream ends (its clients see a ``closing`` event)."""
        self._follower.stop(wait=False)
        for client in self._clients:
            client.ready.set()

    def join(self) -> None:
        """Wait until the reader thread has ended (call off the event loop, after :meth:`stop`)."""
        self._follower.stop(wait=True)

    # ------------------------------------------------------------- hub thread

    def _read_page(self, follower: LogFollower) -> bool:
        if not self._clients:
            return self._skip_ahead(follower)
        rows = self.ledger.read_log(after=follower.position, limit=PAGE)
        frames: list[Frame] = []
        for position, event in rows:
            token = self.ledger.token_for(event.originator_id)
            if token is not None:
                frames.append(encode_frame(position, token.run_id, token.batch_index, event))
        if not rows:
            return False
        last = rows[-1][0]
        # At most PAGES_IN_FLIGHT pages wait for the loop: a busy loop slows the reader
        # rather than growing a queue.
        while not self._in_flight.acquire(timeout=0.1):
            if follower.stopping:
                return False
        try:
            self.loop.call_soon_threadsafe(self._deliver, frames, last)
        except RuntimeError:  # the loop is closed: the server is gone
            self._in_flight.release()
            return False
        follower.remember(seen(p, e) for p, e in rows)
        follower.advance(last)
        return len(rows) == PAGE

    def _skip_ahead(self, follower: LogFollower) -> bool:
        """With no client attached, move to the log's readable head without reading events.

        The loop decides (where clients attach): if one attached meanwhile, the events are
        read after all (True: read now). A stream still catching up reads from the store up
        to wherever the hub is, so a skip never leaves it a gap.
        """
        head = self.ledger.recorder.log_head().readable or 0
        if head <= follower.position:
            return False
        decided: concurrent.futures.Future[bool] = concurrent.futures.Future()

        def decide() -> None:
            idle = not self._clients
            if idle:
                self.position = max(self.position, head)
            decided.set_result(idle)

        try:
            self.loop.call_soon_threadsafe(decide)
        except RuntimeError:  # the loop is closed: the server is gone
            return False
        while True:
            try:
                idle = decided.result(timeout=0.1)
                break
            except TimeoutError:
                if follower.stopping:
                    return False
        if idle:
            follower.forget()  # moved without reading: nothing to resume exactly from
            follower.advance(head)
        return not idle

    # ------------------------------------------------------------- event loop

    def _deliver(self, frames: list[Frame], last: int) -> None:
        self._in_flight.release()
        limit = self.options.stream_buffer_bytes
        for client in self._clients:
            if client.cut:
                continue
            for frame in frames:
                if client.run_id is not None and frame[1] != client.run_id:
                    continue
                client.frames.append(frame)
                client.buffered += len(frame[2])
            # Only a client that is not taking bytes is slow: a page larger than the limit
            # that reaches a client waiting for frames (or not yet woken) is no backlog.
            if client.buffered > limit and client.sending:
                client.cut = True
            if client.frames or client.cut:
                client.ready.set()
        self.position = last

    def open(self, name: str, run_id: str | None, position: int) -> _Client:
        """Count a new stream of client ``name``.

        Raises:
            TooManyStreams: ``name`` holds ``max_streams`` streams already.
        """
        held = self._per_client.get(name, 0)
        if held >= self.options.max_streams:
            raise TooManyStreams(name, self.options.max_streams)
        self._per_client[name] = held + 1
        return _Client(run_id, position)

    def close(self, name: str, client: _Client) -> None:
        """The stream ended: forget it and uncount it (once)."""
        if client.closed:
            return
        client.closed = True
        self._clients.discard(client)
        held = self._per_client.get(name, 1) - 1
        if held > 0:
            self._per_client[name] = held
        else:
            self._per_client.pop(name, None)

    def attach(self, client: _Client) -> bool:
        """Attach ``client`` if it has caught up with the hub (True); else it reads more."""
        if client.position < self.position:
            return False
        self._clients.add(client)
        return True

    @property
    def clients(self) -> int:
        """Streams attached now."""
        return len(self._clients)


def _catch_up_pages(
    state: ServerState, run_id: str | None, after: int, upto: int
) -> Iterator[list[Frame]]:
    """The frames of (``after``, ``upto``] in pages, from the store (each page read in a thread).

    A run's come from the timeline view (indexed by run), once it includes ``upto``; every
    run's from the log itself.
    """
    if run_id is None:
        frames = _log_frames(state.reader, after, upto)
    else:
        state.views.wait_for(upto, timeout=state.options.views_timeout)
        frames = (
            encode_frame(entry.position, run_id, entry.batch_index, entry.event)
            for entry in state.views.iter_timeline(run_id, after=after, page_size=PAGE)
        )
    page: list[Frame] = []
    for frame in frames:
        if frame[0] > upto:
            break
        page.append(frame)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


def _log_frames(ledger: Ledger, after: int, upto: int) -> Iterator[Frame]:
    for position, event in ledger.iter_log(after=after, page_size=PAGE):
        if position > upto:
            return
        token = ledger.token_for(event.originator_id)
        if token is not None:
            yield encode_frame(position, token.run_id, token.batch_index, event)


async def _frames(state: ServerState, client: _Client) -> AsyncIterator[bytes]:
    """The client's stream: catch up from the store, attach to the hub, then live."""
    hub = state.hub
    assert hub is not None  # noqa: S101  (set at startup)
    yield f"retry: {RETRY_MS}\n\n".encode()
    # 0. a position whose event the store no longer holds (a failover lost it, or an archive
    # purged it): go on from the newest one it holds, and tell the client, whose own
    # "already seen" mark must move back too (the new primary may reuse positions above it).
    resumed = await asyncio.to_thread(state.reader.resume_position, client.position)
    if resumed < client.position:
        data = json.dumps({"last_event_id": resumed, "requested": client.position})
        yield f"event: rewound\ndata: {data}\n\n".encode()
        client.position = resumed
    # 1. catch up from the store, a page at a time, until the client's position is the hub's.
    while not hub.attach(client) and not state.stopping.is_set():
        upto = hub.position
        pages = _catch_up_pages(state, client.run_id, client.position, upto)
        while (page := await asyncio.to_thread(next, pages, None)) is not None:
            yield b"".join(frame for _, _, frame in page)
        client.position = upto
    # 2. live: what the hub delivers, keep-alives while quiet.
    async for chunk in _live(state, client):
        client.sending = True  # until the server's send of it returns (keep-alives too)
        yield chunk
        client.sending = False


async def _live(state: ServerState, client: _Client) -> AsyncIterator[bytes]:
    while True:
        if state.stopping.is_set():
            yield closing_frame(
                "shutdown", "the server is shutting down; reconnect", client.position
            )
            return
        if client.frames:
            chunk = client.drain()
            if chunk:
                yield chunk
            continue
        if client.cut:
            yield closing_frame(
                "slow_client",
                f"more than {state.options.stream_buffer_bytes} bytes were waiting for this "
                "client; reconnect with Last-Event-ID to resume from the store",
                client.position,
            )
            return
        if not await client.wait(state.stopping, state.options.keepalive):
            yield b": keep-alive\n\n"


class _EventStream(StreamingResponse):
    """A stream that gives its place back however it ends (even if it never started)."""

    def __init__(self, frames: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            frames,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


router = APIRouter(tags=["streams"])

_STREAM_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
        "description": "Server-Sent Events. Each event: `id:` its global position, `event:` its"
        " topic (Created, Yielded, Completed, Failed…), `data:` a StreamEvent JSON object. The"
        " server may end the stream with an `event: closing` whose data names the reason"
        " (`slow_client`, `shutdown`) and the `last_event_id` to resume from. A stream that"
        " resumes from a position the store no longer holds (lost in a failover, or purged)"
        " starts with an `event: rewound` whose `last_event_id` replaces the client's: later"
        " events may have lower positions than the one it asked for.",
    },
    429: {
        "model": ErrorBody,
        "description": "TooManyStreams: this client's streams are at the limit.",
    },
}

After = Annotated[
    int | None, Query(ge=0, description="Start after this global position (0: from the start).")
]
LastEventId = Annotated[
    str | None,
    Header(alias="Last-Event-ID", description="Resume after this position (wins over `after`)."),
]


def _start(after: int | None, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        text = last_event_id.strip()
        if not text.isdigit():
            raise InvalidInput("Last-Event-ID", f"{text!r} is not a global position (an int ≥ 0)")
        return int(text)
    return after or 0


def _stream(state: ServerState, request: Request, run_id: str | None, start: int) -> _EventStream:
    hub = state.hub
    assert hub is not None  # noqa: S101
    name: str = getattr(request.state, "client", "local")
    client = hub.open(name, run_id, start)
    return _EventStream(_frames(state, client), lambda: hub.close(name, client))


@router.get(
    "/stream",
    operation_id="stream",
    summary="Every run's events as Server-Sent Events: catch-up, then live",
    response_class=StreamingResponse,
    responses=_STREAM_RESPONSES,
    dependencies=[Security(require("read"))],
)
async def stream_all(
    request: Request, state: State, after: After = None, last_event_id: LastEventId = None
) -> _EventStream:
    """``run_stream(ledger)`` over HTTP; resume with ``Last-Event-ID``."""
    return _stream(state, request, None, _start(after, last_event_id))


@router.get(
    "/runs/{run_id:run_id}/stream",
    operation_id="run_stream",
    summary="One run's events as Server-Sent Events: catch-up, then live",
    response_class=StreamingResponse,
    responses=_STREAM_RESPONSES,
    dependencies=[Security(require("read"))],
)
async def stream_run(
    request: Request,
    state: State,
    run_id: Annotated[str, Path(description="The run.")],
    after: After = None,
    last_event_id: LastEventId = None,
) -> _EventStream:
    """``run_stream(ledger, run_id)`` over HTTP; a run with no events yet waits for them."""
    check_run_id(run_id)
    return _stream(state, request, run_id, _start(after, last_event_id))
