"""The console's analytics: Overview dashboard, insights, saved dashboards, exports, permissions.

Events go through the real ingestion path (``POST /v1/batch``) with explicit
timestamps on the brand's clock (Asia/Shanghai), then the persons copy is synced
into the event store, as ``siyu serve`` does.
"""

from __future__ import annotations

import csv
import io
import json

import pytest
from openpyxl import load_workbook

from siyu.accounts.actions import create_user
from siyu.accounts.actor import Actor
from siyu.analytics import actions, charts, exports
from siyu.analytics.engine import get_store
from siyu.analytics.models import Dashboard, DashboardItem, Insight
from siyu.analytics.queries import QueryError, clear_cache, run_query
from siyu.analytics.sync import sync_all
from siyu.customers.queries import Lookup, find_person
from siyu.privacy.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

TRENDS = {"kind": "trends", "date_from": "2026-01-05", "date_to": "2026-01-07", "interval": "day",
          "series": [{"event": "Order Completed", "math": "count", "label": "orders"}]}
FUNNEL = {"kind": "funnel", "date_from": "2026-01-05", "date_to": "2026-01-07", "window": 7,
          "steps": [{"event": "Product Viewed"}, {"event": "Order Completed"}]}


def login(client, role: str, username: str | None = None):
    user, _pw = create_user(username or f"u-{role}", role, password="pw-12345678")
    client.force_login(user)
    return user


def track(user: str, event: str, at: str, **properties) -> dict:
    """A Segment track call at a brand-clock time ("2026-01-05 10:00")."""
    day, clock = at.split()
    return {"type": "track", "userId": user, "event": event, "timestamp": f"{day}T{clock}:00+08:00",
            "properties": properties}


