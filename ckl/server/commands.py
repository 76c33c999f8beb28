"""POST routes: every ledger command, one route each, under ``/v1/runs/{run_id}/…``.

A route is one ledger call: the body's fields become the call's arguments, the
``Idempotency-Key`` header its ``command_id`` (so any POST may be retried safely: a repeat
returns the recorded outcome and writes nothing), and the reply is the checkpoint's state (or
the lease, for claims). Scopes: ``write`` for the worker's commands, ``operate`` for retry,
reset and cancel (and verify, in :mod:`ckl.server.queries`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Header, Path, Security
from starlette.responses import Response  # noqa: TC002  (FastAPI reads return types)

from ckl.server.errors import ErrorBody
from ckl.server.models import (
    ClaimBody,
    ClaimNextBody,
    ClaimNextResult,
    CompleteBody,
    CreateBody,
    FailBody,
    LeaseBody,
    ReasonBody,
    YieldBody,
)
from ckl.server.state import State, json_response, require
from ledger import (
    ArchiveSummary,
    CheckpointState,
    CheckpointToken,
    InvalidInput,
    Lease,
    archive_run,
)

__all__ = ["router"]

router = APIRouter(tags=["commands"])

RunId = Annotated[str, Path(description="The run (1 to 200 printable characters).")]
BatchIndex = Annotated[int, Path(description="The batch's index in the run (0, 1, …).")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="The command id: a retry with the same key is applied at most once.",
    ),
]

_WRITE = [Security(require("write"))]
_OPERATE = [Security(require("operate"))]

_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "CheckpointNotFound: no such checkpoint."},
}
_CONFLICT: dict[int | str, dict[str, object]] = {
    409: {
        "model": ErrorBody,
        "description": "InvalidTransition, ConflictingCommand, StaleAttempt, LeaseLost, "
        "CheckpointClaimed or CheckpointCancelled: not allowed now; nothing written.",
    },
    410: {"model": ErrorBody, "description": "RunArchived: the run is archived."},
}
_TOO_LARGE: dict[int | str, dict[str, object]] = {
    413: {"model": ErrorBody, "description": "PayloadTooLarge: the body or a payload is too big."},
}
_WRITES = {**_NOT_FOUND, **_CONFLICT, **_TOO_LARGE}

_CHECKPOINT = "/runs/{run_id:run_id}/checkpoints/{batch_index}"


def _token(run_id: str, batch_index: int) -> CheckpointToken:
    return CheckpointToken.for_batch(run_id, batch_index)


def _lease(token: CheckpointToken, lease: Lease | None) -> Lease | None:
    """The body's lease, refused when it is another checkpoint's."""
    if lease is not None and lease.token != token:
        raise InvalidInput(
            "lease", f"is the lease of {lease.token}, not of {token} (the URL's checkpoint)"
        )
    return lease


@router.post(
    _CHECKPOINT,
    operation_id="create_checkpoint",
    summary="Create a checkpoint (idempotent: an existing one is returned unchanged)",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_WRITE,
)
def create_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    state: State,
    key: IdempotencyKey = None,
    body: CreateBody | None = None,
) -> Response:
    """``create_checkpoint``: the first create's ``total_batches`` and ``metadata`` stay."""
    options = body or CreateBody()
    token = state.ledger.create_checkpoint(
        run_id,
        batch_index,
        total_batches=options.total_batches,
        metadata=options.metadata,
        command_id=key,
    )
    return json_response(state.ledger.get_checkpoint(token))


