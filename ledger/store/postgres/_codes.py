"""Names shared by the schema, the appends and the partitions: advisory lock keys, SQLSTATEs.

Their own module so that ``schema`` (which prepares partitions at a writer's open) and
``partitions`` (which takes the schema's lock and raises its archive SQLSTATE) need not import
each other.
"""

from __future__ import annotations

import hashlib

__all__ = [
    "ARCHIVED_SQLSTATE",
    "GAP_SQLSTATE",
    "OLD_WRITER_MESSAGE",
    "OLD_WRITER_SQLSTATE",
    "lock_key",
]

OLD_WRITER_SQLSTATE = "23CK6"
"""Raised by the insert trigger for a row without a hash: a writer older than the store's schema
(class 23, an integrity constraint violation, as SQLite's trigger refusal is)."""
OLD_WRITER_MESSAGE = (
    "this store was upgraded by a newer checkpoint-ledger: upgrade this process"
    " (it would append rows without hashes)"
)
ARCHIVED_SQLSTATE = "CK001"
"""Raised by the insert trigger for a write to an archived run (``ledger.errors.RunArchived``)."""
GAP_SQLSTATE = "CK002"
"""Raised by the insert trigger for version n + 1 of a checkpoint that has no version n."""


def lock_key(name: str) -> int:
    """A stable signed int64 advisory lock key named after ``name``.

    The schema (``"schema"``) and the projections' DDL (``"views"``) are created under such
    keys. (Schema version 1 also locked the key of ``"ckl_events"`` per append; appends take
    no lock any more.)
    """
    digest = hashlib.sha256(f"checkpoint-ledger:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
