"""The README's worker examples type-check under ``mypy --strict``, against the installed packages.

Each Python block after a ``<!-- typecheck`` comment is written to a file in a temporary
directory (outside the checkout, so only the installed packages can be found: the editable
install must be visible to type checkers, see ``[tool.setuptools]`` in pyproject.toml) and all
of them are checked in one mypy run, its cache in the temporary directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

_MARKED = re.compile(r"<!-- typecheck[^>]*-->\n```python\n(.*?)```", re.DOTALL)


def readme_examples() -> list[str]:
    """The README's Python blocks marked for type-checking, in order."""
    return _MARKED.findall(README)


def test_the_readme_marks_its_worker_examples() -> None:
    examples = readme_examples()
    assert len(examples) >= 3
    joined = "\n".join(examples)
    for call in ("ledger.checkpoint_yield", "run_batches(", "owner=owner", "cursor_type="):
        assert call in joined, f"no type-checked README example shows {call}"


@pytest.mark.slow
def test_the_readme_worker_examples_pass_mypy_strict_outside_the_checkout(tmp_path: Path) -> None:
    files = []
    for number, example in enumerate(readme_examples()):
        path = tmp_path / f"readme_example_{number}.py"
        path.write_text(example)
        files.append(path.name)
    env = {key: value for key, value in os.environ.items() if key not in {"MYPYPATH", "PYTHONPATH"}}
    checked = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            *files,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
