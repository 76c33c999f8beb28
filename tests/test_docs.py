"""The docs tell the truth: generated parts match the code, every command is documented."""

from __future__ import annotations

from pathlib import Path

from ckl.cli import cli
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
