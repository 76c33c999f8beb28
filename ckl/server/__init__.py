"""``ckl serve``: the ledger over HTTP — a JSON API under ``/v1``, SSE streams, the web UI.

```python
from ckl.server import ServeOptions, create_app   # an ASGI app, for any ASGI server
app = create_app(ledger, ServeOptions())
```

``ckl serve`` runs it on uvicorn (:func:`ckl.server.run.serve`). Loaded only by ``ckl serve``
and by programs that import it: ``ckl --help`` never imports the web stack.
"""

from ckl.server.app import create_app
from ckl.server.auth import TokenTable, read_token_file
from ckl.server.state import ServeOptions, ServerState

__all__ = ["ServeOptions", "ServerState", "TokenTable", "create_app", "read_token_file"]
