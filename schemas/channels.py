"""TinyTrail's six channels (Organic Search, Paid Search, Social, Email, Referral, Direct) from GA4's
default channel groups, which the enrichment writes (``workers/enrich/referrer.py``). Here, not in the
worker, because the reports (``gateway/reports/``) map the stored GA4 channel in SQL with the same table.
"""

from __future__ import annotations

TINYTRAIL_CHANNELS = {
    "Direct": "Direct",
    "Organic Search": "Organic Search",
    "Paid Search": "Paid Search",
    "Paid Shopping": "Paid Search",
    "Organic Social": "Social",
    "Paid Social": "Social",
    "Email": "Email",
}
"""GA4 channel -> TinyTrail channel; any other GA4 group is a Referral."""

OTHER = "Referral"


def tinytrail_channel(ga4_channel: str) -> str:
    """TinyTrail's six channels from GA4's: search (organic, paid, paid shopping), social (organic and
    paid: TinyTrail has one Social), Email and Direct map across; every other group had a referrer or a
    campaign and no better TinyTrail home, so it is a Referral."""
    return TINYTRAIL_CHANNELS.get(ga4_channel, OTHER)


def channel_sql(column: str) -> str:
    """The same mapping as a SQL expression over a GA4 channel ``column`` (NULL: Direct, no page hit)."""
    whens = " ".join(f"WHEN '{ga4}' THEN '{tt}'" for ga4, tt in TINYTRAIL_CHANNELS.items())
    return f"CASE coalesce({column}, 'Direct') {whens} ELSE '{OTHER}' END"
