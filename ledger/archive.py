"""Retention: export a run to a JSON-lines file, import it anywhere, archive (export + purge).

The file: one header line, then one line per event, grouped by checkpoint in version order::

    {"format": "ckl-archive/1", "run_id": …, "events": n, "checkpoints": k,
     "heads": {checkpoint_id: {"version": v, "hash": hex}}, "created_by": …, "created_at": …}
    {"originator_id": …, "version": v, "topic": …, "event_hash": hex, "position": p, "state": {…}}

``state`` is the stored event document verbatim (it is JSON), so the hashes, computed over its
exact bytes, can be checked again on import. ``position`` is the event's position in the store
it came from; an import appends at the end of the target store's log instead.

Archiving purges a *finished* run (every checkpoint completed or permanently failed) in one
transaction: permits for its checkpoints (the only way past the append-only trigger), the
deletes, the run's rows in the projection views, and a marker in ``ckl_archives`` that keeps the
run from being written again. The other runs' events and chains are untouched. On a store
whose log is partitioned (PostgreSQL, ``ledger.partitions``) archiving deletes nothing: the
marker closes the run, which reads as before until its partition is detached (with its
snapshots and view rows).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from pydantic import BaseModel, ConfigDict

from ledger._files import output_path, writing
from ledger.chain import ChainHead, ChainRow, walk_chain
from ledger.checkpoint import apply
from ledger.checks import check_run_id
from ledger.errors import (
    ArchiveError,
    ArchiveFileInvalid,
    CheckpointNotFound,
    ImportConflict,
    RunArchived,
    RunNotFinished,
)
from ledger.events import Created
from ledger.store import store_errors

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ledger.application import Ledger
    from ledger.checkpoint import CheckpointState

__all__ = [
    "ARCHIVE_FORMAT",
    "ArchiveSummary",
    "archive_run",
    "export_run",
    "import_archive",
]

ARCHIVE_FORMAT = "ckl-archive/1"
_IMPORT_CHUNK = 1000
_STATE_KEY = ',"state":'


class ArchiveSummary(BaseModel):
    """What an export, import or archive did."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    path: str
    events: int
    checkpoints: int
    file_sha256: str
    heads: dict[str, ChainHead]
    written: int = 0
    purged: bool = False
    restored: bool = False


def _version() -> str:
    try:
        return f"checkpoint-ledger {metadata.version('checkpoint-ledger')}"
    except metadata.PackageNotFoundError:
        return "checkpoint-ledger (unknown version)"


def _event_line(oid: UUID, position: int, row: ChainRow) -> bytes:
    head = {
        "originator_id": str(oid),
        "version": row.version,
        "topic": row.topic,
        "event_hash": None if row.event_hash is None else row.event_hash.hex(),
        "position": position,
    }
    # The document goes in verbatim (it is one line of JSON), last, so its bytes survive.
    return json.dumps(head, separators=(",", ":"))[:-1].encode() + b',"state":' + row.state + b"}\n"


# ------------------------------------------------------------------------------------ export


def export_run(ledger: Ledger, run_id: str, path: str | os.PathLike[str]) -> ArchiveSummary:
    """Write every event of ``run_id`` to a JSON-lines archive file (replaced atomically).

    The run is read in one snapshot. Its chains are checked first: a run whose events fail
    their hashes is not exported (run ``ckl verify`` to see why).

    Raises:
        InvalidInput: bad run id, or ``path`` cannot be written (checked before the store is
            read; :class:`~ledger.errors.FileNotWritable` if a write fails later).
        CheckpointNotFound: the store has no checkpoint of the run.
        ArchiveError: the run's hash chains are broken.
        StoreUnavailable: the store cannot be read.
    """
    check_run_id(run_id)
    target = output_path(path, "path")
    tmp = target.with_name(target.name + ".tmp")
    body = target.with_name(target.name + ".body")
    heads: dict[str, ChainHead] = {}
    events = 0
    try:
        with (
            writing(target, "path"),
            store_errors(ledger.store_display, "export"),
            body.open("wb") as out,
            ledger.recorder.transaction(readonly=True, snapshot=True) as tx,
        ):
            ids = tx.run_checkpoint_ids(run_id)
            if not ids:
                raise CheckpointNotFound(f"{run_id}/* (no checkpoint of run {run_id!r})")
            for oid in ids:
                positioned = tx.select_positioned_chain(oid)
                chain = [row for _, row in positioned]
                problems, head = walk_chain(chain)
                broken = [p for p in problems if p.kind != "unchained"]
                if broken:
                    raise ArchiveError(
                        f"run {run_id!r} fails its hash chains ({broken[0].line()}); "
                        "nothing was exported (see ckl verify)"
                    )
                for position, row in positioned:
                    out.write(_event_line(oid, position, row))
                events += len(chain)
                if head is not None:
                    heads[str(oid)] = head
        header = {
            "format": ARCHIVE_FORMAT,
            "run_id": run_id,
            "events": events,
            "checkpoints": len(heads),
            "heads": {oid: head.model_dump() for oid, head in heads.items()},
            "created_by": _version(),
            "created_at": datetime.now(UTC).isoformat(),
        }
        digest = hashlib.sha256()
        with writing(target, "path"), tmp.open("wb") as out, body.open("rb") as events_in:
            first = json.dumps(header, separators=(",", ":")).encode() + b"\n"
            digest.update(first)
            out.write(first)
            while block := events_in.read(1 << 20):
                digest.update(block)
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        with writing(target, "path"):
            tmp.replace(target)
    finally:
        body.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return ArchiveSummary(
        run_id=run_id,
        path=str(target),
        events=events,
        checkpoints=len(heads),
        file_sha256=digest.hexdigest(),
        heads=heads,
    )


