"""Bad input, fuzzed: every public entry point answers a typed error, and never half-writes.

Hypothesis draws an entry point and, for each argument, either a valid value or an evil one:
wrong types, NaN and infinities, ints past 64 bits, huge strings, non-JSON objects, lone
surrogates, NUL, right-to-left marks, SQL-looking strings. The call must return, or raise a
``LedgerError`` subclass (the promise of ``ledger.errors``: nothing untyped leaks, no pydantic
``ValidationError``, no driver error, no ``TypeError``). Around every call the store's event
count is compared: a refused call writes nothing, and a command that succeeds writes at most
its one event.

Outside the promise, on purpose: constructing pydantic models (``CheckpointToken(...)``,
``LedgerSettings(...)``) directly raises pydantic's ``ValidationError``; the entry points
(``CheckpointToken.for_batch``, ``LedgerSettings.from_env``) are fuzzed instead.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import CheckpointToken, Ledger, LedgerError, LedgerSettings
from projections import Projections
from streams import (
    Coordinator,
    await_checkpoint,
    await_checkpoint_async,
    completion,
    run_batches,
    run_stream,
)
from tests.faults._support import pick

if TYPE_CHECKING:
    from collections.abc import Iterator

    from hypothesis.strategies import DrawFn, SearchStrategy


class NotJSON:
    """An arbitrary object: not JSON, not a token, not a number."""

    def __repr__(self) -> str:
        return "NotJSON()"


ODD_TEXT = [
    "\ud800",  # a lone surrogate
    "a\x00b",  # NUL
    "\u202eevil\u202c",  # right-to-left override
    "x'); DROP TABLE ckl_events; --",
    "' OR 1=1 --",
    "%s %s %(x)s",
    "\ufeff",
    "😀" * 50,
    "",
    " ",
    "x" * 100_000,
]
odd_text = st.one_of(
    st.sampled_from(ODD_TEXT),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
)
EVIL: SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 2**63, 2**63 - 1, -1]),
    st.floats(),
    odd_text,
    st.binary(max_size=20),
    st.builds(NotJSON),
    st.builds(object),
    st.datetimes(),  # naive
    st.uuids(),
    st.just({1: "int key"}),
    st.just({"a": math.nan}),
    st.just({"deep": [[[[[[{"x": math.inf}]]]]]]}),
    st.just({"big": "x" * 70_000}),
    st.just([NotJSON()]),
    st.just((1, 2)),
    st.just({1, 2}),
    st.lists(odd_text, max_size=3),
    st.dictionaries(odd_text, odd_text, max_size=3),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
json_objects = st.dictionaries(st.text(max_size=5), json_values, max_size=3)
run_ids = st.sampled_from(["fuzz", "fuzz-other", "x'); DROP TABLE ckl_events; --"])
batch_indexes = st.integers(0, 3)
small_timeouts = st.sampled_from([0, 0.001, 0.01])


def arg(valid: SearchStrategy[Any]) -> SearchStrategy[Any]:
    """A valid value three times in four, else an evil one."""
    return st.one_of(valid, valid, valid, EVIL)


def _waits_for_ages(value: object) -> bool:
    """A valid timeout of more than a second: waiting it out is the contract, not a bug."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 1 < value < math.inf


def timeout_arg() -> SearchStrategy[Any]:
    """A short timeout, or an evil one (never a long valid wait for something never coming)."""
    return st.one_of(small_timeouts, small_timeouts, EVIL.filter(lambda v: not _waits_for_ages(v)))


