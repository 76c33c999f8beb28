"""Which recorder serves a store URL: a backend is named by its module path, loaded on demand.

The base knows the backends only by name, as eventsourcing names its persistence module
(``PERSISTENCE_MODULE``): the package does not import them, so a SQLite user never loads
psycopg, and a backend may import the base without a cycle. ``importlib`` below is the one
import of another ledger module made inside a function, on purpose.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, NamedTuple

from ledger.errors import StoreSchemaMismatch
from ledger.store.base import LedgerRecorder
from ledger.store.url import parse_store_url

if TYPE_CHECKING:
    from ledger.settings import LedgerSettings
    from ledger.store.url import StoreKind, StoreURL

__all__ = [
    "BACKENDS",
    "SchemaVersions",
    "migrate_schema",
    "open_recorder",
    "private_views_recorder",
    "recorder_class",
]

BACKENDS: dict[StoreKind, str] = {
    "sqlite": "ledger.store.sqlite:SQLiteLedgerRecorder",
    "memory": "ledger.store.sqlite:SQLiteLedgerRecorder",
    "postgres": "ledger.store.postgres:PostgresLedgerRecorder",
}
"""Store kind → ``module:class`` of its recorder, a :class:`LedgerRecorder` subclass taking
``(store: StoreURL, settings: LedgerSettings)``."""


def recorder_class(store: StoreURL) -> type[LedgerRecorder]:
    """The recorder class for ``store``'s kind, its module imported now (psycopg on demand)."""
    module_name, _, class_name = BACKENDS[store.kind].partition(":")
    found = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(found, type) and issubclass(found, LedgerRecorder)):
        msg = f"{BACKENDS[store.kind]} is not a LedgerRecorder"
        raise TypeError(msg)
    return found


def open_recorder(settings: LedgerSettings) -> LedgerRecorder:
    """The recorder for ``settings.store``, with its tables in place.

    Raises:
        InvalidStoreURL: the URL is not usable.
        eventsourcing.persistence.OperationalError: the database cannot be reached.
    """
    store = parse_store_url(settings.store)
    recorder = recorder_class(store)(store, settings)
    try:
        recorder.create_tables()
    except BaseException:
        recorder.close()
        raise
    return recorder


class SchemaVersions(NamedTuple):
    """A store's schema version before and after :func:`migrate_schema`, and the code's."""

    before: int
    after: int
    code: int


def migrate_schema(settings: LedgerSettings, *, check: bool = False) -> SchemaVersions:
    """Upgrade the store's schema to this code's (``check``: only read its version).

    The version is read through a read-only recorder, so ``check`` (and a current store)
    writes nothing; an upgrade is what a writer's open does (``create_tables``), at once.
    Idempotent.

    Raises:
        StoreSchemaMismatch: the store's schema is newer than the code's.
        eventsourcing.persistence.PersistenceError: the database cannot be reached.
    """
    store = parse_store_url(settings.store)
    cls = recorder_class(store)
    reader = cls(store, settings.model_copy(update={"read_only": True}))
    try:
        before, code = reader.schema_version(), reader.code_schema_version
    finally:
        reader.close()
    if before > code:
        raise StoreSchemaMismatch(store.display, before, code)
    if check or before == code:
        return SchemaVersions(before, before, code)
    writer = open_recorder(settings.model_copy(update={"read_only": False}))
    try:
        return SchemaVersions(before, writer.schema_version(), code)
    finally:
        writer.close()


def private_views_recorder(source: LedgerRecorder, settings: LedgerSettings) -> LedgerRecorder:
    """A private in-memory SQLite database for view tables, reading the log from ``source``.

    For a read-only ledger whose stored views are not current (``ledger.store.private``);
    SQLite is imported only now, as every backend is.
    """
    found = importlib.import_module("ledger.store.private").PrivateViewsRecorder(source, settings)
    if not isinstance(found, LedgerRecorder):  # pragma: no cover  (the module's own class)
        msg = "ledger.store.private.PrivateViewsRecorder is not a LedgerRecorder"
        raise TypeError(msg)
    return found
