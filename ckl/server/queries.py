"""GET routes (and ``POST /v1/verify``): states, events, history, awaits, runs, timeline, audit.

Queries that read the views first wait until the views include everything committed before
the request (read-your-writes: a GET after a POST sees it). Lists are paged by global
position: pass ``next_after`` back as ``after``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request, Security
from starlette.background import BackgroundTask
from starlette.responses import FileResponse, Response

from ckl.server.errors import ErrorBody
from ckl.server.models import (
    CheckpointEventEntry,
    EventList,
    FailureList,
    Health,
    PendingList,
    RunDetail,
    RunList,
    StuckList,
    Timeline,
    VerifyBody,
)
from ckl.server.state import State, json_response, package_version, require
from ledger import (
    CheckpointCancelled,
    CheckpointFailedError,
    CheckpointNotFound,
    CheckpointState,
    CheckpointToken,
    InvalidInput,
    RunNotFound,
    ServiceStopping,
    VerifyReport,
    export_run,
    verify_chains,
)
from projections import History, RunProgress
from streams.completion import await_checkpoint_async

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import Ledger

__all__ = ["router"]

T = TypeVar("T")

router = APIRouter(tags=["queries"])

_READ = [Security(require("read"))]
_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "CheckpointNotFound or RunNotFound."},
}
_CHECKPOINT = "/runs/{run_id:run_id}/checkpoints/{batch_index}"
MAX_PAGE = 10_000

RunId = Annotated[str, Path(description="The run.")]
BatchIndex = Annotated[int, Path(description="The batch's index in the run.")]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most rows in this page.")]
After = Annotated[int, Query(ge=0, description="Only rows after this global position.")]
Moment = Annotated[
    str | None, Query(description="An ISO-8601 time (no zone: UTC), e.g. 2026-12-01T10:00:00Z.")
]


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an ISO-8601 time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _existing(state: State, run_id: str, batch_index: int) -> CheckpointToken:
    token = state.ledger.find_checkpoint(run_id, batch_index)
    if token is None:
        raise CheckpointNotFound(f"{run_id}/{batch_index}")
    return token


def _read(state: State, read: Callable[[Ledger], T]) -> T:
    """``read`` on the reader; on the primary while the reader does not have the checkpoint.

    A checkpoint created on the primary reaches a standby (``CKL_READER_STORE``) a replication
    lag later. ``_existing`` found it on the primary, so until then it is read there rather
    than reported missing (``completion`` does the same for awaits).
    """
    try:
        return read(state.reader)
    except CheckpointNotFound:
        if state.reader is state.ledger:
            raise
        return read(state.ledger)


@router.get(
    "/health",
    operation_id="health",
    summary="Liveness, the store and the views' position (no token needed)",
    response_model=Health,
)
def health(state: State) -> Response:
    """Answers while the server runs; ``views_position`` shows the views following the log."""
    return json_response(
        Health(
            status="ok",
            store=state.ledger.store_display,
            version=package_version(),
            views_position=state.views.position,
            stream_position=0 if state.hub is None else state.hub.position,
            streams=0 if state.hub is None else state.hub.clients,
            awaiting=state.awaiting,
        )
    )


@router.get(
    _CHECKPOINT,
    operation_id="get_checkpoint",
    summary="A checkpoint's state, now or as of a version or a moment",
    response_model=CheckpointState,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def get_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    state: State,
    as_of: Annotated[
        str | None, Query(description="A version (1, 2, …) or an ISO-8601 time.")
    ] = None,
) -> Response:
    """``get_checkpoint``: ``as_of`` folds the events up to that version or moment."""
    token = _existing(state, run_id, batch_index)
    moment: int | datetime | None = None
    if as_of is not None:
        moment = int(as_of) if as_of.strip().isdigit() else _moment(as_of, "as_of")
    return json_response(_read(state, lambda ledger: ledger.get_checkpoint(token, as_of=moment)))


@router.get(
    _CHECKPOINT + "/events",
    operation_id="checkpoint_events",
    summary="A checkpoint's immutable events, oldest first (paged by version)",
    response_model=EventList,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def checkpoint_events(
    run_id: RunId,
    batch_index: BatchIndex,
    state: State,
    after_version: Annotated[int, Query(ge=0, description="Only events after this version.")] = 0,
    limit: Limit = 1000,
) -> Response:
    """``iter_checkpoint_events``, one page."""
    token = _existing(state, run_id, batch_index)
    events = []
    pages = _read(  # raises at the call (not lazily) if the checkpoint is not there
        state,
        lambda ledger: ledger.iter_checkpoint_events(
            token, after_version=after_version, page_size=min(limit + 1, MAX_PAGE)
        ),
    )
    for event in pages:
        events.append(event)
        if len(events) > limit:
            break
    more = len(events) > limit
    page = events[:limit]
    next_after = page[-1].originator_version if more and page else None
    entries = [CheckpointEventEntry(topic=event.topic, event=event) for event in page]
    return json_response(EventList(events=entries, next_after_version=next_after))


@router.get(
    _CHECKPOINT + "/history",
    operation_id="history",
    summary="A checkpoint's bounded history: its latest yields",
    response_model=History,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def history(run_id: RunId, batch_index: BatchIndex, state: State) -> Response:
    """``Projections.history``: the last ``history_size`` yields."""
    token = _existing(state, run_id, batch_index)
    return json_response(state.fresh_views().history(token))


@router.get(
    _CHECKPOINT + "/await",
    operation_id="await_checkpoint",
    summary="Long-poll until the checkpoint completes, fails or is cancelled",
    response_model=CheckpointState,
    responses={
        **_NOT_FOUND,
        408: {"model": ErrorBody, "description": "AwaitTimeout: still open at the timeout."},
    },
    dependencies=_READ,
)
async def await_checkpoint(
    request: Request,
    run_id: RunId,
    batch_index: BatchIndex,
    state: State,
    timeout: Annotated[  # noqa: ASYNC109  (the seed's await: one call, one deadline)
        float, Query(ge=0, description="Seconds to wait at most.")
    ] = 30.0,
) -> Response:
    """Returns the ended state (``status`` says how it ended), or 408 ``AwaitTimeout``.

    A checkpoint already ended answers at once. The wait is signal-driven (no polling of the
    store), ends with 503 ``ServiceStopping`` if the server shuts down first, and stops at
    once (freeing its watch) when the client goes away.
    """
    ledger = state.ledger
    if timeout > state.options.max_await:
        raise InvalidInput(
            "timeout", f"at most {state.options.max_await:g} s (ckl serve --max-await)"
        )
    token = await asyncio.to_thread(_existing, state, run_id, batch_index)
    waiting = asyncio.ensure_future(await_checkpoint_async(ledger, token, timeout))
    stopping = asyncio.ensure_future(state.stopping.wait())
    gone = asyncio.ensure_future(_disconnected(request))
    state.awaiting += 1
    try:
        await asyncio.wait({waiting, stopping, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        state.awaiting -= 1
        stopping.cancel()
        gone.cancel()
    if not waiting.done():
        waiting.cancel()
        if not state.stopping.is_set():
            return Response(status_code=CLIENT_CLOSED)  # nobody reads it: for the access log
        raise ServiceStopping(f"await {token}")
    with contextlib.suppress(CheckpointFailedError, CheckpointCancelled):
        waiting.result()  # a failure or cancel is an ending too: the state says which
    return json_response(await asyncio.to_thread(ledger.get_checkpoint, token))


CLIENT_CLOSED = 499
"""The status a long-poll's client never sees because it left first (nginx's convention)."""


async def _disconnected(request: Request) -> None:
    """Return once the client has closed its connection (a GET's only message is its body)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.get(
    "/runs",
    operation_id="list_runs",
    summary="The store's runs, latest activity first, with counts by status",
    response_model=RunList,
    dependencies=_READ,
)
def list_runs(
    state: State,
    status: Annotated[
        Literal["failed", "running", "completed"] | None, Query(description="Only these runs.")
    ] = None,
    contains: Annotated[str | None, Query(description="Only runs whose id contains this.")] = None,
    limit: Limit = 500,
) -> Response:
    """``Projections.runs``."""
    runs = state.fresh_views().runs(status=status, contains=contains, limit=limit)
    return json_response(RunList(runs=runs))


