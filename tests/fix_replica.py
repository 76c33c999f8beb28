"""A PostgreSQL primary and a hot standby streaming from it, for the replica and failover tests.

The primary is a cluster of its own (``initdb``, ``wal_level=replica``, replication allowed from
127.0.0.1); the standby is a ``pg_basebackup -R`` copy of it on another free port, started and
confirmed streaming before `ReplicaPair.start` returns. Both run as the ``postgres`` OS user
when running as root, like `tests.fix_postgres.PostgresServer` (each node is one).

The standby's replication connection can be routed through another address
(``replication_via``), so a test can put a proxy (``tests/faults/_proxy.py``) between the two
and cut replication; ``synchronous=True`` makes the primary wait for the standby's flush before
it acknowledges a commit, so an acknowledged commit survives a failover.

``fsync`` is off by default: the faults these pairs meet are killed processes (``SIGKILL``),
which lose nothing the kernel's page cache holds, so flushing it to disk would only slow the
suite down. Synchronous replication works the same with it off (the standby still reports its
flush position only once it has written the WAL). With it off the clusters live in memory
(``/dev/shm``, when it has room), and every primary is a copy of one ``initdb`` per process:
a pair starts in about 0.5 s here (1.1 s for the first, which runs ``initdb``; 3 s on disk with
``fsync=True``), and a promotion takes about 0.12 s.

Importable without a pytest session, for the benchmarks in ``bench/``::

    with ReplicaPair.start(synchronous=True) as pair:
        url = pair.create_database("bench")
        ...

The pytest fixtures are ``replica_pairs`` (a maker, for tests that choose the options) and
``replica_pair`` (an asynchronous pair), both function-scoped. Under ``CI=true`` a pair that
cannot start fails the test; elsewhere the test is skipped.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, Self, TypeAlias

import psycopg
import pytest

from tests.fix_postgres import (
    SUPERUSER,
    PostgresServer,
    PostgresServerError,
    _chown_to_os_user,
    _database_url,
    _find_bindir,
    _free_port,
    in_ci,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import TracebackType

__all__ = [
    "STANDBY_NAME",
    "ReplicaNode",
    "ReplicaPair",
    "ReplicaPairError",
    "ReplicaPairMaker",
    "ReplicationRoute",
    "replica_pair_fixture",
    "replica_pairs_fixture",
]

STANDBY_NAME = "ckl_standby"
"""The standby's ``application_name``: how ``pg_stat_replication`` and
``synchronous_standby_names`` on the primary know it."""

ReplicationRoute: TypeAlias = "Callable[[str, int], tuple[str, int]]"
"""Given the primary's host and port, the host and port the standby's replication connects to."""

_SETTINGS_FILE = "ckl_test.conf"  # the file fix_postgres includes from postgresql.conf
_AUTO_CONF = "postgresql.auto.conf"  # read last: where pg_basebackup -R puts primary_conninfo
_STARTUP_TIMEOUT = 60.0  # seconds for the standby to stream, a promotion to finish, ...
_POLL = 0.05  # seconds between looks at a server's state, which has no signal to wait on
_CONNECT_TIMEOUT = 5
_MEMORY_DIR = Path("/dev/shm")  # noqa: S108 -- a private directory is made in it (mkdtemp)
_MEMORY_NEEDED = 2 << 30  # bytes free in it, or the disk: a container's may hold only 64 MiB
_DISK_DIR = Path("/tmp")  # noqa: S108 -- as fix_postgres: short socket paths `postgres` reaches
_COMMAND_TIMEOUT = 120  # seconds for a copy of the template cluster


class ReplicaPairError(PostgresServerError):
    """The pair could not be started or did not reach the state asked for (the logs are in it)."""


class ReplicaNode(PostgresServer):
    """One server of a `ReplicaPair`: a `PostgresServer` with replication settings.

    Made by `ReplicaPair.start`, not directly. Its ``url`` is its ``postgres`` database.
    """

    def __init__(self, url: str, port: int, data_dir: Path | None = None) -> None:
        """Describe a node; `ReplicaPair.start` creates and starts it."""
        super().__init__(url, port, data_dir)
        self.settings: dict[str, str] = {}
        self.killed = False

    @classmethod
    def _in_new_dir(cls, role: str, settings: dict[str, str], *, in_memory: bool) -> ReplicaNode:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        # Under /tmp, as fix_postgres does: `postgres` must reach it; socket paths stay short.
        # In memory (/dev/shm) when nothing is flushed anyway: copying a cluster and taking a
        # base backup there take a fifth of the time they take on this machine's disk.
        parent = _MEMORY_DIR if in_memory and _memory_is_roomy() else _DISK_DIR
        bindir = _bindir()
        base_dir = Path(tempfile.mkdtemp(prefix=f"ckl-{role}-{worker}-", dir=parent))
        node = cls(f"postgresql://{SUPERUSER}@127.0.0.1:0/postgres", 0, base_dir / "data")
        node._bindir = bindir
        node._base_dir = base_dir
        node.settings = settings
        (base_dir / "socket").mkdir()
        _chown_to_os_user(base_dir)
        _chown_to_os_user(base_dir / "socket")
        return node

    @property
    def postmaster_pid(self) -> int | None:
        """The postmaster's process id from ``postmaster.pid``, or ``None`` if it has none."""
        assert self.data_dir is not None
        try:
            first = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").split("\n")[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def database_url(self, db: str) -> str:
        """The URL of database ``db`` on this node."""
        return _database_url(self.url, db)

    def kill(self) -> None:
        """Kill the postmaster and all its processes with ``SIGKILL``, as a crash would.

        ``pg_ctl`` starts the postmaster in a session of its own, so its process group is the
        whole server. Returns once none of its processes is alive (zombies aside) and its port
        refuses connections.

        Raises:
            ReplicaPairError: the server has no ``postmaster.pid``, or did not die in time.

        """
        pid = self.postmaster_pid
        if pid is None:
            raise ReplicaPairError(f"no postmaster.pid in {self.data_dir}: is the server running?")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        self.killed = True
        _wait_until(lambda: not _group_alive(pid), _STARTUP_TIMEOUT, f"the server {pid} to die")

    def write_primary_conninfo(self, host: str, port: int) -> None:
        """Make this node replicate from ``host:port`` (as `STANDBY_NAME`, in plain text).

        Plain start-up (no SSL, no GSS) lets a proxy that parses the protocol sit in between.
        Replaces the ``primary_conninfo`` ``pg_basebackup -R`` wrote; a running server needs a
        reload (`ReplicaNode.reload`) to use it.
        """
        assert self.data_dir is not None
        conninfo = (
            f"host={host} port={port} user={SUPERUSER} application_name={STANDBY_NAME}"
            f" sslmode=disable gssencmode=disable connect_timeout={_CONNECT_TIMEOUT}"
        )
        path = self.data_dir / _AUTO_CONF
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.strip().startswith("primary_conninfo")
        ]
        self._write_config(_AUTO_CONF, "\n".join([*kept, f"primary_conninfo = '{conninfo}'", ""]))

    def reload(self) -> None:
        """Make the running server read its configuration files again (``pg_ctl reload``).

        Raises:
            PostgresServerError: ``pg_ctl reload`` failed.

        """
        assert self.data_dir is not None
        self._run_as_os_user(["pg_ctl", "reload", "-D", str(self.data_dir)])

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log, headed by its role, for error messages."""
        assert self._base_dir is not None
        return f"--- {self._base_dir} ---\n{self._log_tail(lines)}"

    def destroy(self) -> None:
        """Stop the server at once if it runs (``immediate``), and delete its directory.

        Idempotent; a killed server is not stopped again (its stale ``postmaster.pid`` may name
        a zombie, which ``pg_ctl`` would wait on).
        """
        if self._base_dir is None:
            return
        try:
            if not self.killed and self.postmaster_pid is not None:
                with contextlib.suppress(PostgresServerError):
                    self.stop(mode="immediate")
        finally:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def _create_cluster(self) -> None:
        """Copy this process's fresh cluster (`_cluster_template`) into ``data_dir``."""
        assert self.data_dir is not None
        template = _cluster_template()
        # cp -a keeps the owner (`postgres`) and the data directory's 0700 mode.
        try:
            subprocess.run(
                ["cp", "-a", str(template), str(self.data_dir)],
                check=True,
                capture_output=True,
                timeout=_COMMAND_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ReplicaPairError(f"could not copy the cluster {template}: {exc}") from exc

    def _initdb(self) -> None:
        assert self.data_dir is not None
        # --no-sync: nothing here outlives the test run, and it saves a second per cluster.
        self._run_as_os_user(
            [
                "initdb",
                "--no-sync",
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )
        self._write_config(
            "pg_hba.conf",
            "local all all trust\n"
            "host all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n",
        )
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\ninclude '{_SETTINGS_FILE}'\n")

    def _write_settings(self) -> None:
        assert self._base_dir is not None
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self._base_dir / 'socket'}'",
            "logging_collector": "off",
            **self.settings,
        }
        self._write_config(_SETTINGS_FILE, "".join(f"{k} = {v}\n" for k, v in settings.items()))