@pytest.fixture
def shop(post_segment):
    """Three customers, 5-7 January 2026: u-1 views and buys twice (100.00 on the 5th, 50.00 on the 6th),
    u-2 views on the 6th and buys 30.00 on the 7th, u-3 only views on the 7th."""
    batch = [
        track("u-1", "Product Viewed", "2026-01-05 10:00"),
        track("u-1", "Order Completed", "2026-01-05 11:00", order_id="o1", total="100.00"),
        track("u-1", "Order Completed", "2026-01-06 09:00", order_id="o2", total="50.00"),
        track("u-2", "Product Viewed", "2026-01-06 10:00"),
        track("u-2", "Order Completed", "2026-01-07 12:00", order_id="o3", total="30.00"),
        track("u-3", "Product Viewed", "2026-01-07 15:00"),
    ]
    response = post_segment("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.content
    sync_all(get_store())
    clear_cache()
    return {u: find_person(Lookup("user_id", u)) for u in ("u-1", "u-2", "u-3")}


# -- actions ---------------------------------------------------------------------------------
def test_creating_an_insight_records_who_and_audits_it(db):
    user = create_user("ana", "data_analyst", password="pw-12345678")[0]
    insight = actions.create_insight(Actor.for_user(user), " Orders per day ", TRENDS)
    assert (insight.name, insight.kind, insight.created_by) == ("Orders per day", "trends", "ana")
    assert insight.query["series"] == TRENDS["series"]
    event = AuditEvent.objects.get(object_type="insight")
    assert (event.actor_label, event.detail["op"], event.object_id) == ("ana", "create", str(insight.pk))


def test_an_invalid_query_is_refused_and_nothing_is_saved(db):
    with pytest.raises(QueryError) as caught:
        actions.create_insight(Actor.system(), "broken", {"kind": "trends", "series": []})
    assert caught.value.errors[0]["field"] == "series"
    assert not Insight.objects.exists() and not AuditEvent.objects.exists()


def test_a_blank_name_is_refused(db):
    with pytest.raises(actions.AnalyticsError):
        actions.create_insight(Actor.system(), "  ", TRENDS)
    assert not Insight.objects.exists()


def test_dashboard_items_keep_their_order_and_move(db):
    actor = Actor.system()
    board = actions.create_dashboard(actor, "Weekly", 7)
    first, second, third = (actions.create_insight(actor, n, TRENDS) for n in ("a", "b", "c"))
    for insight in (first, second, third):
        actions.add_to_dashboard(actor, board, insight)
    actions.move_on_dashboard(actor, board, third, -1)
    assert [i.insight.name for i in board.items()] == ["a", "c", "b"]
    with pytest.raises(actions.AnalyticsError):
        actions.add_to_dashboard(actor, board, first)
    actions.remove_from_dashboard(actor, board, first)
    assert [i.insight.name for i in board.items()] == ["c", "b"]


def test_deleting_an_insight_takes_it_off_every_dashboard(db):
    actor = Actor.system()
    board = actions.create_dashboard(actor, "Weekly")
    insight = actions.create_insight(actor, "a", TRENDS)
    actions.add_to_dashboard(actor, board, insight)
    actions.delete_insight(actor, insight)
    assert not DashboardItem.objects.exists()
    assert Dashboard.objects.get().pk == board.pk


# -- insight builder ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["trends", "retention", "funnel", "repurchase", "ltv", "rfm", "lifecycle"])
def test_every_builder_opens_with_its_example_and_draws_it(client, kind):
    from siyu.analytics.queries import REGISTRY

    if kind not in REGISTRY:
        pytest.skip(f"no {kind} runner yet")
    login(client, "data_analyst")
    response = client.get(f"/analytics/insights/new/{kind}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"&quot;kind&quot;: &quot;{kind}&quot;" in page
    assert 'data-spec="answer-spec"' in page and 'id="answer-spec"' in page


def test_running_a_trends_query_shows_the_chart_and_the_figures(client, shop):
    login(client, "data_analyst")
    response = client.post("/analytics/insights/new/trends/", {"query": json.dumps(TRENDS), "action": "run"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    spec = json.loads(page.split('id="answer-spec" type="application/json">')[1].split("</script>")[0])
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    rows = [r.split("</td>")[0:3] for r in page.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]]
    values = [[cell.rsplit(">", 1)[-1] for cell in row] for row in rows]
    assert values == [["orders", "2026-01-05", "1"], ["orders", "2026-01-06", "1"], ["orders", "2026-01-07", "1"]]


def test_a_bad_query_shows_the_reason(client, shop):
    login(client, "data_analyst")
    body = {**TRENDS, "interval": "fortnight"}
    response = client.post("/analytics/insights/new/trends/", {"query": json.dumps(body), "action": "run"})
    assert response.status_code == 400
    assert "interval: Input should be &#x27;day&#x27;, &#x27;week&#x27; or &#x27;month&#x27;" in response.content.decode()


def test_saving_an_insight_from_the_builder(client, shop):
    login(client, "data_analyst", "ana")
    response = client.post("/analytics/insights/new/trends/",
                           {"query": json.dumps(TRENDS), "name": "Orders", "action": "save"})
    insight = Insight.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/analytics/insights/{insight.pk}/"
    assert (insight.name, insight.created_by) == ("Orders", "ana")
    assert "Orders" in client.get("/analytics/insights/").content.decode()


def test_funnel_links_to_the_customers_who_dropped_out(client, shop):
    login(client, "data_analyst")
    response = client.post("/analytics/insights/new/funnel/", {"query": json.dumps(FUNNEL), "action": "run"},
                           HTTP_HX_REQUEST="true")
    page = response.content.decode()
    link = page.split('<ul class="drops"><li><a href="')[1].split('"')[0].replace("&amp;", "&")
    people = client.get(link).content.decode()
    assert "1 customer" in people
    assert f"#{shop['u-3'].pk}" in people and f"#{shop['u-1'].pk}<" not in people


# -- the Overview dashboard ---------------------------------------------------------------------
RANGE = "range=custom&date_from=2026-01-05&date_to=2026-01-07"


def test_the_overview_page_asks_for_eight_charts_each_in_its_own_request(client):
    login(client, "data_analyst")
    page = client.get("/analytics/").content.decode()
    cards = page.split('class="card metric-card"')[1:]
    assert len(cards) == 8
    assert all('hx-trigger="load"' in c and "/analytics/overview/" in c for c in cards)
    assert '<option value="30" selected>' in page


def test_an_overview_card_shows_the_figure_the_previous_period_and_the_change(client, shop):
    login(client, "data_analyst")
    response = client.get(f"/analytics/overview/gmv/?{RANGE}")
    assert response.status_code == 200
    page = response.content.decode()
    # Orders of 5-7 January: 100.00 + 50.00 + 30.00; nothing in 2-4 January, so no change to show.
    assert '<div class="tile-value">¥180.00</div>' in page
    assert '<span class="previous">¥0.00</span>' in page and '<span class="change">—</span>' in page
    spec = json.loads(page.split('id="spec-gmv" type="application/json">')[1].split("</script>")[0])
    values = next(iter(spec["datasets"].values()))
    assert [(v["date"], v["value"]) for v in values] == [("2026-01-05", 100.0), ("2026-01-06", 50.0),
                                                         ("2026-01-07", 30.0)]


def test_the_breakdown_gives_one_line_per_value(client, shop):
    login(client, "data_analyst")
    page = client.get(f"/analytics/overview/orders/?{RANGE}&breakdown=channel").content.decode()
    spec = json.loads(page.split('id="spec-orders" type="application/json">')[1].split("</script>")[0])
    assert spec["encoding"]["color"]["field"] == "breakdown"


def test_a_changed_filter_rerenders_the_cards_with_it(client):
    login(client, "data_analyst")
    fragment = client.get("/analytics/?range=7&breakdown=store", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment
    assert fragment.count("range=7&amp;breakdown=store") >= 8


def test_a_bad_custom_range_is_refused(client):
    login(client, "data_analyst")
    response = client.get("/analytics/?range=custom&date_from=2026-02-01&date_to=2026-01-01")
    assert response.status_code == 400
    assert "The first day is after the last day." in response.content.decode()


@pytest.mark.parametrize("role", ["content_specialist", "customer_service", "developer"])
def test_roles_without_analytics_get_403_and_no_link(client, role):
    login(client, role)
    assert client.get("/analytics/").status_code == 403
    assert client.get("/analytics/insights/new/trends/").status_code == 403
    assert 'href="/analytics/"' not in client.get("/settings/").content.decode()


def test_community_managers_view_dashboards_but_cannot_change_them(client):
    user = login(client, "community_manager")
    assert client.get("/analytics/").status_code == 200
    assert not user.has_perm("analytics.add_insight")
    assert not user.has_perm("analytics.delete_dashboard")


def test_analysts_see_the_analytics_link(client):
    login(client, "data_analyst")
    assert 'href="/analytics/"' in client.get("/settings/").content.decode()


def test_the_chart_library_is_served_by_siyu_and_cached_for_a_year(client):
    login(client, "data_analyst")
    name = charts.bundle_name()
    assert f'src="/analytics/vega/{name}"' in client.get("/analytics/").content.decode()
    response = client.get(f"/analytics/vega/{name}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert b"window.vegaEmbed" in b"".join(response.streaming_content)
    assert client.get("/analytics/vega/vega-000000000000.js").status_code == 404


# -- saved dashboards and exports -------------------------------------------------------------------
@pytest.fixture
def board(db):
    actor = Actor.system()
    dashboard = actions.create_dashboard(actor, "Sales", 7)
    actions.add_to_dashboard(actor, dashboard, actions.create_insight(actor, "Orders per day", TRENDS))
    actions.add_to_dashboard(actor, dashboard, actions.create_insight(actor, "Checkout funnel", FUNNEL))
    return dashboard


def test_creating_a_dashboard_and_adding_an_insight_from_the_console(client, shop):
    login(client, "data_analyst", "ana")
    response = client.post("/analytics/dashboards/", {"name": "Weekly", "days": "7"})
    dashboard = Dashboard.objects.get()
    assert response["Location"] == f"/analytics/dashboards/{dashboard.pk}/"
    insight = actions.create_insight(Actor.system(), "Orders", TRENDS)
    client.post(f"/analytics/insights/{insight.pk}/add/", {"dashboard": dashboard.pk})
    assert [i.insight.name for i in dashboard.items()] == ["Orders"]
    page = client.get(f"/analytics/dashboards/{dashboard.pk}/").content.decode()
    assert f"/analytics/dashboards/{dashboard.pk}/items/{insight.pk}/?range=7" in page


def test_a_dashboard_item_applies_the_dashboards_date_range(client, shop, board):
    login(client, "data_analyst")
    insight = board.insights.get(name="Orders per day")
    page = client.get(f"/analytics/dashboards/{board.pk}/items/{insight.pk}/?range=custom"
                      "&date_from=2026-01-06&date_to=2026-01-07").content.decode()
    spec = json.loads(page.split(f'id="item-spec-{insight.pk}" type="application/json">')[1].split("</script>")[0])
    values = next(iter(spec["datasets"].values()))
    assert [(v["date"], v["value"]) for v in values] == [("2026-01-06", 1), ("2026-01-07", 1)]


def test_csv_export_holds_each_insights_figures(client, shop, board):
    login(client, "data_analyst")
    response = client.get(f"/analytics/dashboards/{board.pk}/export.csv?{RANGE}")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="dashboard-{board.pk}-2026-01-05-2026-01-07.csv"'
    text = response.content.decode("utf-8")
    assert text.startswith("\ufeff")
    assert list(csv.reader(io.StringIO(text.lstrip("\ufeff")))) == [
        ["Orders per day"],
        ["Series", "Date", "Value"],
        ["orders", "2026-01-05", "1"], ["orders", "2026-01-06", "1"], ["orders", "2026-01-07", "1"],
        [],
        ["Checkout funnel"],
        ["Step", "Customers", "Conversion from step 1", "Conversion from previous step", "Dropped out",
         "Median hours from previous step"],
        ["1. Product Viewed", "3", "1.0", "1.0", "0", ""],
        # u-1 bought 1 h after viewing, u-2 26 h after: median 13.5 h; u-3 never bought.
        ["2. Order Completed", "2", "0.6667", "0.6667", "1", "13.5"],
        [],
    ]


def test_exports_never_list_people(client, shop, board):
    login(client, "data_analyst")
    text = client.get(f"/analytics/dashboards/{board.pk}/export.csv?{RANGE}").content.decode()
    for person in shop.values():
        assert f",{person.pk}," not in text and f"#{person.pk}" not in text


def test_excel_export_has_one_sheet_per_insight(client, shop, board):
    login(client, "data_analyst")
    response = client.get(f"/analytics/dashboards/{board.pk}/export.xlsx?{RANGE}")
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Orders per day", "Checkout funnel"]
    assert [c.value for c in book["Orders per day"][2]] == ["orders", "2026-01-05", 1]
    assert book["Checkout funnel"]["C3"].number_format == "0.0%"


def test_png_and_pdf_exports_draw_the_charts(client, shop, board):
    login(client, "data_analyst")
    png = client.get(f"/analytics/dashboards/{board.pk}/export.png?{RANGE}")
    assert png["Content-Type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 10_000
    pdf = client.get(f"/analytics/dashboards/{board.pk}/export.pdf?{RANGE}")
    assert pdf["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF-")


def test_the_overview_exports_a_summary_and_one_sheet_per_card(client, shop):
    login(client, "data_analyst")
    book = load_workbook(io.BytesIO(client.get(f"/analytics/export.xlsx?{RANGE}").content))
    assert book.sheetnames == ["Summary", "New customers", "Active customers and stickiness", "Orders", "GMV",
                               "Average order value", "Paying customers and paid conve", "Repurchase rate",
                               "Next-day retention (D1)"]
    rows = {r[0]: r[1:] for r in book["Summary"].iter_rows(min_row=2, values_only=True)}
    assert rows["Orders"] == (3, 0, None) and rows["GMV"] == (180.0, 0.0, None)


def test_sheet_names_fit_excels_rules():
    assert exports.sheet_names(["a/b", "x" * 40, "x" * 40, "Sales", "sales"]) == [
        "a_b", "x" * 31, "x" * 27 + " (2)", "Sales", "sales (2)"]


def test_deleting_a_dashboard_needs_the_permission(client, board):
    login(client, "ops_lead")
    assert client.post(f"/analytics/dashboards/{board.pk}/delete/").status_code == 403
    login(client, "data_analyst")
    assert client.post(f"/analytics/dashboards/{board.pk}/delete/").status_code == 302
    assert not Dashboard.objects.exists() and Insight.objects.count() == 2


@pytest.mark.parametrize("kind", ["trends", "retention", "funnel", "repurchase", "ltv", "rfm", "lifecycle"])
@pytest.mark.parametrize("breakdown", [None, {"on": "person", "field": "acquisition_channel"}])
def test_every_kind_draws_with_and_without_a_breakdown(shop, kind, breakdown):
    if kind == "rfm" and breakdown:
        pytest.skip("rfm takes no breakdown")
    from siyu.analytics.queries import REGISTRY
    from siyu.console.analytics_views import example_body

    body = {**example_body(kind), "date_from": "2026-01-01", "date_to": "2026-01-31"}
    body.pop("breakdown", None)
    if breakdown:
        body["breakdown"] = breakdown
    result = run_query(REGISTRY[kind].query_model.model_validate(body))
    figures = charts.figures_for(result)
    spec = charts.spec(charts.chart_for(kind, figures), width=400)
    assert charts.to_svg(spec).startswith("<svg")


def test_missing_values_reach_the_page_as_null():
    figures = charts.Figures(title="t", frame=charts._frame([{"date": "2026-01-05", "value": None},
                                                             {"date": "2026-01-06", "value": 2}],
                                                            ["date", "value"]),
                             headers={"date": "Date", "value": "Value"})
    spec = charts.spec(charts.line_chart(figures, "date", "value"))
    assert [v["value"] for v in next(iter(spec["datasets"].values()))] == [None, 2]
    json.loads(json.dumps(spec, allow_nan=False))


def test_editing_a_date_while_a_preset_is_selected_makes_a_custom_range(client):
    login(client, "data_analyst")
    page = client.get("/analytics/?range=30&date_from=2026-01-05&date_to=2026-01-07"
                      "&shown_from=2025-12-09&shown_to=2026-01-07").content.decode()
    assert '<option value="custom" selected>' in page
    assert "range=custom&amp;date_from=2026-01-05&amp;date_to=2026-01-07" in page


def test_choosing_a_preset_ignores_the_dates_shown_before(client):
    login(client, "data_analyst")
    page = client.get("/analytics/?range=7&date_from=2026-01-05&date_to=2026-01-07"
                      "&shown_from=2026-01-05&shown_to=2026-01-07").content.decode()
    assert '<option value="7" selected>' in page and "range=7&amp;" in page


# -- the server's warm-up --------------------------------------------------------------------
def test_the_server_computes_the_default_dashboard_once_new_events_settle(shop, post_segment, settings):
    from siyu.analytics import queries
    from siyu.analytics.engines import get_engine
    from siyu.scheduler import Scheduler

    def warmed() -> bool:
        version = get_engine().version()
        return any(key[0] == "overview" and key[3] == version for key in list(queries._cache))

    scheduler = Scheduler()
    assert not warmed()
    assert scheduler.warm_dashboard() is True and warmed()  # at start
    assert scheduler.warm_dashboard() is False  # nothing new
    response = post_segment("/v1/batch", {"batch": [track("u-3", "Product Viewed", "2026-01-08 09:00")]})
    assert response.status_code == 200
    assert not warmed()
    assert scheduler.warm_dashboard() is False  # new events: wait a tick for them to settle
    assert scheduler.warm_dashboard() is True and warmed()
    settings.SIYU_DASHBOARD_WARMUP = False
    post_segment("/v1/batch", {"batch": [track("u-3", "Product Viewed", "2026-01-08 10:00")]})
    assert scheduler.warm_dashboard() is False and scheduler.warm_dashboard() is False
    assert not warmed()


def test_stopping_the_scheduler_waits_a_while_for_work_under_way(monkeypatch):
    """``siyu serve`` gives a refresh under way time to end before the writer empties the SQLite
    log, which a reader still holding it would keep."""
    import threading

    from siyu.scheduler import Scheduler

    started, release = threading.Event(), threading.Event()

    def busy(self) -> bool:
        started.set()
        return release.wait(30)

    monkeypatch.setattr(Scheduler, "_first_refresh_in", lambda self: 3600.0)
    monkeypatch.setattr(Scheduler, "warm_dashboard", busy)
    assert Scheduler().stop(timeout=0) is True  # never started
    scheduler = Scheduler()
    scheduler.start()
    assert started.wait(10)
    assert scheduler.stop(timeout=0.2) is False  # still working: the caller is told
    release.set()
    assert scheduler.stop(timeout=10) is True
