"""``ckl metrics``: a real exporter process scraped over loopback HTTP, and its bad input.

The exporter runs as a user runs it (a subprocess of the ``ckl`` entry point with the command
registered); the test process is the other process that writes. Waits have deadlines: the
test waits for the exporter's "serving" line, then scrapes until the counters show the writes.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import click
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from ckl.cli._context import CliContext
from ckl.cli.metrics import metrics_command
from ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT = 60.0
ENTRY = "import sys\nfrom ckl.cli import main\nsys.exit(main())\n"


class Exporter:
    """A running ``ckl metrics`` process, its stderr read line by line into a queue."""

    def __init__(self, store: str, *args: str, env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")} | (env or {})
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ENTRY, "--store", store, "metrics", "--port", "0", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, name="test-exporter-stderr", daemon=True).start()
        self.url = self._serving_url()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.stderr.append(line)
                self.lines.put(line)
        self.lines.put(None)

    def _serving_url(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                break
            if found := re.search(r"serving (http://\S+/metrics)", line):
                return found.group(1)
        msg = f"the exporter did not start: {''.join(self.stderr)}"
        raise AssertionError(msg)

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310  (loopback)
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def wait_until(
        self, check: Callable[[dict[tuple[str, tuple[tuple[str, str], ...]], float]], bool]
    ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Scrape until ``check`` holds (the exporter follows the log on its own clock)."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            samples = self.scrape()
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                msg = f"metrics never matched; last scrape: {samples}"
                raise AssertionError(msg)
            threading.Event().wait(0.1)  # the exporter's poll interval is 0.1s

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=TIMEOUT)


@contextlib.contextmanager
def exporter(store: str, *args: str, env: dict[str, str] | None = None) -> Iterator[Exporter]:
    """A ``ckl metrics`` process on ``store`` (``env``: ``CKL_*`` variables it gets)."""
    running = Exporter(store, *args, env=env)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait(timeout=TIMEOUT)


def sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def test_the_exporter_counts_another_process_writes_and_stops_on_sigterm(store_url: str) -> None:
    run = f"run-{uuid4().hex}"
    with Ledger.open(store_url) as ledger:
        earlier = ledger.create_checkpoint(run, 99)  # before the exporter: not counted
        ledger.fail_checkpoint(earlier, "old", transient=True)
        with exporter(store_url, "--project", "--poll-interval", "0.1") as running:
            tokens = [ledger.create_checkpoint(run, i) for i in range(3)]
            for n in range(1, 4):
                ledger.checkpoint_yield(tokens[0], cursor=n, items_processed=n)
            ledger.complete_checkpoint(tokens[0], {"n": 3})
            ledger.fail_checkpoint(tokens[1], ConnectionError("reset by peer"), transient=True)
            ledger.fail_checkpoint(tokens[2], KeyError("id"))
            last = sample("ckl_failures_total", error_type="KeyError", transient="false")

            # The last write counted and nobody behind: the scrape is complete (on PostgreSQL
            # the readable head moves with the oldest open transaction, so no head is fixed
            # in advance).
            got = running.wait_until(
                lambda s: (
                    s.get(last) == 1
                    and s.get(sample("ckl_lag_events", follower="metrics")) == 0
                    and s.get(sample("ckl_lag_events", follower="projections")) == 0
                )
            )
            head = int(got[sample("ckl_log_head")])
            assert got[sample("ckl_store_up")] == 1
            assert got[sample("ckl_checkpoints_created_total")] == 3
            assert got[sample("ckl_yields_total")] == 3
            assert got[sample("ckl_completions_total")] == 1
            assert got[sample("ckl_completion_latency_seconds_count")] == 1
            failures = "ckl_failures_total"
            assert got[sample(failures, error_type="ConnectionError", transient="true")] == 1
            assert got[sample(failures, error_type="KeyError", transient="false")] == 1
            assert sample(failures, error_type="Error", transient="true") not in got
            # The views (kept by --project) hold every checkpoint, old ones included.
            assert got[sample("ckl_pending_checkpoints")] == 0
            assert got[sample("ckl_failed_checkpoints")] == 3
            assert got[sample("ckl_lag_seconds", follower="projections")] == 0
            assert "process_cpu_seconds_total" in {name for name, _ in got}

            assert running.terminate() == 0
    assert f"stopped at position {head}" in "".join(running.stderr)
    assert "Traceback" not in "".join(running.stderr)


@pytest.fixture
def group(tmp_path: Path) -> click.Group:
    """A ``ckl``-like group around the command, with the same ``--store`` context object."""

    @click.group()
    @click.option("--store", default=f"sqlite:///{tmp_path}/never.db")
    @click.pass_context
    def test_cli(ctx: click.Context, store: str) -> None:
        ctx.obj = CliContext(store, debug=False)

    test_cli.add_command(metrics_command)
    return test_cli


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield int(held.getsockname()[1])


def test_a_port_in_use_is_a_usage_error_and_nothing_is_written(
    group: click.Group, taken_port: int, tmp_path: Path
) -> None:
    done = CliRunner().invoke(group, ["metrics", "--port", str(taken_port)])
    assert done.exit_code == 2
    assert f"cannot serve on 127.0.0.1:{taken_port}" in done.output
    assert "in use" in done.output
    assert "Traceback" not in done.output
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0", "--host", "no-such-host.invalid"], "cannot serve on no-such-host.invalid"),
        (["--port", "0", "--host", "203.0.113.7"], "cannot serve on 203.0.113.7"),
        (["--port", "70000"], "70000 is not in the range"),
        (["--port", "-1"], "-1 is not in the range"),
        ([], "Missing option '--port'"),
        (["--port", "0", "--poll-interval", "0"], "--poll-interval"),
    ],
)
def test_bad_host_or_port_is_a_usage_error_without_traceback(
    group: click.Group, tmp_path: Path, args: list[str], message: str
) -> None:
    done = CliRunner().invoke(group, ["metrics", *args])
    assert done.exit_code == 2, done.output
    assert message in done.output
    assert "Traceback" not in done.output
    assert not (tmp_path / "never.db").exists()


def test_the_command_has_help_naming_its_options(group: click.Group) -> None:
    done = CliRunner().invoke(group, ["metrics", "--help"])
    assert done.exit_code == 0
    for option in ("--port", "--host", "--from-start", "--project", "/metrics"):
        assert option in done.output
