"""The chain's pure processors memoized for their whole answer, by what each reads of the event.

Five processors answer from the event alone (and the geo database), so an answer given once is given
again for the same inputs: per user agent (``bots`` + ``user_agent``), per page and campaign fields
(``campaign`` + ``referrer``: the referrer, the page URL, its search and the campaign fields), per IP
string (``geo``). On an event whose ``enrichment`` starts empty (the usual case: an adapter flagged
nothing), :func:`head` gives what those five would add, as a new dict built from three cached
answers, with one cache lookup each instead of five processor calls. An answer is made by running the
processors themselves on a scratch event that carries only those inputs, so it is theirs by construction
(``tests/workers/enrich/test_memo.py`` checks it against the chain, key for key).

The caches are bounded LRUs (``functools.lru_cache``); the values are small dicts of strings and
booleans that never leave this module: :func:`head` copies them into a new dict for each event
(``{**agent, **traffic, **place}``: one merge per answer, ~1 µs less an event than adding (key, value)
pairs to the event's dict), so nothing cached is shared mutably. Keys: the user agent's classified
prefix (an agent over ``OVERLONG_UA_CHARS`` is not memoized), the IP string in full (iptocc's and
MaxMind's ranges are not cut at /24: a prefix would change answers).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from trackgate.adapters.traffic import OVERLONG_UA_CHARS, bounded_user_agent
from trackgate.schemas.event import Campaign, Context, Event, Library, Page
from trackgate.workers.enrich import bots, campaign, geo, referrer, user_agent

Answer = dict[str, Any]
"""A cached answer: what the processors added, in their order. Never handed out (see :func:`head`)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SDK = Library(name="sdk")
_NONE: Answer = {}  # never changed: only merged from


def _scratch(context: Context) -> Event:
    return Event(
        id="", message_id="", source_id="", dialect="", type="track", context=context, timestamp=_EPOCH,
        received_at=_EPOCH, raw="",
    )  # fmt: skip


@lru_cache(maxsize=16384)
def agent(ua: str, names_library: bool) -> Answer:
    """What ``bots`` then ``user_agent`` add for a user agent (at most CLASSIFIED_UA_CHARS long: all
    they read of one up to OVERLONG_UA_CHARS) and whether the event names its SDK."""
    event = _scratch(Context(user_agent=ua, library=_SDK if names_library else None))
    bots.process(event, None)
    user_agent.process(event, None)
    return dict(event.enrichment)


@lru_cache(maxsize=16384)
def traffic(
    fields: tuple[Any, Any, Any, Any, Any] | None,
    has_page: bool,
    url: str | None,
    search: str | None,
    referrer_url: str | None,
) -> Answer:
    """What ``campaign`` then ``referrer`` add for the campaign fields (source, medium, name, term,
    content; None: no ``context.campaign``) and the page (its URL, search and referrer)."""
    page = Page(url=url, search=search, referrer=referrer_url) if has_page else None
    found = None if fields is None else Campaign(*fields)
    event = _scratch(Context(page=page, campaign=found))
    campaign.process(event, None)
    referrer.process(event, None)
    return dict(event.enrichment)


class _GeoEnv:
    __slots__ = ("geo",)

    def __init__(self, database: geo.GeoDatabase | None):
        self.geo = database


@lru_cache(maxsize=65536)
def place(ip: str, database: geo.GeoDatabase | None) -> Answer:
    """What ``geo`` adds for an IP string (with the worker's geo database, if any)."""
    event = _scratch(Context(ip=ip))
    geo.process(event, _GeoEnv(database))
    return dict(event.enrichment)


AGENTS_MAX = 16384
TRAFFIC_MAX = 16384
PLACES_MAX = 65536
_by_agent: tuple[dict[str, Answer], dict[str, Answer]] = ({}, {})
""":func:`agent`'s answers by the event's whole user agent, without and with a named SDK."""
_by_traffic: dict[tuple[Any, ...], Answer] = {}
""":func:`traffic`'s answers by its arguments, as one tuple."""
_by_ip: dict[str, Answer] = {}
""":func:`place`'s answers by IP string, for the database in ``_by_ip_for``."""
_by_ip_for: list[geo.GeoDatabase | None] = [None]


def _remember(found: dict[Any, Answer], key: Any, answer: Answer, most: int) -> Answer:
    if len(found) >= most:
        found.clear()  # forgotten at once; each is worked out again (from the LRU) when next seen
    found[key] = answer
    return answer


def head(event: Event, database: geo.GeoDatabase | None) -> dict[str, Any] | None:
    """What ``bots``, ``user_agent``, ``campaign``, ``referrer`` and ``geo`` add to ``event`` when its
    enrichment is empty, as a new dict (the event's own, to keep), or None when it is not memoized (an
    overlong user agent, a value that is not hashable, a processor that raised: the chain then runs
    them one by one, as it always did).

    Each answer is first looked up in a plain dict by what it is made from (the whole user agent,
    the traffic fields as one tuple, the IP string): a hit there costs a hash and a probe, where
    ``lru_cache``'s costs building its key and moving its entry to the front too (~0.6 µs an event
    for the three, bench (e)'s events). A miss asks the LRU functions above, which work the answer
    out once; the dicts are bounded as they are, and emptied whole when full."""
    try:
        context = event.context
        ua = context.user_agent
        page = context.page
        found = context.campaign
        ip = context.ip
        if not ua:
            agent_answer = _NONE
        elif len(ua) > OVERLONG_UA_CHARS:
            return None
        else:
            library = context.library
            names_library = library is not None and bool(library.name)
            by_agent = _by_agent[names_library]
            agent_answer = by_agent.get(ua)  # type: ignore[assignment]
            if agent_answer is None:
                answer = agent(bounded_user_agent(ua), names_library)
                agent_answer = _remember(by_agent, ua, answer, AGENTS_MAX)
        if page is None and found is None:
            traffic_answer = _NONE  # no page, no campaign fields: neither processor adds anything
        else:
            fields = (
                None if found is None else (found.source, found.medium, found.name, found.term, found.content)
            )
            key = (
                fields,
                page is not None,
                page.url if page is not None else None,
                page.search if page is not None else None,
                page.referrer if page is not None else None,
            )
            traffic_answer = _by_traffic.get(key)  # type: ignore[assignment]
            if traffic_answer is None:
                traffic_answer = _remember(_by_traffic, key, traffic(*key), TRAFFIC_MAX)
        if not ip:
            place_answer = _NONE
        else:
            if database is not _by_ip_for[0]:
                _by_ip.clear()
                _by_ip_for[0] = database
            place_answer = _by_ip.get(ip)  # type: ignore[assignment]
            if place_answer is None:
                place_answer = _remember(_by_ip, ip, place(ip, database), PLACES_MAX)
    except Exception:  # noqa: BLE001 - the chain runs the processors itself and notes what failed
        return None
    return {**agent_answer, **traffic_answer, **place_answer}


def clear() -> None:
    for cache in (agent, traffic, place):
        cache.cache_clear()
    forget()


def forget() -> None:
    """Empty the front dicts of :func:`head` (the LRUs keep their answers)."""
    for found in (*_by_agent, _by_traffic, _by_ip):
        found.clear()
    _by_ip_for[0] = None
