"""Profiles, id links, groups and memberships from stored events. Real PostgreSQL, real transactions."""

from __future__ import annotations

import itertools
import secrets
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest

from trackgate.schemas.event import Context, Event, EventType
from trackgate.schemas.jobs import PersistBatch
from trackgate.sources import add_source
from trackgate.workers import jobs, pipeline, profiles_outbox, store
from trackgate.workers.profiles_read import AmbiguousProfile, find_profile

T0 = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
_serial = itertools.count(1)


def ev(kind: EventType, *, at: float = 0, source_id="src_web", active: bool | None = None, **fields) -> Event:
    """A canonical event ``at`` minutes after T0 (event time); received at T0 + 1 day."""
    n = next(_serial)
    return Event(
        id=str(uuid.UUID(int=(0x0190_0000_0000_7000_8000 << 48) + n)),
        message_id=fields.pop("message_id", f"m-{n}"),
        source_id=source_id,
        dialect=fields.pop("dialect", "segment"),
        type=kind,
        context=Context(active=active),
        timestamp=T0 + timedelta(minutes=at),
        received_at=T0 + timedelta(days=1),
        raw="{}",
        **fields,
    )


def persist(database_url: str, *events: Event) -> int:
    with psycopg.connect(database_url) as conn:
        batch = PersistBatch(batch_id=f"b-{next(_serial)}", events=list(events))
        return pipeline.persist(conn, batch, None).n_stored  # store, profiles, quarantine


def show(db, any_id: str, workspace: str | None = None) -> dict:
    found = find_profile(db, any_id, workspace)
    assert found is not None, f"no profile for {any_id}"
    return found


def ids_of(profile: dict) -> dict[str, str]:
    return {i["id"]: i["kind"] for i in profile["ids"]}


def count(db, table: str) -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# --- profiles -------------------------------------------------------------------------------------


def test_identify_makes_one_profile_for_the_user_and_its_device(db, database_url):
    persist(database_url, ev("identify", user_id="u1", anonymous_id="d1", traits={"email": "a@x.io"}))
    persist(database_url, ev("track", at=5, name="Clicked", anonymous_id="d1"))
    by_user, by_device = show(db, "u1"), show(db, "d1")
    assert by_user == by_device
    assert by_user["user_id"] == "u1"
    assert ids_of(by_user) == {"u1": "user", "d1": "anonymous"}
    assert by_user["traits"] == {"email": "a@x.io"}
    assert by_user["first_seen"] == T0
    assert by_user["last_seen"] == T0 + timedelta(minutes=5)
    assert by_user["workspace"] == "default"
    assert count(db, "profiles") == 1


def test_traits_merge_by_event_time_a_late_event_never_overwrites_a_newer_value(db, database_url):
    persist(database_url, ev("identify", at=10, user_id="u1", traits={"email": "new@x.io", "plan": "pro"}))
    # arrives later, happened earlier: adds what is new, overwrites nothing newer
    persist(database_url, ev("identify", at=1, user_id="u1", traits={"email": "old@x.io", "name": "Ada"}))
    assert show(db, "u1")["traits"] == {"email": "new@x.io", "plan": "pro", "name": "Ada"}
    persist(database_url, ev("identify", at=20, user_id="u1", traits={"plan": "team", "company": {"x": 1}}))
    traits = show(db, "u1")["traits"]
    assert traits == {"email": "new@x.io", "plan": "team", "name": "Ada", "company": {"x": 1}}
    # the first-seen of the profile follows the earliest event, whatever the arrival order
    assert show(db, "u1")["first_seen"] == T0 + timedelta(minutes=1)


def test_traits_of_one_batch_are_merged_by_time_not_by_position(db, database_url):
    persist(
        database_url,
        ev("identify", at=9, user_id="u1", traits={"email": "late@x.io"}),
        ev("identify", at=3, user_id="u1", traits={"email": "early@x.io"}),
    )
    assert show(db, "u1")["traits"] == {"email": "late@x.io"}


