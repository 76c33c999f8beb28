"""Which recorder serves a store URL: a backend is named by its module path, loaded on demand.

The base knows the backends only by name, as eventsourcing names its persistence module
(``PERSISTENCE_MODULE``): the package does not import them, so a SQLite user never loads
psycopg, and a backend may import the base without a cycle. ``importlib`` below is the one
import of another ledger module made inside a function, on purpose.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ledger.store.base import LedgerRecorder
from ledger.store.url import parse_store_url

if TYPE_CHECKING:
    from ledger.settings import LedgerSettings
    from ledger.store.url import StoreKind, StoreURL

__all__ = ["BACKENDS", "open_recorder", "recorder_class"]

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
