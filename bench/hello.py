"""The baseline: a bare Starlette app with one POST route answering a small JSON body.

Served by the same uvicorn settings as the gateway (see ``bench.servers``); it does not read the body.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"success": True})


app = Starlette(routes=[Route("/v1/track", hello, methods=["POST"])])
