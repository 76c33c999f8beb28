"""`ckl serve`'s JSON API over a real socket, on SQLite and PostgreSQL: every endpoint.

One server per backend serves the whole module (each test works in runs of its own); every
reply is read back into the model the OpenAPI document names, and every refused request is
checked for its status, its error class, its fields and an unchanged event count. The 503
test stops a private PostgreSQL server under a running `ckl serve`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import uuid4

import psycopg
import pytest

from ckl.server.errors import ErrorBody
from ckl.server.models import (
    ClaimNextResult,
    EventList,
    FailureList,
    Health,
    PendingList,
    RunList,
    StuckList,
)
from ledger import CheckpointEvent, CheckpointState, Lease, Ledger, VerifyReport
from ledger.events import EVENT_TYPES
from ledger.store.url import redact_url
from projections import History, RunProgress, RunSummary, TimelineEntry
from tests.ckl.server.conftest import Server

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from tests.fix_postgres import PostgresServer

MAX_AWAIT = 20.0
MAX_BODY = 64 * 1024


@dataclass
class Api:
    """One `ckl serve` of the module, a keep-alive client, and a ledger to count events."""

    server: Server
    http: httpx.Client
    store: str
    ledger: Ledger

    def count(self) -> int:
        """Events committed to the store now.

        The log reads only below PostgreSQL's visible horizon, which a transaction in flight
        anywhere (the server's own reads) may hold back for a moment: wait until nothing
        committed is held back, then count.
        """
        deadline = time.monotonic() + 10
        while self.ledger.recorder.log_head().held_back and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        return sum(1 for _ in self.ledger.iter_log())

    def post(
        self, path: str, body: object = None, *, key: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key is not None:
            headers["Idempotency-Key"] = key
        if body is not None:
            kwargs["json"] = body
        return self.http.post("/v1" + path, headers=headers, **kwargs)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get("/v1" + path, params=params)


def _store_of(request: pytest.FixtureRequest, tmp: str) -> tuple[str, str | None]:
    if request.param == "sqlite":
        return f"sqlite:///{tmp}/ledger.db", None
    pg: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"ckl_api_{uuid4().hex[:12]}"
    return pg.create_database(name), name


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """`ckl serve` on an empty store of each backend, for the whole module."""
    store, database = _store_of(request, str(tmp_path_factory.mktemp("api")))
    server = Server(
        store,
        "--poll-interval",
        "0.05",
        "--max-await",
        str(MAX_AWAIT),
        "--max-body-bytes",
        str(MAX_BODY),
    ).start()
    try:
        with server.client() as http, Ledger.open(store) as ledger:
            yield Api(server, http, store, ledger)
    finally:
        stop(server)
        if database is not None:
            pg: PostgresServer = request.getfixturevalue("postgres_server")
            with contextlib.suppress(psycopg.Error):
                pg.drop_database(database)


def stop(server: Server) -> None:
    """Stop it and close its output pipe (the fixture's reader leaves it open)."""
    server.stop()
    if server.process is not None and server.process.stdout is not None:
        server.process.stdout.close()


def new_run() -> str:
    return f"api-{uuid4().hex[:12]}"


def cp(run: str, batch: int | str, action: str = "") -> str:
    return f"/runs/{run}/checkpoints/{batch}" + (f"/{action}" if action else "")


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def state_of(response: httpx.Response) -> CheckpointState:
    ok(response)
    return CheckpointState.model_validate_json(response.content)


def lease_of(response: httpx.Response) -> Lease:
    ok(response)
    return Lease.model_validate_json(response.content)


def check_error(response: httpx.Response, status: int, error: str, **fields: object) -> ErrorBody:
    """The reply is the typed error ``error`` with ``status`` and (at least) these fields."""
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate_json(response.content)
    assert (body.error, body.status) == (error, status), body
    assert body.message
    for name, value in fields.items():
        assert body.fields.get(name) == value, (name, body.fields)
    return body


def check_event(raw: dict[str, Any], topic: str) -> CheckpointEvent:
    """``raw`` is the JSON of a ``topic`` event (its model's fields, nothing else)."""
    return EVENT_TYPES[topic].model_validate_json(json.dumps(raw))


def check_timeline_entry(raw: dict[str, Any]) -> TimelineEntry:
    event = check_event(raw["event"], raw["topic"])
    return TimelineEntry.model_validate({**raw, "event": event})


@contextlib.contextmanager
def writes_nothing(api: Api) -> Iterator[None]:
    before = api.count()
    yield
    assert api.count() == before, "a refused request wrote an event"


# ---------------------------------------------------------------------------------- commands


def test_create_yield_complete_and_the_checkpoint_queries(api: Api) -> None:
    run = new_run()
    health = Health.model_validate(ok(api.get("/health")))
    assert health.status == "ok"
    assert health.views_position >= 0

    created = state_of(api.post(cp(run, 0)))  # no body at all
    assert (created.status, created.version, created.attempt) == ("open", 1, 1)
    assert (created.token.run_id, created.token.batch_index) == (run, 0)
    with_body = state_of(api.post(cp(run, 1), {"total_batches": 2, "metadata": {"total_items": 7}}))
    assert (with_body.total_batches, with_body.metadata) == (2, {"total_items": 7})
    with writes_nothing(api):  # a second create keeps the first's options
        again = state_of(api.post(cp(run, 1), {"total_batches": 5}))
    assert again == with_body

    yielded = state_of(
        api.post(
            cp(run, 0, "yield"),
            {"cursor": {"page": 3}, "items_processed": 30, "accumulated_results": {"sum": 1}},
        )
    )
    assert (yielded.cursor, yielded.items_processed, yielded.version) == ({"page": 3}, 30, 2)
    assert yielded.accumulated_results == {"sum": 1}
    done = state_of(api.post(cp(run, 0, "complete"), {"result": {"rows": 30}}))
    assert (done.status, done.result, done.version) == ("completed", {"rows": 30}, 3)
    assert state_of(api.get(cp(run, 0))) == done

    # Time travel: by version, and by the moment of the yield (a zoned and a naive ISO time).
    assert state_of(api.get(cp(run, 0), as_of="1")) == created
    assert state_of(api.get(cp(run, 0), as_of="2")) == yielded
    at = yielded.updated_at.isoformat()
    assert state_of(api.get(cp(run, 0), as_of=at)) == yielded
    naive = yielded.updated_at.astimezone(UTC).replace(tzinfo=None).isoformat()
    assert state_of(api.get(cp(run, 0), as_of=naive)) == yielded

    # Events, paged by version.
    page = ok(api.get(cp(run, 0, "events"), limit=2))
    assert set(page) == set(EventList.model_fields)
    assert [e["event"]["originator_version"] for e in page["events"]] == [1, 2]
    assert page["next_after_version"] == 2
    rest = ok(api.get(cp(run, 0, "events"), after_version=2, limit=2))
    assert [e["event"]["originator_version"] for e in rest["events"]] == [3]
    assert rest["next_after_version"] is None
    topics = ["checkpoint.Created", "checkpoint.Yielded", "checkpoint.Completed"]
    for raw, topic in zip([*page["events"], *rest["events"]], topics, strict=True):
        assert set(raw) == {"topic", "event"}
        assert raw["topic"] == topic
        check_event(raw["event"], topic)

    history = History.model_validate(ok(api.get(cp(run, 0, "history"))))
    assert history.total_yields == 1
    assert [entry.cursor for entry in history.entries] == [{"page": 3}]

    # An await of an ended checkpoint answers at once with its state.
    assert state_of(api.get(cp(run, 0, "await"), timeout=MAX_AWAIT)) == done


def test_fail_retry_reset_cancel_and_the_failure_audit(api: Api) -> None:
    run = new_run()
    for batch in range(3):
        state_of(api.post(cp(run, batch)))
    state_of(api.post(cp(run, 0, "yield"), {"cursor": 4, "items_processed": 4}))
    failed = state_of(
        api.post(
            cp(run, 0, "fail"),
            {
                "error": "connection reset",
                "error_type": "ConnectionError",
                "transient": True,
                "traceback": "Traceback (most recent call last):\n  File 'w.py'\nConnectionError",
                "host": "worker-7",
                "pid": 4242,
            },
        )
    )
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.type, failed.error.transient) == ("ConnectionError", True)
    state_of(api.post(cp(run, 1, "fail"), {"error": "bad row"}))  # permanent, no details

    audit = FailureList.model_validate(ok(api.get("/failures", run_id=run)))
    assert [(f.batch_index, f.kind) for f in audit.failures] == [(0, "failure"), (1, "failure")]
    remote = audit.failures[0]
    assert (remote.host, remote.pid, remote.error_type) == ("worker-7", 4242, "ConnectionError")
    assert remote.traceback is not None
    assert remote.traceback.endswith("ConnectionError")
    assert (remote.cursor, remote.items_processed, remote.transient) == (4, 4, True)
    assert audit.next_after is None

    retried = state_of(api.post(cp(run, 0, "retry")))
    assert (retried.status, retried.attempt, retried.cursor) == ("open", 2, 4)
    reset = state_of(api.post(cp(run, 1, "reset"), {"reason": "bad input fixed"}))
    assert (reset.status, reset.attempt, reset.last_reset_reason) == ("open", 2, "bad input fixed")
    cancelled = state_of(api.post(cp(run, 2, "cancel"), {"reason": "not needed"}))
    assert (cancelled.status, cancelled.cancel_reason) == ("cancelled", "not needed")

    # The audit's filters and its paging.
    audit = FailureList.model_validate(ok(api.get("/failures", run_id=run)))
    assert [(f.batch_index, f.kind, f.resolution) for f in audit.failures] == [
        (0, "failure", "retried"),
        (1, "failure", "reset"),
        (2, "cancel", None),
    ]

    def batches(**params: Any) -> list[int]:
        rows = FailureList.model_validate(ok(api.get("/failures", run_id=run, **params)))
        return [f.batch_index for f in rows.failures]

    assert batches(transient="true") == [0]
    assert batches(transient="false") == [1, 2]
    assert batches(error_type="ConnectionError") == [0]
    assert batches(kind="cancel") == [2]
    assert batches(batch=[1, 2]) == [1, 2]
    assert batches(since=(remote.failed_at + timedelta(hours=1)).isoformat()) == []
    assert batches(until=(remote.failed_at - timedelta(hours=1)).isoformat()) == []
    first = FailureList.model_validate(ok(api.get("/failures", run_id=run, limit=2)))
    assert [f.batch_index for f in first.failures] == [0, 1]
    assert first.next_after == first.failures[-1].position
    rest = FailureList.model_validate(
        ok(api.get("/failures", run_id=run, limit=2, after=first.next_after))
    )
    assert ([f.batch_index for f in rest.failures], rest.next_after) == ([2], None)


def test_claim_heartbeat_release_and_claim_next(api: Api) -> None:
    run = new_run()
    for batch in range(2):
        state_of(api.post(cp(run, batch)))
    lease = lease_of(api.post(cp(run, 0, "claim"), {"owner": "w1", "ttl": 30}))
    assert (lease.owner, lease.attempt, lease.taken_over) == ("w1", 1, False)
    assert (lease.token.run_id, lease.token.batch_index) == (run, 0)
    body = {"lease": lease.model_dump(mode="json")}
    renewed = lease_of(api.post(cp(run, 0, "heartbeat"), body))
    assert renewed.lease_id == lease.lease_id
    assert renewed.expires_at >= lease.expires_at
    under = state_of(
        api.post(cp(run, 0, "yield"), {"cursor": 1, "items_processed": 1, **body, "attempt": 1})
    )
    assert (under.owner, under.lease_id) == ("w1", lease.lease_id)
    released = state_of(api.post(cp(run, 0, "release"), body))
    assert (released.status, released.owner) == ("open", None)
    with writes_nothing(api):  # releasing twice is a no-op
        assert state_of(api.post(cp(run, 0, "release"), body)) == released

    # claim-next: batch order, then nothing claimable (lease null, nothing written).
    taken = [
        ClaimNextResult.model_validate(
            ok(api.post(f"/runs/{run}/claim-next", {"owner": f"w{n}", "ttl": 30}))
        ).lease
        for n in (2, 3)
    ]
    assert [(t.token.batch_index, t.owner) for t in taken if t is not None] == [
        (0, "w2"),
        (1, "w3"),
    ]
    with writes_nothing(api):
        none = ok(api.post(f"/runs/{run}/claim-next", {"owner": "w4", "ttl": 30}))
    assert none == {"lease": None}


def test_await_returns_the_ending_or_times_out(api: Api) -> None:
    run = new_run()
    for batch in range(3):
        state_of(api.post(cp(run, batch)))

    # A failure ends the wait too: the state says how.
    state_of(api.post(cp(run, 0, "fail"), {"error": "boom", "transient": True}))
    assert state_of(api.get(cp(run, 0, "await"), timeout=MAX_AWAIT)).status == "failed"

    started = time.monotonic()
    check_error(
        api.get(cp(run, 1, "await"), timeout=0.3), 408, "AwaitTimeout", checkpoint=f"{run}/1"
    )
    assert time.monotonic() - started >= 0.3

    with writes_nothing(api):
        check_error(
            api.get(cp(run, 1, "await"), timeout=MAX_AWAIT + 1),
            400,
            "InvalidInput",
            field="timeout",
        )

    # An await already waiting wakes when another client completes the checkpoint.
    replies: list[httpx.Response] = []
    done = threading.Event()

    def wait() -> None:
        with api.server.client() as other:
            replies.append(other.get(f"/v1{cp(run, 2, 'await')}", params={"timeout": MAX_AWAIT}))
        done.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    assert not done.wait(0.5), "the await returned before the checkpoint ended"
    completed_at = time.monotonic()
    state_of(api.post(cp(run, 2, "complete"), {"result": 1}))
    assert done.wait(MAX_AWAIT / 2), "the await did not wake on the completion"
    woke = time.monotonic() - completed_at
    waiter.join(5)
    assert state_of(replies[0]).status == "completed"
    assert woke < MAX_AWAIT / 2


@dataclass(frozen=True)
class TwoRuns:
    prefix: str
    running: str
    """3 batches of 10 items: 0 open with yields 2 and 5, 1 completed, 2 open."""
    finished: str
    """1 batch, completed."""
    before_complete: datetime
    """A moment after the yields, before batch 1 completed."""


@pytest.fixture(scope="module")
def two_runs(api: Api) -> TwoRuns:
    prefix = f"api-runs-{uuid4().hex[:8]}"
    running, finished = f"{prefix}-running", f"{prefix}-finished"
    for batch in range(3):
        state_of(
            api.post(cp(running, batch), {"total_batches": 3, "metadata": {"total_items": 10}})
        )
    state_of(api.post(cp(finished, 0), {"total_batches": 1}))
    state_of(api.post(cp(finished, 0, "complete"), {"result": "ok"}))
    for items in (2, 5):
        state_of(api.post(cp(running, 0, "yield"), {"cursor": items, "items_processed": items}))
    before_complete = datetime.now(UTC)
    state_of(api.post(cp(running, 1, "complete")))
    return TwoRuns(prefix, running, finished, before_complete)


def test_runs_are_listed_filtered_and_told_now_and_as_of(api: Api, two_runs: TwoRuns) -> None:
    prefix, running, finished = two_runs.prefix, two_runs.running, two_runs.finished
    runs = RunList.model_validate(ok(api.get("/runs", contains=prefix)))
    assert {r.run_id: r.status for r in runs.runs} == {running: "running", finished: "completed"}
    summary: RunSummary = next(r for r in runs.runs if r.run_id == running)
    assert (summary.created, summary.completed, summary.open, summary.items_processed) == (
        3,
        1,
        2,
        5,
    )
    completed = RunList.model_validate(ok(api.get("/runs", contains=prefix, status="completed")))
    assert [r.run_id for r in completed.runs] == [finished]
    assert ok(api.get("/runs", contains=prefix, status="failed")) == {"runs": []}
    limited = RunList.model_validate(ok(api.get("/runs", contains=prefix, limit=1)))
    assert len(limited.runs) == 1

    detail = ok(api.get(f"/runs/{running}"))
    assert detail["as_of"] is None
    assert RunProgress.model_validate(detail["progress"]) == RunProgress(
        run_id=running, total_batches=3, created=3, completed=1, failed=0, open=2, cancelled=0
    )
    assert (detail["items_processed"], detail["total_items"]) == (5, 30)
    states = [CheckpointState.model_validate(s) for s in detail["checkpoints"]]
    assert [s.status for s in states] == ["open", "completed", "open"]
    past = ok(api.get(f"/runs/{running}", as_of=two_runs.before_complete.isoformat()))
    assert past["as_of"] is not None
    assert past["progress"]["completed"] == 0


def test_timeline_pending_stuck_and_verify(api: Api, two_runs: TwoRuns) -> None:
    running, finished, before_complete = (
        two_runs.running,
        two_runs.finished,
        two_runs.before_complete,
    )

    # The timeline: every event in order, filters, and paging by next_after.
    whole = ok(api.get(f"/runs/{running}/timeline"))
    entries = [check_timeline_entry(raw) for raw in whole["entries"]]
    assert whole["next_after"] is None
    assert [e.topic for e in entries] == [
        *["checkpoint.Created"] * 3,
        "checkpoint.Yielded",
        "checkpoint.Yielded",
        "checkpoint.Completed",
    ]
    positions = [e.position for e in entries]
    assert positions == sorted(positions)
    only = ok(api.get(f"/runs/{running}/timeline", batch=0, topic="checkpoint.Yielded"))
    assert [(e["batch_index"], e["topic"]) for e in only["entries"]] == [
        (0, "checkpoint.Yielded")
    ] * 2
    since = ok(api.get(f"/runs/{running}/timeline", since=before_complete.isoformat()))
    assert [e["topic"] for e in since["entries"]] == ["checkpoint.Completed"]
    until = ok(api.get(f"/runs/{running}/timeline", until=before_complete.isoformat()))
    assert len(until["entries"]) == 5
    paged: list[int] = []
    after = 0
    while True:
        page = ok(api.get(f"/runs/{running}/timeline", after=after, limit=4))
        paged += [e["position"] for e in page["entries"]]
        if page["next_after"] is None:
            break
        assert len(page["entries"]) == 4
        after = page["next_after"]
    assert paged == positions

    pending = PendingList.model_validate(ok(api.get(f"/runs/{running}/pending")))
    assert [(p.batch_index, p.cursor) for p in pending.pending] == [(0, 5), (2, None)]

    assert ok(api.get(f"/runs/{running}/stuck", idle=3600)) == {"stuck": []}
    stuck = StuckList.model_validate(ok(api.get(f"/runs/{running}/stuck", idle=0)))
    assert sorted(s.batch_index for s in stuck.stuck) == [0, 2]
    assert {s.reason for s in stuck.stuck} == {"idle"}
    everywhere = StuckList.model_validate(ok(api.get("/stuck", idle=0)))
    assert {(s.run_id, s.batch_index) for s in stuck.stuck} <= {
        (s.run_id, s.batch_index) for s in everywhere.stuck
    }
    assert ok(api.get(f"/runs/{finished}/stuck", idle=0)) == {"stuck": []}

    report = VerifyReport.model_validate(ok(api.post("/verify", {"run_id": running})))
    assert (report.run_id, report.checkpoints, report.events, report.problems) == (
        running,
        3,
        6,
        [],
    )
    whole_store = VerifyReport.model_validate(ok(api.post("/verify")))
    assert whole_store.run_id is None
    assert whole_store.events >= 8
    assert whole_store.problems == []


# ------------------------------------------------------------------------------- idempotency


def test_an_idempotency_key_applies_a_command_once(api: Api) -> None:
    run = new_run()
    state_of(api.post(cp(run, 0), key=f"{run}-create"))
    with writes_nothing(api):
        state_of(api.post(cp(run, 0), key=f"{run}-create"))
    key = f"{run}-yield-1"
    before = api.count()
    first = api.post(cp(run, 0, "yield"), {"cursor": 10, "items_processed": 10}, key=key)
    again = api.post(cp(run, 0, "yield"), {"cursor": 10, "items_processed": 10}, key=key)
    assert api.count() == before + 1
    assert ok(again) == ok(first)

    # The ledger's rule: a key already applied by the same command returns the recorded
    # outcome whatever the body says now (nothing is decided again) ...
    with writes_nothing(api):
        other_body = state_of(
            api.post(cp(run, 0, "yield"), {"cursor": 99, "items_processed": 99}, key=key)
        )
    assert (other_body.cursor, other_body.items_processed) == (10, 10)
    assert other_body == state_of(first)
    # ... and the key given to another command is a conflict.
    with writes_nothing(api):
        check_error(
            api.post(cp(run, 0, "complete"), {"result": 1}, key=key),
            409,
            "ConflictingCommand",
            checkpoint=f"{run}/0",
            command="complete_checkpoint",
        )

    # A completion with a key, repeated: once; a second completion with another result and
    # another key conflicts with the recorded result.
    done_key = f"{run}-complete"
    done = state_of(api.post(cp(run, 0, "complete"), {"result": {"n": 1}}, key=done_key))
    with writes_nothing(api):
        assert (
            state_of(api.post(cp(run, 0, "complete"), {"result": {"n": 1}}, key=done_key)) == done
        )
        check_error(
            api.post(cp(run, 0, "complete"), {"result": {"n": 2}}, key=f"{run}-complete-2"),
            409,
            "ConflictingCommand",
            checkpoint=f"{run}/0",
            state="completed",
        )


# --------------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def target(api: Api) -> str:
    """A run with batch 0 open, 1 completed, 2 leased (by 'holder', for 5 minutes)."""
    run = new_run()
    for batch in range(3):
        state_of(api.post(cp(run, batch)))
    state_of(api.post(cp(run, 0, "yield"), {"cursor": 1, "items_processed": 1}))
    state_of(api.post(cp(run, 1, "complete"), {"result": 1}))
    lease_of(api.post(cp(run, 2, "claim"), {"owner": "holder", "ttl": 300}))
    return run


_YIELD = {"cursor": 2, "items_processed": 2}

# (method, path under /v1 with {run}, request arguments, status, error class, fields)
BAD: dict[str, tuple[str, str, dict[str, Any], int, str, dict[str, object]]] = {
    "malformed JSON": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"content": b'{"cursor": 2,'},
        400, "InvalidInput", {"field": "body"},
    ),
    "a string for an int": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"json": {"cursor": 2, "items_processed": "5"}},
        400, "InvalidInput", {"field": "items_processed"},
    ),
    "a bool for an int": (
        "POST", "/runs/{run}/checkpoints/0/fail", {"json": {"error": "x", "pid": True}},
        400, "InvalidInput", {"field": "pid"},
    ),
    "a string for a number": (
        "POST", "/runs/{run}/checkpoints/0/claim", {"json": {"owner": "o", "ttl": "30"}},
        400, "InvalidInput", {"field": "ttl"},
    ),
    "a list for an object": (
        "POST", "/runs/{run}/checkpoints/0/yield",
        {"json": {**_YIELD, "accumulated_results": [1, 2]}},
        400, "InvalidInput", {"field": "accumulated_results"},
    ),
    "a list for the metadata": (
        "POST", "/runs/{run}/checkpoints/7", {"json": {"metadata": [1]}},
        400, "InvalidInput", {"field": "metadata"},
    ),
    "a list for the body": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"json": [2, 2]},
        400, "InvalidInput", {"field": "body"},
    ),
    "an unknown key": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"json": {**_YIELD, "bogus": 1}},
        400, "InvalidInput", {"field": "bogus"},
    ),
    "a missing field": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"json": {"cursor": 2}},
        400, "InvalidInput", {"field": "items_processed"},
    ),
    "a reset without a reason": (
        "POST", "/runs/{run}/checkpoints/0/reset", {"json": {}},
        400, "InvalidInput", {"field": "reason"},
    ),
    "a heartbeat without a lease": (
        "POST", "/runs/{run}/checkpoints/2/heartbeat", {},
        400, "InvalidInput", {"field": "body"},
    ),
    "total_batches 0": (
        "POST", "/runs/{run}/checkpoints/8", {"json": {"total_batches": 0}},
        400, "InvalidInput", {"field": "total_batches"},
    ),
    "a body over --max-body-bytes": (
        "POST", "/runs/{run}/checkpoints/0/yield",
        {"json": {"cursor": "x" * (MAX_BODY + 1), "items_processed": 2}},
        413, "PayloadTooLarge", {"field": "body", "limit": MAX_BODY},
    ),
    "a cursor over the ledger's limit": (
        "POST", "/runs/{run}/checkpoints/0/yield",
        {"json": {"cursor": "x" * 9000, "items_processed": 2}},
        413, "PayloadTooLarge", {"field": "cursor"},
    ),
    "text/plain": (
        "POST", "/runs/{run}/checkpoints/0/yield",
        {"content": json.dumps(_YIELD), "headers": {"Content-Type": "text/plain"}},
        400, "InvalidInput", {"field": "Content-Type"},
    ),
    "a form": (
        "POST", "/runs/{run}/checkpoints/0/complete", {"data": {"result": "1"}},
        400, "InvalidInput", {"field": "Content-Type"},
    ),
    "a yield to an unknown batch": (
        "POST", "/runs/{run}/checkpoints/99/yield", {"json": _YIELD},
        404, "CheckpointNotFound", {},
    ),
    "a batch_index of -1": (
        "POST", "/runs/{run}/checkpoints/-1", {},
        400, "InvalidInput", {"field": "batch_index"},
    ),
    "a batch_index of abc": (
        "POST", "/runs/{run}/checkpoints/abc/yield", {"json": _YIELD},
        400, "InvalidInput", {"field": "batch_index"},
    ),
    "a run id of 201 characters": (
        "POST", "/runs/" + "r" * 201 + "/checkpoints/0", {},
        400, "InvalidInput", {"field": "run_id"},
    ),
    "a run id with a control character": (
        "POST", "/runs/bad%01run/checkpoints/0", {},
        400, "InvalidInput", {"field": "run_id"},
    ),
    "an Idempotency-Key of 300 characters": (
        "POST", "/runs/{run}/checkpoints/0/yield",
        {"json": _YIELD, "headers": {"Idempotency-Key": "k" * 300}},
        400, "InvalidInput", {"field": "command_id"},
    ),
    "complete again with another result": (
        "POST", "/runs/{run}/checkpoints/1/complete", {"json": {"result": 2}},
        409, "ConflictingCommand", {"state": "completed", "command": "complete_checkpoint"},
    ),
    "a yield after complete": (
        "POST", "/runs/{run}/checkpoints/1/yield", {"json": _YIELD},
        409, "InvalidTransition", {"state": "completed"},
    ),
    "a retry of an open checkpoint": (
        "POST", "/runs/{run}/checkpoints/0/retry", {},
        409, "InvalidTransition", {"command": "retry_checkpoint"},
    ),
    "a yield without the live lease": (
        "POST", "/runs/{run}/checkpoints/2/yield", {"json": _YIELD},
        409, "CheckpointClaimed", {"owner": "holder"},
    ),
    "a claim of a leased checkpoint": (
        "POST", "/runs/{run}/checkpoints/2/claim", {"json": {"owner": "other", "ttl": 30}},
        409, "CheckpointClaimed", {"owner": "holder"},
    ),
    "another checkpoint's lease": (
        "POST", "/runs/{run}/checkpoints/0/yield", {"json": {**_YIELD, "lease": "LEASE-OF-2"}},
        400, "InvalidInput", {"field": "lease"},
    ),
    "an unknown run": ("GET", "/runs/nope-{run}", {}, 404, "RunNotFound", {}),
    "the timeline of an unknown run": (
        "GET", "/runs/nope-{run}/timeline", {}, 404, "RunNotFound", {},
    ),
    "the pending of an unknown run": (
        "GET", "/runs/nope-{run}/pending", {}, 404, "RunNotFound", {},
    ),
    "the stuck of an unknown run": ("GET", "/runs/nope-{run}/stuck", {}, 404, "RunNotFound", {}),
    "an unknown batch": (
        "GET", "/runs/{run}/checkpoints/99", {}, 404, "CheckpointNotFound", {},
    ),
    "the events of an unknown batch": (
        "GET", "/runs/{run}/checkpoints/99/events", {}, 404, "CheckpointNotFound", {},
    ),
    "an as_of that is no time": (
        "GET", "/runs/{run}", {"params": {"as_of": "yesterday"}},
        400, "InvalidInput", {"field": "as_of"},
    ),
    "a checkpoint as_of that is no time": (
        "GET", "/runs/{run}/checkpoints/0", {"params": {"as_of": "v2"}},
        400, "InvalidInput", {"field": "as_of"},
    ),
    "a limit of 0": (
        "GET", "/runs/{run}/timeline", {"params": {"limit": 0}},
        400, "InvalidInput", {"field": "limit"},
    ),
    "an unknown run status": (
        "GET", "/runs", {"params": {"status": "sleeping"}},
        400, "InvalidInput", {"field": "status"},
    ),
    "a negative idle": (
        "GET", "/stuck", {"params": {"idle": -1}}, 400, "InvalidInput", {"field": "idle"},
    ),
    "a bad Last-Event-ID": (
        "GET", "/runs/{run}/stream", {"headers": {"Last-Event-ID": "abc"}},
        400, "InvalidInput", {"field": "Last-Event-ID"},
    ),
    "a timeout above --max-await": (
        "GET", "/runs/{run}/checkpoints/0/await", {"params": {"timeout": MAX_AWAIT * 2}},
        400, "InvalidInput", {"field": "timeout"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_refused_with_a_typed_error_and_writes_nothing(
    api: Api, target: str, case: str
) -> None:
    method, path, arguments, status, error, fields = BAD[case]
    body = arguments.get("json")
    if isinstance(body, dict) and body.get("lease") == "LEASE-OF-2":
        held = state_of(api.get(cp(target, 2)))
        arguments = {**arguments, "json": {**body, "lease": _lease_json(held)}}
    url = "/v1" + path.replace("{run}", target)
    before = api.count()
    response = api.http.request(method, url, **arguments)
    check_error(response, status, error, **fields)
    assert api.count() == before


def _lease_json(state: CheckpointState) -> dict[str, Any]:
    return Lease.of(state).model_dump(mode="json")


def test_a_huge_content_length_is_refused_before_the_body_is_read(api: Api, target: str) -> None:
    url = urlsplit(api.server.url)
    before = api.count()
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw:
        raw.sendall(
            f"POST /v1/runs/{target}/checkpoints/0/yield HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 1024 * 1024}\r\n\r\n".encode()
            + b'{"cursor": 3, "items'
        )
        started = time.monotonic()
        reply = b""
        while chunk := raw.recv(65536):  # the server closes the connection after its reply
            reply += chunk
        took = time.monotonic() - started
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert b"connection: close" in head.lower()
    refused = ErrorBody.model_validate_json(body)
    assert (refused.error, refused.fields["size"]) == ("PayloadTooLarge", 100 * 1024 * 1024)
    assert took < 5
    assert api.count() == before


def test_writes_of_a_superseded_attempt_or_a_lost_lease_are_refused(api: Api) -> None:
    run = new_run()
    for batch in range(2):
        state_of(api.post(cp(run, batch)))
    # StaleAttempt: a write for attempt 1 after a reset began attempt 2.
    state_of(api.post(cp(run, 0, "reset"), {"reason": "redo"}))
    with writes_nothing(api):
        check_error(
            api.post(cp(run, 0, "yield"), {**_YIELD, "attempt": 1}),
            409,
            "StaleAttempt",
            checkpoint=f"{run}/0",
            attempt=1,
            current=2,
        )

    # LeaseLost: w1's lease expires, w2 takes the checkpoint over, w1 writes.
    old = lease_of(api.post(cp(run, 1, "claim"), {"owner": "w1", "ttl": 0.2}))
    deadline = time.monotonic() + 10
    while True:  # until the lease has expired on the server's clock
        claim = api.post(cp(run, 1, "claim"), {"owner": "w2", "ttl": 30})
        if claim.status_code == 200 or time.monotonic() > deadline:
            break
        check_error(claim, 409, "CheckpointClaimed", owner="w1")
        threading.Event().wait(0.05)
    takeover = lease_of(claim)
    assert (takeover.taken_over, takeover.previous_owner, takeover.attempt) == (True, "w1", 2)
    old_lease = {"lease": old.model_dump(mode="json")}
    for action, body in (
        ("yield", {**_YIELD, **old_lease}),
        ("complete", {"result": 1, **old_lease}),
        ("heartbeat", old_lease),
    ):
        with writes_nothing(api):
            check_error(
                api.post(cp(run, 1, action), body),
                409,
                "LeaseLost",
                owner="w1",
                current_owner="w2",
                attempt=1,
                current=2,
            )
    audit = FailureList.model_validate(ok(api.get("/failures", run_id=run, kind="takeover")))
    assert [(f.batch_index, f.error_type) for f in audit.failures] == [(1, "LeaseExpired")]


# -------------------------------------------------------------------- the store goes away


@pytest.mark.postgres
def test_a_stopped_postgres_is_503_with_retry_after_and_the_retry_applies_once(
    private_postgres: PostgresServer,
) -> None:
    store = private_postgres.create_database(f"ckl_api_{uuid4().hex[:12]}")
    server = Server(store, "--poll-interval", "0.05", env={"CKL_STORE_RETRIES": "1"}).start()
    try:
        with server.client() as http:
            run = new_run()
            assert http.post(f"/v1{cp(run, 0)}").status_code == 200
            private_postgres.stop()
            try:
                body = {"cursor": 7, "items_processed": 7}
                headers = {"Idempotency-Key": f"{run}-y"}
                down = http.post(f"/v1{cp(run, 0, 'yield')}", json=body, headers=headers)
                refused = check_error(down, 503, "StoreUnavailable", command_id=f"{run}-y")
                assert down.headers["Retry-After"] == "1"
                assert refused.fields["store"] == redact_url(store)
            finally:
                private_postgres.start()
            deadline = time.monotonic() + 30
            while True:  # the server's pool reconnects on its own
                again = http.post(f"/v1{cp(run, 0, 'yield')}", json=body, headers=headers)
                if again.status_code != 503 or time.monotonic() > deadline:
                    break
                threading.Event().wait(0.2)
            assert state_of(again).cursor == 7
            repeat = state_of(http.post(f"/v1{cp(run, 0, 'yield')}", json=body, headers=headers))
            assert repeat.version == 2
        with Ledger.open(store) as ledger:
            topics = [event.topic for _, event in ledger.iter_log()]
        assert topics == ["checkpoint.Created", "checkpoint.Yielded"]
    finally:
        stop(server)
