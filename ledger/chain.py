r"""Per-checkpoint hash chains: the tamper evidence of the event log.

Each event row carries ``event_hash``, chained to the previous event of its checkpoint::

    event_hash(v) = sha256(event_hash(v - 1)       # b"" for v = 1, or after unchained rows
                           || originator_id.bytes   # 16 bytes
                           || version               # 8-byte big-endian signed
                           || topic (UTF-8) || b"\x00"
                           || state)

The recorders compute it when a row is inserted (SQLite in Python inside the write transaction,
PostgreSQL in the INSERT statement itself with ``sha256()``), so a row can only be changed behind
the ledger's back by also rewriting its hash and every later hash of its checkpoint, and the
last ones are pinned by an anchor file (see ``ledger.audit``).

:func:`walk_chain` checks one checkpoint's rows; ``ledger.audit.verify_chains`` walks a store.
Rows written before the column existed have no hash: they are reported as *unchained*, which is
not tampering, but a missing hash *after* a chained row is.
"""

from __future__ import annotations

import hashlib
import struct
from typing import TYPE_CHECKING, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

__all__ = [
    "ChainHead",
    "ChainProblem",
    "ChainRow",
    "ProblemKind",
    "chain_hash",
    "walk_chain",
]

ProblemKind = Literal[
    "altered",
    "chain_break",
    "missing",
    "hash_removed",
    "head_went_back",
    "head_changed",
    "head_missing",
    "unchained",
]

_VERSION = struct.Struct(">q")


def chain_hash(
    prev: bytes | None, originator_id: UUID, version: int, topic: str, state: bytes
) -> bytes:
    """The hash of one event, chained to ``prev`` (the previous event's hash, or ``None``)."""
    digest = hashlib.sha256(prev or b"")
    digest.update(originator_id.bytes)
    digest.update(_VERSION.pack(version))
    digest.update(topic.encode("utf-8"))
    digest.update(b"\x00")
    digest.update(state)
    return digest.digest()


class ChainRow(NamedTuple):
    """One stored event as the chain sees it."""

    originator_id: UUID
    version: int
    topic: str
    state: bytes
    event_hash: bytes | None


class ChainProblem(BaseModel):
    """One thing wrong with a checkpoint's chain (or, for ``unchained``, a note)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ProblemKind
    checkpoint_id: str
    version: int
    detail: str

    def line(self) -> str:
        """One line for people: kind, checkpoint, version, detail."""
        return f"{self.kind}: checkpoint {self.checkpoint_id} v{self.version}: {self.detail}"


class ChainHead(BaseModel):
    """Where a checkpoint's chain ends: its last version and that event's stored hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    hash: str | None


def walk_chain(rows: Iterable[ChainRow]) -> tuple[list[ChainProblem], ChainHead | None]:
    """Check one checkpoint's rows (in version order); its problems and its head.

    Every row is checked against its own stored hash and the previous row's *stored* hash, so
    an edited row is reported once, where it is. A row whose stored hash was rewritten makes
    the next row fail; if that next row does match the chain recomputed through the previous
    row's content, the next row is intact and the problem is reported as a ``chain_break``.
    Versions must run 1, 2, 3…: a hole is a deleted row (``missing``).
    """
    problems: list[ChainProblem] = []
    expected_version = 1
    prev_stored: bytes | None = None
    prev_recomputed: bytes | None = None
    chained_seen = False
    unchained_from: int | None = None
    unchained_to = 0
    after_gap = False
    last: ChainRow | None = None
    for row in rows:
        oid = str(row.originator_id)
        if row.version != expected_version:
            first_missing = expected_version
            last_missing = row.version - 1
            span = (
                f"v{first_missing}"
                if first_missing == last_missing
                else f"v{first_missing}..v{last_missing}"
            )
            problems.append(
                ChainProblem(
                    kind="missing",
                    checkpoint_id=oid,
                    version=first_missing,
                    detail=f"{span} deleted (the versions jump from "
                    f"{expected_version - 1} to {row.version})",
                )
            )
            after_gap = True
        if row.event_hash is None:
            if chained_seen:
                problems.append(
                    ChainProblem(
                        kind="hash_removed",
                        checkpoint_id=oid,
                        version=row.version,
                        detail="no stored hash after chained events: the hash was removed",
                    )
                )
            else:
                unchained_from = unchained_from or row.version
                unchained_to = row.version
            prev_stored = prev_recomputed = None
        else:
            recomputed = chain_hash(
                prev_stored, row.originator_id, row.version, row.topic, row.state
            )
            if recomputed != row.event_hash and not after_gap:
                through_content = chain_hash(
                    prev_recomputed, row.originator_id, row.version, row.topic, row.state
                )
                if prev_recomputed is not None and through_content == row.event_hash:
                    problems.append(
                        ChainProblem(
                            kind="chain_break",
                            checkpoint_id=oid,
                            version=row.version,
                            detail=f"intact, but the stored hash of v{row.version - 1} was "
                            "rewritten (the chain no longer leads here)",
                        )
                    )
                else:
                    problems.append(
                        ChainProblem(
                            kind="altered",
                            checkpoint_id=oid,
                            version=row.version,
                            detail="its content does not match its stored hash (the event was "
                            f"changed, or the stored hash of v{row.version - 1} was rewritten)",
                        )
                    )
            chained_seen = True
            prev_recomputed = recomputed
            prev_stored = row.event_hash
        after_gap = False
        expected_version = row.version + 1
        last = row
    if unchained_from is not None and last is not None:
        problems.insert(
            0,
            ChainProblem(
                kind="unchained",
                checkpoint_id=str(last.originator_id),
                version=unchained_from,
                detail=f"v{unchained_from}..v{unchained_to} unchained (written before hash chains)",
            ),
        )
    if last is None:
        return problems, None
    head = ChainHead(
        version=last.version, hash=None if last.event_hash is None else last.event_hash.hex()
    )
    return problems, head
