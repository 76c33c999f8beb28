"""Store URLs naming several PostgreSQL servers: parsed, checked, redacted, and really used.

Both of libpq's multi-host forms (hosts in the netloc, or ``host=``/``port=`` in the query)
parse to the same ``(host, port)`` pairs; a bad port, a count of ports that fits no count of
hosts, an empty host or an unknown ``target_session_attrs`` is an ``InvalidStoreURL`` naming
what is wrong, raised before anything is connected to; a password never shows in ``display``
nor in an error. Last, a ``Ledger`` opens such a URL whose first host is a dead port: libpq
goes on to the next one, in either form.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import psycopg
import pytest

from ledger import InvalidStoreURL, Ledger
from ledger.store.url import parse_store_url, postgres_hosts, redact_url
from tests.fix_postgres import _free_port

NETLOC = "postgresql://u@h1:5432,h2:5433/db?target_session_attrs=read-write"
QUERY = "postgresql://u@/db?host=h1,h2&port=5432,5433&target_session_attrs=read-write"
NETLOC_BARE = "postgresql://u@h1:5432,h2:5433/db"
QUERY_BARE = "postgresql://u@/db?host=h1,h2&port=5432,5433"


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("url", [NETLOC, QUERY])
def test_both_multi_host_forms_parse_to_the_same_hosts(url: str) -> None:
    parsed = parse_store_url(url)
    assert parsed.kind == "postgres"
    assert parsed.url == url  # handed to libpq as written
    assert parsed.display == url  # nothing to hide
    assert parsed.database_file is None
    assert postgres_hosts(url) == [("h1", 5432), ("h2", 5433)]


@pytest.mark.parametrize(
    ("url", "hosts"),
    [
        ("postgresql://u@h/db", [("h", None)]),  # libpq's default port
        ("postgresql://u@h:6000/db", [("h", 6000)]),
        ("postgresql://u@h1,h2:7/db", [("h1", None), ("h2", 7)]),
        ("postgresql://u@[::1]:5432,[fe80::1]/db", [("::1", 5432), ("fe80::1", None)]),
        ("postgresql://u@/db?host=h1,h2&port=5433", [("h1", 5433), ("h2", 5433)]),  # one for all
        ("postgresql://u@h1,h2/db?port=5433", [("h1", 5433), ("h2", 5433)]),
        ("postgresql://u@ignored:1/db?host=h1,h2&port=2,3", [("h1", 2), ("h2", 3)]),  # query wins
        ("postgresql://u@/db?host=%2Ftmp%2Fsock,h2&port=1,2", [("/tmp/sock", 1), ("h2", 2)]),  # noqa: S108
        ("postgres://u@h1:1,h2:2/db", [("h1", 1), ("h2", 2)]),
    ],
)
def test_postgres_hosts_names_each_host_and_its_port(
    url: str, hosts: list[tuple[str, int | None]]
) -> None:
    assert postgres_hosts(url) == hosts
    assert parse_store_url(url).kind == "postgres"


def test_the_scheme_is_normalised_and_the_hosts_kept_as_written() -> None:
    parsed = parse_store_url("postgresql+psycopg://u:pw@h1:1,h2:2/db?target_session_attrs=any")
    assert parsed.url == "postgresql://u:pw@h1:1,h2:2/db?target_session_attrs=any"
    assert parsed.display == "postgresql+psycopg://u:***@h1:1,h2:2/db?target_session_attrs=any"


@pytest.mark.parametrize(
    "attrs", ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]
)
def test_every_target_session_attrs_of_libpq_is_accepted(attrs: str) -> None:
    assert parse_store_url(f"{NETLOC_BARE}?target_session_attrs={attrs}").kind == ("postgres")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # a port that is not a number, in either form
        ("postgresql://u@h1:5432,h2:x/db", "the port 'x' is not a number from 1 to 65535"),
        ("postgresql://u@/db?host=h1,h2&port=5432,p", "the port 'p' is not a number"),
        ("postgresql://u@h:-1/db", "the port '-1' is not a number"),
        ("postgresql://u@h:+5/db", "the port '+5' is not a number"),
        # digits, but not ASCII ones: int() refuses the first, reads the second as 3
        ("postgresql://u@h:\u00b2/db", "the port '\u00b2' is not a number"),
        ("postgresql://u@h1:1,h2:\u0663/db", "the port '\u0663' is not a number"),
        # out of range
        ("postgresql://u@h1:0,h2:1/db", "the port '0' is not a number from 1 to 65535"),
        ("postgresql://u@h1:1,h2:65536/db", "the port '65536' is not a number from 1 to 65535"),
        ("postgresql://u@/db?host=h&port=99999", "the port '99999' is not a number"),
        # as many ports as hosts, or one for all
        ("postgresql://u@h1,h2/db?port=1,2,3", "2 hosts but 3 ports"),
        ("postgresql://u@/db?host=h1,h2&port=1,2,3", "2 hosts but 3 ports"),
        ("postgresql://u@/db?host=h1,h2,h3&port=1,2", "3 hosts but 2 ports"),
        # an empty host, in either form, or none at all
        ("postgresql://u@h1:1,:2/db", "no host (or an empty one)"),
        ("postgresql://u@h1:1,,h2:2/db", "no host (or an empty one)"),
        ("postgresql://u@/db?host=h1,&port=1,2", "no host (or an empty one)"),
        ("postgresql://u@/db", "no host (or an empty one)"),
        # libpq's values only
        (f"{NETLOC_BARE}?target_session_attrs=master", "target_session_attrs='master'"),
        (f"{QUERY_BARE}&target_session_attrs=READ-WRITE", "is not one of libpq's"),
        # unparseable
        ("postgresql://u@[::1:5432/db", "it is not a valid URL"),
        ("postgresql://u@[::1]x/db", "an IPv6 address needs ']'"),
    ],
)
def test_a_bad_multi_host_url_is_refused_with_what_is_wrong(url: str, reason: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        parse_store_url(url)
    assert reason in caught.value.reason
    assert reason in str(caught.value)
    assert caught.value.url == redact_url(url)


@pytest.mark.parametrize(
    "url",
    ["postgresql://u@h:\u00b2/db", "postgresql://u@[::1/db", "postgresql://u@h1,h2/db?port=1,2,3"],
)
def test_postgres_hosts_itself_raises_the_typed_error(url: str) -> None:
    with pytest.raises(InvalidStoreURL):
        postgres_hosts(url)


def test_a_bad_url_opens_nothing() -> None:
    # A dead port on purpose: had the URL been handed to libpq, it would say "refused".
    dead = _free_port()
    with pytest.raises(InvalidStoreURL, match="2 hosts but 3 ports"):
        Ledger.open(f"postgresql://u@127.0.0.1:{dead},127.0.0.1:{dead}/db?port=1,2,3")
    with pytest.raises(InvalidStoreURL, match="target_session_attrs"):
        Ledger.open(f"postgresql://u@127.0.0.1:{dead}/db", reader_store=f"{QUERY}x")


# ---------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u:s3cret@h1:1,h2:2/db?target_session_attrs=read-write",
            "postgresql://u:***@h1:1,h2:2/db?target_session_attrs=read-write",
        ),
        (
            "postgresql://u:p%40ss@word@h1:1,h2:2/db",  # an '@' left in the password
            "postgresql://u:***@h1:1,h2:2/db",
        ),
        (
            "postgresql://u@/db?host=h1,h2&password=s3cret&port=1,2",
            "postgresql://u@/db?host=h1,h2&password=***&port=1,2",
        ),
        (
            "postgresql://u:one@/db?password=two&host=h1,h2",
            "postgresql://u:***@/db?password=***&host=h1,h2",
        ),
        # libpq decodes the keys too: this is a password
        ("postgresql://u@h/db?pass%77ord=s3cret", "postgresql://u@h/db?pass%77ord=***"),
        # the client key's passphrase is a secret as well
        (
            "postgresql://u@h/db?sslmode=require&sslpassword=s3cret",
            "postgresql://u@h/db?sslmode=require&sslpassword=***",
        ),
        ("postgresql://u@h1,h2/db?passfile=/x", "postgresql://u@h1,h2/db?passfile=/x"),
    ],
)
def test_passwords_are_redacted_in_the_netloc_and_the_query(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert parse_store_url(url).display == shown
    assert "s3cret" not in shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:s3cret@h1:1,h2:x/db",
        "postgresql://u@/db?host=h1,h2&port=1,2,3&password=s3cret",
        "postgresql://u@h1,h2/db?sslpassword=s3cret&target_session_attrs=nope",
        "postgresql://u:s3cret@[::1/db",
    ],
)
def test_no_error_shows_the_password(url: str) -> None:
    with pytest.raises(InvalidStoreURL) as caught:
        Ledger.open(url)
    assert "s3cret" not in str(caught.value)
    assert "s3cret" not in caught.value.url


# ---------------------------------------------------------------- really connecting


def _multi_host(url: str, form: str, dead: int) -> str:
    """``url``'s server second, after a port where nothing listens, in libpq's ``form``."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    at = f"{userinfo}@" if userinfo else ""
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    query = f"&{parts.query}" if parts.query else ""
    if form == "netloc":
        return (
            f"postgresql://{at}127.0.0.1:{dead},{host}:{port}{parts.path}?connect_timeout=5{query}"
        )
    return (
        f"postgresql://{at}{parts.path}?host=127.0.0.1,{host}&port={dead},{port}"
        f"&connect_timeout=5{query}"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("form", ["netloc", "query"])
def test_a_ledger_opens_a_multi_host_url_past_a_dead_first_host(
    postgres_url: str, form: str
) -> None:
    dead = _free_port()
    url = _multi_host(postgres_url, form, dead)
    assert postgres_hosts(url)[0] == ("127.0.0.1", dead)
    with Ledger.open(url) as ledger:
        token = ledger.create_checkpoint("multi", 0)
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
        assert ledger.get_checkpoint(token).version == 2
        assert "s3cret" not in ledger.store_display
    # Written on the live server, the one the plain URL names.
    with Ledger.open(postgres_url, read_only=True) as plain:
        assert plain.get_checkpoint(token).version == 2
    with psycopg.connect(url) as conn:  # and libpq agrees on which one it reached
        assert conn.info.port != dead
