"""`ckl verify`, `export`, `import`, `archive` and `grants`: tamper evidence and retention.

Each command is one library call (``ledger.verify_chains``, ``ledger.export_run``,
``ledger.import_archive``, ``ledger.archive_run``, ``ledger.grants``) plus formatting. They are
plain click commands, registered in ``ckl.cli.COMMANDS``. They open the store through the
group's ``CliContext``; all but ``import`` refuse a SQLite file that is not there (a mistyped
path would otherwise verify as an empty, clean store).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ckl.cli._context import CliContext, pass_cli
from ckl.cli._output import echo_json
from ledger import (
    TamperDetected,
    archive_run,
    export_run,
    import_archive,
    verify_chains,
)
from ledger.grants import before_schema_statements, grant_statements

if TYPE_CHECKING:
    from ledger import ArchiveSummary

__all__ = ["archive", "export", "grants", "import_", "verify"]

_FILE = click.Path(dir_okay=False, path_type=Path)


def _summary_line(verb: str, summary: ArchiveSummary) -> str:
    return (
        f"{verb} run {summary.run_id!r}: {summary.events} events in {summary.checkpoints} "
        f"checkpoints, {summary.path} (sha256 {summary.file_sha256})"
    )


@click.command()
@click.argument("run_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON document.")
@click.option(
    "--anchor",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Compare the heads with an anchor written earlier (finds deleted last events).",
)
@click.option("--write-anchor", type=_FILE, help="Save each checkpoint's head to this file.")
@pass_cli
def verify(
    obj: CliContext,
    run_id: str | None,
    as_json: bool,
    anchor: Path | None,
    write_anchor: Path | None,
) -> None:
    """Recompute the hash chains of RUN (or the whole store); exit 1 if anything was altered.

    Reports every event altered, every chain break, every deleted version and (with --anchor)
    every checkpoint whose last events were removed. Rows written before hash chains existed
    are noted as unchained, which is not a problem.
    """
    with obj.open(existing=True) as ledger:
        report = verify_chains(ledger, run_id, anchor=anchor, write_anchor=write_anchor)
    if as_json:
        echo_json({"ok": report.ok, **report.model_dump(mode="json")}, ascii_only=True)
    else:
        for problem in report.problems:
            click.echo(problem.line())
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        scope = "the store" if run_id is None else f"run {run_id!r}"
        verdict = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(
            f"verified {report.events} events in {report.checkpoints} checkpoints of {scope}: "
            f"{verdict}"
        )
        if write_anchor is not None:
            click.echo(f"anchor written to {write_anchor}", err=True)
    if not report.ok:
        scope = "the store" if run_id is None else f"run {run_id!r}"
        raise TamperDetected(scope, len(report.problems))


@click.command()
@click.argument("run_id")
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_cli
def export(obj: CliContext, run_id: str, file: Path, as_json: bool) -> None:
    """Write every event of RUN to FILE (JSON lines: a header, then one line per event)."""
    with obj.open(existing=True) as ledger:
        summary = export_run(ledger, run_id, file)
    _report(summary, "exported", as_json=as_json)


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--restore",
    is_flag=True,
    help="Bring an archived run back into the store it was archived from.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_cli
def import_(obj: CliContext, file: Path, restore: bool, as_json: bool) -> None:
    """Append the events of an archive FILE to the store, after checking all of its hashes.

    A file that fails its checks writes nothing. Running it again after an interruption
    skips what is already there.
    """
    with obj.open(existing=False) as ledger:
        summary = import_archive(ledger, file, restore=restore)
    _report(summary, f"imported {summary.written} new events of", as_json=as_json)


@click.command()
@click.argument("run_id")
@click.argument("file", type=_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_cli
def archive(obj: CliContext, run_id: str, file: Path, as_json: bool) -> None:
    """Export a finished RUN to FILE, check the file, then purge the run from the store.

    Only a run whose checkpoints are all completed or permanently failed is archived. The
    purge and an archive marker are one transaction; the run cannot be written again unless
    FILE is imported back with --restore. Needs the owner role on PostgreSQL. On a
    partitioned log nothing is deleted: the events go when their partition is detached
    (ckl partitions detach).
    """
    with obj.open(existing=True, write=True) as ledger:
        summary = archive_run(ledger, run_id, file)
    # A partitioned log keeps the events until their partition is detached.
    verb = "archived and purged" if summary.purged else "archived (kept until detached)"
    _report(summary, verb, as_json=as_json)


def _report(summary: ArchiveSummary, verb: str, *, as_json: bool) -> None:
    if as_json:
        echo_json(summary.model_dump(mode="json"), ascii_only=True)
    else:
        click.echo(_summary_line(verb, summary))


@click.command()
@click.option("--owner", required=True, help="Role that creates the schema and archives runs.")
@click.option("--writer", required=True, help="Role of the workers: INSERT and SELECT only.")
@click.option("--projector", required=True, help="Role of `ckl project`: owns the views.")
@click.option("--schema", default="public", show_default=True, help="Schema of the tables.")
def grants(owner: str, writer: str, projector: str, schema: str) -> None:
    """Print the PostgreSQL GRANT statements of a least-privilege set-up (run as superuser)."""
    click.echo("-- 1. as a superuser, before the owner first opens the store:")
    for statement in before_schema_statements(owner, schema):
        click.echo(statement)
    click.echo("-- 2. open the store once as the owner (e.g. ckl verify), which creates the tables")
    click.echo("-- 3. then, as a superuser:")
    for statement in grant_statements(owner, writer, projector, schema):
        click.echo(statement)
