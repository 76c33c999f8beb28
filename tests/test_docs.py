"""The docs tell the truth: generated parts match the code, every command is documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ckl.cli import cli
from ledger import Claimed, Ledger
from ledger.settings import settings_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_settings_table_is_the_generated_one() -> None:
    start = README.index("<!-- settings-table")
    end = README.index("<!-- /settings-table -->")
    block = README[start:end].split("\n", 1)[1].strip()
    assert block == settings_table(), "regenerate the table with the command in the README"


def test_every_cli_command_has_help_and_a_readme_entry() -> None:
    for name, command in cli.load_all().items():
        assert command.help, f"ckl {name} has no help text"
        assert f"`ckl {name}" in README, f"ckl {name} is not in the README"


def test_readme_names_the_two_commands_of_a_fresh_machine() -> None:
    assert "ckl demo" in README
    assert "bash .ci/test" in README
    assert "bash .ci/test" in (ROOT / ".ci" / "run").read_text()


def _many_workers_example() -> str:
    section = README[README.index("## Many workers") :]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_the_many_workers_example_runs_in_three_processes(tmp_path: Path) -> None:
    """The README's worker script, as written, shares one run among three real processes."""
    script = tmp_path / "worker.py"
    script.write_text(_many_workers_example())
    env = {**os.environ, "CKL_STORE": f"sqlite:///{tmp_path / 'shared.db'}"}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=120)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0]
    assert [out.strip() for out in outputs] == [str(sum(range(20_000)))] * 3
    with Ledger.open(env["CKL_STORE"]) as ledger:
        states = ledger.run_states("nightly")
        assert sorted(states) == list(range(20))
        assert all(state.status == "completed" for state in states.values())
        owners = {
            event.owner
            for state in states.values()
            for event in ledger.checkpoint_events(state.token)
            if isinstance(event, Claimed)
        }
        assert owners, "every batch was claimed under a lease"
