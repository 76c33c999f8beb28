"""What every ``ckl`` command shares: the one way to the store, time arguments, lookups.

A command module defines plain ``click`` commands that take :class:`CliContext` with
``@pass_cli`` and raise ``LedgerError`` for anything the user got wrong; ``ckl.cli`` turns
that into one ``error: …`` line and an exit code. Every command reaches the store through
:meth:`CliContext.open` (``--store`` and ``$CKL_*`` applied in one place); printing is
``ckl.cli._output``'s.
"""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from ledger import (
    CheckpointNotFound,
    CheckpointToken,
    InvalidStoreURL,
    Ledger,
    LedgerSettings,
    RunNotFound,
    StoreIsStandby,
)
from ledger.store import parse_store_url
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Iterator

    from projections import CheckpointSummary

__all__ = [
    "CliContext",
    "find_token",
    "parse_moment",
    "pass_cli",
    "require_run",
]


class CliContext:
    """The group's options, handed to every command: which store, and whether to debug."""

    def __init__(self, store: str | None, debug: bool) -> None:
        self.store, self.debug = store, debug

    def settings(self, **overrides: object) -> LedgerSettings:
        """The settings the commands open the store with ($CKL_* apply, --store wins).

        ``overrides``: a command's own options that are settings (``poll_interval``).

        Raises:
            InvalidInput: a variable or override has a value of the wrong type or range.
        """
        return LedgerSettings.from_env(store=self.store, **overrides)

    def open(
        self,
        *,
        existing: bool = False,
        write: bool = False,
        reads: bool = False,
        **overrides: object,
    ) -> Ledger:
        """Open the store: the one way every command reaches it.

        ``existing``: refuse a SQLite file that is not there yet, and never create or upgrade
        the store's schema: read commands pass ``existing=True``, so a mistyped path is an
        error, not a new empty database file left behind. A read-only store (``CKL_READ_ONLY``,
        a read-only file, directory or mount) is opened read-only and nothing is written; on
        a writable one only the views are brought up to date. ``write``: a command that
        changes an existing store (retry, cancel…) passes it with ``existing`` to write.
        ``reads``: a command that only reads but may be the first to open a new store
        (``ckl tail`` before the job starts): opened as a writer, unless the store is a hot
        standby, which is then read read-only. ``overrides``: settings a command's options
        set (see :meth:`settings`). With
        ``CKL_READER_STORE`` set, a read opens that store (a hot standby) read-only instead.

        Raises:
            InvalidInput: a setting has a value of the wrong type or range.
            InvalidStoreURL: a bad URL, or (``existing``) no SQLite file at the path.
            StoreUnavailable: the store cannot be reached.
            StoreSchemaMismatch: (read-only) the store's schema is missing, older or newer.
        """
        settings = self.settings(**overrides)
        if existing:
            url = parse_store_url(settings.store)
            path = url.database_file
            if path is not None and not os.path.exists(path):  # noqa: PTH110
                raise InvalidStoreURL(
                    url.display,
                    f"there is no SQLite database at {path} (this command never "
                    "creates one; check the path, or run a job or `ckl demo` first)",
                )
        if reads and settings.reader_store is None:
            try:
                return Ledger.open(settings=settings)
            except StoreIsStandby:
                return Ledger.open(settings=settings, read_only=True)
        if not existing or write:
            return Ledger.open(settings=settings)
        if settings.reader_store is not None:
            # CKL_READER_STORE: a read command reads the standby alone, read-only (its views
            # as stored there if current, else built in memory); the primary is not touched.
            reader = settings.model_copy(
                update={"store": settings.reader_store, "reader_store": None, "read_only": True}
            )
            return Ledger.open(settings=reader)
        # A read: opened read-only first, which checks the schema without writing anything
        # (missing, older or newer: StoreSchemaMismatch naming `ckl migrate`). On a store this
        # process may write, the read then goes on as a writer whose schema is current, so
        # nothing is created or upgraded, but the views are kept up to date in the store as
        # before (a read of a big store must not replay its whole log in memory each time).
        # A read-only store (CKL_READ_ONLY, a read-only file, directory or mount) stays
        # read-only: its views are read as they are, or built privately.
        probe = Ledger.open(settings=settings, read_only=True)
        if (
            settings.read_only
            or not _writable(parse_store_url(settings.store).database_file)
            or probe.recorder.is_standby()  # a hot standby: a writer would be refused
        ):
            return probe
        probe.close()
        return Ledger.open(settings=settings)

    @contextlib.contextmanager
    def views(self, ledger: Ledger) -> Iterator[Projections]:
        """The projections, caught up with everything committed by now (read-your-writes)."""
        with Projections(ledger) as views:
            views.sync(timeout=60.0)
            yield views


def _writable(path: str | None) -> bool:
    """True unless ``path`` (a SQLite file; ``None`` for a server) may not be written.

    Its mode bits count, not only ``os.access``: root may write anything, but a file someone
    made read-only (an auditor's copy) is treated as read-only here too.
    """
    if path is None:
        return True
    directory = os.path.dirname(os.path.abspath(path))  # noqa: PTH100, PTH120
    try:
        file_mode = os.stat(path).st_mode  # noqa: PTH116
        dir_mode = os.stat(directory).st_mode  # noqa: PTH116
        mounted_read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return (
        bool(file_mode & 0o222)
        and bool(dir_mode & 0o222)
        and not mounted_read_only
        and os.access(path, os.W_OK)
        and os.access(directory, os.W_OK)
    )


pass_cli = click.make_pass_decorator(CliContext)


def parse_moment(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """Option callback: an ISO-8601 time as an aware ``datetime`` (no zone means UTC).

    Raises:
        click.BadParameter: not an ISO-8601 time (``ckl`` prints it as one line, exit 2).
    """
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO-8601 time "
            "(e.g. 2026-11-23T11:15:30, 2026-11-23 11:15:30.5+02:00 or 2026-11-23)",
            ctx,
            param,
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def find_token(ledger: Ledger, run_id: str, batch_index: int) -> CheckpointToken:
    """The token of an existing checkpoint.

    Raises:
        RunNotFound: the run has no checkpoint at all.
        CheckpointNotFound: the run exists but not this batch.
    """
    token = ledger.find_checkpoint(run_id, batch_index)
    if token is not None:
        return token
    with Projections(ledger) as views:
        views.sync(timeout=60.0)
        if not views.checkpoints(run_id):
            raise RunNotFound(run_id)
    raise CheckpointNotFound(f"{run_id}/{batch_index}")


def require_run(views: Projections, run_id: str) -> list[CheckpointSummary]:
    """The run's checkpoints (by batch).

    Raises:
        RunNotFound: the run has none.
    """
    summaries = views.checkpoints(run_id)
    if not summaries:
        raise RunNotFound(run_id)
    return summaries
