"""The store: the only code that knows SQL and the differences between the backends.

One URL picks the backend (``ledger.store.url``); ``open_recorder(settings)`` returns its
:class:`LedgerRecorder` with the tables in place, importing the backend only then
(``ledger.store.backends``), so a SQLite user never loads psycopg.

- ``url``: parsing and redaction of store URLs (light: settings and the CLI use it at start-up)
- ``base``: the recorder and transaction interface the layers above use, with portable SQL
- ``backends``: store kind → backend module path, and ``open_recorder``
- ``pool``: the one connection pool both backends use
- ``subscription``: eventsourcing's ``Subscription`` over either backend (``subscribe()``)
- ``sqlite``: the SQLite backend (also ``memory://``)
- ``postgres``: the PostgreSQL backend (schema, append, notify, clock, recorder)
"""

from ledger.store.backends import (
    SchemaVersions,
    migrate_schema,
    open_recorder,
    private_views_recorder,
)
from ledger.store.base import (
    ARCHIVES_TABLE,
    COMMAND_INDEX,
    EVENTS_TABLE,
    PARTITIONING_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    TRACKING_TABLE,
    CommandAlreadyRecorded,
    LedgerRecorder,
    LogHead,
    LogListener,
    SQLTransaction,
    quote_identifier,
    store_errors,
)
from ledger.store.failures import permanent_failure, store_error
from ledger.store.url import StoreURL, parse_store_url, redact_url

__all__ = [
    "ARCHIVES_TABLE",
    "COMMAND_INDEX",
    "EVENTS_TABLE",
    "PARTITIONING_TABLE",
    "PURGE_PERMITS_TABLE",
    "SNAPSHOTS_TABLE",
    "TRACKING_TABLE",
    "CommandAlreadyRecorded",
    "LedgerRecorder",
    "LogHead",
    "LogListener",
    "SQLTransaction",
    "SchemaVersions",
    "StoreURL",
    "migrate_schema",
    "open_recorder",
    "parse_store_url",
    "permanent_failure",
    "private_views_recorder",
    "quote_identifier",
    "redact_url",
    "store_error",
    "store_errors",
]
