"""Verify the hash chains of a store, or of one run, and pin their heads in an anchor file.

The walk reads one checkpoint at a time (the whole store in pages of checkpoints, in key
order), so memory stays bounded by the largest checkpoint, not by the store. The chains catch
an edited row, a rewritten hash and a deleted row in the middle; deleting the *last* events of
a checkpoint leaves a shorter but valid chain, which only an anchor written earlier reveals.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ledger._files import output_path, writing
from ledger.chain import ChainHead, ChainProblem, ChainRow, walk_chain
from ledger.checks import check_run_id
from ledger.errors import InvalidInput
from ledger.store import store_errors

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator

    from ledger.application import Ledger
    from ledger.store import LedgerRecorder

__all__ = [
    "ANCHOR_FORMAT",
    "VerifyReport",
    "load_anchor",
    "verify_chains",
]

ANCHOR_FORMAT = "ckl-anchor/1"
_PAGE = 1000


class VerifyReport(BaseModel):
    """What ``verify_chains`` found. ``ok`` is False when any problem was found.

    ``notes`` are not problems: rows written before hash chains existed (``unchained``), and
    anchored checkpoints that were archived since.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str | None
    checkpoints: int
    events: int
    problems: list[ChainProblem] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    anchor_written: str | None = None

    @property
    def ok(self) -> bool:
        """True when no event was found altered, missing or out of its chain."""
        return not self.problems


def _all_rows(recorder: LedgerRecorder) -> Iterator[ChainRow]:
    """Every row of the store in (checkpoint, version) order, read a page at a time."""
    after: tuple[UUID, int] | None = None
    while True:
        with recorder.transaction(readonly=True) as tx:
            rows = tx.select_chain_page(after, _PAGE)
        yield from rows
        if len(rows) < _PAGE:
            return
        after = (rows[-1].originator_id, rows[-1].version)


def _run_rows(recorder: LedgerRecorder, run_id: str) -> Iterator[ChainRow]:
    with recorder.transaction(readonly=True) as tx:
        ids = tx.run_checkpoint_ids(run_id)
    for oid in ids:
        with recorder.transaction(readonly=True) as tx:
            yield from tx.select_chain(oid)


def load_anchor(path: str | os.PathLike[str]) -> tuple[str | None, dict[str, ChainHead]]:
    """The run an anchor file was written for (``None``: the whole store) and its heads.

    Raises:
        InvalidInput: the file cannot be read or is not an anchor file.
    """
    heads: dict[str, ChainHead] = {}
    try:
        with Path(path).open("rb") as file:
            header = json.loads(file.readline() or b"null")
            if not isinstance(header, dict) or header.get("format") != ANCHOR_FORMAT:
                raise InvalidInput("anchor", f"{path} is not a {ANCHOR_FORMAT} file")
            for line in file:
                entry = json.loads(line)
                heads[str(UUID(entry["checkpoint_id"]))] = ChainHead(
                    version=int(entry["version"]), hash=entry["hash"]
                )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput("anchor", f"cannot read {path}: {exc}") from exc
    run_id = header.get("run_id")
    return (None if run_id is None else str(run_id)), heads


def _archived_heads(recorder: LedgerRecorder) -> dict[str, tuple[str, ChainHead]]:
    archived: dict[str, tuple[str, ChainHead]] = {}
    with recorder.transaction(readonly=True) as tx:
        for run_id, heads in tx.archived_heads():
            for oid, head in json.loads(heads).items():
                archived[oid] = (run_id, ChainHead.model_validate(head))
    return archived


class _Pins:
    """Anchored heads, compared with the chains as they are walked."""

    def __init__(self, anchored: dict[str, ChainHead]) -> None:
        self.anchored = anchored
        self.seen: set[str] = set()
        self.problems: list[ChainProblem] = []

    def check(self, rows: list[ChainRow], head: ChainHead | None) -> None:
        if not rows:
            return
        oid = str(rows[0].originator_id)
        pinned = self.anchored.get(oid)
        if pinned is None:
            return
        self.seen.add(oid)
        if head is None or head.version < pinned.version:
            now = 0 if head is None else head.version
            self.problems.append(
                ChainProblem(
                    kind="head_went_back",
                    checkpoint_id=oid,
                    version=pinned.version,
                    detail=f"the anchor pins v{pinned.version} but the chain ends at v{now}: "
                    "its last events were deleted",
                )
            )
            return
        at_pin = next((r for r in rows if r.version == pinned.version), None)
        stored = None if at_pin is None or at_pin.event_hash is None else at_pin.event_hash.hex()
        if stored != pinned.hash:
            self.problems.append(
                ChainProblem(
                    kind="head_changed",
                    checkpoint_id=oid,
                    version=pinned.version,
                    detail=f"the hash of v{pinned.version} is not the one the anchor pins: "
                    "the chain was rewritten up to its head",
                )
            )

    def unseen(
        self, archived: dict[str, tuple[str, ChainHead]], scope: set[str] | None
    ) -> tuple[list[ChainProblem], list[str]]:
        problems: list[ChainProblem] = []
        notes: list[str] = []
        for oid, pinned in self.anchored.items():
            if oid in self.seen or (scope is not None and oid not in scope):
                continue
            gone = archived.get(oid)
            if gone is not None and gone[1].version >= pinned.version:
                notes.append(f"checkpoint {oid} was archived with run {gone[0]!r}")
                continue
            problems.append(
                ChainProblem(
                    kind="head_missing",
                    checkpoint_id=oid,
                    version=pinned.version,
                    detail="the anchor pins this checkpoint but the store has none of its "
                    "events (and no archive marker)",
                )
            )
        return problems, notes


