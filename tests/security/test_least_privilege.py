"""Least privilege on PostgreSQL, with the statements ``ckl grants`` prints.

Three login roles on the session's server: the owner creates the schema and archives, the
writer runs a Ledger, the projector runs the Projections. The writer is refused UPDATE, DELETE
and TRUNCATE by privileges (before any trigger), and cannot write purge permits or archive
markers, so it cannot grant itself a purge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from ledger import Ledger, RunArchived, archive_run, verify_chains
from ledger.grants import before_schema_statements, grant_statements
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from tests.fix_postgres import PostgresServer

pytestmark = pytest.mark.postgres


class Roles:
    def __init__(self, database_url: str, suffix: str) -> None:
        self.database_url = database_url
        self.owner, self.writer, self.projector = (
            f"ckl_owner_{suffix}",
            f"ckl_writer_{suffix}",
            f"ckl_projector_{suffix}",
        )

    def url(self, role: str) -> str:
        parts = urlsplit(self.database_url)
        return parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}").geturl()

    def admin(self, statements: list[str]) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement.encode())


@pytest.fixture
def roles(postgres_server: PostgresServer, postgres_url: str) -> Iterator[Roles]:
    made = Roles(postgres_url, uuid4().hex[:8])
    names = [made.owner, made.writer, made.projector]
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        for name in names:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        yield made
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            for name in names:
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _refused(url: str, statement: str) -> str:
    """Run ``statement`` as the URL's role; the SQLSTATE it was refused with."""
    with (
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(psycopg.Error) as caught,
    ):
        conn.execute(statement.encode())
    return str(caught.value.sqlstate)


def test_writer_and_projector_roles_get_only_what_they_need(roles: Roles, tmp_path: Path) -> None:
    roles.admin(before_schema_statements(roles.owner))
    with Ledger.open(roles.url(roles.owner)):  # the owner creates the schema
        pass
    roles.admin(grant_statements(roles.owner, roles.writer, roles.projector))

    with Ledger.open(roles.url(roles.writer)) as writer:
        for i in range(2):
            token = writer.create_checkpoint("run-priv", i, total_batches=2)
            writer.checkpoint_yield(token, cursor=i, items_processed=i)
            writer.complete_checkpoint(token, result=i)
        live = writer.create_checkpoint("run-live", 0)
        writer.checkpoint_yield(live, cursor=1, items_processed=1)
        count = writer.count_events()

    writer_url = roles.url(roles.writer)
    insufficient = "42501"  # insufficient_privilege: refused before any trigger runs
    for statement in [
        "UPDATE ckl_events SET topic = 'x'",
        "DELETE FROM ckl_events",
        "TRUNCATE ckl_events",
        "DELETE FROM ckl_snapshots",
        "INSERT INTO ckl_purge_permits (originator_id) SELECT originator_id FROM ckl_events",
        (
            "INSERT INTO ckl_archives (run_id, archived_at, events, checkpoints, file_sha256,"
            " heads) VALUES ('run-priv', 'now', 0, 0, '', '{}')"
        ),
        f"GRANT INSERT ON ckl_purge_permits TO {roles.writer}",
    ]:
        assert _refused(writer_url, statement) == insufficient, statement
    assert _refused(writer_url, "ALTER TABLE ckl_events DISABLE TRIGGER USER") == insufficient

    projector_url = roles.url(roles.projector)
    with Ledger.open(projector_url) as reader, Projections(reader) as views:
        views.sync()
        assert views.progress("run-priv").completed == 2
    assert _refused(projector_url, "DELETE FROM ckl_events") == insufficient
    assert _refused(writer_url, "DELETE FROM ckl_view_cursor") == insufficient
    assert (
        _refused(
            projector_url,
            "INSERT INTO ckl_events (originator_id, originator_version, topic, state,"
            " notification_id) VALUES (gen_random_uuid(), 1, 't', ''::bytea, 1)",
        )
        == insufficient
    )
    with psycopg.connect(roles.database_url, autocommit=True) as admin:
        owners = admin.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename LIKE 'ckl\\_view\\_%%'"
        ).fetchall()
        ledger_owners = admin.execute(
            "SELECT DISTINCT tableowner FROM pg_tables WHERE tablename IN"
            " ('ckl_events', 'ckl_snapshots', 'ckl_purge_permits', 'ckl_archives')"
        ).fetchall()
    assert owners == [(roles.projector,)]
    assert ledger_owners == [(roles.owner,)]

    # The owner archives the finished run: events, snapshots and the run's view rows go.
    with Ledger.open(roles.url(roles.owner)) as owner:
        archive_run(owner, "run-priv", tmp_path / "run-priv.jsonl")
        assert owner.count_events() == count - 6
        assert verify_chains(owner).ok
    with Ledger.open(writer_url) as writer:
        with pytest.raises(RunArchived):
            writer.create_checkpoint("run-priv", 0)
        writer.checkpoint_yield(live, cursor=2, items_processed=2)  # other runs go on
    with Ledger.open(projector_url) as reader, Projections(reader) as views:
        views.sync()
        assert views.checkpoints("run-priv") == []
        assert len(views.checkpoints("run-live")) == 1