# ------------------------------------------------------------------------------------ reading


class _ArchiveFile:
    """A checked archive: header facts, and the events re-read (and re-checked) on demand."""

    def __init__(self, path: Path, header: dict[str, Any], sha256: str) -> None:
        self.path, self.header, self.sha256 = path, header, sha256
        self.run_id: str = header["run_id"]
        self.heads = {str(oid): ChainHead.model_validate(h) for oid, h in header["heads"].items()}

    def events(self) -> Iterator[tuple[int, ChainRow]]:
        """(line number, row) of every event, re-parsed from the file."""
        with self.path.open("rb") as file:
            file.readline()
            for number, line in enumerate(file, start=2):
                yield number, _parse_event(str(self.path), number, line)


def _invalid(path: Path, line: int, reason: str) -> ArchiveFileInvalid:
    return ArchiveFileInvalid(str(path), line, reason)


def _parse_event(path: str, number: int, line: bytes) -> ChainRow:
    where = ArchiveFileInvalid
    text = line.rstrip(b"\n")
    cut = text.find(_STATE_KEY.encode())
    if cut < 0 or not text.endswith(b"}"):
        raise where(path, number, "not an event line (no state)")
    try:
        fields = json.loads(text[:cut] + b"}")
        state = text[cut + len(_STATE_KEY) : -1]
        document = json.loads(state)
        oid = UUID(fields["originator_id"])
        version = fields["version"]
        topic = fields["topic"]
        stored = fields["event_hash"]
    except (ValueError, KeyError, TypeError) as exc:
        raise where(path, number, f"malformed event line ({exc})") from exc
    if not isinstance(document, dict):
        raise where(path, number, "the state is not a JSON object")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise where(path, number, "version must be an int ≥ 1")
    if not isinstance(topic, str) or (stored is not None and not isinstance(stored, str)):
        raise where(path, number, "topic and event_hash must be strings")
    try:
        digest = None if stored is None else bytes.fromhex(stored)
    except ValueError as exc:
        raise where(path, number, "event_hash is not hex") from exc
    return ChainRow(oid, version, topic, bytes(state), digest)


def read_archive(ledger: Ledger, path: str | os.PathLike[str]) -> _ArchiveFile:
    """Check a whole archive file without writing anything: format, counts, documents, chains.

    Raises:
        ArchiveFileInvalid: anything about the file is wrong.
    """
    source = Path(path)
    digest = hashlib.sha256()
    try:
        file = source.open("rb")
    except OSError as exc:
        raise _invalid(source, 0, f"cannot open it ({exc.strerror})") from exc
    with file:
        first = file.readline()
        digest.update(first)
        try:
            header = json.loads(first)
        except ValueError as exc:
            raise _invalid(source, 1, "the header is not JSON") from exc
        _check_header(source, header)
        run_id = header["run_id"]
        seen: dict[str, ChainHead] = {}
        events = 0
        current: UUID | None = None
        chain: list[ChainRow] = []
        start_line = 2
        for number, line in enumerate(file, start=2):
            digest.update(line)
            row = _parse_event(str(source), number, line)
            if row.originator_id != current:
                if current is not None:
                    seen[str(current)] = _check_chain(source, start_line, chain)
                if str(row.originator_id) in seen:
                    raise _invalid(source, number, "a checkpoint's events are not together")
                current, chain, start_line = row.originator_id, [], number
            _check_document(ledger, source, number, row, run_id)
            chain.append(row)
            events += 1
        if current is not None:
            seen[str(current)] = _check_chain(source, start_line, chain)
    if events != header["events"] or len(seen) != header["checkpoints"]:
        raise _invalid(
            source,
            0,
            f"the header counts {header['events']} events in {header['checkpoints']} "
            f"checkpoints, the file holds {events} in {len(seen)} (truncated?)",
        )
    archive = _ArchiveFile(source, header, digest.hexdigest())
    if archive.heads != seen:
        raise _invalid(source, 0, "the heads in the header are not the chains' heads")
    return archive


