"""The relations every runner reads: brand-clock days, merged persons, person attributes, filters."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from conftest import ev, order, person

from siyu.analytics.queries.base import Breakdown, Filter, QueryBase, add_breakdown, apply_filters

pytestmark = pytest.mark.django_db


def test_local_ts_is_the_brand_clock(load):
    # Given an event at 23:30 on 5 January in Shanghai (15:30 UTC)
    engine = load([ev(1, "Page Viewed", "2026-01-05 23:30")])
    # When it is read back
    frame = engine.execute(engine.events().select("local_ts"))
    # Then its local day is the 5th, not the UTC day before or after
    assert frame.local_ts[0].to_pydatetime() == datetime(2026, 1, 5, 23, 30)


def test_merged_persons_count_for_the_survivor(load):
    engine = load([ev(1, "Page Viewed", "2026-01-05 10:00"), ev(2, "Page Viewed", "2026-01-05 11:00")],
                  overrides=[(2, 1)])
    t = engine.events()
    frame = engine.execute(t.group_by("person_id").aggregate(n=t.count()))
    assert frame.to_dict("records") == [{"person_id": 1, "n": 2}]


def test_event_and_person_filters(load):
    engine = load(
        [order(1, "2026-01-05 10:00", "120.00", channel="mp", properties='{"sku": "oolong"}'),
         order(2, "2026-01-05 11:00", "80.00", channel="pos", properties='{"sku": "green"}'),
         order(3, "2026-01-06 11:00", "50.00", channel="mp", properties='{"sku": "oolong"}')],
        persons=[person(1, gender="female", city="杭州", birth_year=1990),
                 person(2, gender="male"), person(3, gender="female", birth_year=1960)],
    )
    def ids(*filters):
        t = apply_filters(engine, engine.events(), list(filters))
        return sorted(engine.execute(t.select("person_id")).person_id.tolist())

    assert ids(Filter(field="channel", value="mp")) == [1, 3]
    assert ids(Filter(field="properties.sku", value="oolong")) == [1, 3]
    assert ids(Filter(field="revenue", op="gte", value=80)) == [1, 2]
    assert ids(Filter(on="person", field="gender", value="female"),
               Filter(on="person", field="age_band", op="in", value=["25-34", "35-44"])) == [1]
    assert ids(Filter(on="person", field="city", op="is_set")) == [1]
    assert ids(Filter(field="channel", op="neq", value="mp")) == [2]


def test_person_breakdown_names_missing_values(load):
    engine = load([ev(1, "Page Viewed", "2026-01-05 10:00"), ev(2, "Page Viewed", "2026-01-05 10:00")],
                  persons=[person(1, acquisition_channel="douyin"), person(2)])
    t = add_breakdown(engine, engine.events(), Breakdown(on="person", field="acquisition_channel"))
    frame = engine.execute(t.select("person_id", "breakdown").order_by("person_id"))
    assert frame.breakdown.tolist() == ["douyin", "(none)"]


@pytest.mark.parametrize("body, message", [
    ({"field": "nope"}, "unknown event field 'nope'"),
    ({"on": "person", "field": "phone"}, "unknown person field 'phone'"),
    ({"field": "channel", "op": "in", "value": "mp"}, "`in` needs a non-empty list"),
    ({"field": "revenue", "op": "gt", "value": "a"}, "`gt` compares numbers"),
])
def test_bad_filters_say_what_is_wrong(body, message):
    with pytest.raises(ValueError, match=message):
        Filter.model_validate(body)


def test_date_range_defaults_and_limits():
    q = QueryBase(kind="x", date_to=date(2026, 3, 31))
    assert q.date_range() == (date(2026, 3, 2), date(2026, 3, 31))
    with pytest.raises(ValueError, match="date_from is after date_to"):
        QueryBase(kind="x", date_from=date(2026, 4, 1), date_to=date(2026, 3, 31))


def test_local_time_is_stored_and_follows_a_time_zone_change(settings):
    from siyu.analytics.engine import close_store, get_store

    # Given an event stored while the brand's clock is Shanghai
    get_store().append([ev(1, "Page Viewed", "2026-01-05 23:30")])
    read = "SELECT local_ts FROM events"
    assert get_store().cursor().execute(read).fetchone()[0] == datetime(2026, 1, 5, 23, 30)
    # When the brand moves its clock to UTC and the store is opened again
    close_store()
    settings.TIME_ZONE = "UTC"
    # Then every stored local time is recomputed
    assert get_store().cursor().execute(read).fetchone()[0] == datetime(2026, 1, 5, 15, 30)
