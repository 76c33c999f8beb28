"""The command registry: lazy loading shows the same help as the commands themselves."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ckl.cli import COMMANDS, CommandEntry, cli

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("entry", COMMANDS, ids=lambda entry: entry.name)
def test_each_entry_names_its_command_and_carries_its_summary(entry: CommandEntry) -> None:
    command = getattr(importlib.import_module(entry.module), entry.attribute)
    assert isinstance(command, click.Command)
    assert command.name == entry.name
    # ckl --help shows the summary in place of the command's own short help: they must agree.
    assert command.short_help is None
    assert command.help is not None
    assert command.help.partition("\n\n")[0] == entry.summary


def test_the_registry_lists_each_command_once() -> None:
    names = [entry.name for entry in COMMANDS]
    assert len(names) == len(set(names))
    assert cli.list_commands(click.Context(cli)) == sorted(names)


def test_an_unknown_command_is_a_usage_error() -> None:
    assert cli.get_command(click.Context(cli), "no-such-command") is None


LAZY_THEN_LOADED = """
import json, sys
import click
from ckl.cli import COMMANDS, cli

def help_texts():
    return [
        cli.get_help(click.Context(cli, info_name="ckl", terminal_width=width))
        for width in (50, 80, 200)
    ]

lazy = help_texts()
imported = sorted({entry.module for entry in COMMANDS} & set(sys.modules))
cli.load_all()
print(json.dumps({"imported": imported, "same": lazy == help_texts(), "help": lazy[1]}))
"""


def test_ckl_help_is_the_same_before_and_after_the_commands_load() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LAZY_THEN_LOADED],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["imported"] == []
    assert report["same"], report["help"]
    for entry in COMMANDS:
        assert f"  {entry.name} " in report["help"]
