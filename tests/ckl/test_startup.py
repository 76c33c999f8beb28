"""Start-up: ``ckl --help`` and a SQLite user's imports load none of the heavy extras.

Each case runs in a fresh interpreter (``sys.modules`` of this test process holds everything
the suite imported) and reports which of the watched packages it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("psycopg", "psycopg_pool", "prometheus_client", "matplotlib", "rich")
"""Packages a SQLite user and ``ckl --help`` must not pay for."""

REPORT = """
import json, sys
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""

LEDGER_ON_SQLITE = """
import sys
from ledger import Ledger
with Ledger.open(f"sqlite:///{sys.argv[1]}/ledger.db") as ledger:
    token = ledger.create_checkpoint("run-1", 0)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    ledger.complete_checkpoint(token, result={"ok": True})
"""

CASES = {
    "ckl --help": "from ckl.cli import main\nassert main(['--help']) == 0\n",
    "import ledger, on a SQLite store": LEDGER_ON_SQLITE,
    "import projections, on a SQLite store": LEDGER_ON_SQLITE
    + """
from projections import Projections
with Ledger.open(f"sqlite:///{sys.argv[1]}/ledger.db") as ledger, Projections(ledger) as views:
    views.sync()
    assert views.progress("run-1").completed == 1
""",
}


def loaded_packages(script: str, tmp_path: Path) -> set[str]:
    """The top-level packages a fresh interpreter has imported after running ``script``."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + REPORT, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_start_up_loads_no_heavy_extra(case: str, tmp_path: Path) -> None:
    loaded = loaded_packages(CASES[case], tmp_path)
    assert loaded.isdisjoint(HEAVY), f"{case} imported {sorted(loaded & set(HEAVY))}"


def test_ckl_help_loads_not_even_the_ledger(tmp_path: Path) -> None:
    # The command list comes from the registry: no command module, so no layer below, loads.
    loaded = loaded_packages(CASES["ckl --help"], tmp_path)
    assert loaded.isdisjoint({"ledger", "projections", "streams", "pydantic", "eventsourcing"})
