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
from ledger.checkpoint import CheckpointError, CheckpointState, CheckpointToken, checkpoint_id_for
from ledger.errors import (
    AwaitTimeout,
    CheckpointFailedError,
    CheckpointNotFound,
    ConflictingCommand,
    InvalidInput,
    InvalidStoreURL,
    InvalidTransition,
    LedgerError,
    PayloadTooLarge,
    ProgressWentBackwards,
    StoreUnavailable,
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
    "AwaitTimeout",
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
    "ProgressWentBackwards",
    "Recorded",
    "Reset",
    "Retried",
    "Status",
    "StoreUnavailable",
    "Yielded",
    "checkpoint_id_for",
]
