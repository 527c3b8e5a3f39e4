"""The accept path every dialect shares: body → credentials → source → events → Redis → answer.

Nothing is acknowledged before the publisher says the events are in Redis; any error on the way is
answered in the dialect's shape by ``responses.error_response`` and nothing is published.
"""

from __future__ import annotations

import logging

import uuid_utils
from starlette.requests import Request
from starlette.responses import Response

from adapters.base import Adapter, AdapterError
from gateway.body import read_body
from gateway.errors import GatewayError
from gateway.responses import error_response
from schemas.request import RequestMeta

log = logging.getLogger(__name__)


async def ingest(request: Request, adapter: Adapter, call: str, cap: int, ok: Response) -> Response:
    runtime = request.app.state.runtime
    dialect = adapter.dialect
    try:
        headers = request.headers
        key = adapter.credentials(headers, None)
        source = runtime.sources.authenticate(dialect, key) if key else None
        body = await read_body(request.stream(), cap, headers.get("content-length"))
        envelope = adapter.parse(call, body)
        if source is None:
            source = runtime.sources.authenticate(dialect, adapter.credentials(headers, envelope))
        client = request.client
        meta = RequestMeta(
            source_id=source.id,
            dialect=dialect,
            call=call,
            received_at=runtime.clock(),
            request_id=str(uuid_utils.uuid7()),
            ip=client.host if client else None,
            user_agent=headers.get("user-agent"),
        )
        events = adapter.decode(meta, envelope)
        for event in events:
            event.id = str(uuid_utils.uuid7())
        await runtime.publisher.publish(events)
    except (AdapterError, GatewayError) as exc:
        if exc.status >= 500:
            log.warning("ingest_unavailable dialect=%s code=%s", dialect, exc.code)
        else:
            log.info("ingest_refused dialect=%s code=%s path=%s", dialect, exc.code, exc.path)
        return error_response(dialect, exc)
    except Exception as exc:  # a bug: answered in the dialect's shape (500), logged with its trace
        return error_response(dialect, exc)
    return ok
