"""Campaign fields and referrer → GA4 channel (and TinyTrail's six): table-driven."""

from __future__ import annotations

import pytest

from tests.workers.enrich.helpers import event
from trackgate.schemas.channels import tinytrail_channel
from trackgate.workers.enrich import Env, campaign, referrer

ENV = Env()
PAGE = "https://shop.example.com/pricing"

CAMPAIGN_CASES = [
    # (url, context campaign, search, expected)
    (PAGE, None, None, {}),
    (
        PAGE + "?utm_source=news&utm_medium=email&utm_campaign=spring&utm_term=shoes&utm_content=top",
        None,
        None,
        {
            "utm_source": "news",
            "utm_medium": "email",
            "utm_campaign": "spring",
            "utm_term": "shoes",
            "utm_content": "top",
        },
    ),
    (PAGE + "?UTM_Source=Mixed%20Case&x=1", None, None, {"utm_source": "Mixed Case"}),
    (PAGE + "?gclid=g1&msclkid=m1&fbclid=f1", None, None, {"gclid": "g1", "msclkid": "m1", "fbclid": "f1"}),
    # the dialect's campaign fields first; the URL fills what they lack
    (
        PAGE + "?utm_source=url&utm_term=t",
        {"source": "ctx", "medium": "cpc", "name": "c"},
        None,
        {"utm_source": "ctx", "utm_medium": "cpc", "utm_campaign": "c", "utm_term": "t"},
    ),
    # no URL: the page's search string
    (None, None, "?utm_medium=social", {"utm_medium": "social"}),
    # first occurrence wins, blanks are ignored
    (PAGE + "?utm_source=&utm_source=a&utm_source=b", None, None, {"utm_source": "a"}),
    ("not a url", None, None, {}),
]


@pytest.mark.parametrize(("url", "ctx", "search", "expected"), CAMPAIGN_CASES)
def test_campaign(url, ctx, search, expected):
    e = event(url=url, campaign=ctx, search=search)
    campaign.process(e, ENV)
    assert e.enrichment == expected


def test_campaign_never_overwrites():
    e = event(url=PAGE + "?utm_source=url", enrichment={"utm_source": "client"})
    campaign.process(e, ENV)
    assert e.enrichment == {"utm_source": "client"}


CHANNEL_CASES = [
    # (source, medium, campaign, GA4 channel, TinyTrail channel)
    ("(direct)", "(none)", "", "Direct", "Direct"),
    ("google", "organic", "", "Organic Search", "Organic Search"),
    ("bing", "cpc", "", "Paid Search", "Paid Search"),
    ("google", "ppc", "", "Paid Search", "Paid Search"),
    ("facebook.com", "referral", "", "Organic Social", "Social"),
    ("facebook", "paid_social", "", "Paid Social", "Social"),
    ("t.co", "referral", "", "Organic Social", "Social"),
    ("newsletter", "email", "", "Email", "Email"),
    ("e-mail", "whatever", "", "Email", "Email"),
    ("partner", "affiliate", "", "Affiliates", "Referral"),
    ("blog.example.org", "referral", "", "Referral", "Referral"),
    ("gdn", "display", "", "Display", "Referral"),
    ("gdn", "cpm", "", "Display", "Referral"),
    ("youtube.com", "referral", "", "Organic Video", "Referral"),
    ("youtube", "cpv", "", "Paid Video", "Referral"),
    ("amazon.com", "referral", "", "Organic Shopping", "Referral"),
    ("someshop", "cpc", "", "Paid Other", "Referral"),
    ("google", "cpc", "summer shopping", "Paid Shopping", "Paid Search"),
    ("x", "organic", "black-shop-week", "Organic Shopping", "Referral"),
    ("google", "cpc", "cross-network pmax", "Cross-network", "Referral"),
    ("spotify", "audio", "", "Audio", "Referral"),
    ("sms", "text", "", "SMS", "Referral"),
    ("app", "web-push", "", "Mobile Push Notifications", "Referral"),
    ("firebase", "x", "", "Mobile Push Notifications", "Referral"),
    ("podcast", "social", "", "Organic Social", "Social"),
    ("vendor", "(not set)", "", "Unassigned", "Referral"),
]


