"""Hash chains: every event chained to its checkpoint's previous one, and ``verify_chains``.

The tampering tests switch the append-only guard off on a raw connection (as an attacker with
the owner's rights would), change or delete rows, and check that the verification names them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import TYPE_CHECKING, cast
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import CheckpointToken, Ledger, chain_hash, verify_chains
from ledger.chain import ChainRow, walk_chain
from tests.security._tamper import oid_param, raw_query, tamper

if TYPE_CHECKING:
    from pathlib import Path


def _reference_hash(prev: bytes | None, oid: UUID, version: int, topic: str, state: bytes) -> bytes:
    """The definition written out differently (int.to_bytes, one concatenation)."""
    message = (
        (prev or b"")
        + oid.bytes
        + version.to_bytes(8, "big", signed=True)
        + topic.encode("utf-8")
        + b"\x00"
        + state
    )
    return hashlib.sha256(message).digest()


_prev = st.none() | st.binary(min_size=32, max_size=32)
_topics = st.text(st.characters(codec="utf-8"), max_size=40)


@given(
    prev=_prev, oid=st.uuids(), version=st.integers(1, 2**63 - 1), topic=_topics, state=st.binary()
)
def test_chain_hash_is_the_documented_definition(
    prev: bytes | None, oid: UUID, version: int, topic: str, state: bytes
) -> None:
    assert chain_hash(prev, oid, version, topic, state) == _reference_hash(
        prev, oid, version, topic, state
    )


@pytest.mark.postgres
def test_postgres_sql_and_python_hashes_agree_byte_for_byte(postgres_url: str) -> None:
    # The SQL of the single-event append, on the values hypothesis draws.
    with Ledger.open(postgres_url):  # creates the schema (nothing else needed)
        pass
    sql = (
        "SELECT sha256(coalesce(%s::bytea, ''::bytea) || uuid_send(%s::uuid)"
        " || int8send(%s::bigint) || convert_to(%s::text, 'UTF8') || '\\x00'::bytea || %s::bytea)"
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:

        @settings(max_examples=100)
        @given(
            prev=_prev,
            oid=st.uuids(),
            version=st.integers(1, 2**63 - 1),
            topic=st.text(st.characters(codec="utf-8", blacklist_characters="\x00")),
            state=st.binary(max_size=200),
        )
        def agree(prev: bytes | None, oid: UUID, version: int, topic: str, state: bytes) -> None:
            row = conn.execute(sql.encode(), (prev, oid, version, topic, state)).fetchone()
            assert row is not None
            assert bytes(row[0]) == chain_hash(prev, oid, version, topic, state)

        agree()


def _stored_hashes(store_url: str, token: CheckpointToken) -> list[bytes]:
    rows = raw_query(
        store_url,
        "SELECT event_hash FROM ckl_events WHERE originator_id = %s ORDER BY originator_version",
        (oid_param(store_url, token.checkpoint_id),),
    )
    return [bytes(cast("bytes", r[0])) for r in rows]


def _two_runs(ledger: Ledger) -> tuple[CheckpointToken, CheckpointToken, CheckpointToken]:
    a = ledger.create_checkpoint("run-a", 0, total_batches=2)
    b = ledger.create_checkpoint("run-a", 1, total_batches=2)
    c = ledger.create_checkpoint("run-b", 0)
    for i in range(1, 5):
        ledger.checkpoint_yield(a, cursor=i * 10, items_processed=i * 10)
        ledger.checkpoint_yield(b, cursor={"page": i}, items_processed=i)
        ledger.checkpoint_yield(c, cursor=f"k{i}", items_processed=i)
    ledger.complete_checkpoint(a, result={"rows": 40})
    ledger.fail_checkpoint(b, ValueError("bad row"), transient=True)
    ledger.retry_checkpoint(b)
    return a, b, c


def test_every_event_is_chained_to_its_checkpoints_previous_one(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        a, _, _ = _two_runs(ledger)
        stored = ledger.recorder.select_events(a.checkpoint_id)
        hashes = _stored_hashes(store_url, a)
    prev: bytes | None = None
    for event, digest in zip(stored, hashes, strict=True):
        assert digest == chain_hash(
            prev, a.checkpoint_id, event.originator_version, event.topic, event.state
        )
        prev = digest


def test_a_multi_event_append_chains_consecutive_versions_of_one_checkpoint(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("run-many", 0)
        first = ledger.recorder.select_events(token.checkpoint_id)[0]
        doc = json.loads(first.state)
        more = []
        for version in (2, 3, 4):
            doc.update(originator_version=version)
            more.append(
                StoredEvent(token.checkpoint_id, version, first.topic, json.dumps(doc).encode())
            )
        other = ledger.create_checkpoint("run-many", 1)
        ledger.recorder.insert_events([*more[:2], _copy(ledger, other, 2), more[2]])
        report = verify_chains(ledger)
    assert report.ok, report.problems
    assert report.events == 6
    hashes = _stored_hashes(store_url, token)
    assert len(hashes) == 4
    assert hashes[3] == chain_hash(hashes[2], token.checkpoint_id, 4, more[2].topic, more[2].state)


def _copy(ledger: Ledger, token: CheckpointToken, version: int) -> StoredEvent:
    created = ledger.recorder.select_events(token.checkpoint_id)[0]
    doc = json.loads(created.state)
    doc.update(originator_version=version)
    return StoredEvent(token.checkpoint_id, version, created.topic, json.dumps(doc).encode())


def test_a_version_without_its_predecessor_is_refused(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("run-gap", 0)
        before = ledger.count_events()
        with pytest.raises(IntegrityError, match="no version 2"):
            ledger.recorder.insert_events([_copy(ledger, token, 3)])
        with pytest.raises(IntegrityError, match="no version 2"):
            ledger.recorder.insert_events([_copy(ledger, token, 3), _copy(ledger, token, 4)])
        assert ledger.count_events() == before


def test_a_clean_store_verifies_as_a_whole_and_run_by_run(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        _two_runs(ledger)
        whole = verify_chains(ledger)
        run_a = verify_chains(ledger, "run-a")
        missing = verify_chains(ledger, "no-such-run")
    assert whole.ok
    assert (whole.checkpoints, whole.events) == (3, ledger_events := 3 + 12 + 3)
    assert run_a.ok
    assert (run_a.checkpoints, run_a.events) == (2, ledger_events - 5)
    assert (missing.checkpoints, missing.events, missing.ok) == (0, 0, True)


def test_an_edited_row_and_a_deleted_row_are_both_reported(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        a, b, _ = _two_runs(ledger)
        key_a, key_b = oid_param(store_url, a.checkpoint_id), oid_param(store_url, b.checkpoint_id)
        forged = ledger.recorder.select_events(a.checkpoint_id)[2].state.replace(b"20", b"99")
        assert (
            tamper(
                store_url,
                "UPDATE ckl_events SET state = %s"
                " WHERE originator_id = %s AND originator_version = 3",
                (forged, key_a),
            )
            == 1
        )
        assert (
            tamper(
                store_url,
                "DELETE FROM ckl_events WHERE originator_id = %s AND originator_version = 3",
                (key_b,),
            )
            == 1
        )
        report = verify_chains(ledger)
        report_c = verify_chains(ledger, "run-b")
    found = {(p.kind, p.checkpoint_id, p.version) for p in report.problems}
    assert found == {
        ("altered", str(a.checkpoint_id), 3),
        ("missing", str(b.checkpoint_id), 3),
    }
    assert not report.ok
    assert report_c.ok  # the other run's chain is untouched


def test_a_rewritten_hash_breaks_the_link_to_the_next_event(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        a, _, _ = _two_runs(ledger)
        tamper(
            store_url,
            "UPDATE ckl_events SET event_hash = %s"
            " WHERE originator_id = %s AND originator_version = 2",
            (b"\x01" * 32, oid_param(store_url, a.checkpoint_id)),
        )
        report = verify_chains(ledger, "run-a")
    found = [(p.kind, p.version) for p in report.problems]
    assert found == [("altered", 2), ("chain_break", 3)]


def test_content_and_hash_rewritten_together_fail_at_the_next_event(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        a, _, _ = _two_runs(ledger)
        rows = ledger.recorder.select_events(a.checkpoint_id)
        hashes = _stored_hashes(store_url, a)
        forged = rows[1].state.replace(b"10", b"77")
        digest = chain_hash(hashes[0], a.checkpoint_id, 2, rows[1].topic, forged)
        tamper(
            store_url,
            "UPDATE ckl_events SET state = %s, event_hash = %s "
            "WHERE originator_id = %s AND originator_version = 2",
            (forged, digest, oid_param(store_url, a.checkpoint_id)),
        )
        report = verify_chains(ledger, "run-a")
    assert [(p.kind, p.version) for p in report.problems] == [("altered", 3)]


def test_deleting_the_last_events_is_seen_only_against_an_anchor(
    store_url: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "heads.jsonl"
    with Ledger.open(store_url) as ledger:
        a, _, c = _two_runs(ledger)
        assert verify_chains(ledger, write_anchor=anchor).ok
        assert verify_chains(ledger, anchor=anchor).ok
        last = ledger.count_events(a)
        tamper(
            store_url,
            "DELETE FROM ckl_events WHERE originator_id = %s AND originator_version >= %s",
            (oid_param(store_url, a.checkpoint_id), last - 1),
        )
        tamper(
            store_url,
            "DELETE FROM ckl_events WHERE originator_id = %s",
            (oid_param(store_url, c.checkpoint_id),),
        )
        blind = verify_chains(ledger)
        anchored = verify_chains(ledger, anchor=anchor)
    assert blind.ok  # a shorter chain is still a valid chain
    found = {(p.kind, p.checkpoint_id) for p in anchored.problems}
    assert found == {
        ("head_went_back", str(a.checkpoint_id)),
        ("head_missing", str(c.checkpoint_id)),
    }


def test_a_chain_rewritten_up_to_its_head_is_seen_against_an_anchor(
    store_url: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "run-b.jsonl"
    with Ledger.open(store_url) as ledger:
        _, _, c = _two_runs(ledger)
        verify_chains(ledger, "run-b", write_anchor=anchor)
        rows = ledger.recorder.select_events(c.checkpoint_id)
        hashes = _stored_hashes(store_url, c)
        # Forge the last event and recompute its hash: the chain alone stays valid.
        forged = rows[-1].state.replace(b"k4", b"k9")
        digest = chain_hash(hashes[-2], c.checkpoint_id, len(rows), rows[-1].topic, forged)
        tamper(
            store_url,
            "UPDATE ckl_events SET state = %s, event_hash = %s "
            "WHERE originator_id = %s AND originator_version = %s",
            (forged, digest, oid_param(store_url, c.checkpoint_id), len(rows)),
        )
        assert verify_chains(ledger, "run-b").ok
        report = verify_chains(ledger, "run-b", anchor=anchor)
    assert [(p.kind, p.version) for p in report.problems] == [("head_changed", len(rows))]


def test_walk_chain_reports_a_removed_hash_and_a_missing_first_version() -> None:
    oid = UUID(int=7)
    h1 = chain_hash(None, oid, 1, "t", b"{}")
    h2 = chain_hash(h1, oid, 2, "t", b"{}")
    rows = [ChainRow(oid, 1, "t", b"{}", h1), ChainRow(oid, 2, "t", b"{}", None)]
    problems, _ = walk_chain(rows)
    assert [(p.kind, p.version) for p in problems] == [("hash_removed", 2)]
    problems, head = walk_chain([ChainRow(oid, 2, "t", b"{}", h2)])
    assert [(p.kind, p.version) for p in problems] == [("missing", 1)]
    assert head is not None
    assert head.version == 2


def test_a_store_from_before_hash_chains_is_migrated_and_its_old_rows_reported_unchained(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with Ledger.open(url) as ledger:
        token = ledger.create_checkpoint("run-old", 0)
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
        legacy = ledger.recorder.select_events(token.checkpoint_id)
    # Rebuild the file as schema 1 wrote it: no event_hash column, user_version 0.
    conn = sqlite3.connect(tmp_path / "old.db")
    with conn:
        conn.execute("DROP TABLE ckl_events")
        conn.execute(
            "CREATE TABLE ckl_events (notification_id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL,"
            " topic TEXT NOT NULL, state BLOB NOT NULL, UNIQUE (originator_id, originator_version))"
        )
        conn.execute(
            "CREATE TRIGGER ckl_events_no_delete BEFORE DELETE ON ckl_events"
            " BEGIN SELECT RAISE(ABORT, 'ckl_events is append-only: DELETE refused'); END"
        )
        conn.executemany(
            "INSERT INTO ckl_events (originator_id, originator_version, topic, state)"
            " VALUES (?, ?, ?, ?)",
            [(str(e.originator_id), e.originator_version, e.topic, e.state) for e in legacy],
        )
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    with Ledger.open(url) as ledger:
        ledger.checkpoint_yield(token, cursor=2, items_processed=2)
        ledger.complete_checkpoint(token)
        report = verify_chains(ledger)
        assert ledger.get_checkpoint(token).status == "completed"
    assert report.ok, report.problems
    assert report.events == 4
    expected = f"checkpoint {token.checkpoint_id} v1: v1..v2 unchained (written before hash chains)"
    assert report.notes == [f"unchained: {expected}"]
    conn = sqlite3.connect(tmp_path / "old.db")
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"), conn:
            conn.execute("DELETE FROM ckl_events")
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_postgres_store_of_schema_2_is_migrated_and_its_old_rows_reported_unchained(
    postgres_url: str,
) -> None:
    with Ledger.open(postgres_url) as ledger:
        token = ledger.create_checkpoint("run-old", 0)
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    with psycopg.connect(postgres_url, autocommit=True) as pg:  # back to what schema 2 wrote
        pg.execute("DROP TRIGGER ckl_events_guard_insert ON ckl_events")
        pg.execute("ALTER TABLE ckl_events DROP COLUMN event_hash")
        pg.execute("DROP TABLE ckl_purge_permits, ckl_archives")
        pg.execute("UPDATE ckl_schema SET version = 2")
    with Ledger.open(postgres_url) as ledger:
        ledger.checkpoint_yield(token, cursor=2, items_processed=2)
        ledger.complete_checkpoint(token)
        report = verify_chains(ledger)
    assert report.ok, report.problems
    assert report.events == 4
    assert len(report.notes) == 1
    assert "v1..v2 unchained" in report.notes[0]


def test_the_whole_store_is_walked_page_by_page(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.audit._PAGE", 4)  # pages split checkpoints mid-chain
    with Ledger.open(store_url) as ledger:
        a, _, _ = _two_runs(ledger)
        paged = verify_chains(ledger)
        tamper(
            store_url,
            "DELETE FROM ckl_events WHERE originator_id = %s AND originator_version = 4",
            (oid_param(store_url, a.checkpoint_id),),
        )
        broken = verify_chains(ledger)
    assert (paged.ok, paged.checkpoints, paged.events) == (True, 3, 18)
    assert [(p.kind, p.version) for p in broken.problems] == [("missing", 4)]
