"""JSON value types and their checks: what a cursor, a result or metadata may hold."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, TypeAlias

from pydantic import AfterValidator, JsonValue

__all__ = [
    "Cursor",
    "CursorInput",
    "JSONObject",
    "JSONObjectInput",
    "JSONValue",
    "StrictCursor",
    "StrictJSONObject",
    "StrictJSONValue",
    "encode_json",
    "same_json",
]

JSONValue: TypeAlias = JsonValue
"""None, bool, int, finite float, str, list of JSON values, or dict of str to JSON values."""
JSONObject: TypeAlias = dict[str, JsonValue]
Cursor: TypeAlias = int | str | dict[str, JsonValue] | list[JsonValue]
"""Where a worker is in its input: an offset, a key, or a JSON object/array (never a float)."""

# What callers may pass: read-only and covariant, so a ``dict[str, int]`` type-checks.
# Values are checked at runtime, and stored (and returned) as the JSON types above.
JSONObjectInput: TypeAlias = Mapping[str, object]
CursorInput: TypeAlias = int | str | Mapping[str, object] | Sequence[object]


def _check_finite(value: JsonValue) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        msg = f"{value!r} is not a JSON number (NaN and infinity are not allowed)"
        raise ValueError(msg)
    if isinstance(value, str):
        _check_encodable(value)
    elif isinstance(value, list):
        for item in value:
            _check_finite(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_encodable(key)
            _check_finite(item)


def _check_encodable(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = "strings must be valid unicode (no lone surrogates)"
        raise ValueError(msg) from exc


def _finite_json(value: JsonValue) -> JsonValue:
    _check_finite(value)
    return value


def _finite_object(value: JSONObject) -> JSONObject:
    _check_finite(value)
    return value


def _cursor(value: Cursor) -> Cursor:
    if isinstance(value, bool):
        msg = "a cursor is an int, a str or a JSON object/array, not a bool"
        raise ValueError(msg)  # noqa: TRY004  (pydantic turns ValueError into a ValidationError)
    _check_finite(value)
    return value


StrictJSONValue = Annotated[JsonValue, AfterValidator(_finite_json)]
StrictJSONObject = Annotated[dict[str, JsonValue], AfterValidator(_finite_object)]
StrictCursor = Annotated[
    int | str | dict[str, JsonValue] | list[JsonValue], AfterValidator(_cursor)
]


def same_json(a: object, b: object) -> bool:
    """Equal as JSON documents: unlike ``==``, ``1``, ``1.0`` and ``True`` all differ."""
    if a != b:  # the cheap test first: most comparisons end here
        return False
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# One encoder for every call: json.dumps with options builds a new JSONEncoder each time.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode_json(value: object) -> bytes:
    """Compact UTF-8 JSON, the form sizes are measured in.

    Raises:
        ValueError: NaN or infinity inside.
        UnicodeEncodeError: a lone surrogate inside a string.
        RecursionError: nested too deeply.
        TypeError: something that is not JSON.
    """
    return _ENCODER.encode(value).encode()