@pytest.mark.parametrize(("source", "medium", "camp", "ga4", "tiny"), CHANNEL_CASES)
def test_default_channel(source, medium, camp, ga4, tiny):
    channel = referrer.default_channel(source, medium, camp)
    assert channel == ga4
    assert tinytrail_channel(channel) == tiny


def test_every_ga4_channel_maps_to_a_tinytrail_channel():
    six = {"Organic Search", "Paid Search", "Social", "Email", "Referral", "Direct"}
    assert {tinytrail_channel(c) for c in referrer.CHANNELS} == six


CATEGORY_CASES = [
    ("google", referrer.SEARCH),
    ("google.com", referrer.SEARCH),
    ("google.co.uk", referrer.SEARCH),
    ("news.google.com", referrer.SEARCH),
    ("duckduckgo.com", referrer.SEARCH),
    ("bing.com", referrer.SEARCH),
    ("l.facebook.com", referrer.SOCIAL),
    ("m.youtube.com", referrer.VIDEO),
    ("youtube.com", referrer.VIDEO),
    ("ebay.de", referrer.SHOPPING),
    ("IGShopping", referrer.SHOPPING),
    ("example.com", None),
    ("", None),
]


@pytest.mark.parametrize(("name", "category"), CATEGORY_CASES)
def test_source_category(name, category):
    assert referrer.source_category(name) == category


def test_source_list_is_gas_published_list():
    table = referrer.source_categories()
    assert len(table) > 800
    assert set(table.values()) == {referrer.SEARCH, referrer.SOCIAL, referrer.SHOPPING, referrer.VIDEO}


REFERRER_CASES = [
    # (page url, referrer, expected enrichment subset)
    (
        PAGE,
        "https://www.google.com/",
        {
            "referrer_domain": "google.com",
            "traffic_source": "google",
            "traffic_medium": "organic",
            "channel": "Organic Search",
        },
    ),
    (
        PAGE,
        "https://www.google.co.uk/search?q=x",
        {"traffic_source": "google", "channel": "Organic Search"},
    ),
    (
        PAGE,
        "https://t.co/abc123",
        {
            "referrer_domain": "t.co",
            "traffic_source": "t.co",
            "traffic_medium": "referral",
            "channel": "Organic Social",
        },
    ),
    (
        PAGE,
        "https://blog.example.org/post",
        {"referrer_domain": "blog.example.org", "traffic_medium": "referral", "channel": "Referral"},
    ),
    (PAGE, None, {"traffic_source": "(direct)", "traffic_medium": "(none)", "channel": "Direct"}),
    # a referrer on the page's own host is internal: direct
    (PAGE, "https://shop.example.com/", {"referrer_domain": "shop.example.com", "channel": "Direct"}),
    # UTM wins over the referrer
    (
        PAGE + "?utm_source=newsletter&utm_medium=email",
        "https://mail.example.com/",
        {"traffic_source": "newsletter", "traffic_medium": "email", "channel": "Email"},
    ),
    # Google Ads auto-tagging
    (
        PAGE + "?gclid=abc",
        "https://www.google.com/",
        {"traffic_source": "google", "traffic_medium": "cpc", "channel": "Paid Search"},
    ),
    (
        PAGE + "?msclkid=abc",
        None,
        {"traffic_source": "bing", "traffic_medium": "cpc", "channel": "Paid Search"},
    ),
    (PAGE, "android-app://com.google.android.gm/", {"referrer_domain": "com.google.android.gm"}),
    (PAGE, "::not a url", {"channel": "Direct"}),
]


def test_server_side_calls_get_no_channel_unless_tagged():
    e = event()
    referrer.process(e, ENV)
    assert e.enrichment == {}
    e = event(enrichment={"utm_source": "crm", "utm_medium": "email"})
    referrer.process(e, ENV)
    assert e.enrichment["channel"] == "Email"


@pytest.mark.parametrize(("url", "ref", "expected"), REFERRER_CASES)
def test_referrer(url, ref, expected):
    e = event(url=url, referrer=ref)
    campaign.process(e, ENV)
    referrer.process(e, ENV)
    assert {k: e.enrichment.get(k) for k in expected} == expected
