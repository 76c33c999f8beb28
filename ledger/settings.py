"""LedgerSettings: every knob of checkpoint-ledger, with its default.

Explicit arguments win over ``CKL_*`` environment variables, which win over the defaults.
This is the only module that reads ``os.environ``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger.errors import InvalidInput
from ledger.store.url import redact_url

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["DEFAULT_STORE", "ENV_PREFIX", "LedgerSettings"]

ENV_PREFIX = "CKL_"
DEFAULT_STORE = "sqlite:///checkpoints.db"
KIB = 1024
# Waits are bounded: a thread cannot sleep longer than the platform's time_t allows, and an
# hour between polls or retries is already a mistake.
_LONGEST_WAIT = 3600.0


class LedgerSettings(BaseModel):
    """Configuration of a :class:`ledger.Ledger`.

    Build one with :meth:`from_env` to honour ``CKL_*`` environment variables
    (``CKL_STORE``, ``CKL_MAX_RESULT_BYTES``…): the variable is the field name, upper-cased,
    with the ``CKL_`` prefix.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str = Field(
        default=DEFAULT_STORE,
        description="Store URL: sqlite:///path.db (embedded default), postgresql://… or memory://.",
    )
    reader_store: str | None = Field(
        default=None,
        description=(
            "Store URL for reading the log (streams, awaits, tails, replay, audit, verify, "
            "export, the service's reads and SSE): a PostgreSQL hot standby of the store; "
            "writes still go to store. None: read where you write."
        ),
    )
    durability: Literal["full", "fast", "applied"] = Field(
        default="full",
        description=(
            "full: every command is on disk when it returns (SQLite synchronous=FULL, Postgres "
            "synchronous_commit=on). fast: SQLite synchronous=NORMAL / Postgres "
            "synchronous_commit=off; a power loss may drop the last commits, never corrupt. "
            "applied: full, and on Postgres synchronous_commit=remote_apply: a command returns "
            "once the synchronous standbys have replayed it too, so their readers see it."
        ),
    )
    max_accumulated_results_bytes: int = Field(
        default=64 * KIB, gt=0, description="Largest accumulated_results of a yield, as JSON."
    )
    max_result_bytes: int = Field(
        default=64 * KIB, gt=0, description="Largest result of a complete, as JSON."
    )
    max_metadata_bytes: int = Field(
        default=8 * KIB, gt=0, description="Largest metadata of a create, as JSON."
    )
    max_cursor_bytes: int = Field(default=8 * KIB, gt=0, description="Largest cursor, as JSON.")
    max_error_message_chars: int = Field(
        default=4 * KIB,
        gt=0,
        description="Failure messages longer than this are truncated (never refused).",
    )
    snapshot_interval: int = Field(
        default=200,
        gt=0,
        description="Write a snapshot every N events of a checkpoint, so loading stays flat.",
    )
    cache_size: int = Field(
        default=4096,
        ge=0,
        description="Checkpoints kept in memory per Ledger (0 disables the cache).",
    )
    conflict_retries: int = Field(
        default=20,
        ge=0,
        description="Reload-and-retry rounds when another writer appended to the same checkpoint.",
    )
    store_retries: int = Field(
        default=3,
        ge=0,
        description="Retries of a command when the store is unreachable, before StoreUnavailable.",
    )
    store_retry_delay: float = Field(
        default=0.2,
        ge=0,
        le=_LONGEST_WAIT,
        description="Seconds before the first store retry (doubles each time).",
    )
    poll_interval: float = Field(
        default=0.5,
        gt=0,
        le=_LONGEST_WAIT,
        description=(
            "Seconds between checks for other processes' appends, for readers following the log "
            "(SQLite; on PostgreSQL LISTEN/NOTIFY wakes them at once and this is a safety net)."
        ),
    )
    read_only: bool = Field(
        default=False,
        description=(
            "Open the store read-only: SQLite mode=ro, PostgreSQL read-only sessions; never "
            "creates, upgrades or writes (writes raise StoreReadOnly; see `ckl migrate`)."
        ),
    )
    pool_size: int = Field(default=4, gt=0, description="PostgreSQL connections kept open.")
    connect_timeout: float = Field(
        default=5.0,
        gt=0,
        le=_LONGEST_WAIT,
        description="Seconds to wait for a store connection.",
    )

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # repr() and str() show the store URL without its password (logs print settings).
        for name, value in super().__repr_args__():
            if name in {"store", "reader_store"} and isinstance(value, str):
                yield name, redact_url(value)
            else:
                yield name, value

    @classmethod
    def from_env(cls, **overrides: object) -> LedgerSettings:
        """Settings from ``CKL_*`` environment variables, with explicit ``overrides`` on top.

        Raises:
            InvalidInput: a variable or override has a value of the wrong type or range.
        """
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "settings"
            raise InvalidInput(f"setting {field}", first["msg"]) from exc


def settings_table() -> str:
    """The README's settings table, generated from the fields (see the README)."""
    rows = [
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, field in LedgerSettings.model_fields.items():
        rows.append(
            f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{field.default}` | {field.description} |"
        )
    return "\n".join(rows)