def test_inactive_calls_do_not_move_last_seen(db, database_url):
    persist(database_url, ev("track", at=5, name="A", user_id="u1"))
    persist(database_url, ev("identify", at=60, user_id="u1", active=False, traits={"plan": "pro"}))
    profile = show(db, "u1")
    assert profile["last_seen"] == T0 + timedelta(minutes=5)
    assert profile["traits"] == {"plan": "pro"}  # the traits still apply
    persist(database_url, ev("identify", at=-30, user_id="u2", active=False))
    assert show(db, "u2")["last_seen"] is None and show(db, "u2")["first_seen"] == T0 - timedelta(minutes=30)
    persist(database_url, ev("track", at=2, name="Older", user_id="u1"))  # late: last seen stays
    assert show(db, "u1")["last_seen"] == T0 + timedelta(minutes=5)


def test_counters_increment_and_decrement_by_dot_path(db, database_url):
    persist(
        database_url,
        ev("increment", user_id="u1", properties={"property": "logins", "value": 1}),
        ev("increment", user_id="u1", properties={"property": "logins"}),  # value defaults to 1
        ev("increment", user_id="u1", properties={"property": "stats.visits", "value": 2.5}),
        ev("decrement", user_id="u1", properties={"property": "stats.visits", "value": 1}),
        ev("increment", user_id="u1", properties={"property": "credits", "value": "3"}),
        ev("decrement", user_id="u1", properties={"property": "credits", "value": 5}),
        # not counted: no property, a value that is not a number
        ev("increment", user_id="u1", properties={"value": 4}),
        ev("increment", user_id="u1", properties={"property": "logins", "value": "many"}),
        ev("increment", user_id="u1", properties={"property": "logins", "value": True}),
    )
    assert show(db, "u1")["counters"] == {"logins": 2, "stats.visits": Decimal("1.5"), "credits": -2}


def test_fractional_counters_stay_exact(db, database_url):
    for _ in range(10):
        persist(database_url, ev("increment", user_id="u1", properties={"property": "p", "value": 0.1}))
    assert show(db, "u1")["counters"] == {"p": Decimal("1.0")}


def test_revenue_is_summed_per_currency_and_mrr_arr_overwrite_by_time(db, database_url):
    persist(
        database_url,
        ev("track", at=1, name="Order", user_id="u1", properties={"revenue": 19.99, "currency": "eur"}),
        ev("track", at=2, name="Order", user_id="u1", properties={"revenue": 5, "currency": "EUR"}),
        ev("track", at=3, name="Order", user_id="u1", properties={"revenue": 10.01}),  # USD assumed
        ev("track", at=4, name="Refund", user_id="u1", properties={"revenue": "-2.5", "currency": "USD"}),
        ev("track", at=5, name="Sub", user_id="u1", properties={"mrr": 99, "arr": 1188}),
        ev("track", at=6, name="X", user_id="u1", properties={"revenue": "lots", "mrr": None}),
    )
    profile = show(db, "u1")
    assert profile["revenue"] == {"EUR": Decimal("24.99"), "USD": Decimal("7.51")}
    assert (profile["mrr"], profile["arr"]) == (99, 1188)
    persist(database_url, ev("track", at=3, name="Sub", user_id="u1", properties={"mrr": 49}))  # older
    assert show(db, "u1")["mrr"] == 99
    persist(database_url, ev("track", at=9, name="Sub", user_id="u1", properties={"mrr": 149.5}))
    assert show(db, "u1")["mrr"] == Decimal("149.5") and show(db, "u1")["arr"] == 1188


def test_a_job_run_again_changes_nothing_twice(db, database_url):
    batch = [
        ev("increment", user_id="u1", properties={"property": "logins", "value": 1}),
        ev("track", name="Order", user_id="u1", properties={"revenue": 10}),
    ]
    assert persist(database_url, *batch) == 2
    assert persist(database_url, *batch) == 0  # the same job again
    # a retried request: same message ids, new gateway ids, in a batch with one new event
    retried = [
        ev("increment", user_id="u1", message_id=batch[0].message_id, properties={"property": "logins"}),
        ev("increment", user_id="u1", properties={"property": "logins", "value": 1}),
    ]
    assert persist(database_url, *retried) == 1
    profile = show(db, "u1")
    assert profile["counters"] == {"logins": 2}
    assert profile["revenue"] == {"USD": 10}


def test_bot_and_excluded_events_change_no_state(db, database_url):
    persist(
        database_url,
        ev("identify", user_id="bot", traits={"x": 1}, enrichment={"is_bot": True}),
        ev("increment", user_id="u1", properties={"property": "n"}, enrichment={"is_excluded": True}),
    )
    assert count(db, "events") == 2 and count(db, "profiles") == 0


