"""Bad input gets a clear, typed error, and nothing is written.

Every case asserts the error type, that the message says what to do or what is wrong, and that
the store holds exactly as many events as before.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import (
    CheckpointToken,
    InvalidInput,
    Ledger,
    LedgerError,
    LedgerSettings,
    PayloadTooLarge,
    ProgressWentBackwards,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture(scope="module")
def mem() -> Iterator[Ledger]:
    with Ledger.open("memory://") as opened:
        yield opened


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as opened:
        yield opened


class NotJSON:
    """An arbitrary Python object: never storable."""

    def __repr__(self) -> str:
        return "NotJSON()"  # stable test ids, so xdist workers collect the same tests


BAD_CURSORS: list[Any] = [
    1.5,
    math.nan,
    math.inf,
    None,
    True,
    NotJSON(),
    b"bytes",
    {1: "non-str key"},
    {"a": math.nan},
    [1, {"deep": [math.inf]}],
    {"a": NotJSON()},
    (1, 2),
    {"s": "\ud800"},
]


def assert_refused(
    ledger: Ledger, error: type[LedgerError], call: Callable[[], object], match: str | None = None
) -> LedgerError:
    """``call`` raises ``error`` and the store's event count does not move."""
    before = ledger.count_events()
    with pytest.raises(error, match=match) as info:
        call()
    assert ledger.count_events() == before
    return info.value


@pytest.mark.parametrize("cursor", BAD_CURSORS, ids=repr)
def test_a_cursor_that_is_not_int_str_or_json_is_refused(mem: Ledger, cursor: Any) -> None:
    token = mem.create_checkpoint("bad-cursor", 0)
    exc = assert_refused(mem, InvalidInput, lambda: mem.checkpoint_yield(token, cursor, 1))
    assert isinstance(exc, ValueError)
    assert "cursor" in str(exc)
    assert "nothing was written" in str(exc)


@pytest.mark.parametrize("items", [-1, 1.0, "10", None, True, 2**70 * 1.0])
def test_items_processed_must_be_a_non_negative_int(mem: Ledger, items: Any) -> None:
    token = mem.create_checkpoint("bad-items", 0)
    assert_refused(mem, InvalidInput, lambda: mem.checkpoint_yield(token, 1, items), "items")


def test_items_processed_never_decreases_within_an_attempt(mem: Ledger) -> None:
    token = mem.create_checkpoint("backwards", 0)
    mem.checkpoint_yield(token, 10, 100)
    exc = assert_refused(
        mem, ProgressWentBackwards, lambda: mem.checkpoint_yield(token, 11, 99), "reset"
    )
    assert isinstance(exc, ProgressWentBackwards)
    assert (exc.recorded, exc.given, exc.attempt) == (100, 99, 1)
    mem.reset_checkpoint(token, "start over")
    assert mem.checkpoint_yield(token, 0, 0).items_processed == 0  # a new attempt starts at 0


@pytest.mark.parametrize(
    ("run_id", "batch"),
    [
        ("", 0),
        ("x" * 201, 0),
        ("tab\there", 0),
        ("nl\n", 0),
        (42, 0),
        (None, 0),
        ("ok", -1),
        ("ok", 1.0),
        ("ok", True),
        ("ok", "0"),
    ],
)
def test_run_id_and_batch_index_are_checked(mem: Ledger, run_id: Any, batch: Any) -> None:
    assert_refused(mem, InvalidInput, lambda: mem.create_checkpoint(run_id, batch))
    assert_refused(mem, InvalidInput, lambda: mem.find_checkpoint(run_id, batch))


def test_sql_looking_run_ids_are_just_names(ledger: Ledger) -> None:
    run_id = "x'); DROP TABLE ckl_events; --"
    token = ledger.create_checkpoint(run_id, 0)
    assert ledger.find_checkpoint(run_id, 0) == token
    assert ledger.checkpoint_yield(token, "'; DELETE FROM ckl_events", 1).version == 2


def test_total_batches_must_exceed_the_batch_index(mem: Ledger) -> None:
    assert_refused(
        mem, InvalidInput, lambda: mem.create_checkpoint("tb", 3, total_batches=3), "total"
    )
    assert_refused(mem, InvalidInput, lambda: mem.create_checkpoint("tb", 0, total_batches=0))


