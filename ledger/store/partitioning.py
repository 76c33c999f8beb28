"""Partitioned event tables: what a backend that partitions its log reports and offers.

Only PostgreSQL partitions ``ckl_events`` (``ledger.store.postgres.partitions``): declaratively,
by position range, so that retention detaches a partition instead of deleting rows one by one.
This module is dialect-free: the reports, the interface a backend implements, and the one
place that maps a store kind to its implementation (as ``ledger.store.backends`` maps kinds to
recorders), so that nothing above ``ledger.store`` compares dialect names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger.errors import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ledger.store.base import LedgerRecorder, SQLTransaction
    from ledger.store.url import StoreKind

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "MAX_PARTITION_SIZE",
    "DetachReport",
    "EnableReport",
    "PartitionInfo",
    "Partitioning",
    "PartitionsStatus",
    "check_partition_size",
    "partitioning_for",
]

DEFAULT_PARTITION_SIZE = 1 << 24
"""Transactions per partition (~16.8 million): hours to days of appends on a busy server."""
MAX_PARTITION_SIZE = 1 << 40
"""Far above any useful size, and far below where positions (``xid * 65536``) overflow."""

_BACKENDS: dict[StoreKind, str] = {
    "postgres": "ledger.store.postgres.partitions:PostgresPartitioning",
}


def check_partition_size(size: object) -> int:
    """``size`` if it is a usable partition size (transactions per partition).

    Raises:
        InvalidInput: not an int from 1 to ``MAX_PARTITION_SIZE`` (nothing is changed).
    """
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_PARTITION_SIZE:
        raise InvalidInput(
            "size",
            f"{size!r} is not a partition size: give a whole number of transactions from 1 "
            f"to {MAX_PARTITION_SIZE} (default {DEFAULT_PARTITION_SIZE})",
        )
    return size


class PartitionInfo(BaseModel):
    """One partition of the event table.

    Positions are ``xid * 65536 + n``: a partition holds the events of the transactions
    ``first_xid`` (inclusive) to ``end_xid`` (exclusive), i.e. the positions
    ``first_xid * 65536`` to ``end_xid * 65536``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    default: bool
    """The catch-all partition: positions no range partition covers (normally none)."""
    first_xid: int | None
    """``None``: from the lowest position (the table that was migrated, or the default)."""
    end_xid: int | None
    """``None`` for the default partition."""
    rows_estimate: int | None
    """The planner's row count (``None``: not analysed yet); ``ckl partitions detach`` counts."""
    writable: bool
    """Transactions that may still commit have positions in it: it cannot be detached yet."""


class PartitionsStatus(BaseModel):
    """Whether the event table is partitioned, and its partitions in position order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partitioned: bool
    size: int | None
    """Transactions per new partition (``None``: not partitioned)."""
    horizon_xid: int
    """Every transaction below it has ended: partitions ending at or below it are final."""
    partitions: list[PartitionInfo]


class EnableReport(BaseModel):
    """What ``enable_partitions`` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    migrated: bool
    """False: the table was partitioned already (only the size may have changed)."""
    size: int
    first_partition: str
    """The table the events were in, now the partition of the positions below ``boundary_xid``."""
    boundary_xid: int
    created: list[str]
    """Partitions created for the transactions to come."""


class DetachReport(BaseModel):
    """What ``detach_partition`` did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    partitions: list[str]
    events: int
    """Events the partitions held (gone from the log)."""
    checkpoints: int
    """The checkpoints of those runs: gone from the log, with their snapshots and view rows."""
    runs: list[str]
    """The archived runs whose events it held."""
    purged_elsewhere: int
    """Events of those runs in later partitions, deleted (so that no run is left in part)."""
    dropped: bool
    """True: the table was dropped; False: kept as a standalone, append-only table."""
    checkpoint_ids: list[UUID] = Field(default_factory=list, exclude=True)
    """The checkpoints gone (for caches to forget; not in the JSON)."""


class Partitioning(Protocol):
    """What a backend that partitions its event table provides (one transaction each)."""

    def status(self, tx: SQLTransaction) -> PartitionsStatus:
        """The table's partitions and what may be detached."""
        ...

    def enable(self, tx: SQLTransaction, size: int) -> EnableReport:
        """Partition an unpartitioned event table (or change the size of new partitions)."""
        ...

    def create_ahead(self, tx: SQLTransaction, ahead: int) -> list[str]:
        """Create the partitions due for the next ``ahead`` partition sizes of transactions."""
        ...

    def detach(self, tx: SQLTransaction, names: Sequence[str], *, drop: bool) -> DetachReport:
        """Detach (and ``drop``) partitions whose events all belong to archived runs."""
        ...


def partitioning_for(recorder: LedgerRecorder) -> Partitioning:
    """The partitioning of ``recorder``'s backend.

    Raises:
        InvalidInput: the backend does not partition its log (SQLite): nothing was changed.
    """
    kind = recorder.store.kind
    if kind not in _BACKENDS:
        raise InvalidInput(
            "store",
            f"{recorder.store.display} is a {kind} store; partitioning the event log is a "
            "PostgreSQL feature (a SQLite store purges archived runs with ckl archive)",
        )
    module_name, _, class_name = _BACKENDS[kind].partition(":")
    found: Partitioning = getattr(importlib.import_module(module_name), class_name)()
    return found