def test_ids_of_any_length(db, database_url):
    long_user, long_group = secrets.token_hex(2000), secrets.token_hex(2000)
    persist(
        database_url,
        ev("identify", user_id=long_user, anonymous_id="d1", traits={"a": 1}),
        ev("group", user_id=long_user, group_id=long_group, traits={"name": "Big"}),
    )
    profile = show(db, long_user)
    assert profile["user_id"] == long_user and profile["groups"][0]["group_id"] == long_group


def test_an_event_postgresql_refuses_is_quarantined_and_the_others_still_apply(db, database_url):
    good = ev("increment", user_id="u1", properties={"property": "n", "value": 1})
    bad = ev("identify", user_id="u1", traits={"bio": "a\x00b"})
    assert persist(database_url, good, bad) == 1
    assert count(db, "quarantine") == 1
    profile = show(db, "u1")
    assert profile["counters"] == {"n": 1} and profile["traits"] == {}


# --- identity resolution --------------------------------------------------------------------------


def test_identify_merges_the_anonymous_history_into_the_user(db, database_url):
    persist(
        database_url,
        ev("page", at=-60, name="Home", anonymous_id="d1"),
        ev("increment", at=-50, anonymous_id="d1", properties={"property": "views"}),
        ev("identify", at=-40, anonymous_id="d1", traits={"referrer": "ad"}),
    )
    persist(database_url, ev("track", at=-5, name="Login", user_id="u1"))
    assert count(db, "profiles") == 2
    persist(database_url, ev("identify", at=0, user_id="u1", anonymous_id="d1", traits={"email": "a@x.io"}))
    profile = show(db, "u1")
    assert count(db, "profiles") == 1
    assert ids_of(profile) == {"d1": "anonymous", "u1": "user"}
    assert profile["traits"] == {"referrer": "ad", "email": "a@x.io"}
    assert profile["counters"] == {"views": 1}
    assert profile["first_seen"] == T0 - timedelta(minutes=60)


def test_a_new_user_on_an_anonymous_device_takes_over_its_profile(db, database_url):
    persist(database_url, ev("page", at=-60, name="Home", anonymous_id="d1"))
    before = show(db, "d1")["profile_id"]
    persist(database_url, ev("identify", user_id="u1", anonymous_id="d1"))
    assert show(db, "u1")["profile_id"] == before and show(db, "u1")["user_id"] == "u1"


def test_a_device_shared_by_two_users_merges_nobody(db, database_url):
    persist(database_url, ev("identify", at=0, user_id="u1", anonymous_id="d1", traits={"name": "One"}))
    persist(database_url, ev("identify", at=5, user_id="u2", anonymous_id="d1", traits={"name": "Two"}))
    one, two = show(db, "u1"), show(db, "u2")
    assert one["profile_id"] != two["profile_id"]
    assert (one["traits"], two["traits"]) == ({"name": "One"}, {"name": "Two"})
    assert show(db, "d1")["profile_id"] == one["profile_id"]  # the device stays with its first user


def test_alias_merges_two_profiles(db, database_url):
    persist(
        database_url,
        ev("identify", at=1, user_id="old", anonymous_id="d-old", traits={"email": "old@x.io", "a": 1}),
        ev("increment", at=2, user_id="old", properties={"property": "logins", "value": 3}),
        ev("track", at=3, name="Order", user_id="old", properties={"revenue": 10, "mrr": 20}),
        ev("group", at=4, user_id="old", group_id="g1", traits={"name": "G1"}),
        ev("identify", at=5, user_id="new", traits={"email": "new@x.io", "b": 2}),
        ev("increment", at=6, user_id="new", properties={"property": "logins", "value": 2}),
        ev("track", at=7, name="Order", user_id="new", properties={"revenue": 5}),
        ev("group", at=8, user_id="new", group_id="g2"),
        ev("group", at=0, user_id="new", group_id="g1"),
    )
    old_id = show(db, "old")["profile_id"]
    persist(database_url, ev("alias", at=10, user_id="new", previous_id="old"))
    merged = show(db, "old")
    assert merged == show(db, "new") == show(db, "d-old")
    assert merged["profile_id"] != old_id and merged["user_id"] == "new"
    assert ids_of(merged) == {"old": "user", "d-old": "anonymous", "new": "user"}
    assert merged["traits"] == {"email": "new@x.io", "a": 1, "b": 2}
    assert merged["counters"] == {"logins": 5}
    assert merged["revenue"] == {"USD": 15} and merged["mrr"] == 20
    groups = {g["group_id"]: g for g in merged["groups"]}
    assert set(groups) == {"g1", "g2"}
    assert groups["g1"]["first_seen"] == T0 and groups["g1"]["last_seen"] == T0 + timedelta(minutes=4)
    assert merged["first_seen"] == T0 and merged["last_seen"] == T0 + timedelta(minutes=10)
    assert count(db, "profiles") == 1 and count(db, "group_members") == 2
    # later events under either id land on the one profile
    persist(database_url, ev("increment", at=11, user_id="old", properties={"property": "logins"}))
    assert show(db, "new")["counters"] == {"logins": 6}


