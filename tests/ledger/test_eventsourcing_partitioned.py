"""eventsourcing's recorder test cases again, on a store whose event log is partitioned.

The cases and adaptations are those of ``test_eventsourcing_recorders.py`` (subclassed, so
nothing is copied); only the store differs: before each case its database is partitioned by
position range, two transactions a partition with a handful ready, so that the cases'
appends cross many boundaries (and, past them, land in the default partition).
"""

from __future__ import annotations

import pytest

from ledger import Ledger
from ledger.partitions import create_partitions, enable_partitions
from tests.ledger import test_eventsourcing_recorders as plain


class _Partitioned:
    store_url: str

    @pytest.fixture(autouse=True)
    def _store(self, request: pytest.FixtureRequest) -> None:
        self.store_url = str(request.getfixturevalue("postgres_url"))
        with Ledger.open(self.store_url) as ledger:
            enable_partitions(ledger, size=2)
            create_partitions(ledger, ahead=4)


class TestPartitionedAggregateRecorder(_Partitioned, plain.TestPostgresAggregateRecorder):
    """``AggregateRecorderTestCase`` on a partitioned log."""


class TestPartitionedApplicationRecorder(_Partitioned, plain.TestPostgresApplicationRecorder):
    """``ApplicationRecorderTestCase`` on a partitioned log."""


class TestPartitionedTrackingRecorder(_Partitioned, plain.TestPostgresTrackingRecorder):
    """``TrackingRecorderTestCase`` on a partitioned log."""


class TestPartitionedProcessRecorder(_Partitioned, plain.TestPostgresProcessRecorder):
    """``ProcessRecorderTestCase`` on a partitioned log."""


class TestPartitionedNonInterleavingPositions(
    _Partitioned, plain.TestPostgresNonInterleavingPositions
):
    """``NonInterleavingNotificationIDsBaseCase`` on a partitioned log."""
