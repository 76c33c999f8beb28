"""A stream resumed from a position the store no longer holds starts with ``event: rewound``.

After a failover to an asynchronous standby the last events a client saw may be gone, and the
new primary may give new events positions below them. The loss is made here with a purge
permit, as the store's owner can (``tests/ledger/test_lost_commits.py`` does the same): the
client's ``Last-Event-ID`` names a lost event, and the stream tells it where it goes on from,
then delivers the events after that, nothing it saw twice.
"""

from __future__ import annotations

from ledger import Ledger
from tests._loss import lose_events_after
from tests.ckl.server._sse import SseEvent, SseStream
from tests.ckl.server.conftest import Server


def _first_events(stream: SseStream, count: int) -> list[SseEvent]:
    got: list[SseEvent] = []
    for event in stream.events():
        got.append(event)
        if len(got) == count:
            break
    return got


def test_a_stream_resumed_from_a_lost_position_is_rewound(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("r", 0)
        for n in range(1, 4):
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
        positions = [p for p, _ in ledger.read_log()]
        lose_events_after(ledger, token, 2)  # the last two yields: positions[2] and positions[3]
        lost = positions[3]
        server = Server(store_url, "--poll-interval", "0.05").start()
        try:
            with SseStream(server.url, "/v1/stream", last_event_id=str(lost)) as stream:
                assert stream.status == 200
                ledger.checkpoint_yield(token, cursor=3, items_processed=3)  # version 3 again
                rewound, event = _first_events(stream, 2)
            with SseStream(server.url, "/v1/stream", last_event_id=str(positions[1])) as plain:
                (first,) = _first_events(plain, 1)
        finally:
            server.stop()
    assert rewound.event == "rewound"
    assert rewound.json() == {"last_event_id": positions[1], "requested": lost}
    assert event.event == "checkpoint.Yielded"
    assert event.json()["event"]["originator_version"] == 3
    # A position still held: no rewound frame, the next event at once.
    assert first.event == "checkpoint.Yielded"
    assert first == event
