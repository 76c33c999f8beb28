"""The notebooks run top to bottom, as a reader runs them, and draw their charts.

Each notebook is executed by nbclient in a real ipykernel started from this venv: the
``python3`` kernelspec is looked up only in the venv's prefix (ipykernel's wheel installs it
there), jupyter_client starts it with this interpreter, and a probe cell checks that. No
directory under ``$HOME`` is needed (the connection file is in the test's temporary directory),
so the test runs on a clean machine where only the venv exists. The kernel works in a temporary
directory, so the PNGs the notebook writes land there.
A cell that raises fails the test with the cell and its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from PIL import Image

if TYPE_CHECKING:
    from nbformat import NotebookNode

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
VENV_KERNELS = Path(sys.prefix, "share", "jupyter", "kernels")  # where ipykernel installs python3
CHARTS = {
    "replay_timeline": ["replay_timeline.png"],
    "audit_failures": ["audit_failures.png"],
}
CELL_TIMEOUT = 120  # seconds per cell: a hung kernel fails the test instead of stalling CI
PROBE = "import json, sys\nprint(json.dumps({'prefix': sys.prefix}))"


def read_notebook(name: str) -> NotebookNode:
    """``notebooks/<name>.ipynb`` as nbformat 4 (nbformat has no type hints)."""
    node = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    return cast("NotebookNode", node)


def execute(name: str, workdir: Path, store: str | None) -> NotebookNode:
    """Run ``notebooks/<name>.ipynb`` in ``workdir``, on ``store`` or the embedded default."""
    notebook = read_notebook(name)
    notebook.cells.append(nbformat.v4.new_code_cell(PROBE))  # type: ignore[no-untyped-call]
    env = {key: value for key, value in os.environ.items() if key != "CKL_STORE"}
    if store is not None:
        env["CKL_STORE"] = store
    # An explicit connection file: no jupyter runtime directory under $HOME is needed.
    manager = AsyncKernelManager(
        kernel_name="python3",
        # The venv's own kernelspec only: never one from ~/.local or /usr/share on the machine.
        kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(VENV_KERNELS)]),
        connection_file=str(workdir / "kernel.json"),
    )
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    # cleanup_kc: shut the kernel down and close its sockets even though we made the manager.
    client.execute(env=env, cleanup_kc=True)
    return notebook


def outputs(notebook: NotebookNode) -> list[NotebookNode]:
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def check_ran_here_and_drew(notebook: NotebookNode, name: str, workdir: Path) -> None:
    """The kernel was this venv's; the charts were shown inline and written as real PNGs."""
    probe = notebook.cells[-1].outputs
    assert json.loads(probe[0]["text"])["prefix"] == sys.prefix
    shown = [output for output in outputs(notebook) if "image/png" in output.get("data", {})]
    assert len(shown) == len(CHARTS[name]), "every chart is displayed inline"
    for chart in CHARTS[name]:
        path = workdir / chart
        assert path.is_file(), f"{name} did not write {chart}"
        with Image.open(path) as image:
            assert image.format == "PNG"
            image.verify()
        with Image.open(path) as image:
            width, height = image.size
        assert width >= 600
        assert height >= 300
    errors = [output for output in outputs(notebook) if output["output_type"] == "error"]
    assert errors == []
    assert not list(workdir.glob(".*.tmp")), "no half-written chart is left behind"


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebook_runs_on_the_embedded_default_and_draws_its_charts(
    name: str, tmp_path: Path
) -> None:
    notebook = execute(name, tmp_path, store=None)
    check_ran_here_and_drew(notebook, name, tmp_path)
    printed = "".join(output.get("text", "") for output in outputs(notebook))
    assert "store: sqlite:///" in printed


@pytest.mark.postgres
@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebook_runs_on_postgres_from_ckl_store(
    name: str, tmp_path: Path, postgres_url: str
) -> None:
    notebook = execute(name, tmp_path, store=postgres_url)
    check_ran_here_and_drew(notebook, name, tmp_path)
    printed = "".join(output.get("text", "") for output in outputs(notebook))
    assert "store: postgresql://" in printed


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_notebooks_are_committed_without_outputs(name: str) -> None:
    notebook = read_notebook(name)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == []
            assert cell.execution_count is None
