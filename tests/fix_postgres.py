"""PostgreSQL for the test session: a real server, a fresh database per test.

With ``CKL_TEST_POSTGRES_URL`` set, tests use that server (it must allow ``CREATE DATABASE``).
Otherwise the session starts its own PostgreSQL with ``initdb`` and ``pg_ctl`` in a temporary
directory, as the ``postgres`` OS user when running as root (the server refuses to run as root).
Under pytest-xdist every worker starts its own server, in its own directory, on its own port.

A server that cannot start is one loud failure under ``CI=true`` (``pytest.exit``), and a skip
of the tests that need it elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Protocol, cast
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

URL_ENV = "CKL_TEST_POSTGRES_URL"
BINDIR_ENV = "CKL_PG_BINDIR"
SUPERUSER = "ckl"
OS_USER = "postgres"
EXIT_SERVER_UNAVAILABLE = 3

_COMMAND_TIMEOUT = 180  # seconds; a hung initdb or pg_ctl must fail the run, not stall it
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_SETTINGS_FILE = "ckl_test.conf"


class PostgresServerError(RuntimeError):
    """The test PostgreSQL server could not be started, stopped or used."""


def in_ci() -> bool:
    """Return whether the run is a CI run (env ``CI=true``), where nothing may skip."""
    return os.environ.get("CI", "").strip().lower() == "true"


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _find_bindir() -> Path:
    """Find the directory holding ``initdb`` and ``pg_ctl``.

    Debian keeps them off ``PATH``, under ``/usr/lib/postgresql/<major>/bin``.

    Raises:
        PostgresServerError: no PostgreSQL server binaries were found.

    """
    configured = os.environ.get(BINDIR_ENV)
    if configured:
        candidates = [Path(configured)]
    else:
        on_path = shutil.which("initdb")
        candidates = [Path(on_path).parent] if on_path else []
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(
            versions,
            key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else -1,
            reverse=True,
        )
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    where = configured or f"PATH and /usr/lib/postgresql/*/bin (or set {BINDIR_ENV})"
    raise PostgresServerError(f"no PostgreSQL server binaries (initdb, pg_ctl) in {where}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _chown_to_os_user(path: Path) -> None:
    if _running_as_root():
        shutil.chown(path, OS_USER, OS_USER)


def _database_url(base_url: str, dbname: str) -> str:
    return urlsplit(base_url)._replace(path=f"/{dbname}").geturl()


def _describe(url: str) -> str:
    """Name a server without the credentials its URL may carry."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"


