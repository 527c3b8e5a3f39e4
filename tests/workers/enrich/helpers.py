"""Building canonical events for the processor tests."""

from __future__ import annotations

from datetime import UTC, datetime

from trackgate.schemas.event import Campaign, Context, Event, Library, Page, Screen

RECEIVED = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)


def event(
    *,
    ip: str | None = None,
    ua: str | None = None,
    url: str | None = None,
    path: str | None = None,
    referrer: str | None = None,
    search: str | None = None,
    campaign: dict | None = None,
    width: int | None = None,
    library: str | None = None,
    properties: dict | None = None,
    enrichment: dict | None = None,
    received_at: datetime = RECEIVED,
    source_id: str = "src",
    raw: str = "{}",
) -> Event:
    page = (
        Page(url=url, path=path, referrer=referrer, search=search)
        if (url or path or referrer or search)
        else None
    )
    return Event(
        id="0190a000-0000-7000-8000-000000000001",
        message_id="m1",
        source_id=source_id,
        dialect="segment",
        type="page",
        timestamp=received_at,
        received_at=received_at,
        raw=raw,
        properties=properties or {},
        enrichment=dict(enrichment or {}),
        context=Context(
            ip=ip,
            user_agent=ua,
            page=page,
            campaign=Campaign(**campaign) if campaign else None,
            screen=Screen(width=width) if width is not None else None,
            library=Library(name=library) if library else None,
        ),
    )