def _node_settings(*, fsync: bool) -> dict[str, str]:
    return {
        "max_connections": "200",
        "shared_buffers": "32MB",
        "fsync": "on" if fsync else "off",
        "full_page_writes": "on" if fsync else "off",
        "wal_level": "replica",
        "max_wal_senders": "5",
        "max_replication_slots": "5",
        # Enough WAL kept for a standby cut off for a while to catch up without an archive.
        "wal_keep_size": "'256MB'",
        "hot_standby": "on",
        # Readers on the standby: the primary keeps the rows their snapshots still need.
        "hot_standby_feedback": "on",
        # A cut replication connection is noticed, and retried, within a second or two.
        "wal_sender_timeout": "'5s'",
        "wal_receiver_timeout": "'5s'",
        "wal_receiver_status_interval": "'1s'",
        "wal_retrieve_retry_interval": "'200ms'",
        "checkpoint_timeout": "'30min'",
        # A new WAL segment is not written full of zeros first (the base backup starts one).
        "wal_init_zero": "off",
    }


class ReplicaPair:
    """A primary and a hot standby streaming from it, both on 127.0.0.1.

    Attributes:
        primary: the server started as the primary (still that after a failover).
        standby: the server started as the standby (the primary once `promote` returned).
        synchronous: whether the primary waits for the standby's flush before a commit returns.
        start_seconds: how long `start` took, from ``initdb`` to a confirmed stream.

    """

    def __init__(self, primary: ReplicaNode, standby: ReplicaNode, *, synchronous: bool) -> None:
        """Hold two started nodes; `ReplicaPair.start` makes a pair."""
        self.primary = primary
        self.standby = standby
        self.synchronous = synchronous
        self.start_seconds = 0.0
        self.promoted = False

    @classmethod
    def start(
        cls,
        *,
        synchronous: bool = False,
        replication_via: ReplicationRoute | None = None,
        fsync: bool = False,
        timeout: float = _STARTUP_TIMEOUT,
    ) -> ReplicaPair:
        """Create and start a primary and a standby; return once the standby streams.

        Args:
            synchronous: name the standby in the primary's ``synchronous_standby_names``, with
                ``synchronous_commit=on``: a commit returns only once the standby flushed it
                (and waits while the standby is down).
            replication_via: given the primary's host and port, where the standby's replication
                connection goes instead (a proxy that forwards to the primary). The base backup
                itself is taken from the primary directly.
            fsync: flush to disk (off by default; see the module's docstring).
            timeout: seconds the standby has to be seen streaming once started.

        Raises:
            ReplicaPairError: a binary is missing or a server did not start or stream in time;
                the message ends with both servers' logs. Nothing is left running.

        """
        began = time.monotonic()
        primary_settings = _node_settings(fsync=fsync)
        if synchronous:
            primary_settings["synchronous_standby_names"] = f"'{STANDBY_NAME}'"
            primary_settings["synchronous_commit"] = "on"
        nodes: list[ReplicaNode] = []
        try:
            primary = ReplicaNode._in_new_dir("primary", primary_settings, in_memory=not fsync)
            nodes.append(primary)
            primary._create_cluster()
            primary._start_on_a_free_port()
            # The standby must not wait for a standby of its own once promoted: its settings
            # have no synchronous_standby_names (pg_basebackup copied the primary's file).
            standby = ReplicaNode._in_new_dir(
                "standby", _node_settings(fsync=fsync), in_memory=not fsync
            )
            nodes.append(standby)
            _base_backup(primary, standby)
            host, port = ("127.0.0.1", primary.port)
            if replication_via is not None:
                host, port = replication_via(host, port)
            standby.write_primary_conninfo(host, port)
            standby._start_on_a_free_port()
            pair = cls(primary, standby, synchronous=synchronous)
            pair.wait_streaming(timeout)
        except (PostgresServerError, psycopg.Error, OSError) as exc:
            logs = "\n".join(node.log_tail() for node in nodes)
            for node in reversed(nodes):
                node.destroy()
            raise ReplicaPairError(f"the replica pair did not start: {exc}\n{logs}") from exc
        except BaseException:
            for node in reversed(nodes):
                node.destroy()
            raise
        pair.start_seconds = time.monotonic() - began
        return pair

    def primary_url(self, db: str = "postgres") -> str:
        """The URL of database ``db`` on the (original) primary."""
        return self.primary.database_url(db)

    def standby_url(self, db: str = "postgres") -> str:
        """The URL of database ``db`` on the (original) standby."""
        return self.standby.database_url(db)

    def multi_host_url(
        self,
        db: str,
        form: Literal["netloc", "query"] = "netloc",
        target_session_attrs: str | None = "read-write",
    ) -> str:
        """A libpq multi-host URL naming the primary, then the standby.

        ``netloc``: ``postgresql://ckl@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=...``;
        ``query``: ``postgresql://ckl@/db?host=127.0.0.1,127.0.0.1&port=P1,P2&...``.
        ``target_session_attrs=None`` leaves the parameter out (libpq's default, ``any``).

        Raises:
            ValueError: ``form`` is neither ``netloc`` nor ``query``.

        """
        hosts = ("127.0.0.1", "127.0.0.1")
        ports = (self.primary.port, self.standby.port)
        attrs = (
            [] if target_session_attrs is None else [f"target_session_attrs={target_session_attrs}"]
        )
        if form == "netloc":
            netloc = ",".join(f"{host}:{port}" for host, port in zip(hosts, ports, strict=True))
            query = "&".join(attrs)
            return f"postgresql://{SUPERUSER}@{netloc}/{db}" + (f"?{query}" if query else "")
        if form == "query":
            query = "&".join(
                [f"host={','.join(hosts)}", f"port={','.join(map(str, ports))}", *attrs]
            )
            return f"postgresql://{SUPERUSER}@/{db}?{query}"
        raise ValueError(f"form must be 'netloc' or 'query', not {form!r}")

    def create_database(self, name: str) -> str:
        """Create an empty database on the primary, wait until the standby has it; its URL.

        Raises:
            psycopg.Error: the database exists, or the primary refused.
            ReplicaPairError: the standby did not replay it in time.

        """
        url = self.primary.create_database(name)
        self.wait_replayed()
        return url

    def drop_database(self, name: str) -> None:
        """Drop a database on the primary if it exists (the standby follows).

        Raises:
            psycopg.Error: the primary refused or is not running.

        """
        self.primary.drop_database(name)

    def wait_streaming(self, timeout: float = _STARTUP_TIMEOUT) -> None:
        """Wait until the primary shows the standby ``streaming`` (``sync`` if synchronous).

        Raises:
            ReplicaPairError: it did not within ``timeout`` seconds.

        """
        with psycopg.connect(self.standby.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
        if row != (True,):
            raise ReplicaPairError("the standby is not in recovery: it is not a standby")
        wanted = ("streaming", "sync" if self.synchronous else "async")

        def streaming() -> bool:
            with psycopg.connect(self.primary.url, autocommit=True, connect_timeout=10) as conn:
                rows = conn.execute(
                    "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                    [STANDBY_NAME],
                ).fetchall()
            return wanted in rows

        _wait_until(streaming, timeout, f"the standby to be {'/'.join(wanted)}")

    def wait_replayed(self, timeout: float = 30.0) -> None:
        """Wait until the standby replayed all the WAL the primary has written so far.

        Raises:
            ReplicaPairError: it did not within ``timeout`` seconds.
            psycopg.Error: the primary or the standby is not reachable.

        """
        # The insert position, not the write position: an asynchronous commit (a transaction
        # that only took an id) may not have been written out yet.
        with psycopg.connect(self.primary.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
        assert row is not None
        target: str = row[0]
        with psycopg.connect(self.standby.url, autocommit=True, connect_timeout=10) as conn:

            def replayed() -> bool:
                row = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]
                ).fetchone()
                return row == (True,)

            _wait_until(replayed, timeout, f"the standby to replay up to {target}")

    def kill_primary(self) -> None:
        """Kill every process of the primary with ``SIGKILL`` (see `ReplicaNode.kill`).

        Raises:
            ReplicaPairError: the primary is not running or did not die in time.

        """
        self.primary.kill()

    def promote(self, timeout: float = _STARTUP_TIMEOUT) -> float:
        """Promote the standby (``pg_ctl promote -w``); return the seconds it took.

        Returns once ``pg_is_in_recovery()`` is false there: it accepts writes.

        Raises:
            ReplicaPairError: it was still in recovery after ``timeout`` seconds.
            PostgresServerError: ``pg_ctl promote`` failed.

        """
        began = time.monotonic()
        assert self.standby.data_dir is not None
        self.standby._run_as_os_user(
            ["pg_ctl", "promote", "-w", "-t", str(int(timeout)), "-D", str(self.standby.data_dir)]
        )

        def writable() -> bool:
            with psycopg.connect(self.standby.url, autocommit=True, connect_timeout=10) as conn:
                return conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)

        _wait_until(writable, timeout, "the promoted standby to leave recovery")
        self.promoted = True
        return time.monotonic() - began

    def route_replication(self, host: str, port: int) -> None:
        """Point the standby's replication at ``host:port`` (e.g. back at the primary).

        Takes effect at once: the standby's WAL receiver restarts on a reload.

        Raises:
            PostgresServerError: the reload failed.

        """
        self.standby.write_primary_conninfo(host, port)
        self.standby.reload()

    def cut_replication(self) -> None:
        """Cut the standby off: its replication goes to a port where nothing listens.

        The WAL receiver is stopped at once (a reload with a new ``primary_conninfo`` restarts
        it) and keeps failing to connect; what the primary commits from now on is not on the
        standby until `route_replication` points it back at the primary.

        Raises:
            PostgresServerError: the reload failed.

        """
        self.route_replication("127.0.0.1", _free_port())
        # The reload restarts the WAL receiver a moment later: until the primary has let the
        # standby go, a commit could still reach it.
        with psycopg.connect(self.primary.url, autocommit=True, connect_timeout=10) as conn:

            def gone() -> bool:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s",
                    [STANDBY_NAME],
                ).fetchone()
                return row == (0,)

            _wait_until(gone, 30.0, "the primary to let the cut standby go")

    def destroy(self) -> None:
        """Stop both servers (``immediate``) and delete their directories; idempotent."""
        try:
            self.standby.destroy()
        finally:
            self.primary.destroy()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()


