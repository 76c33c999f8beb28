"""`ckl partitions`: the PostgreSQL event log partitioned by position range (retention by DETACH).

Each subcommand is one call of ``ledger.partitions`` plus formatting: ``enable`` (migrate a
store in place), ``list``, ``create`` (the maintenance a cron runs) and ``detach``. All but
``list`` need the table's owner role. On a SQLite store each says so and changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ckl.cli._context import CliContext, pass_cli
from ckl.cli._output import echo_json
from ledger.partitions import (
    DEFAULT_PARTITION_SIZE,
    create_partitions,
    detach_partition,
    enable_partitions,
    partitions_status,
)

if TYPE_CHECKING:
    from ledger.partitions import PartitionInfo

__all__ = ["partitions"]


@click.group()
def partitions() -> None:
    """Partition the PostgreSQL event log by position range; detach archived partitions."""


@partitions.command()
@click.option(
    "--size",
    type=int,
    default=DEFAULT_PARTITION_SIZE,
    show_default=True,
    help="Transactions per new partition (positions are xid * 65536 + n).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_cli
def enable(obj: CliContext, size: int, as_json: bool) -> None:
    """Partition the event log in place (no row is copied); or change the size of new ones.

    The existing table becomes the first partition, so every position, hash and command id
    stays. Appends and reads wait while it runs (one scan of the table). Needs the owner role.
    """
    with obj.open(existing=True, write=True) as ledger:
        report = enable_partitions(ledger, size)
    if as_json:
        echo_json(report.model_dump(mode="json"))
    elif report.migrated:
        click.echo(
            f"partitioned: {report.first_partition} holds the positions below transaction "
            f"{report.boundary_xid}; new partitions of {report.size} transactions: "
            f"{', '.join(report.created) or '-'}"
        )
    else:
        click.echo(f"already partitioned; new partitions of {report.size} transactions")


def _line(part: PartitionInfo) -> str:
    if part.default:
        span = "default (positions no range covers)"
    else:
        first = "start" if part.first_xid is None else str(part.first_xid)
        span = f"transactions {first} .. {part.end_xid}"
    rows = "?" if part.rows_estimate is None else f"~{part.rows_estimate}"
    state = "written" if part.writable else "final"
    return f"{part.name}\t{span}\t{rows} rows\t{state}"


@partitions.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_cli
def list_(obj: CliContext, as_json: bool) -> None:
    """List the partitions in position order: their transactions, rows, and whether final."""
    with obj.open(existing=True) as ledger:
        status = partitions_status(ledger)
    if as_json:
        echo_json(status.model_dump(mode="json"))
        return
    if not status.partitioned:
        click.echo("the event log is not partitioned (ckl partitions enable)")
        return
    click.echo(f"partition size {status.size} transactions; final below {status.horizon_xid}")
    for part in status.partitions:
        click.echo(_line(part))


@partitions.command()
@click.option(
    "--ahead",
    type=int,
    default=1,
    show_default=True,
    help="Whole partitions to have ready beyond the one being written.",
)
@pass_cli
def create(obj: CliContext, ahead: int) -> None:
    """Create the partitions the next transactions need (run it on a schedule, as the owner)."""
    with obj.open(existing=True, write=True) as ledger:
        created = create_partitions(ledger, ahead)
    click.echo(f"created {', '.join(created)}" if created else "no partition was due")


@partitions.command()
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("--drop", is_flag=True, help="Drop the tables once detached (else keep them).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_cli
def detach(obj: CliContext, names: tuple[str, ...], drop: bool, as_json: bool) -> None:
    """Detach partitions NAME... once all their events belong to archived runs (ckl archive).

    All or none. Refused, changing nothing, while transactions may still write into one or
    one holds an event of a run not archived. A detached run's events in later partitions go
    with it (detach the partitions a run spans together to delete none row by row). Tables
    are kept as plain, append-only tables unless --drop. Needs the owner role.
    """
    with obj.open(existing=True, write=True) as ledger:
        report = detach_partition(ledger, *names, drop=drop)
    if as_json:
        echo_json(report.model_dump(mode="json"))
        return
    fate = "dropped" if report.dropped else "kept as plain tables"
    click.echo(
        f"detached {', '.join(report.partitions)} ({fate}): {report.events} events of "
        f"{report.checkpoints} checkpoints, runs {', '.join(report.runs) or '-'}; "
        f"{report.purged_elsewhere} of their events deleted from later partitions"
    )
