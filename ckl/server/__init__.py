"""``ckl serve``: the ledger over HTTP — a JSON API under ``/v1``, SSE streams, the web UI.

```python
from ckl.server import ServeOptions, create_app   # an ASGI app, for any ASGI server
app = create_app(ledger, ServeOptions())
```

``ckl serve`` runs it on uvicorn (:func:`ckl.server.run.serve`). The names load on first use,
so ``ckl token`` (``ckl.server.auth``) does not import FastAPI, and ``ckl --help`` never
imports the web stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckl.server.app import create_app
    from ckl.server.auth import TokenTable, read_token_file
    from ckl.server.state import ServeOptions, ServerState

__all__ = ["ServeOptions", "ServerState", "TokenTable", "create_app", "read_token_file"]

_HOMES = {
    "create_app": "ckl.server.app",
    "TokenTable": "ckl.server.auth",
    "read_token_file": "ckl.server.auth",
    "ServeOptions": "ckl.server.state",
    "ServerState": "ckl.server.state",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ckl.server' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
