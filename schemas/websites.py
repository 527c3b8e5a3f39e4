"""Accounts and websites of the TinyTrail management API (issue 12), as the gateway and the workers
hold them.

An **account** is a trackgate workspace: ``accounts.workspace`` names it (an account created through the
API has its id as its workspace; the ``Default`` account, created by migration 0014 with the fixed id
:data:`DEFAULT_ACCOUNT_ID`, is the workspace ``default`` every source had before). A **website** is a
source of that workspace, of any dialect, addressed by ``sources.website_id`` (a UUID): for a TinyTrail
source it is the ``website_id`` tracker.js sends (its key); for any other dialect a random UUID given
when the source was made (migration 0014 gave one to each source that existed).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from trackgate.schemas.api_time import api_time

DEFAULT_ACCOUNT_ID = "00000000-0000-0000-0000-000000000000"
"""The account migration 0014 creates for the workspace ``default`` (name ``Default``)."""
DEFAULT_WORKSPACE = "default"


class ContentGroup(msgspec.Struct, frozen=True):
    """A named path glob (``Blog`` = ``/blog/*``): the page's content group in reports."""

    name: str
    pattern: str


class Website(msgspec.Struct, frozen=True, kw_only=True):
    """A website as the API and the reports see it."""

    id: str
    """The website's UUID (``website_id`` in the API; TinyTrail's tracker sends it)."""
    account_id: str
    source_id: str
    """The trackgate source whose events it reports."""
    dialect: str
    domain: str
    """TinyTrail: its ``domain`` setting; other dialects: their ``domain`` setting if any, else the
    source's name."""
    content_groups: list[ContentGroup] = []
    excluded_ips: list[str] = []
    created_at: datetime
    workspace: str = ""
    enabled: bool = True

    def to_api(self) -> dict[str, Any]:
        """The document's website object (``id``, ``accountId``, ``domain``, ``contentGroups``,
        ``excludedIps``, ``createdAt``)."""
        return {
            "id": self.id,
            "accountId": self.account_id,
            "domain": self.domain,
            "contentGroups": [{"name": g.name, "pattern": g.pattern} for g in self.content_groups],
            "excludedIps": list(self.excluded_ips),
            "createdAt": api_time(self.created_at),
        }


WEBSITE_COLUMNS = (
    "s.website_id::text, a.id, s.id, s.dialect, s.name, s.settings, s.created_at, s.workspace, s.enabled"
)
"""What :func:`website_from_row` reads, from ``sources s JOIN accounts a ON a.workspace = s.workspace``."""


def website_from_row(row: tuple[Any, ...]) -> Website:
    website_id, account_id, source_id, dialect, name, settings, created_at, workspace, enabled = row
    settings = settings or {}
    groups = [
        ContentGroup(str(g.get("name", "")), str(g.get("pattern", "")))
        for g in settings.get("content_groups") or []
        if isinstance(g, dict)
    ]
    return Website(
        id=website_id,
        account_id=account_id,
        source_id=source_id,
        dialect=dialect,
        domain=str(settings.get("domain") or name),
        content_groups=groups,
        excluded_ips=[str(ip) for ip in settings.get("excluded_ips") or []],
        created_at=created_at,
        workspace=workspace,
        enabled=enabled,
    )
