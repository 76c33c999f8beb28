"""A store URL's password never shows: not in errors, reprs, settings, nor logs at DEBUG.

Two real failures: a closed port (nothing listens) and a wrong password (the session's server,
told to ask one role for a SCRAM password for this test only).
"""

from __future__ import annotations

import logging
import socket
import traceback
from typing import TYPE_CHECKING
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from ckl import cli as ckl
from ledger import Ledger, LedgerError, LedgerSettings, StoreAuthFailed, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.fix_postgres import PostgresServer

PASSWORD = "Sup3r-s3cret-pw"  # noqa: S105  (the secret the test looks for)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again when the block ends


def _every_text_of(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "args", ()))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def _assert_no_password(
    url: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = LedgerSettings(store=url, connect_timeout=2, store_retries=1, store_retry_delay=0)
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    with caplog.at_level(logging.DEBUG):
        # Unreachable, or refused credentials (told apart, never retried): neither says it.
        with pytest.raises((StoreUnavailable, StoreAuthFailed)) as caught:
            Ledger.open(settings=settings)
        assert ckl.main(["--store", url, "rebuild"]) == 1
    text = _every_text_of(caught.value)
    assert "127.0.0.1" in text  # the messages do say where, just not with what secret
    assert PASSWORD not in text
    assert PASSWORD not in caplog.text
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err


def test_a_closed_port_error_never_shows_the_password(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://ckl:{PASSWORD}@127.0.0.1:{_closed_port()}/ledger"
    _assert_no_password(url, caplog, capsys)


def test_the_cli_error_line_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://ckl:{PASSWORD}@127.0.0.1:{_closed_port()}/ledger"
    assert ckl.main(["--store", url, "rebuild"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: store postgresql://ckl:***@127.0.0.1")
    assert PASSWORD not in out + err


@pytest.fixture
def password_role(postgres_server: PostgresServer, postgres_url: str) -> Iterator[str]:
    """A role that must log in with a SCRAM password; the URL given has a wrong one."""
    if not postgres_server.managed or postgres_server.data_dir is None:
        pytest.skip("needs the session's own server (its pg_hba.conf is edited for the test)")
    role = f"ckl_pw_{uuid4().hex[:8]}"
    hba = postgres_server.data_dir / "pg_hba.conf"
    original = hba.read_text(encoding="utf-8")
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal("the-right-one")
            )
        )
        hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}", encoding="utf-8")
        admin.execute("SELECT pg_reload_conf()")
    parts = urlsplit(postgres_url)
    try:
        yield parts._replace(netloc=f"{role}:{PASSWORD}@{parts.hostname}:{parts.port}").geturl()
    finally:
        hba.write_text(original, encoding="utf-8")
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute("SELECT pg_reload_conf()")
            admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.mark.postgres
def test_a_wrong_password_error_never_shows_the_password(
    password_role: str, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(password_role, connect_timeout=5).close()
    _assert_no_password(password_role, caplog, capsys)
    with pytest.raises(LedgerError) as caught:
        Ledger.open(password_role)
    assert "password authentication failed" in str(caught.value)
