"""Views built by the previous version (another table shape) are rebuilt when opened.

The previous version's tables are created here for real, with its DDL and a tracking position
at the log's head, as a store kept by it would be; opening ``Projections`` must find out, say
so at INFO, and give the views a rebuild from scratch gives.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ledger import Ledger
from projections import Projections
from projections.runner import SCHEMA_TABLE, TRACKING, TRACKING_NAME, VIEWS_SCHEMA_VERSION
from tests.projections.test_views_state_machine import dump

if TYPE_CHECKING:
    import pytest

VIEW_TABLES_NOW = ("ckl_view_cursor", "ckl_view_history", "ckl_view_failures", "ckl_view_timeline")

# The previous version's view tables (schema 1), as it created them.
VERSION_1_DDL = (
    """CREATE TABLE ckl_view_cursor (
        checkpoint_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, batch_index BIGINT NOT NULL,
        total_batches BIGINT, status TEXT NOT NULL, attempt BIGINT NOT NULL, cursor TEXT,
        items_processed BIGINT NOT NULL, accumulated_results TEXT, yields BIGINT NOT NULL,
        version BIGINT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        position BIGINT NOT NULL)""",
    "CREATE UNIQUE INDEX ckl_view_cursor_run_idx ON ckl_view_cursor (run_id, batch_index)",
    "CREATE INDEX ckl_view_cursor_status_idx ON ckl_view_cursor (run_id, status)",
    """CREATE TABLE ckl_view_history (
        checkpoint_id TEXT NOT NULL, seq BIGINT NOT NULL, attempt BIGINT NOT NULL,
        cursor TEXT NOT NULL, items_processed BIGINT NOT NULL, at TEXT NOT NULL,
        position BIGINT NOT NULL, PRIMARY KEY (checkpoint_id, seq))""",
    """CREATE TABLE ckl_view_failures (
        position BIGINT PRIMARY KEY, checkpoint_id TEXT NOT NULL, run_id TEXT NOT NULL,
        batch_index BIGINT NOT NULL, attempt BIGINT NOT NULL, error_type TEXT NOT NULL,
        message TEXT NOT NULL, transient INTEGER NOT NULL, cursor TEXT,
        items_processed BIGINT NOT NULL, failed_at TEXT NOT NULL, resolution TEXT,
        resolved_at TEXT)""",
    "CREATE INDEX ckl_view_failures_open_idx ON ckl_view_failures (checkpoint_id, resolution)",
    """CREATE TABLE ckl_view_timeline (
        position BIGINT PRIMARY KEY, run_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL,
        batch_index BIGINT NOT NULL, version BIGINT NOT NULL, topic TEXT NOT NULL,
        at TEXT NOT NULL)""",
)


def write_history(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("old", 0, total_batches=2)
    lease = ledger.claim_checkpoint(token, "w1", 30.0)
    ledger.checkpoint_yield(token, "a", 1, lease=lease)
    ledger.fail_checkpoint(token, "boom", transient=True, lease=lease)
    ledger.claim_checkpoint(token, "w2", 30.0)
    other = ledger.create_checkpoint("old", 1, total_batches=2)
    ledger.cancel_checkpoint(other, "not needed")


def build_version_1(ledger: Ledger, *, with_schema_row: bool) -> None:
    """The views as the previous version left them: old tables, one row, tracked at head."""
    head = ledger.recorder.max_notification_id()
    with ledger.recorder.transaction() as tx:
        for statement in VERSION_1_DDL:
            tx.execute(statement)
        tx.execute(
            "INSERT INTO ckl_view_cursor VALUES ('x', 'old', 0, 2, 'open', 1, NULL, 0, NULL, 0,"
            " 1, '2020-01-01T00:00:00.000000Z', '2020-01-01T00:00:00.000000Z', 1)"
        )
        tx.execute(
            f"INSERT INTO {TRACKING} (name, position) VALUES (%s, %s)", (TRACKING_NAME, head)
        )
        if with_schema_row:  # as a later version would find it, with the shape named
            tx.execute(f"CREATE TABLE {SCHEMA_TABLE} (name TEXT PRIMARY KEY, version BIGINT)")
            tx.execute(f"INSERT INTO {SCHEMA_TABLE} VALUES (%s, 1)", (TRACKING_NAME,))


def test_views_of_the_previous_shape_are_rebuilt_on_open(
    store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    for with_schema_row in (False, True):
        with Ledger.open(store_url) as ledger:
            with ledger.recorder.transaction() as tx:
                for table in (*VIEW_TABLES_NOW, SCHEMA_TABLE):
                    tx.execute(f"DROP TABLE IF EXISTS {table}")
                tx.execute(f"DELETE FROM {TRACKING} WHERE name = %s", (TRACKING_NAME,))
            if not with_schema_row:
                write_history(ledger)
            build_version_1(ledger, with_schema_row=with_schema_row)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="projections"):
                views = Projections(ledger)
            assert any("rebuilding" in r.getMessage() for r in caplog.records)
            assert views.tracked_position() == 0  # the old rows are gone, nothing skipped
            head = views.sync()
            assert head == ledger.recorder.max_notification_id()
            rebuilt = dump(views)
            summary = views.checkpoints("old")
            assert [(s.status, s.owner) for s in summary] == [("open", "w2"), ("cancelled", None)]
            assert [f.kind for f in views.failures(run_id="old")] == ["failure", "cancel"]
            views.rebuild()
            assert dump(views) == rebuilt
            assert views._query(f"SELECT version FROM {SCHEMA_TABLE}") == [(VIEWS_SCHEMA_VERSION,)]
            views.close()
            # Opened again: the shape is the current one, nothing is rebuilt.
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="projections"):
                again = Projections(ledger)
            assert not any("rebuilding" in r.getMessage() for r in caplog.records)
            assert again.tracked_position() == head
            again.close()