def _check_header(source: Path, header: object) -> None:
    if not isinstance(header, dict) or header.get("format") != ARCHIVE_FORMAT:
        raise _invalid(source, 1, f"not a {ARCHIVE_FORMAT} file")
    run_id = header.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise _invalid(source, 1, "the header has no run_id")
    for key in ("events", "checkpoints"):
        value = header.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _invalid(source, 1, f"the header's {key} is not a count")
    heads = header.get("heads")
    if not isinstance(heads, dict):
        raise _invalid(source, 1, "the header has no heads")
    try:
        for oid, head in heads.items():
            UUID(oid)
            ChainHead.model_validate(head)
    except ValueError as exc:
        raise _invalid(source, 1, f"the header's heads are malformed ({exc})") from exc


def _check_document(ledger: Ledger, source: Path, number: int, row: ChainRow, run_id: str) -> None:
    try:
        event = ledger.mapper.to_event(
            StoredEvent(row.originator_id, row.version, row.topic, row.state)
        )
    except MapperDeserialisationError as exc:
        raise _invalid(source, number, str(exc)) from exc
    if isinstance(event, Created) and event.run_id != run_id:
        raise _invalid(source, number, f"checkpoint of run {event.run_id!r}, not {run_id!r}")
    if (row.version == 1) != isinstance(event, Created):
        raise _invalid(source, number, "version 1, and only version 1, is a Created event")


def _check_chain(source: Path, line: int, chain: list[ChainRow]) -> ChainHead:
    problems, head = walk_chain(chain)
    broken = [p for p in problems if p.kind != "unchained"]
    if broken:
        at = line + next(i for i, r in enumerate(chain) if r.version >= broken[0].version)
        raise _invalid(source, at, f"hash chain: {broken[0].line()}")
    if head is None:  # pragma: no cover  (called with at least one row)
        raise _invalid(source, line, "empty checkpoint")
    return head


# ------------------------------------------------------------------------------------ import


def import_archive(
    ledger: Ledger, path: str | os.PathLike[str], *, restore: bool = False
) -> ArchiveSummary:
    """Append an archive's events to this store, after checking the whole file.

    The file is checked first (format, counts, every document, every hash chain): a bad file
    writes nothing. Events the store already holds identically are skipped, so an interrupted
    import can be run again. Into the store the run was archived from, pass ``restore=True``:
    the archive marker is then marked restored and the run may be written again.

    Raises:
        ArchiveFileInvalid: the file is malformed or fails its chains.
        RunArchived: the run is archived in this store and ``restore`` is not set.
        ImportConflict: the store holds different events for the run.
        StoreUnavailable: the store failed.
    """
    archive = read_archive(ledger, path)
    run_id = archive.run_id
    with store_errors(ledger.store_display, "import"):
        with ledger.recorder.transaction(readonly=True) as tx:
            archived = tx.run_is_archived(run_id)
            if archived and not restore:
                raise RunArchived(run_id)
            present = {str(oid) for oid in tx.run_checkpoint_ids(run_id)}
            extra = sorted(present - set(archive.heads))
            if extra:
                raise ImportConflict(run_id, extra[0], "is in the store but not in the archive")
            have = {oid: tx.select_hashes(UUID(oid)) for oid in present}
        for oid, hashes in have.items():
            _check_prefix(run_id, oid, hashes, archive)
        if archived:
            with ledger.recorder.transaction() as tx:
                tx.mark_restored(run_id, datetime.now(UTC).isoformat())
        written = 0
        chunk: list[StoredEvent] = []
        for _, row in archive.events():
            if row.version <= len(have.get(str(row.originator_id), ())):
                continue  # already there, identical (checked above)
            chunk.append(StoredEvent(row.originator_id, row.version, row.topic, row.state))
            if len(chunk) >= _IMPORT_CHUNK:
                written += _append(ledger, chunk, run_id)
                chunk = []
        if chunk:
            written += _append(ledger, chunk, run_id)
    return ArchiveSummary(
        run_id=run_id,
        path=str(archive.path),
        events=int(archive.header["events"]),
        checkpoints=len(archive.heads),
        file_sha256=archive.sha256,
        heads=archive.heads,
        written=written,
        restored=archived,
    )