def test_payload_limits_have_defaults_and_refuse_with_the_setting_to_raise(
    ledger: Ledger,
) -> None:
    token = ledger.create_checkpoint("big", 0)
    big = {"blob": "x" * (64 * 1024)}
    exc = assert_refused(
        ledger,
        PayloadTooLarge,
        lambda: ledger.checkpoint_yield(token, 1, 1, accumulated_results=big),
        "CKL_MAX_ACCUMULATED_RESULTS_BYTES",
    )
    assert isinstance(exc, PayloadTooLarge)
    assert exc.limit == 64 * 1024
    assert exc.size > exc.limit
    assert_refused(ledger, PayloadTooLarge, lambda: ledger.complete_checkpoint(token, big))
    assert_refused(
        ledger,
        PayloadTooLarge,
        lambda: ledger.create_checkpoint("big", 1, metadata={"m": "y" * 8200}),
        "metadata",
    )
    just_fits = {"blob": "x" * (64 * 1024 - 20)}
    ledger.checkpoint_yield(token, 1, 1, accumulated_results=just_fits)


def test_limits_are_configurable() -> None:
    config = LedgerSettings(store="memory://", max_result_bytes=10, max_error_message_chars=50)
    with Ledger.open(settings=config) as small:
        token = small.create_checkpoint("cfg", 0)
        assert_refused(small, PayloadTooLarge, lambda: small.complete_checkpoint(token, "x" * 20))
        state = small.fail_checkpoint(token, "e" * 500)
        assert state.error is not None
        assert len(state.error.message) == 50
        assert "truncated 4" in state.error.message


def test_long_error_messages_are_truncated_not_refused(mem: Ledger) -> None:
    token = mem.create_checkpoint("long-error", 0)
    state = mem.fail_checkpoint(token, RuntimeError("z" * 10_000), transient=True)
    assert state.error is not None
    assert len(state.error.message) == 4096
    assert state.error.message.endswith("chars]")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda lg, _: lg.checkpoint_yield("not a token", 1, 1), "token"),
        (lambda lg, t: lg.fail_checkpoint(t, 42), "error"),
        (lambda lg, t: lg.fail_checkpoint(t, "x", transient="yes"), "transient"),
        (lambda lg, t: lg.reset_checkpoint(t, ""), "reason"),
        (lambda lg, t: lg.reset_checkpoint(t, None), "reason"),
        (lambda lg, t: lg.complete_checkpoint(t, NotJSON()), "result"),
        (lambda lg, t: lg.complete_checkpoint(t, {"r": math.nan}), "result"),
        (lambda lg, t: lg.checkpoint_yield(t, 1, 1, accumulated_results=[1]), "accumulated"),
        (lambda lg, _: lg.create_checkpoint("m", 1, metadata={"k": {1, 2}}), "metadata"),
        (lambda lg, t: lg.get_checkpoint(t, as_of=0), "as_of"),
        (lambda lg, t: lg.get_checkpoint(t, as_of="yesterday"), "as_of"),
        (
            lambda lg, t: lg.checkpoint_yield(
                CheckpointToken(
                    run_id="m", batch_index=0, checkpoint_id=t.checkpoint_id.__class__(int=1)
                ),
                1,
                1,
            ),
            "token",
        ),
    ],
)
def test_every_entry_point_names_the_bad_field(
    mem: Ledger, call: Callable[[Ledger, CheckpointToken], object], field: str
) -> None:
    token = mem.create_checkpoint("fields", 0)
    exc = assert_refused(mem, InvalidInput, lambda: call(mem, token))
    assert field in str(exc)


@given(cursor=st.from_type(object).filter(lambda v: not isinstance(v, int | str | dict | list)))
def test_fuzzed_non_json_cursors_are_refused(cursor: object) -> None:
    with Ledger.open("memory://") as fresh:
        token = fresh.create_checkpoint("fuzz", 0)
        assert_refused(
            fresh,
            InvalidInput,
            lambda: fresh.checkpoint_yield(token, cursor, 1),  # type: ignore[arg-type]
        )
