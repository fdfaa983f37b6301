"""The analytics console in headless Chromium: the Overview dashboard's charts, filters, and an insight."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def days_ago(n: int, hour: int = 10) -> str:
    """An ISO timestamp n days before today on the brand's clock."""
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return (now - timedelta(days=n)).replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


@pytest.fixture
def shop(source, send_batch):
    """Four customers: two first seen 20 days ago (one buys, on the mini program), two yesterday (one buys on
    the web). The last 30 days hold four new customers, the last 7 days two."""
    batch = []
    for user, ago, channel in (("u-1", 20, "mp"), ("u-2", 20, "mp"), ("u-3", 1, "web"), ("u-4", 1, "web")):
        batch.append({"type": "track", "userId": user, "event": "Product Viewed", "timestamp": days_ago(ago),
                      "properties": {"channel": channel}})
    for user, ago, order_id, total in (("u-1", 20, "o1", "120.00"), ("u-3", 1, "o2", "80.00")):
        batch.append({"type": "track", "userId": user, "event": "Order Completed",
                      "timestamp": days_ago(ago, 11), "properties": {"order_id": order_id, "total": total}})
    assert send_batch(source.write_key, batch)["accepted"] == len(batch)


def figure(page, metric: str):
    return page.locator(f"[data-metric={metric}] .metric-figure .tile-value").first


def test_the_overview_draws_eight_charts_and_follows_the_filters(page, member, sign_in, shop, screenshot):
    member("data_analyst", "ana")
    sign_in("ana")
    page.click("nav.mainnav >> text=Analytics")
    expect(page.locator("h1")).to_have_text("Growth overview")
    charts = page.locator(".metric-card .chart[data-chart-ready] svg")
    expect(charts).to_have_count(8, timeout=30_000)
    expect(figure(page, "new_customers")).to_have_text("4")
    expect(figure(page, "gmv")).to_have_text("¥200.00")
    screenshot("analytics-overview")

    page.select_option("#id_range", "7")  # htmx re-renders the cards, each loading again
    expect(page).to_have_url(re.compile(r"range=7"))
    expect(figure(page, "new_customers")).to_have_text("2", timeout=30_000)
    expect(figure(page, "gmv")).to_have_text("¥80.00")
    expect(page.locator(".metric-card .chart[data-chart-ready] svg")).to_have_count(8, timeout=30_000)

    page.select_option("#id_breakdown", "channel")
    expect(page).to_have_url(re.compile(r"breakdown=channel"))
    legend = page.locator("[data-metric=new_customers] .chart[data-chart-ready] svg .role-legend")
    expect(legend).to_contain_text("web", timeout=30_000)
    screenshot("analytics-overview-breakdown")


def test_an_analyst_runs_a_funnel_saves_it_and_puts_it_on_a_dashboard(page, member, sign_in, shop, screenshot):
    member("data_analyst", "ana")
    sign_in("ana")
    page.goto("/analytics/dashboards/")
    page.fill("#id_name", "Sales")
    page.click("#dashboard-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Sales")

    page.goto("/analytics/insights/new/funnel/")
    page.fill("#id_query", '{"kind": "funnel", "window": 7, "steps": [{"event": "Product Viewed"}, '
                           '{"event": "Order Completed"}]}')
    page.click("#run")
    expect(page.locator("#answer table.figures tbody tr")).to_have_count(2)
    expect(page.locator("#answer .chart[data-chart-ready] svg")).to_have_count(1)
    expect(page.locator("#answer .drops")).to_contain_text("2 customers reached the step before 2")
    page.fill("#id_name", "View to order")
    page.click("#save")
    expect(page.locator("h1")).to_have_text("View to order")

    page.select_option("#dashboard-choice", label="Sales")
    page.click("#add-to-dashboard button[type=submit]")
    expect(page.locator("h1")).to_have_text("Sales")
    expect(page.locator(".dashboard-item .chart[data-chart-ready] svg")).to_have_count(1, timeout=30_000)
    screenshot("analytics-dashboard")

    page.goto("/analytics/insights/")
    page.click("text=View to order")
    page.click("#answer .drops a")
    expect(page.locator("#result-count")).to_have_text("2 customers")
