"""register_metrics on real stores: exact counters, failure labels and their cap, gauges, lag.

Every count is read back from the registry after ``metrics.sync()``, which waits on the
follower's signal (never on the clock) until the counters include the log's head.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from psycopg import sql

from ckl.metrics import LedgerMetrics, register_metrics
from ledger import InvalidInput, Ledger, LedgerSettings
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 30.0


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(settings=LedgerSettings(store=store_url, poll_interval=0.05)) as opened:
        yield opened


@pytest.fixture
def views(ledger: Ledger) -> Projections:
    return Projections(ledger)  # not started: the tests move it with catch_up()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_counters_and_histograms_count_a_known_sequence_of_commands_exactly(
    ledger: Ledger, views: Projections
) -> None:
    registry = CollectorRegistry()
    with register_metrics(ledger, registry, views) as metrics:
        run = f"run-{uuid4().hex}"
        a, b, c = (ledger.create_checkpoint(run, i, total_batches=3) for i in range(3))
        for n in range(1, 4):
            ledger.checkpoint_yield(a, cursor=n, items_processed=n)
        ledger.checkpoint_yield(a, cursor=3, items_processed=3)  # a repeat: no event, no count
        ledger.fail_checkpoint(a, TimeoutError("upstream"), transient=True)
        ledger.retry_checkpoint(a)
        ledger.checkpoint_yield(a, cursor=4, items_processed=4)
        ledger.complete_checkpoint(a, {"rows": 4})
        ledger.complete_checkpoint(a, {"rows": 4})  # a repeat: no event, no count
        ledger.checkpoint_yield(b, cursor="k1", items_processed=1)
        ledger.fail_checkpoint(b, ValueError("bad row"))
        ledger.reset_checkpoint(b, "fixed the row")
        ledger.complete_checkpoint(b)
        ledger.fail_checkpoint(c, "gave up", error_type="ValueError")
        metrics.sync(TIMEOUT)

        assert value(registry, "ckl_checkpoints_created_total") == 3
        assert value(registry, "ckl_yields_total") == 5
        assert value(registry, "ckl_completions_total") == 2
        assert value(registry, "ckl_retries_total") == 1
        assert value(registry, "ckl_resets_total") == 1
        failures = "ckl_failures_total"
        assert value(registry, failures, error_type="TimeoutError", transient="true") == 1
        assert value(registry, failures, error_type="ValueError", transient="false") == 2
        assert value(registry, failures, error_type="ValueError", transient="true") is None
        # Latency: created -> completed, exactly as the events' own timestamps say.
        latency = "ckl_completion_latency_seconds"
        assert value(registry, f"{latency}_count") == 2
        spans = [ledger.get_checkpoint(t) for t in (a, b)]
        expected = sum((s.updated_at - s.created_at).total_seconds() for s in spans)
        assert value(registry, f"{latency}_sum") == pytest.approx(expected)
        # Progress intervals: a: create->y1, y1->y2, y2->y3, retry->y4, y4->complete (the
        # failure does not restart the interval); b: create->y, reset->complete.
        assert value(registry, "ckl_progress_interval_seconds_count") == 7
        assert metrics.position == ledger.recorder.max_notification_id()


def test_by_default_only_events_appended_after_registering_count(
    ledger: Ledger, store_url: str
) -> None:
    run = f"run-{uuid4().hex}"
    before = ledger.create_checkpoint(run, 0)
    ledger.checkpoint_yield(before, cursor=1, items_processed=1)
    head, whole = CollectorRegistry(), CollectorRegistry()
    with (
        register_metrics(ledger, head) as from_head,
        register_metrics(ledger, whole, after=0) as from_start,
        # Another Ledger on the same store is another writer: its appends reach the metrics
        # through the log (NOTIFY or polling), as another process's would.
        Ledger.open(store_url) as other,
    ):
        other.checkpoint_yield(before, cursor=2, items_processed=2)
        other.complete_checkpoint(before, "done")
        from_head.sync(TIMEOUT)
        from_start.sync(TIMEOUT)
        assert value(head, "ckl_checkpoints_created_total") == 0
        assert value(head, "ckl_yields_total") == 1
        assert value(head, "ckl_completions_total") == 1
        assert value(whole, "ckl_checkpoints_created_total") == 1
        assert value(whole, "ckl_yields_total") == 2
        assert value(whole, "ckl_completions_total") == 1
        # The Created event came before the exporter started: its time is read from the store.
        state = ledger.get_checkpoint(before)
        span = (state.updated_at - state.created_at).total_seconds()
        for registry in (head, whole):
            assert value(registry, "ckl_completion_latency_seconds_sum") == pytest.approx(span)


def test_error_type_labels_are_capped_and_later_types_count_as_other(ledger: Ledger) -> None:
    registry = CollectorRegistry()
    run = f"run-{uuid4().hex}"
    with register_metrics(ledger, registry, max_error_types=3, error_types=["Pinned"]) as metrics:
        failures = "ckl_failures_total"
        # Pinned types are reported at 0 before they ever occur, both ways.
        assert value(registry, failures, error_type="Pinned", transient="true") == 0
        assert value(registry, failures, error_type="Pinned", transient="false") == 0
        for index, kind in enumerate(["A", "B", "C", "D", "A", "Pinned"]):
            token = ledger.create_checkpoint(run, index)
            ledger.fail_checkpoint(token, "boom", transient=index % 2 == 0, error_type=kind)
        metrics.sync(TIMEOUT)
        assert value(registry, failures, error_type="A", transient="true") == 2
        assert value(registry, failures, error_type="A", transient="false") is None
        assert value(registry, failures, error_type="B", transient="false") == 1
        assert value(registry, failures, error_type="other", transient="true") == 1  # C
        assert value(registry, failures, error_type="other", transient="false") == 1  # D
        assert value(registry, failures, error_type="Pinned", transient="false") == 1
        labels = {
            sample.labels["error_type"]
            for family in registry.collect()
            if family.name == "ckl_failures"
            for sample in family.samples
        }
        assert labels == {"Pinned", "A", "B", "other"}


def test_pending_and_failed_gauges_follow_the_views(ledger: Ledger, views: Projections) -> None:
    registry = CollectorRegistry()
    run = f"run-{uuid4().hex}"
    with register_metrics(ledger, registry, views):
        tokens = [ledger.create_checkpoint(run, i) for i in range(4)]
        ledger.complete_checkpoint(tokens[0])
        ledger.fail_checkpoint(tokens[1], "down", transient=True)
        views.catch_up()
        assert value(registry, "ckl_pending_checkpoints") == 2
        assert value(registry, "ckl_failed_checkpoints") == 1
        ledger.retry_checkpoint(tokens[1])
        ledger.complete_checkpoint(tokens[2])
        views.catch_up()
        assert value(registry, "ckl_pending_checkpoints") == 2  # tokens 1 (retried) and 3
        assert value(registry, "ckl_failed_checkpoints") == 0


def test_checkpoints_by_status_stuck_work_cancels_and_takeovers(
    ledger: Ledger, views: Projections, store_url: str
) -> None:
    registry = CollectorRegistry()
    run = f"run-{uuid4().hex}"
    past = datetime.now(UTC) - timedelta(hours=2)

    def clock() -> datetime:
        return past

    with register_metrics(ledger, registry, views, stuck_idle=3600.0) as metrics:
        # Written two hours ago (a ledger on a clock set back): leases long expired, idle.
        with Ledger.open(store_url, clock=clock) as old:
            dead, idle, taken, cancelled, done = (old.create_checkpoint(run, i) for i in range(5))
            old.claim_checkpoint(dead, "dead", 60.0)
            old.checkpoint_yield(idle, 1, 1)
            old.claim_checkpoint(taken, "w0", 60.0)
            past += timedelta(seconds=120)
            lease = old.claim_checkpoint(taken, "w1", 60.0)  # w0's lease expired: a takeover
        ledger.heartbeat(lease)  # now: live and active again, not stuck
        ledger.cancel_checkpoint(cancelled, "not needed")
        ledger.complete_checkpoint(done)
        metrics.sync(TIMEOUT)
        views.catch_up()
        statuses = {
            status: value(registry, "ckl_checkpoints", status=status)
            for status in ("open", "completed", "failed", "cancelled")
        }
        assert statuses == {"open": 3, "completed": 1, "failed": 0, "cancelled": 1}
        assert value(registry, "ckl_stuck_checkpoints", reason="lease_expired") == 1
        assert value(registry, "ckl_stuck_checkpoints", reason="idle") == 1
        assert value(registry, "ckl_cancels_total") == 1
        assert value(registry, "ckl_takeovers_total") == 1
        ledger.cancel_checkpoint(dead, "worker gone")
        ledger.cancel_checkpoint(idle, "worker gone")
        views.catch_up()
        assert value(registry, "ckl_stuck_checkpoints", reason="lease_expired") == 0
        assert value(registry, "ckl_stuck_checkpoints", reason="idle") == 0
        assert value(registry, "ckl_checkpoints", status="cancelled") == 3


def test_lag_gauges_count_events_behind_the_head_and_go_to_zero_after_catch_up(
    ledger: Ledger, views: Projections
) -> None:
    registry = CollectorRegistry()
    run = f"run-{uuid4().hex}"
    views.catch_up()
    with register_metrics(ledger, registry, views) as metrics:
        consumed = {"position": ledger.recorder.max_notification_id() or 0}
        remove = metrics.add_follower("my-tail", lambda: consumed["position"])
        token = ledger.create_checkpoint(run, 0)
        for n in range(1, 5):
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
        metrics.sync(TIMEOUT)
        head = ledger.recorder.max_notification_id()
        assert value(registry, "ckl_log_head") == head
        assert value(registry, "ckl_store_up") == 1
        assert value(registry, "ckl_lag_events", follower="projections") == 5
        assert value(registry, "ckl_lag_events", follower="my-tail") == 5
        assert value(registry, "ckl_lag_events", follower="metrics") == 0
        assert value(registry, "ckl_lag_seconds", follower="metrics") == 0
        # The oldest unprocessed event is the Created: its age, as of the scrape.
        created = ledger.get_checkpoint(token, as_of=1).created_at
        lag = value(registry, "ckl_lag_seconds", follower="projections")
        assert lag is not None
        assert lag > 0
        assert timedelta(seconds=lag) >= ledger.get_checkpoint(token).updated_at - created

        views.catch_up()
        consumed["position"] = head or 0
        for follower in ("projections", "my-tail"):
            assert value(registry, "ckl_lag_events", follower=follower) == 0
            assert value(registry, "ckl_lag_seconds", follower=follower) == 0
        remove()
        assert value(registry, "ckl_lag_events", follower="my-tail") is None


def test_close_unregisters_every_metric_so_the_registry_can_take_them_again(
    ledger: Ledger,
) -> None:
    registry = CollectorRegistry()
    metrics = register_metrics(ledger, registry)
    assert b"ckl_yields_total" in generate_latest(registry)
    metrics.close()
    metrics.close()  # idempotent
    assert generate_latest(registry) == b""
    with register_metrics(ledger, registry):
        assert value(registry, "ckl_yields_total") == 0


def test_a_second_registration_in_one_registry_is_refused_and_the_first_keeps_working(
    ledger: Ledger,
) -> None:
    registry = CollectorRegistry()
    with register_metrics(ledger, registry) as first:
        with pytest.raises(InvalidInput, match="already holds a ckl_ metric"):
            register_metrics(ledger, registry)
        ledger.create_checkpoint(f"run-{uuid4().hex}", 0)
        first.sync(TIMEOUT)
        assert value(registry, "ckl_checkpoints_created_total") == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"after": -1}, "after"),
        ({"after": "tail"}, "after"),
        ({"after": True}, "after"),
        ({"max_error_types": -1}, "max_error_types"),
        ({"max_error_types": 1, "error_types": ["A", "B"]}, "error_types"),
        ({"error_types": "ValueError"}, "error_types"),
        ({"error_types": [""]}, "error_types"),
        ({"completion_buckets": [5, 1]}, "completion_buckets"),
        ({"interval_buckets": [1, float("nan")]}, "interval_buckets"),
        ({"interval_buckets": []}, "interval_buckets"),
        ({"max_tracked": 1.5}, "max_tracked"),
        ({"registry": "REGISTRY"}, "registry"),
        ({"stuck_idle": -1.0}, "stuck_idle"),
        ({"stuck_idle": float("nan")}, "stuck_idle"),
    ],
)
def test_bad_arguments_raise_invalid_input_and_register_nothing(
    ledger: Ledger, kwargs: dict[str, object], field: str
) -> None:
    registry = CollectorRegistry()
    arguments: dict[str, object] = {"registry": registry, **kwargs}
    with pytest.raises(InvalidInput) as caught:
        register_metrics(ledger, **arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert generate_latest(registry) == b""


def test_views_of_another_store_are_refused(ledger: Ledger, tmp_path: object) -> None:
    with Ledger.open(f"sqlite:///{tmp_path}/other.db") as other:
        views = Projections(other)
        with pytest.raises(InvalidInput, match="projections"):
            register_metrics(ledger, CollectorRegistry(), views)


def test_memory_for_histogram_times_is_bounded(ledger: Ledger) -> None:
    registry = CollectorRegistry()
    run = f"run-{uuid4().hex}"
    with register_metrics(ledger, registry, max_tracked=2) as metrics:
        assert isinstance(metrics, LedgerMetrics)
        tokens = [ledger.create_checkpoint(run, i) for i in range(5)]
        metrics.sync(TIMEOUT)
        assert len(metrics._tracked) == 2
        # A checkpoint forgotten by the bound still gets its latency, read from the store.
        ledger.complete_checkpoint(tokens[0])
        metrics.sync(TIMEOUT)
        assert value(registry, "ckl_completion_latency_seconds_count") == 1


@pytest.mark.postgres
def test_a_store_that_goes_away_reports_store_up_0_and_counting_resumes_after(
    postgres_url: str,
) -> None:
    server, dbname = postgres_url.rsplit("/", 1)
    # One pooled connection: the head read's second try always gets a fresh one.
    settings = LedgerSettings(
        store=postgres_url, poll_interval=0.05, store_retries=0, connect_timeout=2, pool_size=1
    )
    registry = CollectorRegistry()
    with (
        Ledger.open(settings=settings) as ledger,
        register_metrics(ledger, registry) as metrics,
        psycopg.connect(f"{server}/postgres", autocommit=True) as admin,
    ):
        token = ledger.create_checkpoint(f"run-{uuid4().hex}", 0)
        metrics.sync(TIMEOUT)
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(dbname))
        )
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
            assert value(registry, "ckl_store_up") == 0
            assert value(registry, "ckl_log_head") is None  # no stale figures while down
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(dbname))
            )
        with Ledger.open(postgres_url) as writer:  # a fresh writer, with the default retries
            writer.checkpoint_yield(token, cursor=1, items_processed=1)
        metrics.sync(TIMEOUT)
        assert value(registry, "ckl_store_up") == 1
        assert value(registry, "ckl_yields_total") == 1
        assert value(registry, "ckl_checkpoints_created_total") == 1
