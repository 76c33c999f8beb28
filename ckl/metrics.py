"""Prometheus metrics of a ledger's store, following its log (so every process's writes count).

```python
from prometheus_client import CollectorRegistry
from ckl.metrics import register_metrics

registry = CollectorRegistry()
metrics = register_metrics(ledger, registry, projections=views)  # starts following the log
...
metrics.close()  # stops following and unregisters the collectors
```

Two kinds of metric:

* **Counters and histograms** are fed by a reader thread that follows the store's event log by
  global position (the same loop as ``run_stream``: woken at once by appends through this
  ``Ledger``, by LISTEN/NOTIFY on PostgreSQL, within ``poll_interval`` otherwise). They count
  the events of **every** process. By default the reader starts at the log's head when
  registered (``after="head"``), so a store with years of history is not replayed: counters
  count what was appended since the exporter started, which is what Prometheus counters mean
  (``rate()`` handles the reset when the exporter restarts). ``after=0`` replays the whole log.
* **Gauges** (log head, lag, checkpoints by status, stuck checkpoints, store up) are read from
  the store when scraped, so they are never stale and cost a few indexed queries per scrape
  (the checkpoint counts and the stuck view scan the projections' cursor view: one row per
  checkpoint). A checkpoint is stuck when it is open and its lease expired, or it has had no
  event for ``stuck_idle`` seconds (``Projections.stuck``, judged on the ledger's clock).

"Per second" is PromQL's job: ``rate(ckl_yields_total[5m])``.

Failure labels: error types are user-provided, so a label per type could grow without bound.
The first ``max_error_types`` distinct types seen (after any given in ``error_types``) get their
own ``error_type`` label value; later ones are counted under ``"other"``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Self

from eventsourcing.persistence import PersistenceError
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ledger import (
    Cancelled,
    CheckpointEvent,
    Claimed,
    Completed,
    Created,
    Failed,
    InvalidInput,
    Ledger,
    LedgerError,
    LogFollower,
    Reset,
    Retried,
    StoreUnavailable,
    Yielded,
    check_seconds,
)
from ledger.store import store_error
from projections import STUCK_IDLE_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from uuid import UUID

    from projections import Projections, StuckReason

__all__ = [
    "CHECKPOINT_STATUSES",
    "COMPLETION_BUCKETS",
    "LAG_COUNT_CAP",
    "OTHER_ERROR_TYPE",
    "PROGRESS_INTERVAL_BUCKETS",
    "LedgerMetrics",
    "register_metrics",
]

log = logging.getLogger("ckl.metrics")

LAG_COUNT_CAP = 1_000_000
"""``ckl_lag_events`` counts the events behind exactly up to this, and reports this above it."""

OTHER_ERROR_TYPE = "other"
"""The ``error_type`` label of failures whose type came after the cap."""

CHECKPOINT_STATUSES: tuple[str, ...] = ("open", "completed", "failed", "cancelled")
"""The ``status`` label values of ``ckl_checkpoints``, each reported (0 when none)."""

STUCK_REASON_LABELS: dict[StuckReason, str] = {"lease expired": "lease_expired", "idle": "idle"}
"""The ``reason`` label of ``ckl_stuck_checkpoints`` for each of the stuck view's reasons."""

COMPLETION_BUCKETS: tuple[float, ...] = (
    1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400,
)  # fmt: skip
"""Seconds from ``Created`` to ``Completed``: a batch takes seconds to a day."""

PROGRESS_INTERVAL_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
)  # fmt: skip
"""Seconds between two durable progress marks of one checkpoint."""


