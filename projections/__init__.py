"""Read models over the ledger's event log, each kept exactly once per event.

```python
from ledger import Ledger
from projections import Projections

with Ledger.open() as ledger, Projections(ledger).start() as views:
    token = ledger.create_checkpoint("run-42", 0, total_batches=3)
    views.sync()                              # read-your-writes
    views.pending_checkpoints("run-42")       # [token]
    views.progress("run-42")                  # completed / total, from Completed events only
    views.stuck("run-42")                     # open batches whose lease expired or gone idle
```
"""

from projections.models import (
    AuditKind,
    CheckpointSummary,
    FailureRecord,
    History,
    HistoryEntry,
    RunProgress,
    RunStatus,
    RunSummary,
    StuckCheckpoint,
    StuckReason,
    TimelineEntry,
)
from projections.runner import Projections
from projections.stuck import STUCK_IDLE_SECONDS

__all__ = [
    "STUCK_IDLE_SECONDS",
    "AuditKind",
    "CheckpointSummary",
    "FailureRecord",
    "History",
    "HistoryEntry",
    "Projections",
    "RunProgress",
    "RunStatus",
    "RunSummary",
    "StuckCheckpoint",
    "StuckReason",
    "TimelineEntry",
]
