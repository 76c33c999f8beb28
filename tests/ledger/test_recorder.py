"""The recorders' eventsourcing interface, below the Ledger, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from eventsourcing.persistence import IntegrityError

from ledger import CheckpointToken, Created, Ledger, Yielded


def test_several_events_append_atomically_with_ascending_positions(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = CheckpointToken.for_batch("many", 0)
        now = datetime.now(UTC)
        created = Created(
            originator_id=token.checkpoint_id,
            originator_version=1,
            timestamp=now,
            run_id="many",
            batch_index=0,
        )
        yielded = Yielded(
            originator_id=token.checkpoint_id,
            originator_version=2,
            timestamp=now,
            attempt=1,
            cursor=1,
            items_processed=1,
        )
        rows = [ledger.mapper.to_stored_event(e) for e in (created, yielded)]
        ids = ledger.recorder.insert_events(rows)
        assert ids is not None
        assert len(ids) == 2
        assert ids[0] < ids[1]
        assert ledger.get_checkpoint(token).cursor == 1
        # A batch with one taken key writes none of its events.
        third = Yielded(
            originator_id=token.checkpoint_id,
            originator_version=3,
            timestamp=now,
            attempt=1,
            cursor=2,
            items_processed=2,
        )
        before = ledger.count_events()
        with pytest.raises(IntegrityError):
            ledger.recorder.insert_events([ledger.mapper.to_stored_event(third), rows[1]])
        assert ledger.count_events() == before
        notes = ledger.recorder.select_notifications(ids[0], 10)
        assert [n.id for n in notes] == ids
        assert ledger.recorder.max_notification_id() == ids[1]
