"""`ckl partitions` as an operator runs it: enable on a store with data, archive, detach, verify."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import psycopg
import pytest

from ledger import Ledger
from tests.ckl.cli.conftest import ckl, one_error_line

if TYPE_CHECKING:
    from pathlib import Path


def _finished(ledger: Ledger, run_id: str, batches: int) -> None:
    for i in range(batches):
        token = ledger.create_checkpoint(run_id, i, total_batches=batches)
        ledger.checkpoint_yield(token, cursor=i, items_processed=1)
        ledger.complete_checkpoint(token)


@pytest.mark.postgres
def test_an_operator_partitions_a_store_archives_a_run_and_detaches_it(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger:
        _finished(ledger, "before", 2)
        ledger.create_checkpoint("live", 0)

    done = ckl("partitions", "enable", "--size", "1", "--json", store=postgres_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["migrated"] is True
    done = ckl("partitions", "create", "--ahead", "40", store=postgres_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created ckl_events_xid_")

    with Ledger.open(postgres_url) as ledger:
        _finished(ledger, "gone", 2)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT tableoid::regclass::text FROM ckl_events WHERE run_id = 'gone'"
            " ORDER BY notification_id LIMIT 1"
        ).fetchone()
    assert row is not None
    first = str(row[0])

    refused = ckl("partitions", "detach", first, store=postgres_url)
    assert refused.returncode == 1
    assert "not archived" in one_error_line(refused)
    done = ckl("archive", "gone", str(tmp_path / "gone.jsonl"), store=postgres_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("archived (kept until detached) run 'gone'")
    done = ckl("partitions", "detach", first, "--drop", "--json", store=postgres_url)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["runs"] == ["gone"]
    assert report["dropped"] is True
    assert report["events"] + report["purged_elsewhere"] == 6
    assert "checkpoint_ids" not in report

    listed = ckl("partitions", "list", "--json", store=postgres_url)
    assert listed.returncode == 0, listed.stderr
    status = json.loads(listed.stdout)
    assert status["partitioned"] is True
    assert first not in {p["name"] for p in status["partitions"]}
    verified = ckl("verify", store=postgres_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    replay = ckl("replay", "gone", store=postgres_url)
    assert replay.returncode == 1


@pytest.mark.postgres
def test_bad_partition_commands_are_one_line_errors_and_change_nothing(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger:
        ledger.create_checkpoint("r", 0)
    for size in ("0", "-5"):
        done = ckl("partitions", "enable", "--size", size, store=postgres_url)
        assert done.returncode == 1
        assert "invalid size" in one_error_line(done)
    listed = ckl("partitions", "list", store=postgres_url)
    assert listed.stdout.startswith("the event log is not partitioned")
    assert ckl("partitions", "enable", "--size", "4", store=postgres_url).returncode == 0
    for args, words in (
        (("detach", "ckl_events_nope"), "not a partition of ckl_events"),
        (("detach", "ckl_events_default"), "default partition"),
        (("create", "--ahead", "-1"), "invalid ahead"),
    ):
        done = ckl("partitions", *args, store=postgres_url)
        assert done.returncode == 1
        assert words in one_error_line(done)


def test_partitions_on_a_sqlite_store_say_it_is_postgresql_only(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/ledger.db"
    with Ledger.open(store) as ledger:
        ledger.create_checkpoint("r", 0)
    for args in (("enable",), ("list",), ("create",), ("detach", "ckl_events_xid_0")):
        done = ckl("partitions", *args, store=store)
        assert done.returncode == 1
        assert "PostgreSQL feature" in one_error_line(done)