class LedgerMetrics:
    """The ``ckl_*`` metrics of one store, registered in one registry; see the module docstring.

    Build it with :func:`register_metrics`. Thread-safe; :meth:`close` is idempotent.
    """

    def __init__(
        self,
        ledger: Ledger,
        registry: CollectorRegistry,
        projections: Projections | None,
        *,
        after: int,
        max_error_types: int,
        error_types: Sequence[str],
        completion_buckets: Sequence[float],
        interval_buckets: Sequence[float],
        max_tracked: int,
        stuck_idle: float,
    ) -> None:
        """Build the collectors, not yet registered nor following (see ``register_metrics``)."""
        self.ledger, self.registry, self.projections = ledger, registry, projections
        self.max_error_types, self.max_tracked = max_error_types, max_tracked
        self.stuck_idle = stuck_idle
        self._lock = threading.Lock()
        # checkpoint id -> (created at, start of the current progress interval); bounded LRU.
        self._tracked: OrderedDict[UUID, tuple[datetime | None, datetime]] = OrderedDict()
        self._error_labels: set[str] = set()
        self._followers: dict[str, Callable[[], int]] = {}
        self._follower = LogFollower(
            ledger,
            self._follow,
            name="ckl-metrics",
            what="metrics",
            log=log,
            position=after,
            retry_on=(LedgerError,),
        )
        self._closed = False

        self.created = Counter(
            "ckl_checkpoints_created", "Checkpoints created (Created events).", registry=None
        )
        self.yields = Counter(
            "ckl_yields", "Checkpoint yields (Yielded events); use rate() for yields per second.",
            registry=None,
        )  # fmt: skip
        self.completions = Counter(
            "ckl_completions",
            "Checkpoints completed (Completed events); use rate() for completions per second.",
            registry=None,
        )
        self.failures = Counter(
            "ckl_failures",
            "Failed attempts (Failed events) by error type (capped: later types are 'other') "
            "and transient ('true') or permanent ('false').",
            ["error_type", "transient"],
            registry=None,
        )
        self.retries = Counter("ckl_retries", "Retries after a transient failure.", registry=None)
        self.resets = Counter("ckl_resets", "Operator resets.", registry=None)
        self.cancels = Counter("ckl_cancels", "Operator cancels (Cancelled events).", registry=None)
        self.takeovers = Counter(
            "ckl_takeovers",
            "Leases taken over after they expired (a Claimed event with taken_over): each one a "
            "worker presumed dead.",
            registry=None,
        )
        self.completion_latency = Histogram(
            "ckl_completion_latency_seconds",
            "Seconds from a checkpoint's Created to its Completed event (all attempts included).",
            buckets=completion_buckets,
            registry=None,
        )
        self.progress_interval = Histogram(
            "ckl_progress_interval_seconds",
            "Seconds between consecutive durable progress marks of one checkpoint (create, "
            "retry or reset to the next yield, yield to yield, yield to complete): the most "
            "work a crash can lose.",
            buckets=interval_buckets,
            registry=None,
        )
        self._counters: dict[type[CheckpointEvent], Counter] = {
            Created: self.created,
            Yielded: self.yields,
            Completed: self.completions,
            Retried: self.retries,
            Reset: self.resets,
            Cancelled: self.cancels,
        }
        for error_type in error_types:
            for transient in ("true", "false"):
                self.failures.labels(self._error_label(error_type), transient)
        # The gauges first: a scrape that shows the lag at 0 then shows counters that include
        # every event up to the head it read (the follower may only have moved further).
        self._collectors: list[Collector] = [
            _ScrapeCollector(self),
            self.created,
            self.yields,
            self.completions,
            self.failures,
            self.retries,
            self.resets,
            self.cancels,
            self.takeovers,
            self.completion_latency,
            self.progress_interval,
        ]
        self._registered: list[Collector] = []

    # ---------------------------------------------------------------- life cycle

    def _start(self) -> None:
        for collector in self._collectors:
            try:
                self.registry.register(collector)
            except ValueError as exc:  # a name already taken in this registry
                self._unregister()
                raise InvalidInput(
                    "registry",
                    f"it already holds a ckl_ metric ({exc}); close the other LedgerMetrics "
                    "or register in another CollectorRegistry",
                ) from exc
            self._registered.append(collector)
        self._follower.start()

    def close(self) -> None:
        """Stop following the log and unregister every collector. The ledger stays open."""
        if self._closed:
            return
        self._closed = True
        self._follower.stop()
        self._unregister()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _unregister(self) -> None:
        while self._registered:
            self.registry.unregister(self._registered.pop())

    # ---------------------------------------------------------------- positions and lag

    @property
    def position(self) -> int:
        """Global position of the last event the counters include."""
        return self._follower.position

    def wait_for(self, position: int, timeout: float = 5.0) -> int:
        """Block until the counters include global ``position``; returns the current position.

        Raises:
            InvalidInput: ``position`` is not an int ≥ 0 or ``timeout`` not finite seconds ≥ 0.
            AwaitTimeout: not there within ``timeout`` seconds.
        """
        return self._follower.wait_for(position, timeout)

    def sync(self, timeout: float = 5.0) -> int:
        """Wait until the counters include everything committed by now; returns the position.

        Raises:
            AwaitTimeout: not caught up within ``timeout`` seconds.
            StoreUnavailable: the store cannot be read.
        """
        return self.wait_for(self._head(), timeout)

    def add_follower(self, name: str, position: Callable[[], int]) -> Callable[[], None]:
        """Report the lag of another reader of the log (a ``run_stream`` consumer, say).

        ``position()`` returns the global position that reader has processed; it is called on
        each scrape and must be quick. The lag appears as ``ckl_lag_events{follower=name}`` and
        ``ckl_lag_seconds{follower=name}``. Returns the remover.

        Raises:
            InvalidInput: ``name`` is empty, too long, or already taken.
        """
        if not isinstance(name, str) or not 1 <= len(name) <= 100:  # noqa: PLR2004
            raise InvalidInput("name", "must be a str of 1 to 100 characters")
        with self._lock:
            if name in self._followers or name in {"metrics", "projections"}:
                raise InvalidInput("name", f"a follower named {name!r} is already reported")
            self._followers[name] = position

        def remove() -> None:
            with self._lock:
                self._followers.pop(name, None)

        return remove

    def _head(self) -> int:
        return _read_head(self.ledger)

    def _positions(self) -> dict[str, int]:
        positions = {"metrics": self.position}
        if self.projections is not None:
            positions["projections"] = self.projections.tracked_position()
        with self._lock:
            followers = dict(self._followers)
        for name, position in followers.items():
            try:
                positions[name] = int(position())
            except Exception:
                log.exception("position of follower %r failed; not reported", name)
        return positions

    def _events_between(self, after: int, upto: int) -> int:
        """Events with ``after < position <= upto``, counted up to ``LAG_COUNT_CAP``."""
        return self.ledger.recorder.count_events_between(after, upto, LAG_COUNT_CAP)

    def _checkpoint_counts(self) -> dict[str, int]:
        return {} if self.projections is None else self.projections.checkpoint_counts()

    def _stuck_counts(self) -> dict[str, int]:
        """Stuck checkpoints of every run by reason label (each reason present, 0 if none)."""
        counts = dict.fromkeys(STUCK_REASON_LABELS.values(), 0)
        if self.projections is not None:
            for row in self.projections.stuck(idle=self.stuck_idle):
                counts[STUCK_REASON_LABELS[row.reason]] += 1
        return counts

    # ---------------------------------------------------------------- following the log

    def _follow(self, follower: LogFollower) -> bool:
        """Count the next batch of events; True if it was full (read again at once)."""
        batch_size = 500
        rows = self.ledger.read_log(after=follower.position, limit=batch_size)
        for position, event in rows:
            if follower.stopping:
                return False
            self._observe(event)
            follower.advance(position)  # per event: a store error resumes after the last one
        return len(rows) == batch_size

    def _observe(self, event: CheckpointEvent) -> None:
        """Count one event. Store reads come first, so a failed read counts nothing twice."""
        oid, at = event.originator_id, event.timestamp
        created, mark = self._marks(oid)
        if isinstance(event, Completed):
            if created is None:
                created = self._created_at(oid)
            self.completion_latency.observe(max(0.0, (at - created).total_seconds()))
        if isinstance(event, Completed | Yielded) and mark is not None:
            self.progress_interval.observe(max(0.0, (at - mark).total_seconds()))
        self._count(event)
        # The progress interval restarts at each durable mark; a failure does not restart it
        # (the work since the last yield is redone after the retry), a completion ends it.
        with self._lock:
            self._tracked.pop(oid, None)
            if not isinstance(event, Completed | Failed):
                start = at if isinstance(event, Created) else created
                self._tracked[oid] = (start, at)
                while len(self._tracked) > self.max_tracked:
                    self._tracked.popitem(last=False)
            elif isinstance(event, Failed) and mark is not None:
                self._tracked[oid] = (created, mark)

    def _count(self, event: CheckpointEvent) -> None:
        """Increment the event's counter: failures by label, takeovers among the claims."""
        if isinstance(event, Failed):
            label = self._error_label(event.error_type)
            self.failures.labels(label, "true" if event.transient else "false").inc()
        elif isinstance(event, Claimed):
            if event.taken_over:
                self.takeovers.inc()
        elif (counter := self._counters.get(type(event))) is not None:
            counter.inc()

    def _marks(self, oid: UUID) -> tuple[datetime | None, datetime | None]:
        with self._lock:
            tracked = self._tracked.get(oid)
        return (None, None) if tracked is None else tracked

    def _created_at(self, oid: UUID) -> datetime:
        """When the checkpoint was created: its version 1, two indexed reads."""
        token = self.ledger.token_for(oid)
        if token is None:
            raise StoreUnavailable(
                self.ledger.store_display, "read", f"checkpoint {oid} has no Created event"
            )
        return self.ledger.get_checkpoint(token, as_of=1).created_at

    def _error_label(self, error_type: str) -> str:
        with self._lock:
            if error_type in self._error_labels:
                return error_type
            if len(self._error_labels) < self.max_error_types:
                self._error_labels.add(error_type)
                return error_type
        return OTHER_ERROR_TYPE