def _base_backup(primary: ReplicaNode, standby: ReplicaNode) -> None:
    """Copy the primary into the standby's data directory with ``pg_basebackup -R``."""
    assert standby.data_dir is not None
    # -R writes standby.signal and a primary_conninfo (replaced by write_primary_conninfo);
    # --checkpoint=fast and --no-sync: no waiting for a spread checkpoint or for the disk.
    standby._run_as_os_user(
        [
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            SUPERUSER,
            "-D",
            str(standby.data_dir),
            "-R",
            "-X",
            "fetch",
            "--checkpoint=fast",
            "--no-sync",
            "--no-manifest",
        ]
    )


_template_lock = threading.Lock()
_template: ReplicaNode | None = None


def _cluster_template() -> Path:
    """A fresh, never started cluster made by ``initdb`` once per process; its data directory.

    ``initdb`` takes about two seconds here and a copy of its result a tenth of that: every
    primary is a copy. The template is deleted when the process exits.

    Raises:
        PostgresServerError: ``initdb`` failed.

    """
    global _template  # noqa: PLW0603 -- one template per process, made on first use
    with _template_lock:
        if _template is None:
            node = ReplicaNode._in_new_dir("template", {}, in_memory=True)
            try:
                node._initdb()
            except BaseException:
                node.destroy()
                raise
            atexit.register(node.destroy)
            _template = node
        assert _template.data_dir is not None
        return _template.data_dir


