"""Our eventsourcing ``Mapper``: pydantic events to ``StoredEvent`` rows and back.

eventsourcing 9.5 ships a pydantic mapper only as an example, so this is the project's own.
The stored state is the event's whole JSON document (its ids included), so a row whose columns
disagree with its document is detected on read rather than silently trusted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from uuid import UUID

from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
)
from pydantic import ValidationError

from ledger.events import EVENT_TYPES, CheckpointEvent

if TYPE_CHECKING:
    from eventsourcing.domain import DomainEventProtocol

__all__ = ["EventMapper"]


class EventMapper(Mapper[UUID]):
    """Maps :class:`~ledger.events.CheckpointEvent` models to rows, validating both ways."""

    def __init__(self) -> None:
        # eventsourcing's Mapper wants a transcoder; pydantic does our encoding instead.
        super().__init__(transcoder=JSONTranscoder())

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """The row for one event: stable topic, JSON state."""
        event = cast("CheckpointEvent", domain_event)
        return StoredEvent(
            originator_id=event.originator_id,
            originator_version=event.originator_version,
            topic=event.topic,
            # model_dump_json() with its defaults, without its wrapper and str round trip.
            state=event.__pydantic_serializer__.to_json(event),
        )

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """The event of one row.

        Raises:
            MapperDeserialisationError: unknown topic, invalid document, or a document whose
                ids disagree with the row's columns.
        """
        return cast("DomainEventProtocol[UUID]", self.to_event(stored_event))

    def to_event(self, stored_event: StoredEvent) -> CheckpointEvent:
        """Like :meth:`to_domain_event`, typed as our own event base class."""
        where = (
            f"stored event {stored_event.topic!r} of {stored_event.originator_id} "
            f"v{stored_event.originator_version}"
        )
        try:
            cls = EVENT_TYPES[stored_event.topic]
        except KeyError:
            msg = f"{where}: unknown topic (written by a newer checkpoint-ledger?)"
            raise MapperDeserialisationError(msg) from None
        try:
            event = cls.model_validate_json(stored_event.state)
        except ValidationError as exc:
            msg = f"{where}: invalid document: {exc.errors()[0]['msg']}"
            raise MapperDeserialisationError(msg) from exc
        if (str(event.originator_id), event.originator_version) != (
            str(stored_event.originator_id),
            stored_event.originator_version,
        ):
            msg = f"{where}: document says {event.originator_id} v{event.originator_version}"
            raise MapperDeserialisationError(msg)
        return event