def test_alias_before_either_id_exists_and_merges_inside_one_batch(db, database_url):
    persist(
        database_url,
        ev("alias", at=0, user_id="u-new", previous_id="anon-7"),
        ev("increment", at=1, user_id="u-new", properties={"property": "n"}),
        ev("increment", at=2, anonymous_id="anon-7", properties={"property": "n"}),
        ev("identify", at=3, user_id="x", traits={"t": 1}),
        ev("increment", at=4, user_id="x", properties={"property": "n"}),
        ev("alias", at=5, user_id="x", previous_id="u-new"),
    )
    profile = show(db, "anon-7")
    assert ids_of(profile) == {"u-new": "user", "anon-7": "previous", "x": "user"}
    assert profile["counters"] == {"n": 3} and profile["user_id"] == "x"
    assert count(db, "profiles") == 1 and count(db, "profile_ids") == 3


def test_alias_merge_chain_across_batches(db, database_url):
    for name in ("a", "b", "c"):
        persist(database_url, ev("increment", user_id=name, properties={"property": "n"}))
    persist(
        database_url,
        ev("alias", at=1, user_id="b", previous_id="a"),
        ev("alias", at=2, user_id="c", previous_id="b"),
    )
    assert count(db, "profiles") == 1
    assert show(db, "a")["counters"] == {"n": 3} and show(db, "a")["user_id"] == "c"


# --- groups ---------------------------------------------------------------------------------------


def test_group_events_keep_group_traits_by_time_and_memberships(db, database_url):
    persist(
        database_url,
        ev("group", at=5, group_id="acme", traits={"name": "Acme", "type": "company", "plan": "pro"}),
        ev("group", at=1, user_id="u1", group_id="acme", traits={"name": "Acme Old", "seats": 3}),
    )
    (row,) = db.execute("SELECT group_id, name, type, traits FROM groups").fetchall()
    assert row == ("acme", "Acme", "company", {"name": "Acme", "type": "company", "plan": "pro", "seats": 3})
    (group,) = show(db, "u1")["groups"]
    assert (group["group_id"], group["name"], group["type"]) == ("acme", "Acme", "company")


def test_memberships_from_assign_group_identify_company_and_events_with_a_group(db, database_url):
    persist(
        database_url,
        ev("assign_group", at=1, anonymous_id="d1", group_ids=["g1", "g2"]),
        ev("identify", at=2, user_id="u1", anonymous_id="d1", traits={"company": {"id": 7, "name": "Seven"}}),
        ev("identify", at=3, user_id="u1", group_id="ws_c", traits={"company": {"name": "Spec Co"}}),
        ev("track", at=4, name="Used", user_id="u1", group_id="g3"),  # e.g. Bucket's event with a companyId
    )
    groups = {g["group_id"]: g for g in show(db, "u1")["groups"]}
    assert set(groups) == {"g1", "g2", "7", "ws_c", "g3"}
    assert groups["7"]["name"] == "Seven" and groups["ws_c"]["name"] == "Spec Co"
    assert groups["g1"]["name"] is None and groups["g1"]["traits"] == {}
    # the company stays among the user's traits too (client data is kept as sent)
    assert show(db, "u1")["traits"]["company"] == {"name": "Spec Co"}


def test_a_group_without_a_user_makes_no_profile(db, database_url):
    persist(database_url, ev("group", group_id="acme", traits={"name": "Acme"}))
    assert count(db, "groups") == 1 and count(db, "profiles") == 0 and count(db, "group_members") == 0


# --- workspaces -----------------------------------------------------------------------------------