def _memory_is_roomy() -> bool:
    """Whether `_MEMORY_DIR` is there with room for a few pairs and the WAL they keep."""
    try:
        room = os.statvfs(_MEMORY_DIR)
    except OSError:
        return False
    return room.f_bavail * room.f_frsize >= _MEMORY_NEEDED


def _bindir() -> Path:
    """The directory with ``initdb``, ``pg_ctl`` and ``pg_basebackup``.

    `tests.fix_postgres` may find ``initdb`` through a symbolic link on ``PATH`` (to Debian's
    ``/usr/lib/postgresql/<major>/bin``) beside which there is no ``pg_basebackup``: then the
    link's target directory is the one.

    Raises:
        ReplicaPairError: no such directory was found.

    """
    found = _find_bindir()
    for bindir in (found, (found / "initdb").resolve().parent):
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "pg_basebackup")):
            return bindir
    raise ReplicaPairError(f"no pg_basebackup beside initdb in {found}")


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is alive (not a zombie), read from ``/proc``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its ')'.
            fields = stat.read_text(encoding="utf-8").rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it is true (a server's state has no signal to wait on).

    Raises:
        ReplicaPairError: it was not true within ``timeout`` seconds.

    """
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(psycopg.OperationalError):
            if predicate():
                return
        if time.monotonic() >= deadline:
            raise ReplicaPairError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(_POLL)


class ReplicaPairMaker(Protocol):
    """Starts a `ReplicaPair` for a test; the fixture destroys it after the test."""

    def __call__(
        self,
        *,
        synchronous: bool = False,
        replication_via: ReplicationRoute | None = None,
        fsync: bool = False,
        timeout: float = _STARTUP_TIMEOUT,
    ) -> ReplicaPair:
        """Start a pair with these options (see `ReplicaPair.start`)."""
        ...


# The functions' names differ from the fixtures' so that a test module may import them (before
# conftest.py registers this plugin) without its parameters shadowing the imported names.
@pytest.fixture(name="replica_pairs")
def replica_pairs_fixture() -> Iterator[ReplicaPairMaker]:
    """A maker of replica pairs, each destroyed after the test (also when the test failed)."""
    made: list[ReplicaPair] = []

    def make(
        *,
        synchronous: bool = False,
        replication_via: ReplicationRoute | None = None,
        fsync: bool = False,
        timeout: float = _STARTUP_TIMEOUT,
    ) -> ReplicaPair:
        try:
            pair = ReplicaPair.start(
                synchronous=synchronous,
                replication_via=replication_via,
                fsync=fsync,
                timeout=timeout,
            )
        except PostgresServerError as exc:
            if in_ci():
                pytest.fail(f"the replica pair did not start: {exc}")
            pytest.skip(f"no replica pair: {exc}")
        made.append(pair)
        return pair

    try:
        yield make
    finally:
        for pair in made:
            pair.destroy()


@pytest.fixture(name="replica_pair")
def replica_pair_fixture(replica_pairs: ReplicaPairMaker) -> ReplicaPair:
    """An asynchronous primary and standby pair, destroyed after the test."""
    return replica_pairs()
