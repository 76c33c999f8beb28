"""`ckl verify`, `export`, `import`, `archive` and `grants`, through `ckl`'s entry point.

The commands live in ``ckl/cli/audit.py``, registered in ``ckl.cli.COMMANDS``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from ckl import cli as ckl
from ledger import Ledger
from tests.security._tamper import oid_param, tamper

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def _run(store_url: str, *args: str) -> int:
    return ckl.main(["--store", store_url, *args])


def _job(store_url: str, run_id: str) -> None:
    with Ledger.open(store_url) as ledger:
        for i in range(2):
            token = ledger.create_checkpoint(run_id, i, total_batches=2)
            ledger.checkpoint_yield(token, cursor=i + 1, items_processed=10)
            ledger.complete_checkpoint(token, result={"n": i})


def test_verify_exits_0_on_a_clean_store_and_1_with_one_line_per_problem(
    store_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _job(store_url, "run-v")
    assert _run(store_url, "verify", "--write-anchor", str(tmp_path / "a.jsonl")) == 0
    assert "verified 6 events in 2 checkpoints of the store: ok" in capsys.readouterr().out
    with Ledger.open(store_url) as ledger:
        token = ledger.find_checkpoint("run-v", 1)
        assert token is not None
    key = oid_param(store_url, token.checkpoint_id)
    tamper(
        store_url,
        "UPDATE ckl_events SET topic = 'checkpoint.Forged' "
        "WHERE originator_id = %s AND originator_version = 2",
        (key,),
    )
    tamper(
        store_url,
        "DELETE FROM ckl_events WHERE originator_id = %s AND originator_version = 3",
        (key,),
    )
    assert _run(store_url, "verify", "run-v") == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (
        f"altered: checkpoint {token.checkpoint_id} v2: its content does not match its stored "
        "hash (the event was changed, or the stored hash of v1 was rewritten)"
    )
    assert lines[1:] == ["verified 5 events in 2 checkpoints of run 'run-v': 1 problem(s)"]
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("error: 1 problem(s) in the hash chains of run 'run-v'")
    )
    assert _run(store_url, "verify", "--json", "--anchor", str(tmp_path / "a.jsonl")) == 1
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["ok"] is False
    assert [p["kind"] for p in report["problems"]] == ["altered", "head_went_back"]
    assert err.startswith("error: 2 problem(s) in the hash chains of the store")


def test_export_import_and_archive_commands(
    store_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _job(store_url, "run-e")
    _job(store_url, "run-f")
    path, fresh = tmp_path / "run-e.jsonl", f"sqlite:///{tmp_path}/fresh.db"
    assert _run(store_url, "export", "run-e", str(path)) == 0
    assert "exported run 'run-e': 6 events in 2 checkpoints" in capsys.readouterr().out
    assert _run(fresh, "import", str(path), "--json") == 0
    assert json.loads(capsys.readouterr().out)["written"] == 6
    assert _run(fresh, "verify", "run-e") == 0
    capsys.readouterr()
    assert _run(fresh, "replay", "run-e", "--json") == 0  # the imported run replays there
    assert "checkpoint.Completed" in capsys.readouterr().out

    assert _run(store_url, "archive", "run-e", str(tmp_path / "archived.jsonl")) == 0
    assert "archived and purged run 'run-e'" in capsys.readouterr().out
    assert _run(store_url, "import", str(tmp_path / "archived.jsonl")) == 1
    assert "was archived from this store" in capsys.readouterr().err
    assert _run(store_url, "import", "--restore", str(tmp_path / "archived.jsonl")) == 0
    assert _run(store_url, "verify") == 0


def test_archive_of_an_unfinished_run_is_one_error_line(
    sqlite_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with Ledger.open(sqlite_url) as ledger:
        ledger.create_checkpoint("run-open", 0)
    assert _run(sqlite_url, "archive", "run-open", str(tmp_path / "x.jsonl")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run 'run-open' is not finished: 1 checkpoint(s)")
    assert "\n" not in err


def test_grants_prints_the_statements_and_refuses_odd_role_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert ckl.main(["grants", "--owner", "o", "--writer", "w", "--projector", "p"]) == 0
    out = capsys.readouterr().out
    assert 'GRANT SELECT, INSERT ON ckl_events, ckl_snapshots TO "w";' in out
    # The one UPDATE: the projector moves the views' tracking record (never the log's rows).
    tracking = 'GRANT SELECT, INSERT, UPDATE ON ckl_tracking TO "p";'
    assert tracking in out
    assert "UPDATE" not in out.replace("no UPDATE", "").replace(tracking, "")
    assert (
        ckl.main(["grants", "--owner", "o; DROP TABLE x", "--writer", "w", "--projector", "p"]) == 1
    )
    assert "not a plain lower-case SQL name" in capsys.readouterr().err


def test_verify_of_a_mistyped_sqlite_path_is_an_error_not_a_clean_empty_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.db"
    assert _run(f"sqlite:///{missing}", "verify") == 1
    assert "there is no SQLite database" in capsys.readouterr().err
    assert not missing.exists()
