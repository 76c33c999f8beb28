"""Least privilege on PostgreSQL: the GRANT statements for an owner, a writer and a projector.

- **owner**: creates the schema (the first ``Ledger.open``), archives runs (the only role
  that may write purge permits and archive markers), administers the views (it is made a
  member of the projector role, so an archive can delete the run's view rows).
- **writer**: the workers. ``SELECT`` and ``INSERT`` on the event and snapshot tables, ``SELECT``
  on the schema version, the partitioning table and the archive markers (the insert guard
  reads them). No ``UPDATE``, ``DELETE`` or ``TRUNCATE`` anywhere, and nothing on the permit
  table: refused by privileges before any trigger runs, and it cannot grant itself a purge
  permit.

A partitioned event table (``ledger.partitions``) needs nothing more: reads and appends go
through the parent ``ckl_events``, whose privileges PostgreSQL checks alone, and a partition
created later grants nothing to anyone (a writer cannot even read one directly, let alone
delete from or truncate it). Creating, attaching and detaching partitions is DDL: the owner's.
- **projector**: ``ckl project``. Owns the view tables it creates (``CREATE`` on the schema),
  reads the log, and records the views' position in the tracking table (``SELECT``,
  ``INSERT``, ``UPDATE``); it cannot write the log.

Run the statements as a superuser (or the database owner) once the owner has opened the
store, i.e. after the tables exist. ``ckl grants`` prints them.
"""

from __future__ import annotations

from ledger.store import (
    ARCHIVES_TABLE,
    EVENTS_TABLE,
    PARTITIONING_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    TRACKING_TABLE,
    quote_identifier,
)

__all__ = ["before_schema_statements", "grant_statements"]

_SCHEMA_TABLE = "ckl_schema"


def before_schema_statements(owner: str, schema: str = "public") -> list[str]:
    """What the owner needs before it can create the tables (run as a superuser).

    Raises:
        InvalidInput: a role or schema name is not a plain lower-case SQL name.
    """
    o, s = quote_identifier(owner), quote_identifier(schema)
    return [f"GRANT USAGE, CREATE ON SCHEMA {s} TO {o};"]


def grant_statements(owner: str, writer: str, projector: str, schema: str = "public") -> list[str]:
    """The privileges of the writer and projector roles (run as a superuser, after the schema).

    Raises:
        InvalidInput: a role or schema name is not a plain lower-case SQL name.
    """
    o, w, p = quote_identifier(owner), quote_identifier(writer), quote_identifier(projector)
    s = quote_identifier(schema)
    ledger_tables = [
        EVENTS_TABLE,
        SNAPSHOTS_TABLE,
        _SCHEMA_TABLE,
        PARTITIONING_TABLE,
        PURGE_PERMITS_TABLE,
        TRACKING_TABLE,
    ]
    readable = [EVENTS_TABLE, SNAPSHOTS_TABLE, _SCHEMA_TABLE, PARTITIONING_TABLE, ARCHIVES_TABLE]
    return [
        f"REVOKE ALL ON {', '.join([*ledger_tables, ARCHIVES_TABLE])} FROM PUBLIC;",
        f"REVOKE ALL ON {', '.join([*ledger_tables, ARCHIVES_TABLE])} FROM {w}, {p};",
        f"GRANT USAGE ON SCHEMA {s} TO {w}, {p};",
        f"GRANT SELECT, INSERT ON {EVENTS_TABLE}, {SNAPSHOTS_TABLE} TO {w};",
        f"GRANT SELECT ON {_SCHEMA_TABLE}, {PARTITIONING_TABLE}, {ARCHIVES_TABLE} TO {w};",
        f"GRANT CREATE ON SCHEMA {s} TO {p};",
        f"GRANT SELECT ON {', '.join(readable)} TO {p};",
        f"GRANT SELECT, INSERT, UPDATE ON {TRACKING_TABLE} TO {p};",
        f"GRANT {p} TO {o};",
    ]
