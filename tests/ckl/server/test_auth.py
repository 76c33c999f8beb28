"""`ckl serve` with bearer tokens: 401 without one, 403 without the scope, secrets kept secret.

The tokens come from `ckl token` run as a user runs it (subprocesses); the server is a real
`ckl serve --token-file` subprocess bound to 0.0.0.0 (allowed with a token file) and reached
through 127.0.0.1. Bad token files and a non-loopback address without one are refused by
`ckl serve` itself, with one error line, before the store is opened.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import stat
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from ckl.server.errors import ErrorBody
from tests.ckl.cli.conftest import ROOT, ckl_env, one_error_line
from tests.ckl.server.conftest import Server, event_count

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    import httpx

MAX_STREAMS = 2
SCOPES = {"reader": "read", "writer": "read,write", "operator": "read,write,operate"}
WRONG = "ckl_" + "x" * 43


def _ckl(*args: str, store: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ckl", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=ckl_env(store),
        cwd=ROOT,
    )


def _finish(process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@dataclass
class Secured:
    """A `ckl serve --token-file` and the tokens its file holds, by name."""

    server: Server
    store: str
    token_file: Path
    tokens: dict[str, str]

    def client(self, name: str | None) -> httpx.Client:
        return self.server.client(self.tokens[name] if name else None)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    directory = tmp_path_factory.mktemp("auth")
    token_file = directory / "tokens"
    # In parallel, each to a file of its own (`ckl token` costs a second of start-up), then
    # one file of their lines.
    making = {
        name: _ckl("token", name, "--scopes", scopes, "--token-file", str(directory / name))
        for name, scopes in SCOPES.items()
    }
    tokens: dict[str, str] = {}
    for name, process in making.items():
        made = _finish(process)
        assert made.returncode == 0, made.stderr
        tokens[name] = made.stdout.strip()
    token_file.write_text("".join((directory / name).read_text() for name in SCOPES))
    store = f"sqlite:///{directory}/ledger.db"
    server = Server(
        store,
        "--token-file",
        str(token_file),
        "--host",
        "0.0.0.0",  # noqa: S104  (allowed with a token file: the point of the test)
        "--access-log",
        "--max-streams",
        str(MAX_STREAMS),
        "--poll-interval",
        "0.05",
    ).start()
    assert server.url.startswith("http://0.0.0.0:"), server.url
    server.url = server.url.replace("0.0.0.0", "127.0.0.1")  # noqa: S104
    try:
        yield Secured(server, store, token_file, tokens)
    finally:
        server.stop()
        if server.process is not None and server.process.stdout is not None:
            server.process.stdout.close()


def check_error(response: httpx.Response, status: int, error: str, **fields: object) -> ErrorBody:
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate_json(response.content)
    assert (body.error, body.status) == (error, status), body
    for name, value in fields.items():
        assert body.fields.get(name) == value, (name, body.fields)
    return body


@contextlib.contextmanager
def writes_nothing(store: str) -> Iterator[None]:
    before = event_count(store)
    yield
    assert event_count(store) == before, "a refused request wrote an event"


def test_a_request_without_a_known_token_is_401(secured: Secured) -> None:
    with secured.client(None) as anonymous, writes_nothing(secured.store):
        for response in (
            anonymous.get("/v1/runs"),
            anonymous.post("/v1/runs/auth-none/checkpoints/0"),
            anonymous.get("/v1/runs/auth-none/stream"),
            anonymous.get("/v1/runs", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        ):
            check_error(response, 401, "Unauthorized", reason="missing")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        health = anonymous.get("/v1/health")  # liveness needs no token
        assert health.status_code == 200, health.text
    with secured.server.client(WRONG) as stranger, writes_nothing(secured.store):
        for response in (
            stranger.get("/v1/runs"),
            stranger.post("/v1/runs/auth-wrong/checkpoints/0"),
        ):
            body = check_error(response, 401, "Unauthorized", reason="unknown")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert WRONG not in body.message


def test_each_scope_allows_its_calls_only(secured: Secured) -> None:
    run = "auth-scopes"
    with secured.client("writer") as writer:
        assert writer.post(f"/v1/runs/{run}/checkpoints/0").status_code == 200
        assert writer.post(f"/v1/runs/{run}/checkpoints/1").status_code == 200
        done = writer.post(f"/v1/runs/{run}/checkpoints/1/complete", json={"result": 1})
        assert done.status_code == 200, done.text
        assert writer.get(f"/v1/runs/{run}").status_code == 200
        with writes_nothing(secured.store):
            for path, body in (
                ("checkpoints/0/reset", {"reason": "redo"}),
                ("checkpoints/0/cancel", {"reason": "stop"}),
                ("checkpoints/0/retry", None),
            ):
                check_error(
                    writer.post(f"/v1/runs/{run}/{path}", json=body),
                    403,
                    "OutOfScope",
                    token_name="writer",  # noqa: S106  (a name, not a secret)
                    needed="operate",
                    granted=["read", "write"],
                )
            check_error(writer.post("/v1/verify"), 403, "OutOfScope", needed="operate")

    with secured.client("reader") as reader:
        assert reader.get(f"/v1/runs/{run}/timeline").status_code == 200
        assert reader.get("/v1/failures").status_code == 200
        with writes_nothing(secured.store):
            writes: list[tuple[str, dict[str, object] | None]] = [
                ("checkpoints/2", None),
                ("checkpoints/0/yield", {"cursor": 1, "items_processed": 1}),
                ("claim-next", {"owner": "r", "ttl": 30}),
            ]
            for path, sent in writes:
                check_error(
                    reader.post(f"/v1/runs/{run}/{path}", json=sent),
                    403,
                    "OutOfScope",
                    token_name="reader",  # noqa: S106
                    needed="write",
                    granted=["read"],
                )

    with secured.client("operator") as operator:
        reset = operator.post(f"/v1/runs/{run}/checkpoints/1/reset", json={"reason": "redo"})
        assert reset.status_code == 200, reset.text
        assert reset.json()["attempt"] == 2
        verified = operator.post("/v1/verify", json={"run_id": run})
        assert verified.status_code == 200, verified.text
        assert verified.json()["problems"] == []
        assert operator.post(f"/v1/runs/{run}/checkpoints/2").status_code == 200


def test_streams_are_limited_per_client(secured: Secured) -> None:
    # Keep each stream's line iterator: dropping one closes its connection (httpx).
    readers: list[Iterator[str]] = []
    with contextlib.ExitStack() as open_streams:
        reader = open_streams.enter_context(secured.client("reader"))
        for _ in range(MAX_STREAMS):
            stream = open_streams.enter_context(reader.stream("GET", "/v1/stream"))
            assert stream.status_code == 200
            readers.append(stream.iter_lines())
            assert next(readers[-1]) == "retry: 1000"  # it is open and counted
        # (A short timeout: a stream wrongly accepted would never end.)
        check_error(
            reader.get("/v1/stream", timeout=10),
            429,
            "TooManyStreams",
            client="reader",
            limit=MAX_STREAMS,
        )
        check_error(reader.get("/v1/runs/auth-scopes/stream", timeout=10), 429, "TooManyStreams")
        # Another client (token) has a count of its own.
        writer = open_streams.enter_context(secured.client("writer"))
        other = open_streams.enter_context(writer.stream("GET", "/v1/stream"))
        assert other.status_code == 200


def test_tokens_never_appear_in_the_output_and_the_file_holds_only_hashes(
    secured: Secured,
) -> None:
    for name in SCOPES:
        with secured.client(name) as client:
            assert client.get("/v1/runs", params={"contains": "auth"}).status_code == 200
    with secured.server.client(WRONG) as stranger:
        assert stranger.get("/v1/runs").status_code == 401
    output = secured.server.output()
    assert re.search(r'"GET /v1/runs\?contains=auth HTTP/1.1" 200', output), output  # logged
    assert '"GET /v1/runs HTTP/1.1" 401' in output
    for secret in [*secured.tokens.values(), WRONG]:
        assert secret not in output
        assert secret.removeprefix("ckl_") not in output

    text = secured.token_file.read_text(encoding="utf-8")
    for name in SCOPES:  # as `ckl token` created them
        assert stat.S_IMODE((secured.token_file.parent / name).stat().st_mode) == 0o600
    lines = [line for line in text.splitlines() if line.strip()]
    assert [line.split()[:2] for line in lines] == [[n, s] for n, s in SCOPES.items()]
    for line, secret in zip(lines, secured.tokens.values(), strict=True):
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert line.split()[2] == f"sha256:{digest}"
        assert secret not in text
        assert secret.removeprefix("ckl_") not in text


# Each case costs a `ckl serve` start-up: the parser's other refusals (an empty file, two
# fields, a name used twice…) are read_token_file's, one process proves the CLI path for all.
BAD_TOKEN_FILES = {
    "a missing file": None,
    "an unknown scope": "w1 read,bogus sha256:" + "0" * 64 + "\n",
    "a short plain token": "# a comment\n\nw1 read shortsecret\n",
    "a bad digest": "w1 read sha256:" + "Z" * 64 + "\n",
}


def test_bad_token_files_and_an_open_host_without_tokens_stop_ckl_serve(
    tmp_path: Path,
) -> None:
    """Each is one error line and a non-zero exit, and the store is never created."""
    runs: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    for number, (case, content) in enumerate(BAD_TOKEN_FILES.items()):
        token_file = tmp_path / f"tokens-{number}"
        if content is not None:
            token_file.write_text(content, encoding="utf-8")
        database = tmp_path / f"ledger-{number}.db"
        runs[case] = (
            database,
            _ckl(
                "serve",
                "--port",
                "0",
                "--token-file",
                str(token_file),
                store=f"sqlite:///{database}",
            ),
        )
    open_db = tmp_path / "ledger-open.db"
    runs["0.0.0.0 without tokens"] = (
        open_db,
        _ckl(
            "serve",
            "--host",
            "0.0.0.0",  # noqa: S104  (refused: the point of the test)
            "--port",
            "0",
            store=f"sqlite:///{open_db}",
        ),
    )
    expected = {
        "a missing file": "cannot read",
        "an unknown scope": "unknown scope(s) bogus",
        "a short plain token": "at least 16 characters",
        "a bad digest": "64 lower-case hex digits",
        "0.0.0.0 without tokens": "not a loopback address",
    }
    for case, (database, process) in runs.items():
        done = _finish(process)
        assert done.returncode != 0, (case, done.stderr)
        line = one_error_line(done)
        assert expected[case] in line, (case, line)
        assert "shortsecret" not in line
        assert not database.exists(), f"{case}: the store was created"
        assert not [p for p in database.parent.iterdir() if p.name.startswith(database.name)], case
