"""The segment builder in headless Chromium: build a rule, watch the live count follow it, save, and
read the segment's page with its persona charts."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from siyu.analytics.engine import get_store
from siyu.analytics.sync import sync_all
from siyu.segments.models import Segment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def days_ago(n: int, hour: int = 10) -> str:
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return (now - timedelta(days=n)).replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


@pytest.fixture
def shop(source, send_batch):
    """u-1 ordered twice this month, u-2 once 40 days ago, u-3 only looked around."""
    batch = [
        {"type": "identify", "userId": "u-1", "timestamp": days_ago(25, 9),
         "traits": {"name": "张三丰", "phone": "13812345678", "gender": "m"}},
        {"type": "identify", "userId": "u-2", "timestamp": days_ago(40, 9), "traits": {"name": "李四", "gender": "f"}},
        {"type": "identify", "userId": "u-3", "timestamp": days_ago(3, 9), "traits": {"name": "王五"}},
        {"type": "track", "userId": "u-3", "event": "Product Viewed", "timestamp": days_ago(3)},
    ]
    for user, ago, order_id, total in (("u-1", 20, "o1", "120.00"), ("u-1", 4, "o2", "80.00"),
                                       ("u-2", 40, "o3", "60.00")):
        batch.append({"type": "track", "userId": user, "event": "Order Completed", "timestamp": days_ago(ago),
                      "properties": {"order_id": order_id, "total": total}})
    assert send_batch(source.write_key, batch)["accepted"] == len(batch)
    sync_all(get_store())


def live_count(page):
    return page.locator("#live-count #live-count-value")


def test_an_analyst_builds_a_segment_and_reads_its_persona(page, member, sign_in, shop, screenshot):
    member("data_analyst", "ana")
    sign_in("ana")
    page.click("nav.mainnav >> text=Segments")
    expect(page.locator("h1")).to_have_text("Segments")
    page.click("#new-segment")
    expect(page.locator("h1")).to_have_text("New segment")
    # The starting rule: ordered at least twice in the last 90 days.
    expect(live_count(page)).to_have_attribute("data-count", "1", timeout=30_000)
    expect(page.locator("#preview-table tbody tr")).to_have_count(1)
    expect(page.locator("#preview-table")).to_contain_text("张**")

    page.fill("#id_name", "Big repeat buyers")
    page.click(".rule-group-tools [data-role=add-condition]")  # Orders ≥ 1: still one customer
    rows = page.locator(".rule-row")
    expect(rows).to_have_count(2)
    new_row = rows.nth(1)
    expect(new_row.locator("[data-role=field]")).to_have_value("order_count")
    new_row.locator("[data-role=value]").fill("3")  # nobody ordered three times
    expect(live_count(page)).to_have_attribute("data-count", "0", timeout=30_000)
    new_row.locator("[data-role=value]").fill("2")
    expect(live_count(page)).to_have_attribute("data-count", "1", timeout=30_000)
    rule = json.loads(page.input_value("#rule-json"))
    assert rule["and"][1] == {"type": "attribute", "field": "order_count", "op": "gte", "value": 2}

    # The JSON side drives the builder too; the server's field errors mark the row they name.
    page.fill("#rule-json", json.dumps({"and": [{"type": "event", "event": "Order Completed", "within_days": 0}]}))
    expect(rows).to_have_count(1)
    expect(page.locator("#rule-errors")).to_contain_text("rule.and[0].within_days", timeout=30_000)
    expect(page.locator('.rule-row[data-path="rule.and[0]"]')).to_have_class("rule-row has-error")
    page.fill("#rule-json", json.dumps(rule))
    expect(rows).to_have_count(2)
    expect(live_count(page)).to_have_attribute("data-count", "1", timeout=30_000)
    screenshot("segment-builder")

    page.click("#save")
    expect(page.locator("h1")).to_have_text("Big repeat buyers")
    segment = Segment.objects.get(name="Big repeat buyers")
    assert segment.size == 1
    expect(page.locator("#segment-size .tile-value")).to_have_text("1")
    expect(page.locator("#member-table tbody tr")).to_have_count(1)
    expect(page.locator("#size-history .chart[data-chart-ready] svg")).to_have_count(1, timeout=30_000)
    expect(page.locator("#persona-figures [data-figure=total_spend] .tile-value")).to_have_text("¥200.00",
                                                                                                timeout=30_000)
    expect(page.locator(".persona-charts .chart[data-chart-ready] svg")).to_have_count(7, timeout=30_000)
    expect(page.locator('.persona-charts [data-dimension="gender"]')).to_contain_text("Male")
    screenshot("segment-detail")