@router.get(
    "/runs/{run_id:run_id}",
    operation_id="get_run",
    summary="A run's progress and each batch's state, now or as of a moment",
    response_model=RunDetail,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def get_run(run_id: RunId, state: State, as_of: Moment = None) -> Response:
    """Progress counts only durable completions; ``as_of`` is the run's time travel."""
    moment = _moment(as_of, "as_of")
    if moment is None:
        states = state.reader.run_states(run_id)
        if not states and state.reader is not state.ledger:
            states = state.ledger.run_states(run_id)  # not on the standby yet (see _read)
    else:
        states = state.fresh_views().run_state_as_of(run_id, moment)
    if not states and (moment is None or not state.fresh_views().checkpoints(run_id)):
        raise RunNotFound(run_id)
    ordered = [states[index] for index in sorted(states)]
    totals = [s.total_batches for s in ordered if s.total_batches is not None]
    counts = dict.fromkeys(("open", "completed", "failed", "cancelled"), 0)
    for checkpoint in ordered:
        counts[checkpoint.status] += 1
    declared = [
        item
        for s in ordered
        if isinstance(item := s.metadata.get("total_items"), int) and not isinstance(item, bool)
    ]
    return json_response(
        RunDetail(
            run_id=run_id,
            as_of=None if moment is None else moment.isoformat(),
            progress=RunProgress(
                run_id=run_id,
                total_batches=max(totals) if totals else None,
                created=len(ordered),
                completed=counts["completed"],
                failed=counts["failed"],
                open=counts["open"],
                cancelled=counts["cancelled"],
            ),
            items_processed=sum(s.items_processed for s in ordered),
            total_items=sum(declared) if declared else None,
            checkpoints=ordered,
        )
    )


@router.get(
    "/runs/{run_id:run_id}/timeline",
    operation_id="timeline",
    summary="A run's events in global order, filtered and paged",
    response_model=Timeline,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def timeline(
    run_id: RunId,
    *,
    state: State,
    after: After = 0,
    since: Moment = None,
    until: Moment = None,
    batch: Annotated[list[int] | None, Query(description="Only these batches.")] = None,
    topic: Annotated[list[str] | None, Query(description="Only these event topics.")] = None,
    limit: Limit = 1000,
) -> Response:
    """``Projections.timeline``: pass ``next_after`` as ``after`` for the next page."""
    views = state.fresh_views()
    entries = views.timeline(
        run_id,
        after=after,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        batches=batch,
        topics=topic,
        limit=limit + 1,
    )
    if not entries and after == 0 and not views.checkpoints(run_id):
        raise RunNotFound(run_id)
    more = len(entries) > limit
    page = entries[:limit]
    return json_response(Timeline(entries=page, next_after=page[-1].position if more else None))


@router.get(
    "/runs/{run_id:run_id}/pending",
    operation_id="pending",
    summary="A run's open checkpoints, where each resumes, and who holds it",
    response_model=PendingList,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def pending(run_id: RunId, state: State) -> Response:
    """The seed's ``getPendingCheckpoints``, with cursor, owner and last activity."""
    summaries = state.fresh_views().checkpoints(run_id)
    if not summaries:
        raise RunNotFound(run_id)
    return json_response(PendingList(pending=[s for s in summaries if s.status == "open"]))


Idle = Annotated[
    float | None, Query(ge=0, description="Seconds without an event that make one stuck.")
]


@router.get(
    "/runs/{run_id:run_id}/stuck",
    operation_id="stuck_in_run",
    summary="A run's stuck checkpoints: lease expired, or idle too long",
    response_model=StuckList,
    responses=_NOT_FOUND,
    dependencies=_READ,
)
def stuck_in_run(run_id: RunId, state: State, idle: Idle = None) -> Response:
    """``Projections.stuck`` for one run."""
    views = state.fresh_views()
    if not views.checkpoints(run_id):
        raise RunNotFound(run_id)
    return json_response(StuckList(stuck=views.stuck(run_id, idle=idle)))


@router.get(
    "/stuck",
    operation_id="stuck",
    summary="Stuck checkpoints of every run",
    response_model=StuckList,
    dependencies=_READ,
)
def stuck(state: State, idle: Idle = None) -> Response:
    """``Projections.stuck`` for the whole store."""
    return json_response(StuckList(stuck=state.fresh_views().stuck(None, idle=idle)))


@router.get(
    "/failures",
    operation_id="failures",
    summary="The failure audit (failures, takeovers, cancels), filtered and paged",
    response_model=FailureList,
    dependencies=_READ,
)
def failures(
    *,
    state: State,
    run_id: Annotated[str | None, Query(description="Only this run.")] = None,
    since: Moment = None,
    until: Moment = None,
    error_type: Annotated[str | None, Query(description="Only this error type.")] = None,
    transient: Annotated[bool | None, Query(description="Only transient (or permanent).")] = None,
    kind: Annotated[
        Literal["failure", "takeover", "cancel"] | None, Query(description="Only this kind.")
    ] = None,
    batch: Annotated[list[int] | None, Query(description="Only these batches.")] = None,
    after: After = 0,
    limit: Limit = 1000,
) -> Response:
    """``Projections.failures``: the audit's filters as query parameters."""
    rows = state.fresh_views().failures(
        run_id=run_id,
        since=_moment(since, "since"),
        until=_moment(until, "until"),
        error_type=error_type,
        transient=transient,
        kind=kind,
        batches=batch,
        after=after,
        limit=limit + 1,
    )
    more = len(rows) > limit
    page = rows[:limit]
    return json_response(FailureList(failures=page, next_after=page[-1].position if more else None))


@router.post(
    "/verify",
    operation_id="verify",
    summary="Recompute the hash chains of a run or of the whole store",
    response_model=VerifyReport,
    dependencies=[Security(require("operate"))],
)
def verify(state: State, body: VerifyBody | None = None) -> Response:
    """``verify_chains``: ``ok`` is false when events were altered or removed."""
    return json_response(verify_chains(state.reader, None if body is None else body.run_id))


@router.get(
    "/runs/{run_id:run_id}/export",
    operation_id="export_run",
    summary="Every event of a run as a JSON-lines archive (the `ckl export` file)",
    response_class=FileResponse,
    responses={
        **_NOT_FOUND,
        200: {
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
            "description": "A header line (counts, head hashes), then one line per event.",
        },
        409: {"model": ErrorBody, "description": "ArchiveError: the run's chains are broken."},
    },
    dependencies=_READ,
)
def export(run_id: RunId, state: State) -> FileResponse:
    """``export_run``, written to a temporary file and sent (then removed)."""
    handle, path = tempfile.mkstemp(prefix="ckl-export-", suffix=".jsonl")
    os.close(handle)
    try:
        export_run(state.reader, run_id, path)
    except BaseException:
        os.unlink(path)  # noqa: PTH108
        raise
    return FileResponse(
        path,
        media_type="application/x-ndjson",
        filename=re.sub(r"[^A-Za-z0-9._-]", "_", run_id) + ".jsonl",
        background=BackgroundTask(os.unlink, path),
    )
