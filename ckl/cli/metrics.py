"""``ckl metrics``: serve the store's Prometheus metrics over HTTP until interrupted.

The command is registered in ``ckl.cli.COMMANDS``; it opens the store through the group's
``CliContext`` (``--store`` / ``$CKL_STORE``), like every other command.
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING

import click
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server

from ckl.cli._context import CliContext, pass_cli
from ckl.metrics import register_metrics
from projections import Projections

if TYPE_CHECKING:
    from types import FrameType

__all__ = ["metrics_command"]


@click.command("metrics")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    required=True,
    help="TCP port to serve /metrics on (0: any free port, printed on stderr).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on (0.0.0.0 or :: for every interface).",
)
@click.option(
    "--from-start",
    is_flag=True,
    help="Count the whole log since the store began (default: only events appended from now).",
)
@click.option(
    "--project",
    is_flag=True,
    help=(
        "Also keep the projections current in this process (else run `ckl project`); "
        "on the primary, also with CKL_READER_STORE set."
    ),
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Seconds between polls for other processes' writes (SQLite; PostgreSQL uses NOTIFY).",
)
@pass_cli
def metrics_command(
    obj: CliContext,
    *,
    port: int,
    host: str,
    from_start: bool,
    project: bool,
    poll_interval: float,
) -> None:
    """Serve Prometheus metrics of the store on http://HOST:PORT/metrics until interrupted.

    Counts yields, completions, failures, cancels and takeovers of every process, completion
    latency, checkpoints by status, stuck checkpoints, and how far the projections lag behind
    the log. With CKL_READER_STORE set (and no --project) it reads the hot standby alone.
    """
    registry = CollectorRegistry()
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        # Bound before the store is opened: a port in use or a bad host writes nothing.
        reason = exc.strerror or str(exc)
        raise click.BadParameter(
            f"cannot serve on {host}:{port}: {reason}", param_hint="'--host' / '--port'"
        ) from exc
    stop = threading.Event()

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        # Without --project it only reads: on the reader store alone (a hot standby) when one
        # is set, as the other read commands do. --project writes the views: on the primary.
        on_reader = not project and obj.settings().reader_store is not None
        with (
            obj.open(existing=on_reader, poll_interval=poll_interval) as ledger,
            Projections(ledger) as views,
        ):
            if project or ledger.recorder.read_only:
                # A read-only store's views are followed, never written: the stored ones as a
                # projector on the primary moves them, else private ones built from its log.
                views.start()
            metrics = register_metrics(
                ledger, registry, projections=views, after=0 if from_start else "head"
            )
            ProcessCollector(registry=registry)
            bound_host, bound_port = server.server_address[:2]
            click.echo(
                f"serving http://{_url_host(str(bound_host))}:{bound_port}/metrics for "
                f"{ledger.store_display}, counting events after position {metrics.position}",
                err=True,
            )
            try:
                while not stop.wait(1.0):
                    pass
            finally:
                metrics.close()
                click.echo(f"stopped at position {metrics.position}", err=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
