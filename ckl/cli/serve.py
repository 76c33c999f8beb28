"""``ckl serve`` (the HTTP API, SSE streams and web UI) and ``ckl token`` (its bearer tokens).

The commands are registered in ``ckl.cli.COMMANDS``; ``serve`` opens the store through the
group's ``CliContext`` (``--store`` / ``$CKL_STORE``), like every other command.
"""

from __future__ import annotations

import os

import click

from ckl.cli._context import CliContext, pass_cli

__all__ = ["serve", "token"]


@click.command("serve")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Without --token-file only loopback is allowed.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="TCP port (0: any free port; the line 'listening on …' names it).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Bearer tokens with scopes, one per line (see `ckl token`); every request needs one.",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=1),
    default=1024 * 1024,
    show_default=True,
    help="Largest request body; larger ones get 413 before they are read.",
)
@click.option(
    "--max-streams",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Open event streams per client (token name, or address without tokens).",
)
@click.option(
    "--stream-buffer-bytes",
    type=click.IntRange(min=1024),
    default=1024 * 1024,
    show_default=True,
    help="Bytes of events a slow stream client may fall behind before it is cut off.",
)
@click.option(
    "--keepalive",
    type=click.FloatRange(min=0, min_open=True),
    default=15.0,
    show_default=True,
    help="Seconds between keep-alive comments on a quiet event stream.",
)
@click.option(
    "--max-await",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Longest timeout a …/await long-poll may ask for, in seconds.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=0.5,
    show_default=True,
    help="Seconds between polls for other processes' writes (SQLite; PostgreSQL uses NOTIFY).",
)
@click.option(
    "--archive-dir",
    type=click.Path(file_okay=False, exists=True, writable=True),
    default=None,
    help="Where POST /v1/runs/RUN/archive writes archives (without it archiving is refused).",
)
@click.option("--access-log", is_flag=True, help="Log every request (never its token).")
@pass_cli
def serve(
    obj: CliContext,
    *,
    host: str,
    port: int,
    token_file: str | None,
    max_body_bytes: int,
    max_streams: int,
    stream_buffer_bytes: int,
    keepalive: float,
    max_await: float,
    poll_interval: float,
    archive_dir: str | None,
    access_log: bool,
) -> None:
    """Serve the ledger over HTTP: JSON API under /v1, SSE streams, the web UI at /.

    Every ledger command and query is an endpoint (OpenAPI at /openapi.json, docs at /docs);
    /v1/stream and /v1/runs/RUN/stream are Server-Sent Events that resume with
    Last-Event-ID. Runs until SIGTERM or Ctrl-C, ending open streams cleanly.
    """
    from ckl.server.auth import TokenTable, read_token_file  # noqa: PLC0415
    from ckl.server.run import check_host  # noqa: PLC0415
    from ckl.server.run import serve as run_server  # noqa: PLC0415
    from ckl.server.state import ServeOptions  # noqa: PLC0415  (the web stack loads on serve)

    tokens = read_token_file(token_file) if token_file is not None else TokenTable()
    check_host(host, tokens=bool(tokens))  # before the store is opened: nothing written
    options = ServeOptions(
        tokens=tokens,
        max_body_bytes=max_body_bytes,
        max_streams=max_streams,
        stream_buffer_bytes=stream_buffer_bytes,
        keepalive=keepalive,
        max_await=max_await,
        archive_dir=archive_dir,
    )
    with obj.open(poll_interval=poll_interval) as ledger:
        run_server(
            ledger,
            options,
            host=host,
            port=port,
            log_level="debug" if obj.debug else "info",
            access_log=access_log,
        )


@click.command("token")
@click.argument("name")
@click.option(
    "--scopes",
    default="read",
    show_default=True,
    help="Comma-separated: read (queries, streams, export), write (worker commands), operate "
    "(retry, reset, cancel, verify, archive).",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False),
    required=True,
    help="The file to append the token's line to (created, mode 0600, if missing).",
)
def token(name: str, scopes: str, token_file: str) -> None:
    """Make a bearer token for `ckl serve`: print it once, append its SHA-256 to the file.

    The file keeps only the hash, so it never holds a usable secret; keep the printed token
    where the client reads it (an environment variable, a secret store).
    """
    from ckl.server.auth import new_token, read_token_file, token_line  # noqa: PLC0415

    secret = new_token()
    line = token_line(name, [s.strip() for s in scopes.split(",") if s.strip()], secret)
    if os.path.exists(token_file):  # noqa: PTH110
        existing = read_token_file(token_file)
        if any(entry.name == name for entry in existing.entries):
            raise click.BadParameter(f"{token_file} already has a token named {name!r}")
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as file:
        file.write(line)
    click.echo(secret)