class _ScrapeCollector(Collector):
    """The gauges, read from the store on each scrape."""

    def __init__(self, metrics: LedgerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Declared up front so the registry refuses a second set of the same names, and
        # registering never touches the store.
        return self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = self._families()
        up, head, lag_events, lag_seconds = families[:4]
        try:
            head_position = self.metrics._head()  # noqa: SLF001  (one object split in two)
            positions = self.metrics._positions()  # noqa: SLF001
            now = datetime.now(UTC)
            for name, position in positions.items():
                behind = self.metrics._events_between(position, head_position)  # noqa: SLF001
                lag_events.add_metric([name], behind)
                lag_seconds.add_metric([name], self._seconds_behind(position, behind, now))
            counts = self.metrics._checkpoint_counts()  # noqa: SLF001
            stuck = self.metrics._stuck_counts()  # noqa: SLF001
        except (LedgerError, PersistenceError) as exc:
            log.warning("metrics scrape could not read the store: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        head.add_metric([], head_position)
        yield from (up, head, lag_events, lag_seconds)
        if self.metrics.projections is not None:
            pending, failed, by_status, stuck_family = families[4:]
            pending.add_metric([], counts.get("open", 0))
            failed.add_metric([], counts.get("failed", 0))
            for status in CHECKPOINT_STATUSES:
                by_status.add_metric([status], counts.get(status, 0))
            for reason, count in stuck.items():
                stuck_family.add_metric([reason], count)
            yield from (pending, failed, by_status, stuck_family)

    def _seconds_behind(self, position: int, behind: int, now: datetime) -> float:
        if behind == 0:
            return 0.0
        rows = self.metrics.ledger.read_log(after=position, limit=1)
        return max(0.0, (now - rows[0][1].timestamp).total_seconds()) if rows else 0.0

    def _families(self) -> list[GaugeMetricFamily]:
        families = [
            GaugeMetricFamily("ckl_store_up", "1 if the last scrape could read the store, else 0."),
            GaugeMetricFamily(
                "ckl_log_head",
                "Global position of the newest readable event: an ordering, not a count "
                "(positions are sparse on PostgreSQL).",
            ),
            GaugeMetricFamily(
                "ckl_lag_events",
                "Events a reader of the log has not processed yet, up to 1000000 (metrics: "
                "this exporter; projections: the views' tracked position; others: add_follower).",
                labels=["follower"],
            ),
            GaugeMetricFamily(
                "ckl_lag_seconds",
                "Age of the oldest event a reader has not processed yet (0 when caught up).",
                labels=["follower"],
            ),
        ]
        if self.metrics.projections is not None:
            families += [
                GaugeMetricFamily(
                    "ckl_pending_checkpoints",
                    "Checkpoints created and not settled (status open), as of the views.",
                ),
                GaugeMetricFamily(
                    "ckl_failed_checkpoints",
                    "Checkpoints whose last attempt failed, awaiting a retry or a reset, "
                    "as of the views.",
                ),
                GaugeMetricFamily(
                    "ckl_checkpoints",
                    "Checkpoints of every run by status (open, completed, failed, cancelled), "
                    "as of the views.",
                    labels=["status"],
                ),
                GaugeMetricFamily(
                    "ckl_stuck_checkpoints",
                    "Open checkpoints nobody is moving, as of the views: lease_expired (the "
                    "owner's lease ran out: presumed dead) or idle (no event of any kind for "
                    "the exporter's stuck_idle seconds).",
                    labels=["reason"],
                ),
            ]
        return families


def register_metrics(
    ledger: Ledger,
    registry: CollectorRegistry | None = None,
    projections: Projections | None = None,
    *,
    after: int | Literal["head"] = "head",
    max_error_types: int = 20,
    error_types: Sequence[str] = (),
    completion_buckets: Sequence[float] = COMPLETION_BUCKETS,
    interval_buckets: Sequence[float] = PROGRESS_INTERVAL_BUCKETS,
    max_tracked: int = 100_000,
    stuck_idle: float = STUCK_IDLE_SECONDS,
) -> LedgerMetrics:
    """Register the ``ckl_*`` metrics of ``ledger``'s store in ``registry`` and start following.

    Args:
        ledger: the ledger whose store's log is followed (every process's writes count).
        registry: where to register; default prometheus_client's global ``REGISTRY``.
        projections: the views whose lag and checkpoint counts to report (the pending and
            failed gauges exist only with it). It need not be running in this process: its
            tracked position is read from the store.
        after: ``"head"`` (default): count events appended from now on; an int: count every
            event after that global position (``0``: the whole log).
        max_error_types: distinct ``error_type`` label values before the rest are ``"other"``.
        error_types: types that get their label first (reported at 0 until they occur).
        completion_buckets: histogram buckets of ``ckl_completion_latency_seconds``.
        interval_buckets: histogram buckets of ``ckl_progress_interval_seconds``.
        max_tracked: open checkpoints whose create and last progress times are kept in memory
            for the histograms (least recently active dropped first).
        stuck_idle: seconds without an event after which an open checkpoint counts in
            ``ckl_stuck_checkpoints{reason="idle"}`` (default 300, as ``ckl stuck``).

    Returns:
        The running :class:`LedgerMetrics`; ``close()`` it to stop and unregister.

    Raises:
        InvalidInput: a bad argument, or ``registry`` already holds ``ckl_*`` metrics.
        StoreUnavailable: the log's head cannot be read.
    """
    if not isinstance(ledger, Ledger):
        raise InvalidInput("ledger", f"expected a Ledger, got {type(ledger).__name__}")
    registry = REGISTRY if registry is None else registry
    if not isinstance(registry, CollectorRegistry):
        raise InvalidInput(
            "registry", f"expected a prometheus_client CollectorRegistry, got {type(registry)}"
        )
    if projections is not None and projections.ledger.settings.store != ledger.settings.store:
        raise InvalidInput("projections", "must be the views of this ledger's store")
    for name, value in (("max_error_types", max_error_types), ("max_tracked", max_tracked)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(name, f"must be an int ≥ 0, got {value!r}")
    if isinstance(error_types, str) or not all(isinstance(t, str) and t for t in error_types):
        raise InvalidInput("error_types", "must be a sequence of non-empty str")
    if len(error_types) > max_error_types:
        raise InvalidInput("error_types", f"more than max_error_types={max_error_types}")
    check_seconds(stuck_idle, "stuck_idle")
    _check_buckets("completion_buckets", completion_buckets)
    _check_buckets("interval_buckets", interval_buckets)
    if after == "head":
        start = _read_head(ledger)
    elif isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput("after", f'must be "head" or a position ≥ 0, got {after!r}')
    else:
        start = after
    metrics = LedgerMetrics(
        ledger,
        registry,
        projections,
        after=start,
        max_error_types=max_error_types,
        error_types=error_types,
        completion_buckets=completion_buckets,
        interval_buckets=interval_buckets,
        max_tracked=max_tracked,
        stuck_idle=stuck_idle,
    )
    metrics._start()  # noqa: SLF001  (the factory finishes building what it made)
    return metrics


def _read_head(ledger: Ledger) -> int:
    """Global position of the newest event (0: an empty log).

    Tried twice at once: after a server restart a pooled connection fails on its first use
    and is dropped, and a scrape should not report the store down for that.

    Raises:
        StoreUnavailable: the store cannot be read.
    """
    try:
        return ledger.recorder.max_notification_id() or 0
    except PersistenceError:
        pass
    try:
        return ledger.recorder.max_notification_id() or 0
    except PersistenceError as exc:
        raise store_error(exc, ledger.store_display, "read log head") from exc


def _check_buckets(name: str, buckets: Sequence[float]) -> None:
    values = list(buckets) if not isinstance(buckets, str | bytes) else []
    if (
        not values
        or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in values)
        or not all(0 < b < math.inf for b in values)  # also refuses NaN
        or values != sorted(set(values))
    ):
        raise InvalidInput(name, "must be increasing, finite, positive numbers")
