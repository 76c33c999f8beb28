"""The service's OpenAPI document, printed: ``python -m ckl.server.openapi > docs/openapi.json``.

The app is built exactly as ``ckl serve`` builds it, but not served, over an in-memory ledger
that nothing writes to (the document depends on the routes and models only). The JSON has
sorted keys and a fixed indent, so the committed ``docs/openapi.json`` changes only when the
API does; ``tests/ckl/server/test_openapi.py`` fails, naming this command, when it drifts.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ckl.server.app import create_app
from ledger import Ledger

__all__ = ["REGENERATE", "document", "main", "render"]

REGENERATE = "python -m ckl.server.openapi > docs/openapi.json"
"""The command that rewrites the committed document."""


def document() -> dict[str, Any]:
    """The OpenAPI document ``/openapi.json`` serves."""
    with Ledger.open("memory://") as ledger:
        return create_app(ledger).openapi()


def render(doc: dict[str, Any] | None = None) -> str:
    """The document as stable JSON text: sorted keys, two-space indent, a final newline."""
    chosen = document() if doc is None else doc
    return json.dumps(chosen, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> None:
    """Print the document on stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
