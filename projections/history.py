"""The bounded history view: the last N yields of each checkpoint, plus the total ever.

This answers the tasker seed's unbounded JSONB ``history`` array: the rows kept per checkpoint
never exceed N whatever the number of yields, and each yield costs one insert and one delete by
primary key. The full history stays in the immutable log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections._common import from_json, parse_time
from projections.cursor import TABLE as CURSOR_TABLE
from projections.models import History, HistoryEntry

if TYPE_CHECKING:
    from uuid import UUID

    from ledger import SQLTransaction

__all__ = ["HistoryView"]

TABLE = "ckl_view_history"


class HistoryView:
    """The last ``keep`` yields per checkpoint (``seq`` counts every yield ever, from 1)."""

    name: str = "history"
    tables: tuple[str, ...] = (TABLE,)
    ddl: tuple[str, ...] = (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            checkpoint_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            attempt BIGINT NOT NULL,
            cursor TEXT NOT NULL,
            items_processed BIGINT NOT NULL,
            at TEXT NOT NULL,
            position BIGINT NOT NULL,
            PRIMARY KEY (checkpoint_id, seq)
        )""",
    )

    def __init__(self, keep: int) -> None:
        self.keep = keep

    def history(self, tx: SQLTransaction, checkpoint_id: UUID) -> History:
        """The checkpoint's kept yields by ``seq``, and its yields ever (0 if unseen)."""
        oid = str(checkpoint_id)
        total = tx.query(f"SELECT yields FROM {CURSOR_TABLE} WHERE checkpoint_id = %s", (oid,))
        rows = tx.query(
            f"SELECT seq, attempt, cursor, items_processed, at, position FROM {TABLE}"
            " WHERE checkpoint_id = %s ORDER BY seq",
            (oid,),
        )
        return History(
            checkpoint_id=checkpoint_id,
            total_yields=int(total[0][0]) if total else 0,
            entries=[
                HistoryEntry(
                    seq=int(seq),
                    attempt=int(attempt),
                    cursor=from_json(cursor),
                    items_processed=int(items),
                    at=parse_time(at),
                    position=int(position),
                )
                for seq, attempt, cursor, items, at, position in rows
            ],
        )
