"""`ckl serve`: archive and export over HTTP, and run ids that need encoding in a URL path."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import httpx

from ledger import Ledger
from tests.ckl.server.conftest import Server, event_count

ODD_RUN = "etl/2026-12-01 50%"
"""A run id with a slash, a space and a percent sign: one path segment once encoded."""


def _path(run_id: str) -> str:
    return "/v1/runs/" + quote(run_id, safe="")


def test_archive_export_and_encoded_run_ids(store_url: str, tmp_path: Path) -> None:
    archive_dir = tmp_path / "archives"
    archive_dir.mkdir()
    server = Server(store_url, "--archive-dir", str(archive_dir)).start()
    try:
        with server.client() as http:
            run = _path(ODD_RUN)
            created = http.post(f"{run}/checkpoints/0", json={"total_batches": 1})
            assert created.status_code == 200, created.text
            assert created.json()["token"]["run_id"] == ODD_RUN
            assert (
                http.post(
                    f"{run}/checkpoints/0/yield", json={"cursor": "k9", "items_processed": 9}
                ).status_code
                == 200
            )
            # Unfinished: refused, nothing changed.
            refused = http.post(f"{run}/archive")
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "RunNotFinished"
            assert list(archive_dir.iterdir()) == []
            assert http.post(f"{run}/checkpoints/0/complete", json={"result": 9}).is_success
            assert http.get(run).json()["progress"]["completed"] == 1

            exported = http.get(f"{run}/export")
            assert exported.status_code == 200, exported.text
            assert exported.headers["content-type"].startswith("application/x-ndjson")
            lines = [json.loads(line) for line in exported.text.splitlines()]
            assert lines[0]["run_id"] == ODD_RUN
            assert lines[0]["events"] == 3
            assert len(lines) == 4  # the header, then one line per event

            done = http.post(f"{run}/archive")
            assert done.status_code == 200, done.text
            summary = done.json()
            assert summary["purged"] is True
            assert summary["events"] == 3
            (written,) = archive_dir.iterdir()
            assert Path(summary["path"]) == written
            assert written.read_text().splitlines()[1:] == exported.text.splitlines()[1:]
            assert event_count(store_url) == 0
            # The run is gone from the store: no checkpoint to write to.
            gone = http.post(f"{run}/checkpoints/0/yield", json={"cursor": 1, "items_processed": 1})
            assert gone.status_code == 404, gone.text
            assert http.get(f"{run}/export").status_code == 404
    finally:
        server.stop()


def test_archive_needs_an_archive_dir(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        token = ledger.create_checkpoint("r", 0)
        ledger.complete_checkpoint(token, 1)
    server = Server(sqlite_url).start()
    try:
        reply = httpx.post(f"{server.url}/v1/runs/r/archive", timeout=30)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == "InvalidInput"
        assert reply.json()["fields"]["field"] == "archive_dir"
        assert event_count(sqlite_url) == 2
    finally:
        server.stop()
