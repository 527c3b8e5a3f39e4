"""Per source: ``settings.content_groups`` (``[{"name": ..., "pattern": ...}]``) →
``enrichment.content_group``.

The pattern is a glob over the page path (``context.page.path``, else the path of ``context.page.url``):
``*`` matches any run of characters, ``/`` included, ``?`` one character, ``[...]`` a set, and the whole
path must match (``/blog/*`` matches ``/blog/a/b``, not ``/blog``). The first group that matches wins.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from trackgate.adapters.traffic import content_group
from trackgate.schemas.event import Event


def page_path(event: Event) -> str | None:
    page = event.context.page
    if page is None:
        return None
    if page.path:
        return page.path
    if page.url:
        try:
            return urlsplit(page.url).path or "/"
        except ValueError:
            return None
    return None


def process(event: Event, env) -> None:
    groups = env.source(event.source_id).get("content_groups")
    if not groups or not isinstance(groups, list):
        return
    path = page_path(event)
    if path is None:
        return
    name = content_group(path, groups)
    if name is not None:
        event.enrichment.setdefault("content_group", name)
