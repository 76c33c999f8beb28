"""Read-only means read-only: ``Ledger.open(read_only=True)`` never creates, upgrades or writes.

SQLite opens ``mode=ro`` (``immutable`` in a directory nobody may write), PostgreSQL sessions
are read-only; a write is ``StoreReadOnly`` before anything is sent, a store without this
code's schema is ``StoreSchemaMismatch``. Schema upgrades happen through ``migrate_schema``
(``ckl migrate``) or a writer's open, and an upgraded store refuses a row without a hash, so a
writer of an older schema cannot leave rows ``ckl verify`` would report.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import stat
from typing import TYPE_CHECKING

import psycopg
import pytest

from ledger import Ledger, LedgerSettings, StoreReadOnly, StoreSchemaMismatch, verify_chains
from ledger.store import migrate_schema
from ledger.store.postgres.schema import OLD_WRITER_MESSAGE as PG_OLD_WRITER
from ledger.store.sqlite import OLD_WRITER_MESSAGE
from projections import Projections

if TYPE_CHECKING:
    from pathlib import Path

SIDE_FILES = ("-wal", "-shm", "-journal")


def _fill(url: str, run_id: str = "ro") -> None:
    with Ledger.open(url) as ledger:
        for batch in range(2):
            token = ledger.create_checkpoint(run_id, batch)
            ledger.checkpoint_yield(token, cursor=1, items_processed=1)
        ledger.complete_checkpoint(ledger.create_checkpoint(run_id, 2))


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of ``directory``: its bytes and mtime (what "nothing written" means)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def _read_everything(url: str, run_id: str = "ro") -> None:
    with Ledger.open(url, read_only=True) as ledger:
        states = ledger.run_states(run_id)
        assert sorted(s.status for s in states.values()) == ["completed", "open", "open"]
        assert verify_chains(ledger).ok
        with Projections(ledger) as views:
            views.sync()
            assert [c.status for c in views.checkpoints(run_id)] == ["open", "open", "completed"]
            assert len(views.timeline(run_id)) == 6


def _old_sqlite_store(path: Path) -> None:
    """A store as schema 1 wrote it: no hash column, user_version 0 (as test_chain does)."""
    url = f"sqlite:///{path}"
    _fill(url)
    conn = sqlite3.connect(path)
    with conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM ckl_events"
            " ORDER BY notification_id"
        ).fetchall()
        for table in ("ckl_events", "ckl_snapshots"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute(
            "CREATE TABLE ckl_events (notification_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL,"
            " topic TEXT NOT NULL, state BLOB NOT NULL, UNIQUE (originator_id, originator_version))"
        )
        conn.executemany(_OLD_INSERT, rows)
        conn.execute("PRAGMA user_version = 0")
    conn.execute("PRAGMA journal_mode = DELETE")  # as an old store may be
    conn.close()


# The insert of a schema-1 writer: no hash.
_OLD_INSERT = (
    "INSERT INTO ckl_events (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)"
)


# ------------------------------------------------------------ SQLite


def test_a_read_only_copy_in_a_read_only_directory_is_read_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    source = tmp_path / "source.db"
    _fill(f"sqlite:///{source}")
    with Ledger.open(f"sqlite:///{source}") as ledger, Projections(ledger) as views:
        views.sync()  # the stored views are current
    copy_dir = tmp_path / "audit"
    copy_dir.mkdir()
    shutil.copy(source, copy_dir / "store.db")
    (copy_dir / "store.db").chmod(0o444)
    copy_dir.chmod(0o555)
    try:
        before = _snapshot(copy_dir)
        url = f"sqlite:///{copy_dir / 'store.db'}"
        _read_everything(url)
        with Ledger.open(url, read_only=True) as ledger:
            token = ledger.find_checkpoint("ro", 0)
            assert token is not None
            with pytest.raises(StoreReadOnly, match="opened read-only"):
                ledger.checkpoint_yield(token, cursor=2, items_processed=2)
            with pytest.raises(StoreReadOnly):
                ledger.create_checkpoint("ro", 9)
        assert _snapshot(copy_dir) == before  # as root chmod stops nothing: no write was tried
    finally:
        copy_dir.chmod(0o755)


def test_a_read_only_open_of_a_writable_store_writes_nothing_to_the_database(
    tmp_path: Path,
) -> None:
    path = tmp_path / "live.db"
    url = f"sqlite:///{path}"
    _fill(url)
    data, mtime = path.read_bytes(), path.stat().st_mtime_ns
    _read_everything(url)  # stored views missing: built privately, in memory
    with Ledger.open(url, read_only=True) as ledger:
        token = ledger.find_checkpoint("ro", 1)
        assert token is not None
        with pytest.raises(StoreReadOnly):
            ledger.complete_checkpoint(token)
        with pytest.raises(StoreReadOnly):
            ledger.recorder.transaction().__enter__()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == (data, mtime)
    with Ledger.open(url) as ledger:  # and no view table was created in the store
        assert (
            not ledger.recorder.transaction(readonly=True).__enter__().has_table("ckl_view_schema")
        )
        assert ledger.count_events() == 6


def test_private_views_match_the_stored_ones_and_follow_new_appends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    _fill(url)
    with Ledger.open(url) as writer, Projections(writer) as stored:
        stored.sync()
        token = writer.find_checkpoint("ro", 0)
        assert token is not None
        writer.checkpoint_yield(token, cursor=5, items_processed=5)  # the stored views lag
        with Ledger.open(url, read_only=True) as reader, Projections(reader) as private:
            assert private.recorder is not reader.recorder  # built in memory
            private.sync()
            stored.sync()
            assert private.checkpoints("ro") == stored.checkpoints("ro")
            assert private.timeline("ro") == stored.timeline("ro")
            writer.complete_checkpoint(token)
            private.sync()
            assert private.current(token) is not None
            assert private.current(token).status == "completed"  # type: ignore[union-attr]
        stored.sync()
        with Ledger.open(url, read_only=True) as reader, Projections(reader) as current:
            assert current.recorder is reader.recorder  # current: read as they are
            current.sync()
            assert current.checkpoints("ro") == stored.checkpoints("ro")


def test_an_empty_file_and_a_missing_file_are_refused_and_left_as_they_are(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(StoreSchemaMismatch, match="no checkpoint-ledger schema"):
        Ledger.open(f"sqlite:///{empty}", read_only=True)
    assert empty.stat().st_size == 0
    with pytest.raises(Exception, match="no SQLite database at"):
        Ledger.open(f"sqlite:///{tmp_path}/missing.db", read_only=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_an_older_store_is_refused_read_only_then_migrated_and_its_old_writer_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _old_sqlite_store(path)
    url = f"sqlite:///{path}"
    before = _snapshot(tmp_path)
    with pytest.raises(StoreSchemaMismatch, match=r"ckl migrate --store sqlite:///") as caught:
        Ledger.open(url, read_only=True)
    assert caught.value.found == 1
    assert _snapshot(tmp_path) == before
    settings = LedgerSettings(store=url)
    checked = migrate_schema(settings, check=True)
    assert (checked.before, checked.after) == (1, 1)
    assert _snapshot(tmp_path) == before
    migrated = migrate_schema(settings)
    assert (migrated.before, migrated.after, migrated.code) == (1, 7, 7)
    assert migrate_schema(settings) == (7, 7, 7)  # idempotent
    # The old writer, still running, appends as it always did: refused at the insert.
    conn = sqlite3.connect(path)
    try:
        oid, version, topic, state = conn.execute(
            "SELECT originator_id, max(originator_version), topic, state FROM ckl_events"
            " GROUP BY originator_id LIMIT 1"
        ).fetchone()
        with pytest.raises(sqlite3.IntegrityError, match=re.escape(OLD_WRITER_MESSAGE)), conn:
            conn.execute(_OLD_INSERT, (oid, version + 1, topic, state))
    finally:
        conn.close()
    _read_everything(url)
    with Ledger.open(url, read_only=True) as ledger:
        report = verify_chains(ledger)
        assert report.ok, report.problems


def test_a_newer_store_is_refused_with_the_advice_to_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    _fill(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreSchemaMismatch, match="upgrade checkpoint-ledger"):
        Ledger.open(f"sqlite:///{path}", read_only=True)
    with pytest.raises(StoreSchemaMismatch, match="newer"):
        migrate_schema(LedgerSettings(store=f"sqlite:///{path}"))


def test_a_wal_file_in_an_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "d" / "s.db"
    path.parent.mkdir()
    _fill(f"sqlite:///{path}")
    (path.parent / "s.db-wal").write_bytes(b"")  # a WAL file the index would be needed for
    path.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(Exception, match=r"cannot create the .*-shm index"):
            Ledger.open(f"sqlite:///{path}", read_only=True)
        assert not os.path.exists(f"{path}-shm")  # noqa: PTH110
    finally:
        path.parent.chmod(0o755)


def test_read_only_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/e.db"
    _fill(url)
    monkeypatch.setenv("CKL_READ_ONLY", "1")
    with Ledger.open(url) as ledger:
        assert ledger.recorder.read_only
        with pytest.raises(StoreReadOnly):
            ledger.create_checkpoint("other", 0)
    with Ledger.open(url, read_only=False) as ledger:
        ledger.create_checkpoint("other", 0)


# ------------------------------------------------------------ PostgreSQL


@pytest.mark.postgres
def test_postgres_read_only_sessions(postgres_url: str) -> None:
    _fill(postgres_url)
    _read_everything(postgres_url)
    with Ledger.open(postgres_url, read_only=True) as ledger:
        token = ledger.find_checkpoint("ro", 0)
        assert token is not None
        with pytest.raises(StoreReadOnly):
            ledger.checkpoint_yield(token, cursor=2, items_processed=2)
        # The session itself is read-only: even a statement past the recorder's guard fails.
        with pytest.raises(Exception, match="read-only transaction"):
            ledger.recorder._query("CREATE TABLE ckl_probe (x int)", ())
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('ckl_view_schema')").fetchone() == (None,)
        conn.execute("UPDATE ckl_schema SET version = 5")
    with pytest.raises(StoreSchemaMismatch, match="ckl migrate"):
        Ledger.open(postgres_url, read_only=True)
    settings = LedgerSettings(store=postgres_url)
    assert migrate_schema(settings, check=True).before == 5
    assert migrate_schema(settings) == (5, 7, 7)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM ckl_events"
            " ORDER BY originator_version DESC LIMIT 1"
        ).fetchone()
        assert row is not None
        with pytest.raises(psycopg.errors.IntegrityError, match=PG_OLD_WRITER.split(":")[0]):
            conn.execute(
                "INSERT INTO ckl_events (notification_id, originator_id, originator_version,"
                " topic, state) VALUES (pg_current_xact_id()::text::bigint * 65536 + 1,"
                " %s, %s, %s, %s)",
                (row[0], row[1] + 1, row[2], row[3]),
            )
    with Ledger.open(postgres_url, read_only=True) as ledger:
        assert verify_chains(ledger).ok