class PostgresServer:
    """A PostgreSQL server for tests: started by the session, or given by ``CKL_TEST_POSTGRES_URL``.

    Attributes:
        url: URL of the server's maintenance database, e.g.
            ``postgresql://ckl@127.0.0.1:PORT/postgres``. Its user may create databases.
        data_dir: the cluster's data directory, or ``None`` for a server given by URL.
        port: the TCP port the server listens on (on 127.0.0.1 when the session started it).

    """

    def __init__(self, url: str, port: int, data_dir: Path | None = None) -> None:
        """Describe a server; `PostgresServer.initdb` and `PostgresServer.external` make one."""
        self.url = url
        self.port = port
        self.data_dir = data_dir
        self._bindir: Path | None = None
        self._base_dir: Path | None = None

    @classmethod
    def external(cls, url: str) -> PostgresServer:
        """Use an existing server, which the session neither restarts nor stops.

        Raises:
            PostgresServerError: the URL is not a ``postgresql://`` URL.

        """
        parts = urlsplit(url)
        if parts.scheme not in {"postgres", "postgresql"}:
            raise PostgresServerError(
                f"{URL_ENV} must be a postgresql:// URL to a server where its user may"
                " CREATE DATABASE"
            )
        return cls(url, parts.port or 5432)

    @classmethod
    def initdb(cls) -> PostgresServer:
        """Create a fresh cluster in a new temporary directory and start it.

        The cluster listens on 127.0.0.1 on a free port and on a unix socket in its directory;
        its superuser ``ckl`` logs in without a password from 127.0.0.1 only. ``fsync`` stays on.
        Call `destroy` to stop the server and delete the directory.

        Raises:
            PostgresServerError: the binaries are missing, or ``initdb`` or the server failed.

        """
        bindir = _find_bindir()
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        # Under /tmp rather than $TMPDIR: the `postgres` user must be able to reach it, and a
        # unix socket path must stay under ~100 bytes.
        base_dir = Path(tempfile.mkdtemp(prefix=f"ckl-pg-{worker}-", dir="/tmp"))
        server = cls(f"postgresql://{SUPERUSER}@127.0.0.1:0/postgres", 0, base_dir / "data")
        server._bindir = bindir
        server._base_dir = base_dir
        try:
            server._create_cluster()
            server._start_on_a_free_port()
        except BaseException:
            server.destroy()
            raise
        return server

    @property
    def managed(self) -> bool:
        """Whether this session started the server (and so may stop and restart it)."""
        return self._base_dir is not None

    @property
    def log_file(self) -> Path | None:
        """The server's log file, when the session started the server."""
        return None if self._base_dir is None else self._base_dir / "server.log"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL.

        Raises:
            psycopg.Error: the database exists, or the server refused.

        """
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return _database_url(self.url, name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions first.

        Raises:
            psycopg.Error: the server refused or is not running.

        """
        with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def is_running(self) -> bool:
        """Return whether the session's server is running (``pg_ctl status``)."""
        data_dir = self._require_managed("query")
        status = self._run_as_os_user(["pg_ctl", "status", "-D", str(data_dir)], check=False)
        return status.returncode == 0

    def start(self) -> None:
        """Start the stopped server and return once it accepts connections (``pg_ctl -w``).

        Raises:
            PostgresServerError: the server did not start (the message ends with its log).

        """
        data_dir = self._require_managed("start")
        assert self.log_file is not None
        command = ["pg_ctl", "start", "-w", "-t", "60", "-D", str(data_dir)]
        self._run_as_os_user([*command, "-l", str(self.log_file)])

    def stop(self, mode: str = "fast") -> None:
        """Stop the server and return once it is down.

        Args:
            mode: ``fast`` (roll back open transactions, then a clean shutdown) or
                ``immediate`` (like a crash: recovery runs on the next start).

        Raises:
            PostgresServerError: the server did not stop.

        """
        data_dir = self._require_managed("stop")
        self._run_as_os_user(["pg_ctl", "stop", "-w", "-t", "60", "-m", mode, "-D", str(data_dir)])

    def restart(self) -> None:
        """Stop the server cleanly and start it again; committed data survives.

        Raises:
            PostgresServerError: the server did not stop or start.

        """
        self.stop()
        self.start()

    def destroy(self) -> None:
        """Stop the session's server if it runs, and delete its directory.

        Does nothing for a server given by URL.
        """
        if self._base_dir is None:
            return
        try:
            if self.data_dir is not None and (self.data_dir / "postmaster.pid").exists():
                try:
                    self.stop()
                except PostgresServerError:
                    self.stop(mode="immediate")
        finally:
            shutil.rmtree(self._base_dir, ignore_errors=True)

    def _require_managed(self, action: str) -> Path:
        if self.data_dir is not None:
            return self.data_dir
        reason = (
            f"cannot {action} the PostgreSQL server at {_describe(self.url)}: it comes from"
            f" {URL_ENV}, so the test session does not manage it; unset {URL_ENV} to run this test"
        )
        if in_ci():
            raise PostgresServerError(reason)
        pytest.skip(reason)

    def _create_cluster(self) -> None:
        assert self._base_dir is not None
        assert self.data_dir is not None
        socket_dir = self._base_dir / "socket"
        socket_dir.mkdir()
        _chown_to_os_user(self._base_dir)
        _chown_to_os_user(socket_dir)
        self._run_as_os_user(
            [
                "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        # Only 127.0.0.1 and the socket (in a directory only `postgres` and root can enter).
        self._write_config("pg_hba.conf", "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\ninclude '{_SETTINGS_FILE}'\n")

    def _start_on_a_free_port(self) -> None:
        assert self.data_dir is not None
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = _free_port()
            self.url = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
            self._write_settings()
            try:
                self.start()
            except PostgresServerError:
                if attempt == _START_ATTEMPTS:
                    raise
            else:
                return

    def _write_settings(self) -> None:
        assert self._base_dir is not None
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self._base_dir / 'socket'}'",
            "max_connections": "200",
            "shared_buffers": "128MB",
            # Durability is what the ledger promises, so the tests run with it.
            "fsync": "on",
            "logging_collector": "off",
        }
        self._write_config(_SETTINGS_FILE, "".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _write_config(self, name: str, text: str) -> None:
        assert self.data_dir is not None
        path = self.data_dir / name
        path.write_text(text, encoding="utf-8")
        _chown_to_os_user(path)

    def _run_as_os_user(
        self, command: Sequence[str], *, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        assert self._base_dir is not None
        # The server refuses to run as root: run the cluster's commands as its owner instead.
        root = _running_as_root()
        program, *args = command
        try:
            result = subprocess.run(
                [str(self._bindir / program), *args],
                cwd=self._base_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=_COMMAND_TIMEOUT,
                check=False,
                user=OS_USER if root else None,
                group=OS_USER if root else None,
                extra_groups=[] if root else None,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise PostgresServerError(f"{program} could not run: {exc}") from exc
        if check and result.returncode != 0:
            raise PostgresServerError(
                f"{program} {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}{self._log_tail()}"
            )
        return result

    def _log_tail(self, lines: int = 30) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        tail = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        return "server log:\n" + "\n".join(tail)


class _WorkerNode(Protocol):
    """What the controller sees of an xdist worker (xdist ships no types)."""

    config: pytest.Config
    workeroutput: Mapping[str, object]


_UNAVAILABLE_OUTPUT = "ckl_postgres_unavailable"
_unavailable_key = pytest.StashKey[str]()


def _cannot_use_server(request: pytest.FixtureRequest, reason: str) -> NoReturn:
    message = f"PostgreSQL for the tests is unavailable: {reason}"
    if in_ci():
        workeroutput: dict[str, object] | None = getattr(request.config, "workeroutput", None)
        if workeroutput is not None:
            # In an xdist worker, pytest.exit alone reads as a crash to the controller: make the
            # controller stop the run and exit with our code too (see the hooks below).
            workeroutput[_UNAVAILABLE_OUTPUT] = message
            request.session.shouldfail = message
        pytest.exit(message, returncode=EXIT_SERVER_UNAVAILABLE)
    pytest.skip(message)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: _WorkerNode, error: object) -> None:
    """Remember, in the xdist controller, that a worker could not get its PostgreSQL server."""
    # A worker that crashed has no workeroutput; xdist reports the crash itself.
    output: dict[str, object] = getattr(node, "workeroutput", {})
    reason = output.get(_UNAVAILABLE_OUTPUT)
    if isinstance(reason, str):
        node.config.stash[_unavailable_key] = reason


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Exit with `EXIT_SERVER_UNAVAILABLE` when an xdist worker had no PostgreSQL server."""
    if _unavailable_key in session.config.stash:
        session.exitstatus = EXIT_SERVER_UNAVAILABLE


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """Yield the session's PostgreSQL server (one per xdist worker when it is started here)."""
    url = os.environ.get(URL_ENV)
    if url:
        try:
            server = PostgresServer.external(url)
            with psycopg.connect(server.url, connect_timeout=10):
                pass
        except (PostgresServerError, psycopg.Error) as exc:
            _cannot_use_server(request, f"{URL_ENV} points to {_describe(url)}: {exc}")
        yield server
        return
    try:
        server = PostgresServer.initdb()
    except PostgresServerError as exc:
        _cannot_use_server(request, str(exc))
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = f"ckl_test_{uuid4().hex[:12]}"
    url = postgres_server.create_database(name)
    yield url
    # A test may leave the server stopped or the database gone; the drop is only tidying up.
    with contextlib.suppress(psycopg.Error):
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of its own, for the tests that stop and restart it (one per worker).

    Tests using it must leave it running (or start it again) when they end.
    """
    try:
        server = PostgresServer.initdb()
    except PostgresServerError as exc:
        if in_ci():
            pytest.fail(f"the private PostgreSQL server did not start: {exc}")
        pytest.skip(f"no private PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """URL of an empty store, once for each backend: the same test runs on SQLite and PostgreSQL."""
    backend: str = request.param
    return cast("str", request.getfixturevalue(f"{backend}_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """A maker of empty stores on one backend (once for each): every call gives an empty one.

    For tests that need many independent stores, such as one per hypothesis example, where a
    store shared by all examples would grow with each of them. SQLite: a new file per call.
    PostgreSQL: the test's database, emptied at each call (its ``public`` schema dropped and
    created again, cheaper than a new database), so the store of the previous call must be
    closed by then.
    """
    backend: str = request.param
    if backend == "sqlite":
        return lambda: f"sqlite:///{tmp_path}/ledger-{uuid4().hex[:12]}.db"
    url = cast("str", request.getfixturevalue("postgres_url"))

    def empty() -> str:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute("SET lock_timeout = '30s'")  # a store left open fails the test
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
        return url

    return empty
