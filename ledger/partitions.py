"""Retention by partition: the event log partitioned by position range, old partitions detached.

On PostgreSQL, ``ckl_events`` may be partitioned by position range (opt-in per store:
:func:`enable_partitions`, ``ckl partitions enable``). ``ckl archive`` of a finished run then
exports it and marks it archived (so nothing is written to it again) without deleting its
rows; once every event of a partition belongs to archived runs and no transaction can write
into it any more, :func:`detach_partition` detaches it: retention costs one ``DETACH`` instead
of a ``DELETE`` per row. Until then an archived run reads as before (replay, views, export,
verify); afterwards it is gone from every read, as after a purge. How uniqueness, new
partitions and the migration work: ``ledger.store.postgres.partitions``.

Every call needs the store's owner role (DDL) and raises ``InvalidInput`` on a SQLite store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.store import store_errors
from ledger.store.partitioning import (
    DEFAULT_PARTITION_SIZE,
    DetachReport,
    EnableReport,
    PartitionInfo,
    PartitionsStatus,
    check_partition_size,
    partitioning_for,
)

if TYPE_CHECKING:
    from ledger.application import Ledger

__all__ = [
    "DEFAULT_PARTITION_SIZE",
    "DetachReport",
    "EnableReport",
    "PartitionInfo",
    "PartitionsStatus",
    "create_partitions",
    "detach_partition",
    "enable_partitions",
    "partitions_status",
]


def enable_partitions(ledger: Ledger, size: int = DEFAULT_PARTITION_SIZE) -> EnableReport:
    """Partition the store's event log by position range, ``size`` transactions a partition.

    The existing table becomes the first partition as it is (no row is copied: positions,
    hashes and command ids stay); appends and reads wait for the migration, which costs one
    scan of the table. On a store already partitioned, only the size of new partitions changes.

    Raises:
        InvalidInput: ``size`` is not from 1 to ``MAX_PARTITION_SIZE``, or the store is not
            PostgreSQL (nothing is changed).
        StoreUnavailable: the store failed (the migration is all or nothing).
    """
    check_partition_size(size)
    backend = partitioning_for(ledger.recorder)
    with store_errors(ledger.store_display, "partition"), ledger.recorder.transaction() as tx:
        return backend.enable(tx, size)


def partitions_status(ledger: Ledger) -> PartitionsStatus:
    """Whether the log is partitioned, and its partitions (which may be detached).

    Raises:
        InvalidInput: the store is not PostgreSQL.
    """
    backend = partitioning_for(ledger.recorder)
    with (
        store_errors(ledger.store_display, "partitions"),
        ledger.recorder.transaction(readonly=True) as tx,
    ):
        return backend.status(tx)


def create_partitions(ledger: Ledger, ahead: int = 1) -> list[str]:
    """Create the partitions the next transactions need, ``ahead`` whole partitions beyond.

    A writer's open does this too; run it on a schedule (as the owner) for writers that stay
    open longer than a partition lasts. Their names (none if none was due).

    Raises:
        InvalidInput: ``ahead`` is not from 0 to 1000, or the store is not partitioned.
    """
    backend = partitioning_for(ledger.recorder)
    with store_errors(ledger.store_display, "partitions"), ledger.recorder.transaction() as tx:
        return backend.create_ahead(tx, ahead)


def detach_partition(ledger: Ledger, name: str, *names: str, drop: bool = False) -> DetachReport:
    """Detach partition ``name`` (and ``names``) from the log; ``drop`` them, or keep them.

    Refused unless every event in them belongs to a run archived (and not restored) and no
    transaction can write into them any more. All or none, in one transaction, which also
    deletes the detached runs' events in later partitions (a run that straddles the last
    one's end), their snapshots and view rows, so a run is never left in part: detach the
    partitions a run spans together and none of its rows is deleted one by one. ``ckl
    verify`` passes afterwards (the archive markers account for the checkpoints an anchor
    pinned). Kept tables stay as plain, append-only tables.

    Raises:
        InvalidInput: a name is not a partition of the log, or the store is not PostgreSQL.
        PartitionNotDetachable: one is the default partition, still written into, or holds
            events of runs not archived (nothing is changed).
        StoreUnavailable: the store failed (all or nothing).
    """
    backend = partitioning_for(ledger.recorder)
    with store_errors(ledger.store_display, "detach"), ledger.recorder.transaction() as tx:
        report = backend.detach(tx, [name, *names], drop=drop)
    ledger.forget_checkpoints(report.checkpoint_ids)
    return report
