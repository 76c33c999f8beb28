"""``ckl --version``, ``python -m ckl``, shell completion, and demo run ids that never collide."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ckl.demo import new_run_id
from ledger import Ledger
from tests.ckl.cli.conftest import ROOT, ckl, ckl_env

if TYPE_CHECKING:
    from collections.abc import Sequence

CONSOLE_SCRIPT = Path(sys.executable).with_name("ckl")


def run(
    command: Sequence[str], env: dict[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False
    )


def test_version_is_the_installed_distributions_from_both_entry_points() -> None:
    expected = f"ckl {version('checkpoint-ledger')}\n"
    as_module = ckl("--version")
    assert (as_module.returncode, as_module.stdout, as_module.stderr) == (0, expected, "")
    script = run([str(CONSOLE_SCRIPT), "--version"], ckl_env())
    assert (script.returncode, script.stdout) == (0, expected)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_readme_completion_lines_produce_a_completion_script(shell: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"_CKL_COMPLETE={shell}_source ckl" in readme
    made = run([str(CONSOLE_SCRIPT)], {**ckl_env(), "_CKL_COMPLETE": f"{shell}_source"})
    assert made.returncode == 0, made.stderr
    assert "_CKL_COMPLETE" in made.stdout  # the script calls ckl back with it
    assert f"{shell}_complete" in made.stdout


def test_completion_offers_the_commands_of_the_registry() -> None:
    env = {**ckl_env(), "_CKL_COMPLETE": "bash_complete", "COMP_WORDS": "ckl re", "COMP_CWORD": "1"}
    offered = run([sys.executable, "-m", "ckl"], env)
    assert offered.returncode == 0, offered.stderr
    assert offered.stdout.split() == ["plain,rebuild", "plain,replay", "plain,reset", "plain,retry"]


def test_demo_run_ids_differ_within_one_second() -> None:
    ids = {new_run_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"demo-\d{8}-\d{6}-[0-9a-f]{6}", run_id) for run_id in ids)


def test_two_demos_started_together_make_two_runs(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'checkpoints.db'}"
    env = ckl_env(store)
    demos = [
        subprocess.Popen(
            [sys.executable, "-m", "ckl", "demo", "--items", "100", "--chunk", "50"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [demo.communicate(timeout=120) for demo in demos]
    assert [demo.returncode for demo in demos] == [0, 0], [err for _, err in outputs]
    run_ids = [re.search(r"run (demo-\S+)", out).group(1) for out, _ in outputs]  # type: ignore[union-attr]
    assert run_ids[0] != run_ids[1]
    with Ledger.open(store) as ledger:
        for run_id in run_ids:
            states = ledger.run_states(run_id)
            assert [state.status for state in states.values()] == ["completed"] * 3
