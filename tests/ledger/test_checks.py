"""Each domain rule once: every entry point refuses the same run ids, counts and timeouts alike.

One rule, one message: whichever layer a bad argument reaches first (the ledger, the views,
the streams, the archive), the error is the ``InvalidInput`` of ``ledger.checks``, and nothing
is written. And "settled" has one meaning: completed or failed permanently.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from ledger import (
    CheckpointToken,
    InvalidInput,
    Ledger,
    archive_run,
    check_count,
    check_run_id,
    check_seconds,
    export_run,
    run_is_settled,
    verify_chains,
)
from projections import Projections
from streams import Coordinator, await_checkpoint, run_batches, run_stream

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


class Env:
    def __init__(self, ledger: Ledger, views: Projections, coord: Coordinator, out: Path) -> None:
        self.ledger, self.views, self.coord, self.out = ledger, views, coord, out


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with (
        Ledger.open("memory://") as ledger,
        Projections(ledger) as views,
        Coordinator(ledger, views) as coord,
    ):
        ledger.create_checkpoint("fine", 0)
        yield Env(ledger, views, coord, tmp_path_factory.mktemp("archives"))


def _expected(rule: Callable[[], object]) -> str:
    with pytest.raises(InvalidInput) as caught:
        rule()
    return str(caught.value)


def assert_refused_as(env: Env, rule: Callable[[], object], call: Callable[[], object]) -> None:
    before = env.ledger.count_events()
    with pytest.raises(InvalidInput) as caught:
        call()
    assert str(caught.value) == _expected(rule)
    assert env.ledger.count_events() == before


BAD_RUN_IDS: list[Any] = ["", "x" * 201, "a\x00b", "\ud800", "tab\there", "new\nline", 42, b"r"]

RUN_ID_ENTRY_POINTS: dict[str, Callable[[Env, Any], object]] = {
    "create_checkpoint": lambda e, r: e.ledger.create_checkpoint(r, 0),
    "find_checkpoint": lambda e, r: e.ledger.find_checkpoint(r, 0),
    "CheckpointToken.for_batch": lambda _e, r: CheckpointToken.for_batch(r, 0),
    "views.checkpoints": lambda e, r: e.views.checkpoints(r),
    "views.pending_checkpoints": lambda e, r: e.views.pending_checkpoints(r),
    "views.progress": lambda e, r: e.views.progress(r),
    "views.timeline": lambda e, r: e.views.timeline(r),
    "views.failures": lambda e, r: e.views.failures(run_id=r),
    "views.run_state_as_of": lambda e, r: e.views.run_state_as_of(r, datetime.now(UTC)),
    "coordinator.get_pending_checkpoints": lambda e, r: e.coord.get_pending_checkpoints(r),
    "run_stream": lambda e, r: run_stream(e.ledger, r),
    "run_batches": lambda e, r: run_batches(e.coord, r, [1], lambda _ctx: None),
    "export_run": lambda e, r: export_run(e.ledger, r, e.out / "x.jsonl"),
    "archive_run": lambda e, r: archive_run(e.ledger, r, e.out / "y.jsonl"),
    "verify_chains": lambda e, r: verify_chains(e.ledger, r),
}


@pytest.mark.parametrize("entry", sorted(RUN_ID_ENTRY_POINTS))
@pytest.mark.parametrize("run_id", BAD_RUN_IDS, ids=repr)
def test_every_entry_point_refuses_a_bad_run_id_with_the_ledgers_rule(
    env: Env, entry: str, run_id: Any
) -> None:
    call = RUN_ID_ENTRY_POINTS[entry]
    assert_refused_as(env, lambda: check_run_id(run_id), lambda: call(env, run_id))


def test_the_longest_and_oddest_valid_run_ids_are_accepted_everywhere(env: Env) -> None:
    for run_id in ("x" * 200, "é ünïcode ✓", "x'); DROP TABLE ckl_events; --"):
        assert check_run_id(run_id) == run_id
        env.ledger.find_checkpoint(run_id, 0)
        assert env.views.checkpoints(run_id) == []
        run_stream(env.ledger, run_id)  # refused at once if it were bad; not subscribed


BAD_COUNTS: list[Any] = [-1, True, 1.5, "1", None, 2**63]

COUNT_ENTRY_POINTS: dict[str, tuple[int, Callable[[Env, Any], object]]] = {
    "read_log(after)": (0, lambda e, n: e.ledger.read_log(after=n)),
    "read_log(limit)": (1, lambda e, n: e.ledger.read_log(limit=n)),
    "create_checkpoint(batch_index)": (0, lambda e, n: e.ledger.create_checkpoint("fine", n)),
    "get_checkpoint(as_of)": (
        1,
        lambda e, n: e.ledger.get_checkpoint(CheckpointToken.for_batch("fine", 0), as_of=n),
    ),
    "views.timeline(after)": (0, lambda e, n: e.views.timeline("fine", after=n)),
    "views.timeline(limit)": (0, lambda e, n: e.views.timeline("fine", limit=n)),
    "views.failures(limit)": (0, lambda e, n: e.views.failures(limit=n)),
    "views.wait_for(position)": (0, lambda e, n: e.views.wait_for(n, timeout=0)),
    "Projections(batch_size)": (1, lambda e, n: Projections(e.ledger, batch_size=n)),
    "Projections(history_size)": (1, lambda e, n: Projections(e.ledger, history_size=n)),
    "run_stream(after)": (0, lambda e, n: run_stream(e.ledger, after=n)),
    "run_stream(batch_size)": (1, lambda e, n: run_stream(e.ledger, batch_size=n)),
    "run_batches(max_attempts)": (
        1,
        lambda e, n: run_batches(e.coord, "fine", [1], lambda _c: None, max_attempts=n),
    ),
}

_NONE_MEANS_DEFAULT = {"get_checkpoint(as_of)", "views.timeline(limit)", "views.failures(limit)"}
_FIELD = {"views.wait_for(position)": "position", "get_checkpoint(as_of)": "as_of"}


def _field(entry: str) -> str:
    return _FIELD.get(entry, entry.split("(")[1].rstrip(")"))


@pytest.mark.parametrize("entry", sorted(COUNT_ENTRY_POINTS))
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_every_entry_point_refuses_a_bad_count_with_the_ledgers_rule(
    env: Env, entry: str, value: Any
) -> None:
    minimum, call = COUNT_ENTRY_POINTS[entry]
    if entry in _NONE_MEANS_DEFAULT and value is None:
        return  # as_of=None means "now", limit=None "no limit"
    assert_refused_as(
        env,
        lambda: check_count(value, _field(entry), minimum=minimum),
        lambda: call(env, value),
    )


@pytest.mark.parametrize("value", [-1, True, math.nan, math.inf, "1"], ids=repr)
def test_every_timeout_is_refused_alike(env: Env, value: Any) -> None:
    token = CheckpointToken.for_batch("fine", 0)
    finite = lambda: check_seconds(value, "timeout")  # noqa: E731
    assert_refused_as(env, finite, lambda: env.views.wait_for(0, timeout=value))
    assert_refused_as(env, finite, lambda: env.views.sync(timeout=value))
    assert_refused_as(
        env,
        lambda: check_seconds(value, "confirm_timeout"),
        lambda: run_batches(env.coord, "fine", [1], lambda _c: None, confirm_timeout=value),
    )
    if value is not math.inf:  # an await may wait forever: None or infinity
        assert_refused_as(
            env,
            lambda: check_seconds(value, "timeout", finite=False),
            lambda: await_checkpoint(env.ledger, token, timeout=value),
        )


def test_a_forged_token_is_refused_by_the_views_and_the_streams_as_by_the_ledger(
    env: Env,
) -> None:
    real = CheckpointToken.for_batch("fine", 0)
    forged = CheckpointToken(run_id="fine", batch_index=1, checkpoint_id=real.checkpoint_id)
    expected = _expected(lambda: env.ledger.get_checkpoint(forged))
    for call in (
        lambda: env.views.current(forged),
        lambda: env.views.history(forged),
        lambda: await_checkpoint(env.ledger, forged, timeout=0),
    ):
        with pytest.raises(InvalidInput) as caught:
            call()
        assert str(caught.value) == expected


# ------------------------------------------------------------------------------ settled


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


def test_settled_means_completed_or_failed_permanently(ledger: Ledger) -> None:
    open_, done, transient, permanent = (
        ledger.create_checkpoint("s", i, total_batches=4) for i in range(4)
    )
    assert not ledger.get_checkpoint(open_).is_settled
    assert ledger.complete_checkpoint(done, 1).is_settled
    assert not ledger.fail_checkpoint(transient, "later", transient=True).is_settled
    assert ledger.fail_checkpoint(permanent, "never", transient=False).is_settled
    assert not ledger.retry_checkpoint(transient).is_settled
    assert not ledger.reset_checkpoint(done, "redo").is_settled  # a reset reopens it


def test_a_run_is_settled_when_every_declared_batch_exists_and_is_settled(ledger: Ledger) -> None:
    first = ledger.create_checkpoint("r", 0, total_batches=2)
    states = {0: ledger.complete_checkpoint(first, 1)}
    assert not run_is_settled({})
    assert not run_is_settled(states)  # batch 1 of 2 not even created
    second = ledger.create_checkpoint("r", 1, total_batches=2)
    states[1] = ledger.fail_checkpoint(second, "flaky", transient=True)
    assert not run_is_settled(states)  # a transient failure may still be retried
    states[1] = ledger.reset_checkpoint(second, "give up differently")
    states[1] = ledger.fail_checkpoint(second, "broken", transient=False)
    assert run_is_settled(states)
    undeclared = ledger.create_checkpoint("u", 0)
    assert run_is_settled({0: ledger.complete_checkpoint(undeclared, None)})
