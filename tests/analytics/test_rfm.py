"""RFM: recency, frequency, monetary, quintile scores and the two class schemes.

Expected values are computed by hand from ``_shop()`` (as of 31 March 2026, all history):

    person  orders (brand clock)                     recency  F  M      R F M scores  eleven (FM)          eight (R F M vs mean)
    1       03-30 100, 03-31 23:30 200               0        2  300    5 3 4         champions (4)        high high high
    2       01-10 50                                 80       1  50     1 1 1         lost (1)             low  low  low
    3       01-05 30, 02-01 40, 03-01 80             30       3  150    3 5 3         loyal_customers (4)  high high low
    4       2025-12-01 1000                          120      1  1000   1 1 5         at_risk (3)          low  low  high
    5       03-20 60                                 11       1  60     4 2 1         potential_loyalist (2) high low low
    6       02-15 70, 02-16 70                       43       2  140    2 4 2         at_risk (3)          high high low
    7       04-01 00:30 (after date_to on the brand clock: not scored)

NTILE(5) over 6 customers gives tiles of 2, 1, 1, 1, 1 rows. Ties are ordered by person_id, so of the
three one-order customers 2 and 4 get F=1 and 5 gets F=2. Means: recency 284/6, F 10/6, M 1700/6.
"""

from __future__ import annotations

import pytest
from conftest import order

from siyu.analytics.queries import parse_query, run_query
from siyu.analytics.queries.base import QueryError
from siyu.analytics.queries.rfm import ELEVEN, RfmQuery, eleven_class, rfm_table

pytestmark = pytest.mark.django_db

AS_OF = {"kind": "rfm", "date_from": "2026-03-01", "date_to": "2026-03-31"}


def _shop(load):
    return load([
        order(1, "2026-03-30 10:00", "100.00"), order(1, "2026-03-31 23:30", "200.00"),
        order(2, "2026-01-10 10:00", "50.00"),
        order(3, "2026-01-05 10:00", "30.00"), order(3, "2026-02-01 10:00", "40.00"),
        order(3, "2026-03-01 10:00", "80.00"),
        order(4, "2025-12-01 10:00", "1000.00"),
        order(5, "2026-03-20 10:00", "60.00"),
        order(6, "2026-02-15 10:00", "70.00"), order(6, "2026-02-16 10:00", "70.00"),
        order(7, "2026-04-01 00:30", "500.00"),
    ])


def test_rfm_table_scores_every_buyer(load):
    engine = _shop(load)
    t = rfm_table(engine, RfmQuery.model_validate({**AS_OF, "scheme": "eleven"}))
    frame = engine.execute(t.order_by("person_id"))
    assert list(frame.columns) == ["person_id", "recency_days", "frequency", "monetary", "r_score", "f_score",
                                   "m_score", "rfm_class"]
    rows = [(r.person_id, r.recency_days, r.frequency, float(r.monetary), r.r_score, r.f_score, r.m_score,
             r.rfm_class) for r in frame.itertuples()]
    assert rows == [
        (1, 0, 2, 300.0, 5, 3, 4, "champions"),
        (2, 80, 1, 50.0, 1, 1, 1, "lost"),
        (3, 30, 3, 150.0, 3, 5, 3, "loyal_customers"),
        (4, 120, 1, 1000.0, 1, 1, 5, "at_risk"),
        (5, 11, 1, 60.0, 4, 2, 1, "potential_loyalist"),
        (6, 43, 2, 140.0, 2, 4, 2, "at_risk"),
    ]


def test_eight_classes_compare_with_the_means(load):
    result = run_query(AS_OF, _shop(load))
    assert (result.scheme, result.total_customers, result.revenue) == ("eight", 6, 1700.0)
    assert (result.means.recency_days, result.means.frequency, result.means.monetary) == (47.33, 1.67, 283.33)
    assert [(c.rfm_class, c.label_zh, c.customers, c.share, c.revenue) for c in result.classes] == [
        ("important_value", "重要价值客户", 1, 0.1667, 300.0),
        ("important_development", "重要发展客户", 0, 0.0, 0.0),
        ("important_retention", "重要保持客户", 0, 0.0, 0.0),
        ("important_winback", "重要挽留客户", 1, 0.1667, 1000.0),
        ("general_value", "一般价值客户", 2, 0.3333, 290.0),
        ("general_development", "一般发展客户", 1, 0.1667, 60.0),
        ("general_retention", "一般保持客户", 0, 0.0, 0.0),
        ("general_winback", "一般挽留客户", 1, 0.1667, 50.0),
    ]


