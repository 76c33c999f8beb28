"""Store failures that no retry mends: each produced for real, raised at once with its advice.

A text file, a truncated file, a missing directory, a full filesystem, a wrong password, a
closed ledger: each becomes its own ``StoreFailure`` subclass without the ledger's retries (no
"retrying" warning is logged) and nothing is written. What can pass (a refused connection)
stays ``StoreUnavailable``, after the retries. The CLI prints each as one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import subprocess
from typing import TYPE_CHECKING

import psycopg
import pytest

from ledger import (
    Ledger,
    LedgerClosed,
    LedgerSettings,
    StoreAuthFailed,
    StoreCorrupt,
    StoreDirectoryMissing,
    StoreFailure,
    StoreFull,
    StoreNotADatabase,
    StoreUnavailable,
)
from tests.ckl.cli.conftest import ckl, one_error_line

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from ledger import CheckpointToken
    from tests.fix_postgres import PostgresServer


def _no_retries(caplog: pytest.LogCaptureFixture) -> None:
    assert not [r for r in caplog.records if "retrying" in r.getMessage()], caplog.text


def _opened(url: str) -> Ledger:
    return Ledger.open(settings=LedgerSettings(store=url, store_retries=3))


@pytest.fixture
def good_store(tmp_path: Path) -> Path:
    path = tmp_path / "good.db"
    with Ledger.open(f"sqlite:///{path}") as ledger:
        token = ledger.create_checkpoint("run-f", 0)
        for n in range(1, 40):
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
    return path


def test_a_text_file_is_not_a_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "notes.db"
    path.write_text("my shopping list\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING), pytest.raises(StoreNotADatabase) as raised:
        _opened(f"sqlite:///{path}")
    assert "is not a database" in str(raised.value)
    assert "check the path" in str(raised.value)
    assert path.read_text(encoding="utf-8") == "my shopping list\n"
    _no_retries(caplog)
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args  # noqa: S301


def test_a_truncated_file_is_corrupt(
    good_store: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "broken.db"
    data = good_store.read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(StoreCorrupt) as raised,
        _opened(f"sqlite:///{broken}") as ledger,
    ):
        ledger.count_events()
    assert "restore it from a backup" in str(raised.value)
    _no_retries(caplog)


def test_a_missing_directory_is_named_and_not_created(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "no-such-dir" / "x.db"
    with caplog.at_level(logging.WARNING), pytest.raises(StoreDirectoryMissing) as raised:
        _opened(f"sqlite:///{path}")
    assert "its directory does not exist" in str(raised.value)
    assert not path.parent.exists()
    _no_retries(caplog)


@contextlib.contextmanager
def _small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A real 640 KiB filesystem (tmpfs, mounted as root); elsewhere SQLite's own page cap."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        yield mount  # the page cap below makes SQLITE_FULL for real on an ordinary disk
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=640k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _yield_until_full(ledger: Ledger, token: CheckpointToken) -> StoreFull:
    for n in range(1, 100_000):
        try:
            ledger.checkpoint_yield(
                token, cursor=n, items_processed=n, accumulated_results={"pad": "y" * 800}
            )
        except StoreFull as exc:
            return exc
    pytest.fail("the small filesystem never filled up")


def test_a_full_filesystem_stops_the_command_and_keeps_what_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _small_filesystem(tmp_path) as mount:
        url = f"sqlite:///{mount / 'full.db'}"
        with _opened(url) as ledger:
            if os.geteuid() != 0:
                with ledger.recorder.transaction() as tx:
                    tx.execute("PRAGMA max_page_count = 160")
            token = ledger.create_checkpoint("run-full", 0, metadata={"pad": "x" * 100})
            done = 0
            with caplog.at_level(logging.WARNING):
                raised = _yield_until_full(ledger, token)
                done = ledger.get_checkpoint(token).items_processed
            assert "out of space" in str(raised)
            _no_retries(caplog)
        # What was acknowledged is there, the refused yield is not.
        with Ledger.open(url) as reader:
            assert reader.get_checkpoint(token).items_processed == done
            assert reader.count_events(token) == done + 1
    assert done > 10


def test_a_closed_ledger_says_so_at_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ledger = _opened(f"sqlite:///{tmp_path / 'closed.db'}")
    token = ledger.create_checkpoint("run-c", 0)
    ledger.close()
    with caplog.at_level(logging.WARNING), pytest.raises(LedgerClosed) as raised:
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    assert "open a new Ledger" in str(raised.value)
    assert isinstance(raised.value, StoreFailure)
    _no_retries(caplog)


def test_a_wrong_password_is_refused_credentials(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The test server trusts 127.0.0.1; a rule placed before that one asks this role alone
    # for its password (first match wins in pg_hba.conf), so other tests are untouched.
    role = "ckl_password_test"
    assert postgres_server.data_dir is not None
    hba = postgres_server.data_dir / "pg_hba.conf"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {role}")
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'right-password'")
        rule = f"host all {role} 127.0.0.1/32 scram-sha-256\n"
        if rule not in hba.read_text(encoding="utf-8"):
            hba.write_text(rule + hba.read_text(encoding="utf-8"), encoding="utf-8")
        conn.execute("SELECT pg_reload_conf()")
    url = f"postgresql://{role}:wrong-password@127.0.0.1:{postgres_server.port}/postgres"
    with caplog.at_level(logging.WARNING), pytest.raises(StoreAuthFailed) as raised:
        _opened(url)
    assert "refused the credentials" in str(raised.value)
    assert "wrong-password" not in str(raised.value)
    _no_retries(caplog)


def test_a_refused_connection_is_retried_then_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket closes
    settings = LedgerSettings(
        store=f"postgresql://ckl@127.0.0.1:{port}/postgres",
        store_retries=1,
        store_retry_delay=0.01,
        connect_timeout=1,
    )
    with caplog.at_level(logging.WARNING), pytest.raises(StoreUnavailable) as raised:
        Ledger.open(settings=settings)
    assert not isinstance(raised.value, StoreFailure)
    assert "check that the database is running" in str(raised.value)


def test_the_cli_prints_one_line_of_advice(tmp_path: Path, good_store: Path) -> None:
    text_file = tmp_path / "text.db"
    text_file.write_text("not a database\n", encoding="utf-8")
    done = ckl("show", "run-f", "0", store=f"sqlite:///{text_file}")
    assert done.returncode == 1
    line = one_error_line(done)
    assert "is not a database" in line, line
    assert "running and reachable" not in line
    broken = tmp_path / "broken.db"
    broken.write_bytes(good_store.read_bytes()[:5000])
    done = ckl("show", "run-f", "0", store=f"sqlite:///{broken}")
    assert done.returncode == 1
    assert "restore it from a backup" in one_error_line(done)