@router.post(
    _CHECKPOINT + "/yield",
    operation_id="checkpoint_yield",
    summary="Record progress: cursor and items processed, durable when the reply comes",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_WRITE,
)
def checkpoint_yield(
    run_id: RunId,
    batch_index: BatchIndex,
    body: YieldBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``checkpoint_yield``: repeating the latest yield unchanged is a no-op."""
    token = _token(run_id, batch_index)
    return json_response(
        state.ledger.checkpoint_yield(
            token,
            body.cursor,
            body.items_processed,
            body.accumulated_results,
            attempt=body.attempt,
            lease=_lease(token, body.lease),
            command_id=key,
        )
    )


@router.post(
    _CHECKPOINT + "/complete",
    operation_id="complete_checkpoint",
    summary="Complete the checkpoint with its result: the durable confirmation",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_WRITE,
)
def complete_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    state: State,
    key: IdempotencyKey = None,
    body: CompleteBody | None = None,
) -> Response:
    """``complete_checkpoint``: awaiters wake with the result."""
    token = _token(run_id, batch_index)
    done = body or CompleteBody()
    return json_response(
        state.ledger.complete_checkpoint(
            token,
            done.result,
            attempt=done.attempt,
            lease=_lease(token, done.lease),
            command_id=key,
        )
    )


@router.post(
    _CHECKPOINT + "/fail",
    operation_id="fail_checkpoint",
    summary="Fail the current attempt (transient: may be retried; permanent: stops the run)",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_WRITE,
)
def fail_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    body: FailBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``fail_checkpoint``: awaiters get the failure; the audit records host, pid, traceback."""
    token = _token(run_id, batch_index)
    return json_response(
        state.ledger.fail_checkpoint(
            token,
            body.error,
            body.transient,
            error_type=body.error_type,
            attempt=body.attempt,
            lease=_lease(token, body.lease),
            command_id=key,
            traceback_text=body.traceback,
            host=body.host,
            pid=body.pid,
        )
    )


@router.post(
    _CHECKPOINT + "/retry",
    operation_id="retry_checkpoint",
    summary="Retry a transiently failed checkpoint: a new attempt from the last cursor",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_OPERATE,
)
def retry_checkpoint(
    run_id: RunId, batch_index: BatchIndex, state: State, key: IdempotencyKey = None
) -> Response:
    """``retry_checkpoint``: a retry already applied is a no-op."""
    return json_response(state.ledger.retry_checkpoint(_token(run_id, batch_index), command_id=key))


@router.post(
    _CHECKPOINT + "/reset",
    operation_id="reset_checkpoint",
    summary="Reset the checkpoint: clear its cursor, fence its worker, redo it from scratch",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_OPERATE,
)
def reset_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    body: ReasonBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``reset_checkpoint``: allowed in any state; the reason is kept."""
    token = _token(run_id, batch_index)
    return json_response(state.ledger.reset_checkpoint(token, body.reason, command_id=key))


@router.post(
    _CHECKPOINT + "/cancel",
    operation_id="cancel_checkpoint",
    summary="Cancel the checkpoint: its worker learns it at its next write",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_OPERATE,
)
def cancel_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    body: ReasonBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``cancel_checkpoint``: allowed while open or failed; a cancelled one counts as settled."""
    token = _token(run_id, batch_index)
    return json_response(state.ledger.cancel_checkpoint(token, body.reason, command_id=key))


@router.post(
    _CHECKPOINT + "/claim",
    operation_id="claim_checkpoint",
    summary="Claim the checkpoint's lease (or take over an expired one, or renew one's own)",
    response_model=Lease,
    responses=_WRITES,
    dependencies=_WRITE,
)
def claim_checkpoint(
    run_id: RunId,
    batch_index: BatchIndex,
    body: ClaimBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``claim_checkpoint``: send the returned lease with every write made under it."""
    token = _token(run_id, batch_index)
    return json_response(state.ledger.claim_checkpoint(token, body.owner, body.ttl, command_id=key))


@router.post(
    _CHECKPOINT + "/heartbeat",
    operation_id="heartbeat",
    summary="Renew a lease without a yield",
    response_model=Lease,
    responses=_WRITES,
    dependencies=_WRITE,
)
def heartbeat(
    run_id: RunId,
    batch_index: BatchIndex,
    body: LeaseBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``heartbeat``: the renewed lease (a new ``expires_at``)."""
    lease = _lease(_token(run_id, batch_index), body.lease)
    assert lease is not None  # noqa: S101  (the body requires it)
    return json_response(state.ledger.heartbeat(lease, command_id=key))


@router.post(
    _CHECKPOINT + "/release",
    operation_id="release",
    summary="Give a lease back: the checkpoint stays open, for anyone to claim",
    response_model=CheckpointState,
    responses=_WRITES,
    dependencies=_WRITE,
)
def release(
    run_id: RunId,
    batch_index: BatchIndex,
    body: LeaseBody,
    state: State,
    key: IdempotencyKey = None,
) -> Response:
    """``release``: releasing twice is a no-op."""
    lease = _lease(_token(run_id, batch_index), body.lease)
    assert lease is not None  # noqa: S101  (the body requires it)
    return json_response(state.ledger.release(lease, command_id=key))


@router.post(
    "/runs/{run_id:run_id}/claim-next",
    operation_id="claim_next",
    summary="Claim the run's first claimable checkpoint, in batch order (lease null: none now)",
    response_model=ClaimNextResult,
    responses=_WRITES,
    dependencies=_WRITE,
)
def claim_next(
    run_id: RunId, body: ClaimNextBody, state: State, key: IdempotencyKey = None
) -> Response:
    """``claim_next``: open and unclaimed, expired (a takeover), or transiently failed and due."""
    lease = state.ledger.claim_next(
        run_id,
        body.owner,
        body.ttl,
        retry_delay=body.retry_delay,
        max_retry_delay=body.max_retry_delay,
        command_id=key,
    )
    return json_response(ClaimNextResult(lease=lease))


@router.post(
    "/runs/{run_id:run_id}/archive",
    operation_id="archive_run",
    summary="Archive a finished run: export it to the server's --archive-dir, check, purge",
    response_model=ArchiveSummary,
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorBody,
            "description": "RunNotFinished, ArchiveError: not archived; nothing changed.",
        },
        410: {"model": ErrorBody, "description": "RunArchived: archived already."},
    },
    dependencies=_OPERATE,
)
def archive(run_id: RunId, state: State) -> Response:
    """``archive_run``: the file is ``<archive-dir>/<run id, URL-quoted>-<UTC time>.jsonl``.

    Afterwards the run cannot be written again in this store (``ckl import --restore`` brings
    it back). Refused unless the server was started with ``--archive-dir``.
    """
    directory = state.options.archive_dir
    if directory is None:
        raise InvalidInput(
            "archive_dir",
            "this server archives nowhere: start it with ckl serve --archive-dir DIR "
            "(or archive with `ckl archive RUN FILE`)",
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = os.path.join(directory, f"{quote(run_id, safe='')}-{stamp}.jsonl")  # noqa: PTH118
    return json_response(archive_run(state.ledger, run_id, path))
