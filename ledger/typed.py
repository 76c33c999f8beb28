"""Typed payloads: a worker's own cursor and results types, over the ledger's JSON.

The ledger stores cursors, accumulated results and results as JSON (``Cursor``, ``JSONObject``,
``JSONValue``): broad unions that a type checker cannot narrow without a cast. A worker that
declares its types (a pydantic model, a TypedDict, a dataclass, or a plain ``int``/``str``)
reads them back through :func:`read_as`, validated by a pydantic ``TypeAdapter``, and writes
them through :func:`to_json`, which dumps a model to the JSON the ledger checks as before
(types, NaN, size limits). A stored value that does not fit the declared type raises
:class:`~ledger.errors.PayloadMismatch`: never a silently wrong value.

```python
class Offset(BaseModel):
    row: int

state = ledger.get_checkpoint(token)
offset = state.cursor_as(Offset)            # Offset | None, checked
ledger.checkpoint_yield(token, to_json(Offset(row=500)), 500)
```
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, PydanticUserError, TypeAdapter, ValidationError

from ledger.errors import InvalidInput, PayloadMismatch

__all__ = ["check_type", "read_as", "to_json", "type_name"]

T = TypeVar("T")


_ADAPTERS: dict[object, TypeAdapter[Any]] = {}
"""One adapter per declared type: building one costs far more than a validation. Workers
declare a handful of types, so the cache stays small."""


def _adapter(kind: Any) -> TypeAdapter[Any]:  # noqa: ANN401  (whatever type a worker declares)
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def type_name(kind: object) -> str:
    """How a declared type is named in messages (``Offset``, ``int``, ``list[int]``)."""
    return getattr(kind, "__qualname__", None) or repr(kind)


def check_type(kind: object, field: str) -> None:
    """Refuse, before anything is written, a declared type pydantic cannot validate.

    Raises:
        InvalidInput: ``kind`` is not such a type (a ``typing.TypedDict`` on Python 3.11:
            pydantic needs ``typing_extensions.TypedDict`` there).
    """
    try:
        _adapter(kind)
    except (TypeError, PydanticUserError) as exc:
        raise InvalidInput(
            field, f"{type_name(kind)} is not a type pydantic can check: {exc}"
        ) from exc


def read_as(kind: type[T], value: object, field: str) -> T:
    """``value`` (stored JSON) as an instance of ``kind``, validated.

    Validation is pydantic's lax mode, the one meant for JSON: a model or a TypedDict is built
    from its object, a ``datetime`` field from its ISO string.

    Args:
        kind: the declared type.
        value: the stored JSON value.
        field: the payload's name, for the error (``"cursor"``, ``"accumulated_results"``…).

    Raises:
        PayloadMismatch: ``value`` does not fit ``kind`` (or ``kind`` is not a type pydantic
            can validate).
    """
    try:
        adapter = _adapter(kind)
    except (TypeError, PydanticUserError) as exc:  # unhashable, or not a type pydantic checks
        raise PayloadMismatch(
            field, type_name(kind), f"not a type pydantic can check: {exc}"
        ) from exc
    try:
        checked: T = adapter.validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = f"{where}: {first['msg']}" if where else first["msg"]
        more = exc.error_count() - 1
        if more:
            problem += f" (and {more} more)"
        raise PayloadMismatch(field, type_name(kind), problem) from exc
    return checked


def to_json(value: object) -> Any:  # noqa: ANN401  (JSON, for the ledger's own checks)
    """``value`` as the ledger stores it: a pydantic model dumped to JSON types, else itself.

    A TypedDict is a dict already and a dataclass is dumped like a model; whatever comes out
    is then checked by the ledger as any payload (JSON types, no NaN, within its size limit).
    """
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(type(value), "__dataclass_fields__"):
        return _adapter(type(value)).dump_python(value, mode="json")
    return value
