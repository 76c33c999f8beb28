"""Fixtures of the service tests: `ckl serve` as a real uvicorn subprocess on loopback.

:class:`Server` starts ``python -m ckl serve --port 0`` (any free port) on a store, waits for
its "listening on" line, and stops it with SIGTERM (or SIGKILL, for fault tests). Requests go
through a real HTTP client (httpx) over a real socket. ``served`` is one server per test on an
empty store of each backend.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.ckl.cli.conftest import ckl_env

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[3]
_LISTENING = re.compile(r"ckl serve: listening on (http://\S+?)/?$")
START_TIMEOUT = 60.0


class Server:
    """One `ckl serve` subprocess; its output is kept (``output()``) for failure messages."""

    def __init__(self, store: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.store, self.args = store, args
        self.env = {**ckl_env(store), **(env or {})}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = START_TIMEOUT) -> Server:
        """Start it and wait until it listens (its URL is then ``self.url``)."""
        self._lines = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ckl", "serve", "--port", "0", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        found = threading.Event()

        def read() -> None:
            assert self.process is not None
            assert self.process.stdout is not None
            for line in self.process.stdout:
                self._lines.append(line.rstrip("\n"))
                match = _LISTENING.search(line.strip())
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"ckl serve did not start:\n{self.output()}")
        return self

    def output(self) -> str:
        """Everything the server printed so far."""
        return "\n".join(self._lines)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit; its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"ckl serve did not stop within {timeout}s of SIGTERM:\n{self.output()}")
        self._close_pipe()
        return code

    def kill(self) -> None:
        """SIGKILL (a crash): nothing runs on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        """After the exit: the reader has seen the end of the output; close the pipe."""
        if self._reader is not None:
            self._reader.join(5)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        """A keep-alive HTTP client of this server (with a bearer token, if given)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def served(store_url: str) -> Iterator[Server]:
    """`ckl serve` on an empty store of each backend (SQLite file, PostgreSQL database)."""
    server = Server(store_url, "--poll-interval", "0.05").start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


def event_count(store: str) -> int:
    """How many events the store holds (read in a fresh process's way: a new Ledger)."""
    from ledger import Ledger  # noqa: PLC0415

    with Ledger.open(store) as ledger:
        return sum(1 for _ in ledger.iter_log())
