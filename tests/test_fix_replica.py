"""The replica fixture gives a test a real primary and a hot standby streaming from it."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import psycopg
import pytest

from tests.faults._proxy import PostgresProxy
from tests.fix_postgres import _free_port
from tests.fix_replica import (  # the fixtures: until conftest.py registers the plugin
    ReplicaPair,
    ReplicaPairError,
    replica_pair_fixture,  # noqa: F401
    replica_pairs_fixture,  # noqa: F401
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fix_replica import ReplicaPairMaker, ReplicationRoute


pytestmark = pytest.mark.postgres


def _count(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM rows").fetchone()
    assert row is not None
    return int(row[0])


def _insert(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("INSERT INTO rows VALUES (%s)", [n])


@pytest.fixture
def proxies() -> Iterator[list[PostgresProxy]]:
    made: list[PostgresProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def _through_a_proxy(made: list[PostgresProxy]) -> ReplicationRoute:
    def via(host: str, port: int) -> tuple[str, int]:
        proxy = PostgresProxy(host, port)
        made.append(proxy)
        return "127.0.0.1", proxy.port

    return via


def _cut(proxy: PostgresProxy) -> None:
    """Close the proxy so that it also stops accepting: the standby cannot reconnect.

    `PostgresProxy.close` alone closes its listening socket while the acceptor thread is
    blocked in ``accept()``, which on Linux goes on accepting (and forwarding): shutting the
    socket down first wakes that ``accept()``.
    """
    with contextlib.suppress(OSError):
        proxy._listener.shutdown(socket.SHUT_RDWR)
    proxy.close()


def test_a_row_committed_on_the_primary_is_read_on_the_standby(replica_pair: ReplicaPair) -> None:
    url = replica_pair.create_database("ledger")
    with psycopg.connect(replica_pair.standby_url("ledger"), connect_timeout=10) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE rows (n int)")
        conn.execute("INSERT INTO rows VALUES (1), (2)")
    replica_pair.wait_replayed()
    assert _count(replica_pair.standby_url("ledger")) == 2


def test_the_standby_refuses_writes_until_it_is_promoted(replica_pair: ReplicaPair) -> None:
    url = replica_pair.create_database("ledger")
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE rows (n int)")
    replica_pair.wait_replayed()
    standby = replica_pair.standby_url("ledger")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction) as refused:
        _insert(standby, 1)
    assert refused.value.sqlstate == "25006"
    replica_pair.kill_primary()
    replica_pair.promote()
    _insert(standby, 1)
    assert _count(standby) == 1


def test_a_synchronous_commit_waits_while_the_standby_is_down(
    replica_pairs: ReplicaPairMaker,
) -> None:
    pair = replica_pairs(synchronous=True)
    url = pair.create_database("ledger")
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE rows (n int)")
    pair.standby.stop()
    committed = threading.Event()
    failed: list[BaseException] = []

    def commit() -> None:
        try:
            _insert(url, 1)
        except BaseException as exc:  # handed to the test below
            failed.append(exc)
        finally:
            committed.set()

    # A daemon: if the test fails while it waits, destroying the pair ends its connection.
    threading.Thread(target=commit, daemon=True).start()
    assert not committed.wait(1.0), "the commit returned with its only standby down"
    pair.standby.start()
    assert committed.wait(30.0), "the commit did not return once the standby was back"
    assert failed == []
    pair.wait_replayed()
    assert _count(pair.standby_url("ledger")) == 1


@pytest.mark.parametrize("form", ["netloc", "query"])
def test_a_multi_host_url_reaches_the_primary_and_then_the_promoted_standby(
    replica_pair: ReplicaPair, form: Literal["netloc", "query"]
) -> None:
    replica_pair.create_database("ledger")
    url = replica_pair.multi_host_url("ledger", form)
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        assert conn.info.port == replica_pair.primary.port
        conn.execute("CREATE TABLE rows (n int)")
        conn.execute("INSERT INTO rows VALUES (1)")
    replica_pair.wait_replayed()
    replica_pair.kill_primary()
    replica_pair.promote()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        assert conn.info.port == replica_pair.standby.port
        conn.execute("INSERT INTO rows VALUES (2)")
    assert _count(replica_pair.standby_url("ledger")) == 2


def test_an_asynchronous_standby_cut_off_by_its_proxy_misses_acknowledged_commits(
    replica_pairs: ReplicaPairMaker, proxies: list[PostgresProxy]
) -> None:
    pair = replica_pairs(replication_via=_through_a_proxy(proxies))
    url = pair.create_database("ledger")
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE rows (n int)")
        conn.execute("INSERT INTO rows VALUES (1)")
    pair.wait_replayed()
    assert proxies[0].connections >= 1  # the standby streamed through the proxy
    _cut(proxies[0])
    _insert(url, 2)  # acknowledged by the primary alone
    pair.kill_primary()
    pair.promote()
    assert _count(pair.standby_url("ledger")) == 1


def test_a_standby_cut_off_and_routed_back_to_the_primary_catches_up(
    replica_pair: ReplicaPair,
) -> None:
    pair = replica_pair
    url = pair.create_database("ledger")
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("CREATE TABLE rows (n int)")
    pair.wait_replayed()
    pair.cut_replication()
    _insert(url, 1)
    with pytest.raises(ReplicaPairError, match="timed out"):
        pair.wait_replayed(timeout=0.5)
    pair.route_replication("127.0.0.1", pair.primary.port)
    pair.wait_streaming(timeout=10)
    pair.wait_replayed()
    assert _count(pair.standby_url("ledger")) == 1


def test_a_pair_that_does_not_stream_raises_with_both_logs_and_leaves_nothing() -> None:
    nowhere = _free_port()  # nothing listens there: the standby cannot stream
    with pytest.raises(ReplicaPairError) as failed:
        ReplicaPair.start(replication_via=lambda _host, _port: ("127.0.0.1", nowhere), timeout=2)
    message = str(failed.value)
    assert "timed out after 2 s waiting for the standby to be streaming" in message
    dirs = [Path(found) for found in re.findall(r"^--- (\S+) ---$", message, re.MULTILINE)]
    assert [d.name.split("-")[1] for d in dirs] == ["primary", "standby"]
    assert "database system is ready to accept connections" in message  # the logs are in it
    assert not any(d.exists() for d in dirs)


def test_destroy_removes_both_servers_and_may_be_repeated(replica_pair: ReplicaPair) -> None:
    dirs = [replica_pair.primary.data_dir, replica_pair.standby.data_dir]
    with pytest.raises(ValueError, match="form must be"):
        replica_pair.multi_host_url("ledger", "bogus")  # type: ignore[arg-type]
    replica_pair.destroy()
    replica_pair.destroy()
    assert all(d is not None and not d.exists() for d in dirs)
