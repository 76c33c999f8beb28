"""A private PostgreSQL server for the fault tests that stop and restart it.

The session's shared server (``postgres_server``) serves every other test, possibly given by
``CKL_TEST_POSTGRES_URL``; stopping it would break them. These tests get a cluster of their own
(``PostgresServer.initdb``), one per xdist worker that needs it. Under ``CI=true`` a server that
cannot start fails the tests that need it; elsewhere they skip.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fix_postgres import PostgresServer


@pytest.fixture
def private_postgres_url(private_postgres: PostgresServer) -> Iterator[str]:
    """A new database on the private server (started again if a test left it stopped)."""
    if not private_postgres.is_running():
        private_postgres.start()
    name = f"ckl_fault_{uuid4().hex[:12]}"
    url = private_postgres.create_database(name)
    yield url
    if not private_postgres.is_running():
        private_postgres.start()
    with contextlib.suppress(psycopg.Error):
        private_postgres.drop_database(name)
