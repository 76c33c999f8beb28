"""The baseline of section 9: a raw SELECT of a run's rows, each written with ``json.dumps``.

``python -m bench._replay_raw STORE RUN``. It imports nothing of the project (the baseline is
the database and the standard library), and streams: SQLite's cursor reads as it goes,
PostgreSQL's is a named (server-side) cursor.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

_SQL = (
    "SELECT t.position, t.at, t.batch_index, t.version, e.topic, e.state"
    " FROM ckl_view_timeline t JOIN ckl_events e ON e.notification_id = t.position"
    " WHERE t.run_id = {run} ORDER BY t.position"
)


def _rows(store: str, run_id: str) -> Iterator[tuple[Any, ...]]:
    """The run's rows through a streaming cursor (SQLite's is; PostgreSQL's a named one)."""
    if store.startswith("sqlite:///"):
        import sqlite3  # noqa: PLC0415

        lite = sqlite3.connect(store.removeprefix("sqlite:///"))
        try:
            yield from lite.execute(_SQL.format(run="?"), (run_id,))
        finally:
            lite.close()
        return
    import psycopg  # noqa: PLC0415

    with psycopg.connect(store) as connection, connection.cursor(name="raw") as cursor:
        cursor.execute(_SQL.format(run="%s"), (run_id,))
        yield from cursor


def _raw(store: str, run_id: str) -> None:
    """The baseline: stream the run's rows and write each with ``json.dumps``."""
    out = sys.stdout
    for position, at, batch, version, topic, state in _rows(store, run_id):
        document = {
            "position": position,
            "at": at,
            "batch_index": batch,
            "version": version,
            "topic": topic,
            "event": json.loads(bytes(state)),
        }
        out.write(json.dumps(document) + "\n")


if __name__ == "__main__":
    _raw(sys.argv[1], sys.argv[2])
