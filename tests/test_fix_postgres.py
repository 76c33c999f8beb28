"""The PostgreSQL fixtures give each test a real, durable, private database."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg
import pytest

from ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.fix_postgres import PostgresServer


@pytest.mark.postgres
def test_the_server_accepts_connections_with_fsync_on(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        row = conn.execute("SHOW fsync").fetchone()
    assert row == ("on",)


@pytest.mark.postgres
def test_each_test_database_is_distinct_and_isolated(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    other_name = f"ckl_test_{uuid4().hex[:12]}"
    other_url = postgres_server.create_database(other_name)
    try:
        assert other_url != postgres_url
        with psycopg.connect(postgres_url) as conn:
            conn.execute("CREATE TABLE only_here (n int)")
            conn.execute("INSERT INTO only_here VALUES (1)")
            (name,) = conn.execute("SELECT current_database()").fetchone() or ("",)
        with psycopg.connect(other_url) as conn:
            (other,) = conn.execute("SELECT current_database()").fetchone() or ("",)
            (visible,) = conn.execute("SELECT to_regclass('only_here') IS NOT NULL").fetchone() or (
                True,
            )
        assert name.startswith("ckl_test_")
        assert other == other_name
        assert name != other
        assert visible is False
    finally:
        postgres_server.drop_database(other_name)


@pytest.mark.postgres
def test_restart_keeps_committed_data(postgres_server: PostgresServer, postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE survivors (n int)")
        conn.execute("INSERT INTO survivors VALUES (1), (2), (3)")

    postgres_server.restart()

    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute("SELECT n FROM survivors ORDER BY n").fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_store_url_names_one_backend_per_parameter(store_url: str) -> None:
    assert store_url.startswith(("sqlite:///", "postgresql://"))
    assert store_url.endswith("/ledger.db") or "/ckl_test_" in store_url


def test_new_store_url_gives_an_empty_store_on_its_backend_at_each_call(
    new_store_url: Callable[[], str],
) -> None:
    first = new_store_url()
    assert first.startswith(("sqlite:///", "postgresql://"))
    with Ledger.open(first) as ledger:
        ledger.create_checkpoint("only-in-the-first", 0)
        assert ledger.count_events() == 1
    second = new_store_url()
    assert second.split(":", 1)[0] == first.split(":", 1)[0]
    with Ledger.open(second) as ledger:
        assert ledger.count_events() == 0
        ledger.create_checkpoint("only-in-the-second", 0)
        assert ledger.find_checkpoint("only-in-the-first", 0) is None
