"""The server's clock, read without a round trip: the local clock plus a measured offset.

Every writer of one PostgreSQL store stamps events with the server's time, so that machines
whose clocks disagree still agree on when a lease expires. Asking the server on every call
would cost a round trip per command; instead the offset between the server's
``clock_timestamp()`` and the local clock is measured (at the midpoint of the quickest of three
round trips) when the recorder opens, and again at most every ``refresh`` seconds, on a call that
finds it due.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["ServerClock"]

_log = logging.getLogger(__name__)
_SAMPLES = 3


class ServerClock:
    """The server's time as the local clock plus an offset, refreshed now and then.

    Thread-safe: one caller at a time refreshes (the others use the offset they find
    meanwhile). A failed refresh keeps the last offset and is logged at debug level: the
    clocks do not drift apart in seconds, and a broken connection shows at the next append.
    """

    def __init__(self, read_server: Callable[[], datetime], refresh: float) -> None:
        """Measure the offset once now, through ``read_server`` (its errors propagate).

        Args:
            read_server: one query of the server's ``clock_timestamp()``, an aware datetime.
            refresh: seconds after which the next call measures the offset again.
        """
        self._read_server = read_server
        self._refresh = refresh
        self._refreshing = threading.Lock()
        self._offset = self._measure()
        self._due = time.monotonic() + refresh

    @property
    def offset(self) -> timedelta:
        """The last measured ``server time - local time``."""
        return self._offset

    def now(self) -> datetime:
        """The server's time now, as an aware UTC datetime (a query only when one is due)."""
        if time.monotonic() >= self._due and self._refreshing.acquire(blocking=False):
            try:
                self._offset = self._measure()
            except Exception as exc:  # noqa: BLE001  (whatever the driver raised: keep the offset)
                _log.debug(
                    "could not measure the server's clock (keeping the last offset): %s", exc
                )
            finally:
                # Also after a failure: a broken store is not asked again on every call.
                self._due = time.monotonic() + self._refresh
                self._refreshing.release()
        return datetime.now(UTC) + self._offset

    def _measure(self) -> timedelta:
        """The offset from the quickest of a few round trips (its error is at most half one).

        A loaded machine or network stretches some round trips and not others: the quickest
        one bounds the error best.
        """
        best = self._sample()
        for _ in range(_SAMPLES - 1):
            sample = self._sample()
            if sample[0] < best[0]:
                best = sample
        return best[1]

    def _sample(self) -> tuple[timedelta, timedelta]:
        """One round trip and the offset it gives (server time against its midpoint)."""
        before = datetime.now(UTC)
        server = self._read_server()
        after = datetime.now(UTC)
        return after - before, server - (before + (after - before) / 2)
