"""The web inbox: where people sign in, see today's tasks and complete them.

Edge package (FastAPI, uvicorn, Jinja2); must not import Prefect or httpx. Every
completion goes through `Engine.complete`, like the CLI's. Run it with
`python -m storeops.web [--port 8765]`; `create_app(settings)` gives the ASGI app.
"""

from __future__ import annotations

from storeops.web.app import create_app

__all__ = ["create_app"]
