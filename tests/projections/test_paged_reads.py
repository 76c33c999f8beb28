"""Paged reads by position: every row once, in order, across pages and concurrent appends."""

from __future__ import annotations

from datetime import datetime

import pytest

from ledger import CheckpointToken, InvalidInput, Ledger
from projections import Projections


def _run(ledger: Ledger, run_id: str, batches: int, yields: int) -> list[CheckpointToken]:
    tokens = []
    for batch in range(batches):
        token = ledger.create_checkpoint(run_id, batch)
        for step in range(1, yields + 1):
            ledger.checkpoint_yield(token, step, step)
        tokens.append(token)
    return tokens


def test_iter_timeline_reads_every_event_once_in_order_across_pages_and_appends(
    store_url: str,
) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        [token] = _run(ledger, "p", 1, 6)
        _run(ledger, "other", 1, 2)
        views.sync()
        whole = [entry.position for entry in views.timeline("p")]
        assert len(whole) == 7
        read = views.iter_timeline("p", page_size=3)
        seen = [next(read).position for _ in range(4)]
        # Appended while the iterator is half-way: read once, after what came before.
        ledger.checkpoint_yield(token, 7, 7)
        ledger.fail_checkpoint(token, RuntimeError("x"), transient=True)
        views.sync()
        seen += [entry.position for entry in read]
        assert len(seen) == 9
        assert seen[:7] == whole
        assert seen == sorted(set(seen))
        backwards = [e.position for e in views.iter_timeline("p", descending=True, page_size=2)]
        assert backwards == seen[::-1]
        # Paging by hand (an HTTP handler's after=/limit=) gives the same.
        pages, after = [], 0
        while page := views.timeline("p", after=after, limit=4):
            pages += [entry.position for entry in page]
            after = page[-1].position
        assert pages == seen


def test_iter_timeline_filters_by_batch_topic_and_time(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        first, second = _run(ledger, "f", 2, 3)
        ledger.complete_checkpoint(second, None)
        views.sync()
        every = views.timeline("f")
        ones = list(views.iter_timeline("f", batches=[1], page_size=2))
        assert [e.batch_index for e in ones] == [1] * 5
        done = list(views.iter_timeline("f", topics=["checkpoint.Completed"]))
        assert [e.batch_index for e in done] == [1]
        middle = every[3].at
        later = list(views.iter_timeline("f", since=middle))
        assert [e.position for e in later] == [e.position for e in every if e.at >= middle]
        earlier = list(views.iter_timeline("f", until=middle))
        assert [e.position for e in earlier] == [e.position for e in every if e.at <= middle]
        assert list(views.iter_timeline("f", batches=[])) == []
        assert views.heads("f") == {0: (first.checkpoint_id, 4), 1: (second.checkpoint_id, 5)}
        assert views.run_states("f")[1].status == "completed"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"after": -1}, "after"),
        ({"batches": [-1]}, "batches"),
        ({"batches": 3}, "batches"),
        ({"topics": ["nope"]}, "topics"),
        ({"topics": "checkpoint.Created"}, "topics"),
        ({"since": datetime(2026, 1, 1)}, "since"),  # noqa: DTZ001  (naive on purpose)
    ],
)
def test_bad_arguments_raise_invalid_input_before_reading(
    sqlite_url: str, arguments: dict[str, object], field: str
) -> None:
    with Ledger.open(sqlite_url) as ledger, Projections(ledger) as views:
        with pytest.raises(InvalidInput) as raised:
            views.iter_timeline("r", **arguments)  # type: ignore[arg-type]
        assert raised.value.field == field
        failures_arguments = {k: v for k, v in arguments.items() if k != "topics"}
        if failures_arguments:
            with pytest.raises(InvalidInput):
                views.iter_failures(**failures_arguments)  # type: ignore[arg-type]


def test_iter_failures_pages_by_position_both_ways(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        tokens = _run(ledger, "a", 5, 1)
        for number, token in enumerate(tokens):
            ledger.fail_checkpoint(token, ValueError(f"bad {number}"), transient=number % 2 == 0)
        views.sync()
        every = views.failures()
        assert [r.message for r in every] == [f"bad {n}" for n in range(5)]
        assert list(views.iter_failures(page_size=2)) == every
        assert list(views.iter_failures(descending=True, page_size=2)) == every[::-1]
        assert views.failures(after=every[1].position, limit=2) == every[2:4]
        assert [r.batch_index for r in views.iter_failures(run_id="a", batches=[1, 3])] == [1, 3]
        assert list(views.iter_failures(transient=True, page_size=1)) == every[::2]


def test_ledger_iterates_the_log_and_a_checkpoints_events_by_page(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        [token, other] = _run(ledger, "l", 2, 4)
        log = list(ledger.iter_log(page_size=3))
        assert [position for position, _ in log] == [p for p, _ in ledger.read_log(limit=100)]
        assert len(log) == 10
        assert list(ledger.iter_log(after=log[4][0], page_size=2)) == log[5:]
        events = list(ledger.iter_checkpoint_events(token, page_size=2))
        assert events == ledger.checkpoint_events(token)
        later = list(ledger.iter_checkpoint_events(other, after_version=3, page_size=1))
        assert [event.originator_version for event in later] == [4, 5]
        with pytest.raises(InvalidInput):
            ledger.iter_log(page_size=0)
        with pytest.raises(InvalidInput):
            ledger.iter_checkpoint_events(token, after_version=-1)
