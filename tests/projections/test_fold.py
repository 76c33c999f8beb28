"""The page-at-a-time apply (``projections.fold``) against one event at a time, and its decode.

A rebuild applies the log in pages (whole checkpoints folded at once, pages that split a
checkpoint's events, the history window trimmed by range); following one event at a time
applies each alone. On a mixed log (failures, retries, claims that retry, takeovers, resets,
cancels, releases, heartbeats, more yields than the history keeps) every view must hold the
same rows either way, and the light decode must give what the mapper's events give.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger import Ledger
from projections import Projections
from projections._common import to_json, to_time
from projections.fold import decode, view_json, view_time
from tests.projections.test_views_state_machine import dump


def write_mixed_log(ledger: Ledger, views: Projections, clock: list[datetime]) -> None:
    """Every kind of event, on several checkpoints, following after each command."""

    def step() -> None:
        clock[0] += timedelta(seconds=1, microseconds=137)
        views.catch_up()

    for batch in range(4):
        token = ledger.create_checkpoint("mixed", batch, total_batches=4, metadata={"b": batch})
        step()
        lease = ledger.claim_checkpoint(token, "w1", 30.0)
        step()
        for i in range(7):  # more than the history keeps
            ledger.checkpoint_yield(token, {"at": i, "é": [i, 0.5]}, i * 2, {"n": i}, lease=lease)
            step()
        ledger.fail_checkpoint(token, "boom\nline", transient=True, lease=lease)
        step()
        if batch == 0:
            ledger.retry_checkpoint(token)
            step()
            ledger.checkpoint_yield(token, 99, 100)
            step()
            ledger.fail_checkpoint(token, "again", transient=False)
            step()
            ledger.reset_checkpoint(token, "operator")
            step()
        lease = ledger.claim_checkpoint(token, "w2", 5.0)  # a claim that retries
        step()
        lease = ledger.heartbeat(lease)
        step()
        if batch == 1:
            clock[0] += timedelta(seconds=60)  # the lease expires: w3 takes it over
            lease = ledger.claim_checkpoint(token, "w3", 5.0)
            step()
        if batch == 2:
            ledger.release(lease)
            step()
            ledger.cancel_checkpoint(token, "enough")
            step()
            ledger.reset_checkpoint(token, "again")
            step()
            continue
        ledger.checkpoint_yield(token, "last", 50, lease=lease)
        step()
        ledger.complete_checkpoint(token, {"done": batch}, lease=lease)
        step()


def test_rebuild_in_pages_equals_following_one_event_at_a_time(store_url: str) -> None:
    clock = [datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)]
    with Ledger.open(store_url, clock=lambda: clock[0]) as ledger:
        one_at_a_time = Projections(ledger, history_size=3, batch_size=1)
        write_mixed_log(ledger, one_at_a_time, clock)
        followed = dump(one_at_a_time)
        assert any(row for row in followed.values())
        for page in (1000, 7, 2):
            rebuilt = Projections(ledger, history_size=3, batch_size=page)
            assert rebuilt.rebuild() == ledger.recorder.max_notification_id()
            assert dump(rebuilt) == followed, page
        kinds = {row.kind for row in one_at_a_time.failures()}
        assert kinds == {"failure", "takeover", "cancel"}


def test_light_decode_gives_the_mappers_values() -> None:
    clock = [datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)]  # whole seconds: pydantic's short form
    with Ledger.open("memory://", clock=lambda: clock[0]) as ledger:
        views = Projections(ledger, history_size=3)
        write_mixed_log(ledger, views, clock)
        notes = ledger.recorder.select_notifications(0, 10_000)
        assert len(notes) > 50
        for note in notes:
            event = ledger.mapper.to_event(note)
            light = decode(note, ledger.mapper.to_event)
            assert light.position == note.id
            assert light.checkpoint_id == str(event.originator_id)
            assert light.version == event.originator_version
            assert light.topic == event.topic
            assert light.at == to_time(event.timestamp)
            model = event.model_dump()
            for name in ("cursor", "accumulated_results"):
                if name in model:
                    assert view_json(light.doc[name]) == to_json(model[name])
            lease = model.get("lease_expires_at")
            if lease is not None:
                assert view_time(light.doc["lease_expires_at"]) == to_time(lease)


def test_view_time_reads_every_form_pydantic_writes() -> None:
    for moment in (
        datetime(2026, 1, 1, 1, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 1, 1, 5, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 1, 1, 123_456, tzinfo=UTC),
        datetime(2026, 1, 1, 1, 1, 1, 7, tzinfo=UTC).astimezone(),
    ):
        text = moment.isoformat().replace("+00:00", "Z")
        assert view_time(text) == to_time(moment)