def test_sources_of_one_workspace_share_profiles_and_workspaces_are_apart(db, database_url):
    seg, _ = add_source(database_url, "segment", "web", "k1", workspace="shop")
    opn, _ = add_source(database_url, "openpanel", "app", "k2", workspace="shop")
    other, _ = add_source(database_url, "segment", "blog", "k3", workspace="blog")
    persist(
        database_url,
        ev("identify", user_id="u1", source_id=seg.id, traits={"email": "a@x.io"}),
        ev("increment", user_id="u1", source_id=opn.id, dialect="openpanel", properties={"property": "n"}),
        ev("identify", user_id="u1", source_id=other.id, traits={"email": "blog@x.io"}),
    )
    shop, blog = show(db, "u1", "shop"), show(db, "u1", "blog")
    assert shop["traits"] == {"email": "a@x.io"} and shop["counters"] == {"n": 1}
    assert blog["traits"] == {"email": "blog@x.io"} and blog["counters"] == {}
    with pytest.raises(AmbiguousProfile) as raised:
        find_profile(db, "u1")
    assert raised.value.workspaces == ["blog", "shop"]
    assert find_profile(db, "u1", "default") is None


def test_one_batch_resolves_known_ids_of_two_workspaces_each_in_its_own(db, database_url):
    """The same ids known in two workspaces, met again in one batch: each event lands on its own
    workspace's profile (ids are resolved per workspace, by key)."""
    shop, _ = add_source(database_url, "segment", "web", "k1", workspace="shop")
    blog, _ = add_source(database_url, "segment", "blog", "k2", workspace="blog")
    persist(
        database_url,
        ev("identify", user_id="u1", anonymous_id="d1", source_id=shop.id, traits={"plan": "pro"}),
        ev("identify", user_id="u1", anonymous_id="d1", source_id=blog.id, traits={"plan": "free"}),
    )
    persist(
        database_url,
        ev("increment", anonymous_id="d1", source_id=shop.id, properties={"property": "n"}),
        ev("increment", user_id="u1", source_id=blog.id, properties={"property": "n", "value": 5}),
        ev("track", user_id="u2", anonymous_id="d1", source_id=blog.id, name="x"),
    )
    assert show(db, "u1", "shop")["counters"] == {"n": 1}
    assert show(db, "u1", "blog")["counters"] == {"n": 5}
    assert show(db, "d1", "shop")["profile_id"] == show(db, "u1", "shop")["profile_id"]
    # a device of another identified user stays with it: u2 gets a profile of its own in blog only
    assert show(db, "u2", "blog")["profile_id"] != show(db, "u1", "blog")["profile_id"]
    assert find_profile(db, "u2", "shop") is None
    assert count(db, "profiles") == 3 and count(db, "profile_ids") == 5


def test_new_profiles_with_and_without_state_in_one_batch(db, database_url):
    """A new profile with only ids and times (COPYed with the columns' defaults) beside new profiles
    with traits, counters and money, all in one batch."""
    persist(
        database_url,
        ev("track", user_id="plain", anonymous_id="d-plain", name="Viewed", at=1),
        ev("page", anonymous_id="d-anon", name="Home", at=2, active=False),
        ev("identify", user_id="rich", traits={"email": "r@x.io"}, at=3),
        ev("increment", user_id="counted", properties={"property": "n"}, at=4),
        ev("track", user_id="paid", name="Paid", properties={"revenue": 9.5, "mrr": 3}, at=5),
    )
    plain = show(db, "plain")
    assert plain["traits"] == {} and plain["counters"] == {} and plain["revenue"] == {}
    assert plain["mrr"] is None and ids_of(plain) == {"plain": "user", "d-plain": "anonymous"}
    assert plain["first_seen"] == plain["last_seen"] == T0 + timedelta(minutes=1)
    anon = show(db, "d-anon")
    assert anon["user_id"] is None and anon["last_seen"] is None
    assert anon["first_seen"] == T0 + timedelta(minutes=2)
    assert show(db, "rich")["traits"] == {"email": "r@x.io"}
    assert show(db, "counted")["counters"] == {"n": 1}
    paid = show(db, "paid")
    assert paid["revenue"] == {"USD": Decimal("9.5")} and paid["mrr"] == Decimal(3)
    row = db.execute(
        "SELECT traits, trait_times, counters, revenue FROM profiles p"
        " JOIN profile_ids i ON i.profile_id = p.id WHERE i.id = 'plain'"
    ).fetchone()
    assert row == ({}, {}, {}, {})


