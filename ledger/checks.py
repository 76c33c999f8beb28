"""The argument rules every entry point applies before it does anything: one rule, one message.

The ledger's commands and queries, the projections' queries and the reactive layer's streams
and awaits all check their arguments with these functions, so a run id, a count or a timeout
that one of them refuses is refused by all of them, with the same :class:`~ledger.InvalidInput`.
"""

from __future__ import annotations

import math
from datetime import datetime

from ledger.errors import InvalidInput

__all__ = [
    "MAX_INT",
    "RUN_ID_MAX_CHARS",
    "check_aware",
    "check_count",
    "check_name",
    "check_run_id",
    "check_seconds",
    "check_text",
]

MAX_INT = 2**63 - 1
"""The largest int accepted anywhere: every int ends up in a BIGINT column or SQL parameter."""

RUN_ID_MAX_CHARS = 200
"""The longest run id."""


def check_run_id(run_id: object) -> str:
    """The run id if it is a str of 1 to 200 printable characters.

    Printable excludes NUL, other control characters and lone surrogates, so a valid run id is
    also valid unicode and valid SQL text on both backends.

    Raises:
        InvalidInput: it is not.
    """
    if not isinstance(run_id, str):
        raise InvalidInput("run_id", f"expected a str, got {type(run_id).__name__}")
    if not 1 <= len(run_id) <= RUN_ID_MAX_CHARS:
        raise InvalidInput("run_id", f"must be 1 to 200 characters, got {len(run_id)}")
    if not run_id.isprintable():
        raise InvalidInput("run_id", "must contain printable characters only")
    return run_id


def check_count(value: object, field: str, *, minimum: int = 0) -> int:
    """The value if it is an int from ``minimum`` to 2**63 - 1 (a BIGINT).

    For positions, indexes, versions, sizes and limits alike; ``bool`` is not an int here.

    Raises:
        InvalidInput: it is not.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"expected an int, got {type(value).__name__}")
    if value < minimum:
        raise InvalidInput(field, f"must be ≥ {minimum}, got {value}")
    if value > MAX_INT:
        raise InvalidInput(field, f"must be at most 2**63 - 1, got {value}")
    return value


def check_seconds(value: object, field: str, *, finite: bool = True) -> float:
    """The value if it is a number of seconds ≥ 0 (finite unless ``finite=False``).

    Raises:
        InvalidInput: it is not (a bool, NaN and, by default, infinity are refused).
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= math.inf
        or (finite and value == math.inf)
    ):
        kind = "a finite number" if finite else "a number"
        raise InvalidInput(field, f"must be {kind} of seconds ≥ 0, got {value!r}")
    return value


def check_text(value: object, field: str) -> str:
    """The value if it is a str of valid unicode without NUL characters (storable as SQL text).

    Raises:
        InvalidInput: it is not.
    """
    if not isinstance(value, str):
        raise InvalidInput(field, f"expected a str, got {type(value).__name__}")
    if "\x00" in value or value.encode("utf-8", "replace").decode() != value:
        raise InvalidInput(field, "must be valid unicode without NUL characters")
    return value


def check_aware(moment: object, field: str) -> datetime:
    """The moment if it is a timezone-aware datetime (naive ones are ambiguous).

    Raises:
        InvalidInput: it is not.
    """
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise InvalidInput(field, "use a timezone-aware datetime (e.g. with tz=UTC)")
    return moment


def check_name(value: object, field: str, *, max_length: int = 200) -> str:
    """The value if it is a name: a str of 1 to ``max_length`` printable characters.

    Names are what workers and clients choose (an owner, a command id, an idempotency key):
    they are shown in tables and logs, so control characters are refused, not escaped.

    Raises:
        InvalidInput: it is not.
    """
    text = check_text(value, field)
    if not 1 <= len(text) <= max_length:
        raise InvalidInput(field, f"must be 1 to {max_length} characters, got {len(text)}")
    if not text.isprintable():
        raise InvalidInput(field, "must not contain control characters")
    return text
