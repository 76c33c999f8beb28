"""checkpoint-ledger's write side: every checkpoint operation an immutable event.

```python
from ledger import Ledger

with Ledger.open() as ledger:                       # ./checkpoints.db, or $CKL_STORE
    token = ledger.create_checkpoint("run-42", 0, total_batches=3)
    ledger.checkpoint_yield(token, cursor=500, items_processed=500)
    ledger.complete_checkpoint(token, result={"rows": 1000})
```
"""

from ledger._json import Cursor, CursorInput, JSONObject, JSONObjectInput, JSONValue
from ledger.application import Ledger, Recorded
from ledger.archive import ArchiveSummary, archive_run, export_run, import_archive
from ledger.audit import VerifyReport, verify_chains
from ledger.chain import ChainProblem, chain_hash
from ledger.checkpoint import CheckpointError, CheckpointState, CheckpointToken, checkpoint_id_for
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
from ledger.settings import LedgerSettings

__all__ = [
    "ArchiveError",
    "ArchiveFileInvalid",
    "ArchiveSummary",
    "AwaitTimeout",
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
    "PayloadTooLarge",
    "PlotUnavailable",
    "ProgressWentBackwards",
    "Recorded",
    "Reset",
    "Retried",
    "RunArchived",
    "RunNotFinished",
    "RunNotFound",
    "Status",
    "StoreUnavailable",
    "TamperDetected",
    "VerifyReport",
    "Yielded",
    "archive_run",
    "chain_hash",
    "checkpoint_id_for",
    "export_run",
    "import_archive",
    "verify_chains",
]
