"""Files the ledger writes (archives, anchors): checked before any work, written whole or not.

A path that cannot be written is the caller's mistake, found before the store is read: an
:class:`~ledger.errors.InvalidInput` naming the argument, and nothing is written. A write that
fails later (a full disk, a permission taken away) raises :class:`~ledger.errors.FileNotWritable`
after the partial file has been removed.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import FileNotWritable, InvalidInput

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["output_path", "writing"]


def output_path(path: object, field: str) -> Path:
    """``path`` as a :class:`Path`, once its directory exists and it is not a directory.

    Raises:
        InvalidInput: not a path, empty, in a directory that does not exist, or a directory.
    """
    try:
        text = os.fspath(path)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidInput(field, f"must be a file path, got {type(path).__name__}") from None
    if isinstance(text, bytes):
        raise InvalidInput(field, "must be a str or os.PathLike[str] path, not bytes")
    if not text:
        raise InvalidInput(field, "is empty; give the file to write")
    target = Path(text)
    if target.is_dir():
        raise InvalidInput(field, f"{text!r} is a directory; give a file name")
    if not target.parent.is_dir():
        raise InvalidInput(field, f"directory {str(target.parent)!r} does not exist; create it")
    return target


@contextmanager
def writing(target: Path, field: str) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``target`` into :class:`FileNotWritable`."""
    try:
        yield
    except OSError as exc:
        raise FileNotWritable(field, str(target), exc.strerror or str(exc)) from exc