def _append(ledger: Ledger, chunk: list[StoredEvent], run_id: str) -> int:
    ids = ledger.recorder.insert_events(chunk, run_id=run_id)
    return len(chunk) if ids is None else len(ids)


def _check_prefix(run_id: str, oid: str, hashes: list[bytes | None], archive: _ArchiveFile) -> None:
    """The store's events of a checkpoint must be the archive's first ones, hash for hash."""
    head = archive.heads[oid]
    if len(hashes) > head.version:
        raise ImportConflict(run_id, oid, f"has {len(hashes)} events, the archive {head.version}")
    if not hashes:
        return
    wanted = {
        row.version: row.event_hash
        for _, row in archive.events()
        if str(row.originator_id) == oid and row.version <= len(hashes)
    }
    for version, stored in enumerate(hashes, start=1):
        if wanted.get(version) is not None and stored != wanted[version]:
            raise ImportConflict(run_id, oid, f"differs from the archive at v{version}")


# ------------------------------------------------------------------------------------ archive


def archive_run(ledger: Ledger, run_id: str, path: str | os.PathLike[str]) -> ArchiveSummary:
    """Export a finished run, check the file, then purge the run and record a marker.

    The purge, the marker and the run's projection rows go in one transaction, only if the
    run is exactly what was exported (nothing appended since). Afterwards the run cannot be
    written again in this store unless its archive is imported back with ``restore=True``.
    On a partitioned log nothing is purged (``purged`` is False in the summary): the run's
    events go when their partition is detached (``ledger.partitions.detach_partition``).

    Raises:
        RunNotFinished: a checkpoint is open or transiently failed (nothing was changed).
        CheckpointNotFound: the store has no checkpoint of the run.
        ArchiveError: the run changed during archiving, or its chains are broken.
        ArchiveFileInvalid: the written file did not read back identically.
        StoreUnavailable: the store failed (the purge is all or nothing).
    """
    check_run_id(run_id)
    with (
        store_errors(ledger.store_display, "archive"),
        ledger.recorder.transaction(readonly=True) as tx,
    ):
        ids = tx.run_checkpoint_ids(run_id)
        states = [_fold(ledger, tx.select_chain(oid)) for oid in ids]
    if not ids:
        raise CheckpointNotFound(f"{run_id}/* (no checkpoint of run {run_id!r})")
    unfinished = sum(1 for state in states if state is None or not state.is_settled)
    if unfinished:
        raise RunNotFinished(run_id, unfinished)
    exported = export_run(ledger, run_id, path)
    archive = read_archive(ledger, path)
    if archive.heads != exported.heads or archive.sha256 != exported.file_sha256:
        raise ArchiveFileInvalid(str(path), 0, "the file did not read back as it was written")
    with store_errors(ledger.store_display, "archive"), ledger.recorder.transaction() as tx:
        tx.lock_appends()  # no append to the run between our check and the commit
        now_ids = tx.run_checkpoint_ids(run_id)
        now_heads = {str(oid): walk_chain(tx.select_chain(oid))[1] for oid in now_ids}
        if now_heads != exported.heads:
            raise ArchiveError(
                f"run {run_id!r} changed while it was archived; nothing was purged "
                "(archive it again)"
            )
        # A partitioned log (ledger.partitions) keeps the rows: its partition is detached
        # later, at the cost of a DETACH instead of these deletes.
        purged = not tx.events_partitioned()
        if purged:
            tx.purge_checkpoints(now_ids)
        tx.insert_archive_marker(
            run_id,
            archived_at=datetime.now(UTC).isoformat(),
            events=exported.events,
            checkpoints=exported.checkpoints,
            file_sha256=exported.file_sha256,
            heads=json.dumps({oid: h.model_dump() for oid, h in exported.heads.items()}),
        )
    ledger.forget_checkpoints(ids)
    return exported.model_copy(update={"purged": purged})


def _fold(ledger: Ledger, rows: list[ChainRow]) -> CheckpointState | None:
    state: CheckpointState | None = None
    for row in rows:
        event = ledger.mapper.to_event(
            StoredEvent(row.originator_id, row.version, row.topic, row.state)
        )
        state = apply(state, event)
    return state
