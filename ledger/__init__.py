"""checkpoint-ledger's write side: every checkpoint operation an immutable event.

```python
from ledger import Ledger

with Ledger.open() as ledger:                       # ./checkpoints.db, or $CKL_STORE
    token = ledger.create_checkpoint("run-42", 0, total_batches=3)
    ledger.checkpoint_yield(token, cursor=500, items_processed=500)
    ledger.complete_checkpoint(token, result={"rows": 1000})
```
"""

from ledger._json import (
    Cursor,
    CursorInput,
    JSONObject,
    JSONObjectInput,
    JSONValue,
    encode_json,
)
from ledger.application import Ledger, Recorded
from ledger.archive import ArchiveSummary, archive_run, export_run, import_archive
from ledger.audit import VerifyReport, verify_chains
from ledger.chain import ChainProblem, chain_hash
from ledger.checkpoint import (
    CheckpointError,
    CheckpointState,
    CheckpointToken,
    apply,
    check_token,
    checkpoint_id_for,
    failure_of,
    run_is_settled,
)
from ledger.checks import (
    MAX_INT,
    check_aware,
    check_count,
    check_run_id,
    check_seconds,
    check_text,
)
from ledger.errors import (
    ArchiveError,
    ArchiveFileInvalid,
    AwaitTimeout,
    CheckpointFailedError,
    CheckpointNotFound,
    ConflictingCommand,
    FileNotWritable,
    ImportConflict,
    InvalidInput,
    InvalidStoreURL,
    InvalidTransition,
    LedgerError,
    PayloadTooLarge,
    PlotUnavailable,
    ProgressWentBackwards,
    RunArchived,
    RunNotFinished,
    RunNotFound,
    StoreUnavailable,
    TamperDetected,
)
from ledger.events import (
    CheckpointEvent,
    Completed,
    Created,
    Failed,
    Reset,
    Retried,
    Status,
    Yielded,
)
from ledger.follow import HELD_BACK_FIRST_WAIT, Backoff, LogFollower
from ledger.settings import LedgerSettings
from ledger.store import SQLTransaction

__all__ = [
    "HELD_BACK_FIRST_WAIT",
    "MAX_INT",
    "ArchiveError",
    "ArchiveFileInvalid",
    "ArchiveSummary",
    "AwaitTimeout",
    "Backoff",
    "ChainProblem",
    "CheckpointError",
    "CheckpointEvent",
    "CheckpointFailedError",
    "CheckpointNotFound",
    "CheckpointState",
    "CheckpointToken",
    "Completed",
    "ConflictingCommand",
    "Created",
    "Cursor",
    "CursorInput",
    "Failed",
    "FileNotWritable",
    "ImportConflict",
    "InvalidInput",
    "InvalidStoreURL",
    "InvalidTransition",
    "JSONObject",
    "JSONObjectInput",
    "JSONValue",
    "Ledger",
    "LedgerError",
    "LedgerSettings",
    "LogFollower",
    "PayloadTooLarge",
    "PlotUnavailable",
    "ProgressWentBackwards",
    "Recorded",
    "Reset",
    "Retried",
    "RunArchived",
    "RunNotFinished",
    "RunNotFound",
    "SQLTransaction",
    "Status",
    "StoreUnavailable",
    "TamperDetected",
    "VerifyReport",
    "Yielded",
    "apply",
    "archive_run",
    "chain_hash",
    "check_aware",
    "check_count",
    "check_run_id",
    "check_seconds",
    "check_text",
    "check_token",
    "checkpoint_id_for",
    "encode_json",
    "export_run",
    "failure_of",
    "import_archive",
    "run_is_settled",
    "verify_chains",
]
