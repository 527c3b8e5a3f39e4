"""The enrichment chain: small processors, in order, adding what analysts need to ``event.enrichment``.

Each processor is a module with a plain ``process(event, env)``; :data:`CHAIN` lists them in order. A
processor only adds keys to ``event.enrichment`` (``setdefault``: what an adapter or the client already
put there stays; an ``is_bot``/``is_excluded`` already True stays True). The one exception is
``ip_policy``, last, which may truncate or drop ``context.ip`` (see its module). Everything a processor
needs beyond the event (the clock's salts, the source's settings, the geo database) comes in ``env``, so
each is deterministic and tested on its own with a table of cases.

Keys, by processor: bots ``is_bot`` (only when true); user_agent ``browser``, ``browser_version``,
``os``, ``os_version``, ``device_type``; campaign ``utm_*``, ``gclid``, ``msclkid``, ``fbclid``; referrer
``referrer_domain``, ``traffic_source``, ``traffic_medium``, ``channel``; geo ``country`` (+ ``region``,
``region_code``, ``city``); visitor ``visitor_id``; excluded ``is_excluded`` (only when true);
content_group ``content_group``; screen ``screen_bucket``; ip_policy ``ip_policy``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Protocol

from trackgate.schemas.event import Event
from trackgate.workers.enrich import (
    bots,
    campaign,
    content_group,
    excluded,
    geo,
    ip_policy,
    memo,
    referrer,
    screen,
    user_agent,
    visitor,
)

log = logging.getLogger(__name__)


class SettingsBySource(Protocol):
    """Source settings by source id: a plain mapping, or the worker's refreshed ``SourceSettings``."""

    def get(self, source_id: str, /) -> Mapping[str, Any] | None: ...


@dataclass(frozen=True)
class Env:
    """What the processors need besides the event, for one batch."""

    salts: Mapping[date, bytes] = field(default_factory=dict)
    """Visitor-id salts by UTC day (today's and yesterday's)."""
    late_ids: frozenset[str] | set[str] = frozenset()
    """Visitor ids given to events in the last 30 minutes of yesterday (see :mod:`visitor`)."""
    settings: SettingsBySource = field(default_factory=dict[str, Mapping[str, Any]])
    """Source settings by source id."""
    geo: geo.GeoDatabase | None = None

    def source(self, source_id: str) -> Mapping[str, Any]:
        return self.settings.get(source_id) or {}


CHAIN: tuple[tuple[str, Callable[[Event, Env], None]], ...] = (
    ("bots", bots.process),
    ("user_agent", user_agent.process),
    ("campaign", campaign.process),
    ("referrer", referrer.process),
    ("geo", geo.process),
    ("visitor", visitor.process),
    ("excluded", excluded.process),
    ("content_group", content_group.process),
    ("screen", screen.process),
    ("ip_policy", ip_policy.process),
)


_STANDARD = CHAIN
_HEAD = 5
"""``CHAIN[:_HEAD]`` (bots, user_agent, campaign, referrer, geo) answer from the event alone: memoized
whole (:mod:`memo`) while ``CHAIN`` is the standard chain."""
_TAIL = CHAIN[_HEAD:]
_TAIL_NO_SETTINGS = tuple(step for step in _TAIL if step[0] in ("visitor", "screen"))
"""What of the tail adds anything for a source without settings: ``excluded``, ``content_group`` and
``ip_policy`` read only the source's settings (``excluded_ips``, ``content_groups``, ``ip_policy``)."""
assert [name for name, _ in _TAIL_NO_SETTINGS] == ["visitor", "screen"]  # BatchEnricher inlines them


def enrich_event(event: Event, env: Env) -> None:
    """Run the chain on one event. A processor that fails (a bug, an odd value) is logged and noted in
    ``enrichment.enrich_errors``; the event goes on through the rest of the chain and is stored.

    An event with nothing in ``enrichment`` yet (the usual case) takes the first five processors'
    answers from :mod:`memo` (the same keys and values), then runs the rest."""
    if not isinstance(event.enrichment, dict):
        event.enrichment = {}
    steps = CHAIN
    if steps is _STANDARD and not event.enrichment:
        found = memo.head(event, env.geo)
        if found is not None:
            event.enrichment = found
            steps = _TAIL if _has_settings(env, event.source_id) else _TAIL_NO_SETTINGS
    _run(event, env, steps)


def _has_settings(env: Env, source_id: str) -> bool:
    try:
        return bool(env.source(source_id))
    except Exception:  # noqa: BLE001 - the processors that read them note it
        return True


def _run(event: Event, env: Env, steps: tuple[tuple[str, Callable[[Event, Env], None]], ...]) -> None:
    for name, process in steps:
        try:
            process(event, env)
        except Exception:  # noqa: BLE001 - never lose an event to enrichment
            log.exception("enrich_failed processor=%s event_id=%s", name, event.id)
            event.enrichment.setdefault("enrich_errors", []).append(name)
            if name == "ip_policy":  # fail closed: an address the policy could not handle is not kept
                event.context.ip = None


def enrich_events(events: Iterable[Event], env: Env) -> None:
    """:func:`enrich_event` on each event, with what is the same for the whole batch worked out once
    (:class:`BatchEnricher`)."""
    one = BatchEnricher(env)
    for event in events:
        one(event)


class BatchEnricher:
    """:func:`enrich_event` for the events of one batch, with what is the same for all of them worked
    out once: whether each source has settings, each day's visitor-id pads. Called on each event
    (the store calls it as it writes each new event's row: ``workers/pipeline.py``). An event whose
    enrichment starts empty (the usual case) takes the memoized head, then ``visitor`` and ``screen``
    inline when its source has no settings: the same keys, values and order as the processors one by
    one (``tests/workers/enrich/test_batch_path.py`` compares them); anything else, or a step that
    raises, takes :func:`enrich_event`'s path."""

    __slots__ = ("env", "has_settings", "pads_by_day")

    def __init__(self, env: Env) -> None:
        self.env = env
        self.pads_by_day: dict[date, Any] = {}
        self.has_settings: dict[str, bool] = {}

    def __call__(self, event: Event) -> None:
        env = self.env
        enrichment = event.enrichment
        if CHAIN is not _STANDARD or enrichment or not isinstance(enrichment, dict):
            enrich_event(event, env)
            return
        found = memo.head(event, env.geo)
        if found is None:
            _run(event, env, CHAIN)
            return
        event.enrichment = found
        source_id = event.source_id
        settings = self.has_settings.get(source_id)
        if settings is None:
            settings = self.has_settings[source_id] = _has_settings(env, source_id)
        if settings:
            _run(event, env, _TAIL)
            return
        try:  # _TAIL_NO_SETTINGS, inline
            found_id = visitor.visitor_id(event, env.salts, env.late_ids, self.pads_by_day)
            bucket = screen.bucket(screen.screen_width(event))
        except Exception:  # noqa: BLE001 - the processors run again, one by one, and note what failed
            _run(event, env, _TAIL_NO_SETTINGS)
            return
        if found_id is not None:
            found.setdefault("visitor_id", found_id)
        found.setdefault("screen_bucket", bucket)


from trackgate.workers.enrich.runner import Enricher, Prepared, enrich_batch, prepare_batch  # noqa: E402

__all__ = [
    "CHAIN",
    "BatchEnricher",
    "Enricher",
    "Env",
    "Prepared",
    "enrich_batch",
    "enrich_event",
    "enrich_events",
    "prepare_batch",
]