# --- concurrency: real transactions on separate connections ---------------------------------------


def _race(database_url: str, workers: list[list[list[Event]]]) -> None:
    """Run each worker's batches on its own connection and thread, all starting together, as the
    pipeline does: each batch stored with its profile outbox row, then the pending rows applied on
    that connection (the racing connections share the rows and apply them at once); batches that
    PostgreSQL aborts for a deadlock are retried as the job does."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def run(batches: list[list[Event]]) -> None:
        try:
            with psycopg.connect(database_url) as conn:
                barrier.wait()
                for events in batches:
                    batch = PersistBatch(batch_id=f"b-{next(_serial)}", events=events)
                    for attempt in range(pipeline.CONFLICT_RETRIES):
                        try:
                            store.store_batch(conn, batch, apply=pipeline.apply_stored)
                            break
                        except pipeline.CONFLICTS:
                            if attempt == pipeline.CONFLICT_RETRIES - 1:
                                raise
                    profiles_outbox.apply_all(conn)  # retries a deadlock itself
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(batches,)) for batches in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with psycopg.connect(database_url) as conn:
        assert profiles_outbox.apply_all(conn, wait=True) == 0  # each connection applied what it found


def test_two_workers_incrementing_one_profile_lose_nothing(db, database_url):
    n = 60

    def batches() -> list[list[Event]]:
        return [[ev("increment", user_id="u1", properties={"property": "logins"})] for _ in range(n)]

    _race(database_url, [batches(), batches()])
    profile = show(db, "u1")
    assert profile["counters"] == {"logins": 2 * n}
    assert count(db, "profiles") == 1 and count(db, "profile_ids") == 1


def test_workers_racing_on_new_users_make_one_profile_each(db, database_url):
    users = [f"u{i}" for i in range(40)]

    def batches(seed: int) -> list[list[Event]]:
        order = users if seed % 2 else users[::-1]  # two meet the users in one order, one in reverse
        return [
            [
                ev("identify", user_id=u, anonymous_id=f"d-{u}", traits={f"t{seed}": 1}),
                ev("increment", user_id=u, properties={"property": "n"}),
                ev("group", user_id=u, group_id=f"g{i % 3}", traits={f"w{seed}": 1}),
            ]
            for i, u in enumerate(order)
        ]

    _race(database_url, [batches(0), batches(13), batches(27)])
    assert count(db, "profiles") == len(users) and count(db, "profile_ids") == 2 * len(users)
    for u in users:
        profile = show(db, u)
        assert profile["counters"] == {"n": 3}
        assert profile["traits"] == {"t0": 1, "t13": 1, "t27": 1}
    traits = dict(db.execute("SELECT group_id, traits FROM groups").fetchall())
    assert traits == {f"g{i}": {"w0": 1, "w13": 1, "w27": 1} for i in range(3)}


def test_workers_racing_on_new_ids_with_plain_events_make_one_profile_each(db, database_url):
    """Three workers meet the same new users and devices with track and page events only (the new
    profiles COPYed with only ids and times): one profile per user, every id once, on it."""
    users = [f"u{i}" for i in range(40)]

    def batches(seed: int) -> list[list[Event]]:
        order = users if seed % 2 else users[::-1]
        return [  # batches of 8 users, 3 events each
            [
                event
                for u in order[k : k + 8]
                for event in (
                    ev("track", user_id=u, anonymous_id=f"d-{u}", name="Viewed", at=seed),
                    ev("page", anonymous_id=f"d2-{u}", name="Home", at=seed + 1),
                    ev("page", user_id=u, anonymous_id=f"d2-{u}", name="Home", at=seed + 2),
                )
            ]
            for k in range(0, len(order), 8)
        ]

    _race(database_url, [batches(0), batches(13), batches(27)])
    assert count(db, "profiles") == len(users) and count(db, "profile_ids") == 3 * len(users)
    for u in users:
        profile = show(db, u)
        assert ids_of(profile) == {u: "user", f"d-{u}": "anonymous", f"d2-{u}": "anonymous"}
        assert profile["first_seen"] == T0 and profile["last_seen"] == T0 + timedelta(minutes=29)


def test_merges_racing_with_increments_lose_nothing(db, database_url):
    """Workers increment through users a0..a19 and the devices d0..d19 of users b0..b19 while another
    aliases each b into its a. An increment through a device is applied under that device's lock, not
    under b's, so the merge may commit while it waits for b's profile: it must then find the merged
    profile. Every increment ends on the merged profile, and no deadlock stops the run."""
    n = 20
    persist(database_url, *[ev("identify", user_id=f"a{i}") for i in range(n)])
    persist(database_url, *[ev("identify", user_id=f"b{i}", anonymous_id=f"d{i}") for i in range(n)])

    def increments() -> list[list[Event]]:
        return [
            [
                ev("increment", user_id=f"a{i}", properties={"property": "n"}),
                ev("increment", anonymous_id=f"d{(i + 7) % n}", properties={"property": "n"}),
                ev("increment", anonymous_id=f"d{i}", properties={"property": "n"}),
            ]
            for _ in range(3)
            for i in range(n)
        ]

    # a few aliases a batch: each merge transaction holds its profiles' locks a while
    aliases = [
        [ev("alias", user_id=f"a{i}", previous_id=f"b{i}") for i in range(k, k + 4)] for k in range(0, n, 4)
    ]
    _race(database_url, [increments(), aliases, increments()])
    assert count(db, "profiles") == n
    for i in range(n):
        assert show(db, f"b{i}") == show(db, f"a{i}") == show(db, f"d{i}")
        assert show(db, f"a{i}")["counters"] == {"n": 3 * 3 * 2}


def test_the_job_stores_again_when_postgresql_reports_a_deadlock(settings, db, monkeypatch):
    """persist_batch retries the whole transaction on a deadlock (rolled back: nothing twice)."""
    from trackgate.workers import runtime

    runtime.configure(settings)
    real = store.store_batch
    calls = []

    def deadlock_once(conn, batch, apply=None, **more):
        calls.append(batch.batch_id)
        if len(calls) == 1:
            with conn.transaction():
                real(conn, batch, apply=apply)  # rolled back by the error below
                raise psycopg.errors.DeadlockDetected("deadlock detected")
        return real(conn, batch, apply=apply, **more)

    monkeypatch.setattr(store, "store_batch", deadlock_once)
    event = ev("increment", user_id="u1", properties={"property": "n"})
    batch = PersistBatch(batch_id="b-dl", events=[event])
    jobs.persist_batch(batch)
    assert calls == ["b-dl", "b-dl"]
    assert show(db, "u1")["counters"] == {"n": 1}


def test_a_whole_job_of_new_ids_is_stored_beside_another_transaction_holding_many_locks(db, database_url):
    """A job may hold 5,000 events (``max_batch_events``), each with a new user id and anonymous id:
    10,000 advisory locks in one transaction. Beside another worker's transaction holding 3,000 (here
    a connection holding them), that overflowed PostgreSQL's shared lock table (``out of shared
    memory``) on every retry. Now the store takes none and the profile outbox applies at most
    ``profiles_outbox.MAX_EVENTS`` events a transaction (the store writes rows of at most
    ``store.MAX_TRANSACTION_EVENTS``): it fits. Exactly once still: sent again, nothing is stored or
    counted twice."""
    n = 5000
    events = [ev("identify", at=i % 60, user_id=f"big-u{i}", anonymous_id=f"big-a{i}") for i in range(n)]
    with psycopg.connect(database_url) as other:
        other.execute("SELECT count(pg_advisory_xact_lock(k)) FROM generate_series(1, 3000) AS k")
        assert persist(database_url, *events) == n  # `other` still holds its locks (open transaction)
    assert count(db, "profiles") == n
    assert count(db, "profile_ids") == 2 * n
    assert persist(database_url, *events) == 0
    assert count(db, "profiles") == n


def test_lock_ids_are_per_kind_and_workspace_and_fit_a_bigint():
    from trackgate.workers.profiles import _key, _lock_id

    key = _key("user-1")
    ids = {_lock_id(kind, workspace, key) for kind in (b"i", b"g") for workspace in ("default", "acme")}
    assert len(ids) == 4
    extremes = (b"\x7f" + b"\xff" * 31, b"\x80" + b"\x00" * 31, b"\xff" * 32, b"\x00" * 32)
    assert all(-(2**63) <= _lock_id(b"i", "w", k) < 2**63 for k in extremes)
    assert _lock_id(b"i", "default", key) == _lock_id(b"i", "default", _key("user-1"))  # stable
