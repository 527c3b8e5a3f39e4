"""Screen width → TinyTrail's buckets: ``320-375``, ``376-768``, ``769-1024``, ``1025-1440``, ``1441+``,
``unknown``.

The width is ``context.screen.width``, else a dialect's own property (``properties.screen_width`` as
TinyTrail sends it, or ``screenWidth``). Widths under 320 fall in the smallest bucket; no width, or one
that is not a positive number, is ``unknown``. Enrichment key: ``screen_bucket`` (on every event).
"""

from __future__ import annotations

from trackgate.schemas.event import Event

BUCKETS = ((375, "320-375"), (768, "376-768"), (1024, "769-1024"), (1440, "1025-1440"))


def bucket(width: object) -> str:
    """The bucket of a width (the comparisons BUCKETS lists, written out: this runs on every event)."""
    kind = type(width)
    if kind is not int and kind is not float:  # bool is not a width
        return "unknown"
    # an int or a float, checked just above (not by an assert: ``int | float`` is a new object a call)
    number: float = width  # type: ignore[assignment]
    if number != number or number <= 0:  # NaN, or no width
        return "unknown"
    if number <= 375:
        return "320-375"
    if number <= 768:
        return "376-768"
    if number <= 1024:
        return "769-1024"
    if number <= 1440:
        return "1025-1440"
    return "1441+"


def screen_width(event: Event) -> object:
    screen = event.context.screen
    if screen is not None and screen.width is not None:
        return screen.width
    props = event.properties
    return props.get("screen_width", props.get("screenWidth")) if props else None


def process(event: Event, env) -> None:
    event.enrichment.setdefault("screen_bucket", bucket(screen_width(event)))
