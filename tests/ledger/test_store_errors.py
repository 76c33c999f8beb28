"""A store that cannot be used fails with our typed errors, never a driver's, never a password.

Bad URLs are ``InvalidStoreURL``; an unreachable server, a damaged file or an unreadable row is
``StoreUnavailable`` with the driver's error as ``__cause__``. Every error survives pickling,
because errors cross process boundaries.
"""

from __future__ import annotations

import logging
import pickle
import socket
import sqlite3
import time
from typing import TYPE_CHECKING, cast

import psycopg
import pytest

import ledger.errors
from ledger import (
    AwaitTimeout,
    CheckpointFailedError,
    CheckpointNotFound,
    ConflictingCommand,
    InvalidInput,
    InvalidStoreURL,
    InvalidTransition,
    Ledger,
    LedgerClosed,
    LedgerError,
    LedgerSettings,
    PayloadTooLarge,
    ProgressWentBackwards,
    StoreAuthFailed,
    StoreCorrupt,
    StoreDirectoryMissing,
    StoreFailure,
    StoreFull,
    StoreNotADatabase,
    StoreReadOnly,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ledger import CheckpointToken

SQLITE_PREFIX = "sqlite:///"


@pytest.mark.parametrize(
    "url",
    ["mysql://x", "", "sqlite://", "postgresql://host"],
    ids=["unknown-scheme", "empty", "sqlite-without-path", "postgresql-without-database"],
)
def test_a_store_url_the_ledger_cannot_use_is_an_invalid_store_url(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        Ledger.open(url)
    assert isinstance(caught.value, LedgerError)
    assert isinstance(caught.value, ValueError)
    assert caught.value.url == url


def test_a_store_url_that_is_not_a_string_is_an_invalid_store_url() -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        Ledger.open(cast("str", 42))
    assert isinstance(caught.value, LedgerError)
    assert isinstance(caught.value, ValueError)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def test_an_unreachable_postgresql_server_is_store_unavailable_and_never_shows_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "pw-that-must-not-leak-7f3a"  # noqa: S105
    url = f"postgresql://ckl:{password}@127.0.0.1:{_free_port()}/ledger"
    settings = LedgerSettings(store=url, connect_timeout=1, store_retries=0)
    caplog.set_level(logging.DEBUG)

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        Ledger.open(settings=settings)
    elapsed = time.monotonic() - started

    # Generous: the bound only proves connect_timeout=1 is honoured (the default waits ~5 s).
    assert elapsed < 10
    error = caught.value
    assert error.operation == "open"
    assert error.__cause__ is not None
    assert "127.0.0.1" in str(error)
    for exc in _exception_chain(error):
        assert password not in str(exc)
        assert password not in repr(exc)
    assert password not in error.store
    assert password not in caplog.text


_SAMPLES: dict[str, LedgerError] = {
    "AwaitTimeout": AwaitTimeout("run-1/0", 2.5),
    "CheckpointFailedError": CheckpointFailedError(
        "run-1/0", "ValueError", "bad row 7", transient=True, attempt=2
    ),
    "CheckpointNotFound": CheckpointNotFound("run-1/3"),
    "LedgerClosed": LedgerClosed("sqlite:///x.db", "append", "close() was called"),
    "StoreAuthFailed": StoreAuthFailed("postgresql://u:***@h/db", "open", "password failed"),
    "StoreCorrupt": StoreCorrupt("sqlite:///x.db", "read", "database disk image is malformed"),
    "StoreDirectoryMissing": StoreDirectoryMissing("sqlite:///d/x.db", "open", "cannot open"),
    "StoreFailure": StoreFailure("sqlite:///x.db", "open", "failed"),
    "StoreFull": StoreFull("sqlite:///x.db", "append", "database or disk is full"),
    "StoreNotADatabase": StoreNotADatabase("sqlite:///x.db", "open", "file is not a database"),
    "StoreReadOnly": StoreReadOnly("sqlite:///x.db", "append", "attempt to write a readonly db"),
    "ConflictingCommand": ConflictingCommand("run-1/0", "completed", "complete_checkpoint"),
    "InvalidInput": InvalidInput("cursor", "expected an int, a str or a JSON object/array"),
    "InvalidStoreURL": InvalidStoreURL("mysql://x", "unknown scheme 'mysql'"),
    "InvalidTransition": InvalidTransition("run-1/0", "failed", "checkpoint_yield", "retry it"),
    "LedgerError": LedgerError("something went wrong"),
    "PayloadMismatch": ledger.errors.PayloadMismatch(
        "accumulated_results", "Totals", "sum: Field required"
    ),
    "PayloadTooLarge": PayloadTooLarge("result", 70_000, 65_536, "CKL_MAX_RESULT_BYTES"),
    "ProgressWentBackwards": ProgressWentBackwards("run-1/0", 1, 10, 5),
    "StoreUnavailable": StoreUnavailable(
        "sqlite:///x.db", "append", "disk I/O error", command_id="3f2a"
    ),
    "ArchiveError": ledger.errors.ArchiveError("run 'r' changed while it was archived"),
    "ArchiveFileInvalid": ledger.errors.ArchiveFileInvalid("r.jsonl", 3, "hash chain"),
    "ImportConflict": ledger.errors.ImportConflict("r", "c1", "differs at v2"),
    "RunArchived": ledger.errors.RunArchived("r"),
    "RunNotFinished": ledger.errors.RunNotFinished("r", 2),
    "TamperDetected": ledger.errors.TamperDetected("run 'r'", 2),
    "ServiceError": ledger.errors.ServiceError("refused"),
    "Unauthorized": ledger.errors.Unauthorized("unknown"),
    "OutOfScope": ledger.errors.OutOfScope("worker-1", "operate", ("read", "write")),
    "TooManyStreams": ledger.errors.TooManyStreams("worker-1", 16),
    "ServiceStopping": ledger.errors.ServiceStopping("await r/0"),
    "StoreSchemaMismatch": ledger.errors.StoreSchemaMismatch("sqlite:///x.db", 2, 6),
    "PartitionNotDetachable": ledger.errors.PartitionNotDetachable(
        "ckl_events_xid_0", "it holds events of run 'r', which is not archived"
    ),
    "StoreIsStandby": ledger.errors.StoreIsStandby(
        "postgresql://u@h2/db", "open", "the server is a hot standby"
    ),
    "FileNotWritable": ledger.errors.FileNotWritable("path", "out/r.jsonl", "No space left"),
    "RunNotFound": ledger.errors.RunNotFound("run-9"),
    "PlotUnavailable": ledger.errors.PlotUnavailable("No module named 'matplotlib'"),
    "StaleAttempt": ledger.errors.StaleAttempt("run-1/0", 1, 2),
    "LeaseLost": ledger.errors.LeaseLost("run-1/0", "host-a:12", "host-b:7", 1, 2),
    "CheckpointClaimed": ledger.errors.CheckpointClaimed(
        "run-1/0", "host-a:12", "2026-12-01T10:00:00+00:00"
    ),
    "CheckpointCancelled": ledger.errors.CheckpointCancelled("run-1/0", "input withdrawn"),
}


def test_every_error_class_has_a_pickling_sample() -> None:
    assert sorted(_SAMPLES) == sorted(ledger.errors.__all__)


@pytest.mark.parametrize("name", sorted(ledger.errors.__all__))
def test_every_error_survives_a_pickle_round_trip(name: str) -> None:
    original = _SAMPLES[name]
    assert type(original) is getattr(ledger.errors, name)

    copy = pickle.loads(pickle.dumps(original))  # noqa: S301  (our own bytes)

    assert type(copy) is type(original)
    assert str(copy) == str(original)
    assert copy.args == original.args
    assert vars(copy) == vars(original)


def _garbage(size: int) -> bytes:
    return (b"\xde\xad\xbe\xef" * (size // 4 + 1))[:size]


def test_a_sqlite_file_that_is_not_a_database_is_store_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(_garbage(8192))

    with pytest.raises(StoreNotADatabase) as caught:
        Ledger.open(f"{SQLITE_PREFIX}{path}")

    assert not isinstance(caught.value, sqlite3.Error)
    assert isinstance(caught.value.__cause__, Exception)
    assert path.read_bytes() == _garbage(8192), "the ledger must not overwrite a damaged file"


def test_a_directory_in_place_of_the_sqlite_file_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.mkdir()

    with pytest.raises(StoreNotADatabase) as caught:
        Ledger.open(f"{SQLITE_PREFIX}{path}")

    assert not isinstance(caught.value, sqlite3.Error)


def test_a_sqlite_file_damaged_after_writing_is_store_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"{SQLITE_PREFIX}{path}"
    with Ledger.open(url) as writer:
        token = writer.create_checkpoint("run-damaged", 0)
        for i in range(300):
            writer.checkpoint_yield(token, cursor=i, items_processed=i)
    # Closing the last connection checkpoints the WAL into the file; keep the first page (the
    # header and schema) and overwrite the rest, where the events live.
    assert not (tmp_path / "ledger.db-wal").exists()
    damaged = path.read_bytes()
    path.write_bytes(damaged[:4096] + _garbage(len(damaged) - 4096))

    settings = LedgerSettings(store=url, store_retries=0)
    with pytest.raises(StoreCorrupt) as caught, Ledger.open(settings=settings) as reader:
        reader.checkpoint_events(token)

    assert not isinstance(caught.value, sqlite3.Error)


def _insert_raw(store_url: str, token: CheckpointToken, version: int, topic: str) -> None:
    """Append a row the ledger did not write (inserts are allowed: the table is append-only)."""
    state = b'{"written_by": "a newer checkpoint-ledger"}'
    digest = b"\x00" * 32  # a hash of its own (schema 6 refuses rows without one)
    if store_url.startswith(SQLITE_PREFIX):
        conn = sqlite3.connect(store_url.removeprefix(SQLITE_PREFIX))
        try:
            with conn:
                conn.execute(
                    "INSERT INTO ckl_events (originator_id, originator_version, topic, state,"
                    " event_hash) VALUES (?, ?, ?, ?, ?)",
                    (str(token.checkpoint_id), version, topic, state, digest),
                )
        finally:
            conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True, connect_timeout=10) as pg:
            # A position in the writing transaction's own range, as ledger.store.postgres assigns.
            pg.execute(
                "INSERT INTO ckl_events (notification_id, originator_id, originator_version,"
                " topic, state, event_hash) VALUES (pg_current_xact_id()::text::bigint * 65536"
                " + 1, %s, %s, %s, %s, %s)",
                (token.checkpoint_id, version, topic, state, digest),
            )


_QUERIES: dict[str, Callable[[Ledger, CheckpointToken], object]] = {
    "checkpoint_events": lambda ledger, token: ledger.checkpoint_events(token),
    "get_checkpoint": lambda ledger, token: ledger.get_checkpoint(token),
    "read_log": lambda ledger, _token: ledger.read_log(),
}


@pytest.mark.parametrize("query", sorted(_QUERIES))
def test_an_event_the_ledger_cannot_read_is_store_unavailable(store_url: str, query: str) -> None:
    with Ledger.open(store_url) as writer:
        token = writer.create_checkpoint("run-unreadable", 0)
        writer.checkpoint_yield(token, cursor=1, items_processed=1)
    _insert_raw(store_url, token, 3, "checkpoint.FromTheFuture")

    # A new ledger, so nothing is answered from the writer's cache.
    with Ledger.open(store_url) as reader, pytest.raises(StoreUnavailable):
        _QUERIES[query](reader, token)
