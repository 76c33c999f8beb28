"""Going behind the ledger's back: raw driver connections that switch the append-only guard off.

Only tests use these, to show that ``ckl verify`` sees what the guard would have refused.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:
    from collections.abc import Sequence

SQLITE_PREFIX = "sqlite:///"


def is_sqlite(store_url: str) -> bool:
    """Whether the URL names a SQLite file."""
    return store_url.startswith(SQLITE_PREFIX)


def tamper(store_url: str, statement: str, params: Sequence[object] = ()) -> int:
    """Run one UPDATE or DELETE on the event table with its guard triggers off; rows changed.

    SQLite: the triggers are dropped and re-created in the same transaction (a side
    connection). PostgreSQL: ``ALTER TABLE … DISABLE TRIGGER USER`` as the table's owner,
    enabled again before the commit.
    """
    if is_sqlite(store_url):
        conn = sqlite3.connect(store_url.removeprefix(SQLITE_PREFIX), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            triggers = conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                "AND tbl_name = 'ckl_events'"
            ).fetchall()
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
            changed = conn.execute(statement.replace("%s", "?"), tuple(params)).rowcount
            for _, sql in triggers:
                conn.execute(sql)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return changed
    with psycopg.connect(store_url, connect_timeout=10) as pg:  # one transaction
        pg.execute("ALTER TABLE ckl_events DISABLE TRIGGER USER")
        changed = pg.execute(statement.encode(), tuple(params)).rowcount
        pg.execute("ALTER TABLE ckl_events ENABLE TRIGGER USER")
    return changed


def raw_query(
    store_url: str, statement: str, params: Sequence[object] = ()
) -> list[tuple[object, ...]]:
    """Rows of one query, through the plain driver."""
    if is_sqlite(store_url):
        conn = sqlite3.connect(store_url.removeprefix(SQLITE_PREFIX))
        try:
            return [tuple(r) for r in conn.execute(statement.replace("%s", "?"), tuple(params))]
        finally:
            conn.close()
    with psycopg.connect(store_url, autocommit=True, connect_timeout=10) as pg:
        return [tuple(r) for r in pg.execute(statement.encode(), tuple(params))]


def oid_param(store_url: str, oid: object) -> object:
    """A checkpoint id as each backend binds it."""
    return str(oid) if is_sqlite(store_url) else oid