class Env:
    """One ledger (memory://), its views and coordinator, and two tokens to aim at."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.views = Projections(ledger)
        self.coord = Coordinator(ledger, self.views)
        self.open_token = ledger.create_checkpoint("fuzz", 0, total_batches=4)
        self.done_token = ledger.create_checkpoint("fuzz", 1, total_batches=4)
        ledger.complete_checkpoint(self.done_token, {"ok": True})


@st.composite
def tokens(draw: DrawFn) -> CheckpointToken:
    return CheckpointToken.for_batch(draw(run_ids), draw(batch_indexes))


def token_arg(env: Env) -> SearchStrategy[Any]:
    return arg(st.sampled_from([env.open_token, env.done_token]) | tokens())


def moments() -> SearchStrategy[datetime]:
    return st.datetimes(timezones=st.just(UTC))


# Each entry point draws its arguments and calls; ``writes`` is how many events it may append.
Call: TypeAlias = Callable[[Env, st.DataObject], object]


def _ledger_calls() -> dict[str, tuple[int, Call]]:
    return {
        "create_checkpoint": (
            1,
            lambda e, d: e.ledger.create_checkpoint(
                d.draw(arg(run_ids)),
                d.draw(arg(batch_indexes)),
                total_batches=d.draw(arg(st.none() | st.integers(1, 5))),
                metadata=d.draw(arg(st.none() | json_objects)),
            ),
        ),
        "checkpoint_yield": (
            1,
            lambda e, d: e.ledger.checkpoint_yield(
                d.draw(token_arg(e)),
                d.draw(arg(st.integers(0, 10**6) | st.text(max_size=10) | json_objects)),
                d.draw(arg(st.integers(0, 10**6))),
                d.draw(arg(st.none() | json_objects)),
            ),
        ),
        "complete_checkpoint": (
            1,
            lambda e, d: e.ledger.complete_checkpoint(
                d.draw(token_arg(e)), d.draw(arg(json_values))
            ),
        ),
        "fail_checkpoint": (
            1,
            lambda e, d: e.ledger.fail_checkpoint(
                d.draw(token_arg(e)),
                d.draw(arg(st.text(max_size=20) | st.builds(ValueError, st.text(max_size=5)))),
                d.draw(arg(st.booleans())),
                error_type=d.draw(arg(st.none() | st.text(min_size=1, max_size=10))),
            ),
        ),
        "retry_checkpoint": (1, lambda e, d: e.ledger.retry_checkpoint(d.draw(token_arg(e)))),
        "reset_checkpoint": (
            1,
            lambda e, d: e.ledger.reset_checkpoint(d.draw(token_arg(e)), d.draw(arg(st.text()))),
        ),
        "find_checkpoint": (
            0,
            lambda e, d: e.ledger.find_checkpoint(d.draw(arg(run_ids)), d.draw(arg(batch_indexes))),
        ),
        "get_checkpoint": (
            0,
            lambda e, d: e.ledger.get_checkpoint(
                d.draw(token_arg(e)), d.draw(arg(st.none() | st.integers(1, 5) | moments()))
            ),
        ),
        "checkpoint_events": (0, lambda e, d: e.ledger.checkpoint_events(d.draw(token_arg(e)))),
        "read_log": (
            0,
            lambda e, d: e.ledger.read_log(
                d.draw(arg(st.integers(0, 100))), d.draw(arg(st.integers(1, 100)))
            ),
        ),
        "token_for": (0, lambda e, d: e.ledger.token_for(d.draw(arg(st.uuids())))),
        "count_events": (0, lambda e, d: e.ledger.count_events(d.draw(arg(st.none() | tokens())))),
        "CheckpointToken.for_batch": (
            0,
            lambda _e, d: CheckpointToken.for_batch(
                d.draw(arg(run_ids)), d.draw(arg(batch_indexes))
            ),
        ),
        "Ledger.open": (0, lambda _e, d: _open_and_close(d.draw(EVIL))),
        "LedgerSettings.from_env": (
            0,
            lambda _e, d: LedgerSettings.from_env(
                **{d.draw(st.sampled_from(sorted(LedgerSettings.model_fields))): d.draw(EVIL)}
            ),
        ),
    }


def _open_and_close(store: Any) -> None:
    Ledger.open(store).close()


def _views_calls() -> dict[str, tuple[int, Call]]:
    return {
        "Projections": (
            0,
            lambda e, d: Projections(
                e.ledger,
                history_size=d.draw(arg(st.integers(1, 10))),
                batch_size=d.draw(arg(st.integers(1, 10))),
            ),
        ),
        "current": (0, lambda e, d: e.views.current(d.draw(token_arg(e)))),
        "history": (0, lambda e, d: e.views.history(d.draw(token_arg(e)))),
        "checkpoints": (0, lambda e, d: e.views.checkpoints(d.draw(arg(run_ids)))),
        "pending_checkpoints": (0, lambda e, d: e.views.pending_checkpoints(d.draw(arg(run_ids)))),
        "progress": (0, lambda e, d: e.views.progress(d.draw(arg(run_ids)))),
        "failures": (
            0,
            lambda e, d: e.views.failures(
                run_id=d.draw(arg(st.none() | run_ids)),
                since=d.draw(arg(st.none() | moments())),
                until=d.draw(arg(st.none() | moments())),
                error_type=d.draw(arg(st.none() | st.text(max_size=10))),
                transient=d.draw(arg(st.none() | st.booleans())),
                limit=d.draw(arg(st.none() | st.integers(0, 10))),
            ),
        ),
        "timeline": (
            0,
            lambda e, d: e.views.timeline(
                d.draw(arg(run_ids)),
                after=d.draw(arg(st.integers(0, 10))),
                until=d.draw(arg(st.none() | moments())),
                limit=d.draw(arg(st.none() | st.integers(0, 10))),
            ),
        ),
        "run_state_as_of": (
            0,
            lambda e, d: e.views.run_state_as_of(d.draw(arg(run_ids)), d.draw(arg(moments()))),
        ),
        "wait_for": (
            0,
            lambda e, d: e.views.wait_for(d.draw(arg(st.integers(0, 3))), d.draw(timeout_arg())),
        ),
        "sync": (0, lambda e, d: e.views.sync(d.draw(timeout_arg()))),
    }


def _streams_calls() -> dict[str, tuple[int, Call]]:
    return {
        # The settled token answers at once, so even an evil (huge) timeout cannot hang.
        "await_checkpoint": (
            0,
            lambda e, d: await_checkpoint(
                e.ledger, d.draw(arg(st.just(e.done_token))), d.draw(timeout_arg())
            ),
        ),
        "await_checkpoint_async": (
            0,
            lambda e, d: asyncio.run(
                await_checkpoint_async(
                    e.ledger, d.draw(arg(st.just(e.done_token))), d.draw(timeout_arg())
                )
            ),
        ),
        "Coordinator.await_checkpoint": (
            0,
            lambda e, d: e.coord.await_checkpoint(
                d.draw(arg(st.just(e.done_token))), d.draw(timeout_arg())
            ),
        ),
        "completion": (0, lambda e, d: completion(e.ledger, d.draw(token_arg(e)))),
        "run_stream": (
            0,
            lambda e, d: run_stream(
                e.ledger,
                d.draw(arg(st.none() | run_ids)),
                d.draw(arg(st.integers(0, 10))),
                batch_size=d.draw(arg(st.integers(1, 10))),
            ),
        ),
        "Coordinator.get_pending_checkpoints": (
            0,
            lambda e, d: e.coord.get_pending_checkpoints(d.draw(arg(run_ids))),
        ),
        "Coordinator.create_checkpoint": (
            1,
            lambda e, d: e.coord.create_checkpoint(
                d.draw(arg(run_ids)), d.draw(arg(batch_indexes))
            ),
        ),
        "Coordinator.fail_checkpoint": (
            1,
            lambda e, d: e.coord.fail_checkpoint(
                d.draw(token_arg(e)), d.draw(arg(st.text(max_size=5))), d.draw(arg(st.booleans()))
            ),
        ),
        "run_batches": (
            -1,  # a whole run: many events, or none when refused
            lambda e, d: run_batches(
                e.coord,
                d.draw(arg(st.sampled_from(["fuzz-run", "fuzz-run-2"]))),
                d.draw(arg(st.lists(st.integers(0, 9), max_size=2))),
                d.draw(arg(st.just(_process))),
                transient=d.draw(arg(st.just((ConnectionError,)))),
                max_attempts=d.draw(arg(st.integers(1, 3))),
                on_progress=d.draw(arg(st.none() | st.just(_ignore))),
                confirm_timeout=d.draw(arg(st.just(5.0))),
            ),
        ),
    }


def _process(ctx: Any) -> object:
    return {"batch": ctx.batch}


def _ignore(_progress: object) -> None:
    """An on_progress that takes no action."""


ENTRY_POINTS = {**_ledger_calls(), **_views_calls(), **_streams_calls()}


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    config = LedgerSettings(store="memory://", store_retries=0, poll_interval=0.05)
    with Ledger.open(settings=config) as ledger:
        opened = Env(ledger)
        yield opened
        opened.views.close()


@settings(
    max_examples=pick(600, 20_000),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    deadline=None,
)
@given(name=st.sampled_from(sorted(ENTRY_POINTS)), data=st.data())
def test_every_entry_point_answers_bad_input_with_a_typed_error_and_writes_nothing(
    env: Env, name: str, data: st.DataObject
) -> None:
    writes, call = ENTRY_POINTS[name]
    before = env.ledger.count_events()
    try:
        call(env, data)
    except LedgerError:
        assert env.ledger.count_events() == before, f"{name} refused, yet wrote"
        return
    written = env.ledger.count_events() - before
    if writes >= 0:
        assert written <= writes, f"{name} wrote {written} events"


def test_huge_ints_are_refused_before_they_reach_a_bigint_column() -> None:
    """Regression: items_processed 2**70 was accepted, then broke every projection catch-up."""
    with Ledger.open("memory://") as ledger, Projections(ledger) as views:
        token = ledger.create_checkpoint("huge", 0)
        before = ledger.count_events()
        for call in (
            lambda: ledger.checkpoint_yield(token, 1, 2**63),
            lambda: ledger.create_checkpoint("huge", 2**70),
            lambda: ledger.create_checkpoint("huge", 1, total_batches=2**64),
            lambda: ledger.get_checkpoint(token, as_of=2**64),
            lambda: ledger.read_log(after=2**64),
        ):
            with pytest.raises(LedgerError, match=re.escape("2**63 - 1")):
                call()
        assert ledger.count_events() == before
        ledger.checkpoint_yield(token, 1, 2**63 - 1)
        views.catch_up()
        summary = views.current(token)
        assert summary is not None
        assert summary.items_processed == 2**63 - 1


def test_bad_view_queries_are_invalid_input_not_store_unavailable() -> None:
    """Regression: a lone surrogate or a wrong type in a query leaked a raw driver error."""
    with Ledger.open("memory://") as ledger, Projections(ledger) as views:
        for call in (
            lambda: views.checkpoints("\ud800"),
            lambda: views.progress(42),  # type: ignore[arg-type]
            lambda: views.current("run/0"),  # type: ignore[arg-type]
            lambda: views.failures(limit=-1),
            lambda: views.wait_for(1, timeout=math.nan),
            lambda: ledger.token_for("not-a-uuid"),  # type: ignore[arg-type]
            lambda: ledger.read_log(after="0"),  # type: ignore[arg-type]
        ):
            with pytest.raises(LedgerError) as caught:
                call()
            assert isinstance(caught.value, ValueError), caught.value  # InvalidInput
        assert views.checkpoints("fine") == []
        assert ledger.token_for(UUID(int=7)) is None


def test_streams_refuse_bad_arguments_before_writing_anything() -> None:
    """Regression: these raised TypeError, wrote a failure, or were accepted silently."""
    with Ledger.open("memory://") as ledger, Coordinator(ledger) as coord:
        token = ledger.create_checkpoint("streams", 0)
        ledger.complete_checkpoint(token, 1)
        before = ledger.count_events()
        for call in (
            lambda: await_checkpoint(ledger, token, timeout={"s": 1}),  # type: ignore[arg-type]
            lambda: completion(ledger, "streams/0"),  # type: ignore[arg-type]
            lambda: run_stream(ledger, 42),  # type: ignore[arg-type]
            lambda: run_batches(coord, "rb", [1], 42),  # type: ignore[arg-type]
            lambda: run_batches(coord, "rb", 7, _process),  # type: ignore[arg-type]
            lambda: run_batches(coord, "rb", [1], _process, transient=(42,)),  # type: ignore[arg-type]
            lambda: run_batches(coord, "rb", [1], _process, confirm_timeout=math.nan),
            lambda: run_batches(coord, "rb", [1], _process, on_progress=3),  # type: ignore[arg-type]
        ):
            with pytest.raises(LedgerError) as caught:
                call()
            assert isinstance(caught.value, ValueError), caught.value  # InvalidInput
        assert ledger.count_events() == before


@pytest.mark.parametrize("name", ["poll_interval", "store_retry_delay", "connect_timeout"])
def test_waits_longer_than_an_hour_are_refused(name: str) -> None:
    """Regression: ``ckl project --poll-interval 1e300`` killed the follower threads."""
    with pytest.raises(LedgerError) as caught:
        LedgerSettings.from_env(**{name: 1e300})
    assert name in str(caught.value)
    assert LedgerSettings.from_env(**{name: 3600}) is not None