class _AnchorWriter:
    """Streams the heads to ``path`` + ``.tmp``; renamed into place only when complete."""

    def __init__(self, path: Path, header: dict[str, str | None]) -> None:
        self.path = path
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        with writing(self.path, "write_anchor"):
            self.out = self.tmp.open("w", encoding="utf-8")
            self.out.write(json.dumps({"format": ANCHOR_FORMAT, **header}) + "\n")

    def add(self, oid: str, head: ChainHead) -> None:
        entry = {"checkpoint_id": oid, "version": head.version, "hash": head.hash}
        with writing(self.path, "write_anchor"):
            self.out.write(json.dumps(entry) + "\n")

    def finish(self) -> None:
        with writing(self.path, "write_anchor"):
            self.out.close()
            self.tmp.replace(self.path)

    def abandon(self) -> None:
        if not self.out.closed:
            self.out.close()
        self.tmp.unlink(missing_ok=True)


def verify_chains(
    ledger: Ledger,
    run_id: str | None = None,
    *,
    anchor: str | os.PathLike[str] | None = None,
    write_anchor: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Recompute the hash chains of one run (or the whole store) and report what is wrong.

    Reports every event whose content no longer matches its hash (``altered``), every link
    broken by a rewritten hash (``chain_break``), every deleted row (``missing``), every hash
    removed (``hash_removed``) and, given an ``anchor`` file, every head that went back, changed
    or vanished without an archive marker. ``write_anchor`` saves the heads seen, for the next
    verification to compare against (written for the same scope: a run, or the whole store).

    Raises:
        InvalidInput: ``run_id`` is not a valid run id, the anchor file cannot be read, or
            ``write_anchor`` cannot be written
            (checked before the store is read; :class:`~ledger.errors.FileNotWritable` if a
            write fails later, with the partial file removed).
        StoreUnavailable: the store cannot be read.
    """
    if run_id is not None:
        check_run_id(run_id)
    anchor_target = None if write_anchor is None else output_path(write_anchor, "write_anchor")
    anchor_run, anchored = load_anchor(anchor) if anchor is not None else (None, {})
    pins = _Pins(anchored)
    problems: list[ChainProblem] = []
    notes: list[str] = []
    checkpoints = events = 0
    seen: set[str] = set()
    writer = None
    if anchor_target is not None:
        header = {
            "run_id": run_id,
            "store": ledger.store_display,
            "written_at": datetime.now(UTC).isoformat(),
        }
        writer = _AnchorWriter(anchor_target, header)
    try:
        with store_errors(ledger.store_display, "verify"):
            recorder = ledger.recorder
            source = _all_rows(recorder) if run_id is None else _run_rows(recorder, run_id)
            for _, group in groupby(source, key=lambda r: r.originator_id):
                rows = list(group)
                found, head = walk_chain(rows)
                checkpoints += 1
                events += len(rows)
                notes.extend(p.line() for p in found if p.kind == "unchained")
                problems.extend(p for p in found if p.kind != "unchained")
                pins.check(rows, head)
                seen.add(str(rows[0].originator_id))
                if writer is not None and head is not None:
                    writer.add(str(rows[0].originator_id), head)
            if pins.anchored:
                # Per run, a checkpoint gone entirely (its Created event with it) is known to be
                # the run's only from an anchor written for that run.
                scope = None if run_id is None or anchor_run == run_id else seen
                lost, archived_notes = pins.unseen(_archived_heads(recorder), scope)
                problems.extend(lost)
                notes.extend(archived_notes)
        if writer is not None:
            writer.finish()
    finally:
        if writer is not None:
            writer.abandon()
    problems.extend(pins.problems)
    problems.sort(key=lambda p: (p.checkpoint_id, p.version, p.kind))
    return VerifyReport(
        run_id=run_id,
        checkpoints=checkpoints,
        events=events,
        problems=problems,
        notes=notes,
        anchor_written=None if write_anchor is None else str(write_anchor),
    )
