"""checkpoint-ledger's top layer: live streams, completion signals, the coordinator, ``ckl``.

```python
from streams import Coordinator, run_stream, completion

coord = Coordinator(ledger)                      # the Effect seed's CheckpointCoordinator
token = coord.create_checkpoint("run-42", 0)
coord.complete_checkpoint(token, {"rows": 10})
coord.await_checkpoint(token, timeout=30)        # {"rows": 10}, even from another process
run_stream(ledger, "run-42").subscribe(print)    # catch up, then live: no gap, no duplicate
```
"""

from streams.batches import BatchContext, BatchProgress, RunReport, run_batches
from streams.completion import await_checkpoint, await_checkpoint_async, completion
from streams.coordinator import Coordinator
from streams.tail import StreamEvent, run_stream

__all__ = [
    "BatchContext",
    "BatchProgress",
    "Coordinator",
    "RunReport",
    "StreamEvent",
    "await_checkpoint",
    "await_checkpoint_async",
    "completion",
    "run_batches",
    "run_stream",
]
