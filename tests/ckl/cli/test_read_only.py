"""Read commands open the store read-only; `ckl migrate` is the one way a read user upgrades."""

from __future__ import annotations

import shutil
import sqlite3
from typing import TYPE_CHECKING

from ledger import Ledger
from tests.ckl.cli.conftest import ckl, one_error_line
from tests.ledger.test_read_only import _fill, _old_sqlite_store, _snapshot

if TYPE_CHECKING:
    from pathlib import Path


def test_read_commands_on_a_read_only_copy_write_nothing(tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    _fill(f"sqlite:///{source}")
    audit = tmp_path / "audit"
    audit.mkdir()
    shutil.copy(source, audit / "store.db")
    (audit / "store.db").chmod(0o444)
    audit.chmod(0o555)
    store = f"sqlite:///{audit / 'store.db'}"
    try:
        before = _snapshot(audit)
        for args in (
            ("show", "ro", "0"),
            ("replay", "ro"),
            ("pending", "ro"),
            ("verify",),
            ("export", "ro", str(tmp_path / "ro.jsonl")),
        ):
            done = ckl(*args, store=store)
            assert done.returncode == 0, (args, done.stderr)
        assert _snapshot(audit) == before  # bytes and mtimes; no -wal, -shm or -journal
        assert (tmp_path / "ro.jsonl").stat().st_size > 0
    finally:
        audit.chmod(0o755)


def test_a_read_command_on_an_empty_file_leaves_it_empty(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    done = ckl("show", "ro", "0", store=f"sqlite:///{empty}")
    assert done.returncode != 0
    assert "no checkpoint-ledger schema" in one_error_line(done)
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


def test_an_older_store_is_refused_by_read_commands_and_upgraded_by_ckl_migrate(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _old_sqlite_store(path)
    store = f"sqlite:///{path}"
    before = _snapshot(tmp_path)
    done = ckl("replay", "ro", store=store)
    assert done.returncode != 0
    assert f"`ckl migrate --store {store}`" in one_error_line(done)
    check = ckl("migrate", "--check", store=store)
    assert check.returncode == 1, check.stderr
    assert "schema 1, this version keeps 7: an upgrade is due" in check.stdout
    assert _snapshot(tmp_path) == before  # neither wrote anything
    done = ckl("migrate", store=store)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{store}: upgraded schema 1 -> 7"
    again = ckl("migrate", "--json", store=store)
    assert again.returncode == 0, again.stderr
    assert '"from": 7' in again.stdout
    assert '"to": 7' in again.stdout
    assert ckl("migrate", "--check", store=store).returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
    conn.close()
    for args in (("replay", "ro"), ("verify",)):
        done = ckl(*args, store=store)
        assert done.returncode == 0, (args, done.stderr)


def test_write_commands_on_an_existing_store_still_write(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/w.db"
    _fill(store)
    done = ckl("cancel", "ro", "0", "--reason", "test", store=store)
    assert done.returncode == 0, done.stderr
    with Ledger.open(store, read_only=True) as ledger:
        token = ledger.find_checkpoint("ro", 0)
        assert token is not None
        assert ledger.get_checkpoint(token).status == "cancelled"


def test_a_read_on_a_writable_store_keeps_its_views_and_never_upgrades(tmp_path: Path) -> None:
    # A writable store: the read brings the stored views up to date (the next read starts from
    # there, not from a private replay of the whole log) and touches nothing of the log's.
    path = tmp_path / "live.db"
    url = f"sqlite:///{path}"
    _fill(url)
    with sqlite3.connect(path) as conn:
        schema = conn.execute("PRAGMA user_version").fetchone()
        conn.execute("DELETE FROM ckl_tracking WHERE name = 'views'")
        events = conn.execute("SELECT count(*) FROM ckl_events").fetchone()
    done = ckl("replay", "ro", "--json", store=url)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(path) as conn:
        tracked = conn.execute("SELECT position FROM ckl_tracking WHERE name = 'views'").fetchone()
        head = conn.execute("SELECT max(notification_id) FROM ckl_events").fetchone()
        assert conn.execute("PRAGMA user_version").fetchone() == schema
        assert conn.execute("SELECT count(*) FROM ckl_events").fetchone() == events
    assert tracked == head
