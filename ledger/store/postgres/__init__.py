"""PostgreSQL backend through psycopg 3, split along its seams.

- ``positions``: ``notification_id = xid * 65536 + n`` and the visible horizon (no append lock)
- ``schema``: the DDL, its version, and the migrations from older versions
- ``append``: the append statements, chained parameters, and the libpq fast path
- ``notify``: the notifier thread that announces appends, and the LISTEN listener
- ``clock``: the server's time as the local clock plus a measured offset (``database_now``)
- ``recorder``: :class:`PostgresLedgerRecorder`, over the one pool of ``ledger.store.pool``

Imported only when a PostgreSQL store is opened (``ledger.store.backends``).
"""

from ledger.store.postgres.notify import PostgresListener
from ledger.store.postgres.positions import (
    MAX_EVENTS_PER_TRANSACTION,
    POSITIONS_PER_TRANSACTION,
    VISIBLE_HORIZON,
)
from ledger.store.postgres.recorder import PostgresLedgerRecorder
from ledger.store.postgres.schema import SCHEMA

__all__ = [
    "MAX_EVENTS_PER_TRANSACTION",
    "POSITIONS_PER_TRANSACTION",
    "SCHEMA",
    "VISIBLE_HORIZON",
    "PostgresLedgerRecorder",
    "PostgresListener",
]