def test_class_averages(load):
    result = run_query(AS_OF, _shop(load))
    value = next(c for c in result.classes if c.rfm_class == "general_value")
    # 3 and 6: recency (30+43)/2, orders (3+2)/2, revenue (150+140)/2
    assert (value.avg_recency_days, value.avg_frequency, value.avg_monetary) == (36.5, 2.5, 145.0)
    empty = next(c for c in result.classes if c.rfm_class == "general_retention")
    assert (empty.avg_recency_days, empty.avg_frequency, empty.avg_monetary) == (None, None, None)


def test_eleven_scheme_distribution(load):
    result = run_query({**AS_OF, "scheme": "eleven"}, _shop(load))
    counts = {c.rfm_class: c.customers for c in result.classes}
    assert counts == {"champions": 1, "loyal_customers": 1, "potential_loyalist": 1, "new_customers": 0,
                      "promising": 0, "need_attention": 0, "about_to_sleep": 0, "at_risk": 2,
                      "cant_lose_them": 0, "hibernating": 0, "lost": 1}
    assert result.classes[0].label_en == "Champions" and result.classes[0].label_zh == "冠军客户"


def test_customers_are_listed_by_monetary_up_to_the_limit(load):
    result = run_query({**AS_OF, "customers_limit": 3}, _shop(load))
    assert [(c.person_id, c.monetary, c.recency_days, c.frequency, (c.r_score, c.f_score, c.m_score), c.rfm_class)
            for c in result.customers] == [
        (4, 1000.0, 120, 1, (1, 1, 5), "important_winback"),
        (1, 300.0, 0, 2, (5, 3, 4), "important_value"),
        (3, 150.0, 30, 3, (3, 5, 3), "general_value"),
    ]


def test_range_lookback_scores_only_orders_in_the_range(load):
    result = run_query({**AS_OF, "lookback": "range"}, _shop(load))
    # March orders only: 1 (2 orders, 300), 3 (80 on 1 March), 5 (60); three customers fill tiles 1-3
    assert [(c.person_id, c.recency_days, c.frequency, c.monetary, (c.r_score, c.f_score, c.m_score))
            for c in result.customers] == [
        (1, 0, 2, 300.0, (3, 3, 3)), (3, 30, 1, 80.0, (1, 1, 2)), (5, 11, 1, 60.0, (2, 2, 1))]


def test_no_orders_gives_empty_classes(load):
    result = run_query(AS_OF, load([order(7, "2026-04-01 00:30", "500.00")]))
    assert (result.total_customers, result.revenue, result.customers) == (0, 0.0, [])
    assert result.means.monetary is None
    assert all(c.customers == 0 and c.share == 0.0 for c in result.classes)


def test_every_cell_of_the_eleven_grid_has_exactly_one_class():
    for r in range(1, 6):
        for fm in range(1, 6):
            owners = [c.key for c in ELEVEN if c.r[0] <= r <= c.r[1] and c.fm[0] <= fm <= c.fm[1]]
            assert owners == [eleven_class(r, fm)], (r, fm)


@pytest.mark.parametrize("body, message", [
    ({"breakdown": {"field": "channel"}}, "rfm takes no breakdown"),
    ({"scheme": "ten"}, "'eight' or 'eleven'"),
    ({"lookback": "year"}, "'all' or 'range'"),
    ({"customers_limit": -1}, "greater than or equal to 0"),
])
def test_bad_queries_say_what_is_wrong(body, message):
    with pytest.raises(QueryError, match=message):
        parse_query({**AS_OF, **body})
