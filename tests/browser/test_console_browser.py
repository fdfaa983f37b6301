"""The console in headless Chromium: sign in, counts, live search, detail, reveal, sources, language."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from siyu.customers.models import MergeConflict
from siyu.customers.queries import Lookup, find_person
from siyu.privacy.models import AuditEvent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = "13812345678"


@pytest.fixture
def shopper(source, send_batch):
    """A customer who identified, viewed a page from a WeChat article and bought once."""
    batch = [
        {"type": "identify", "userId": "u-1", "messageId": "m-id",
         "traits": {"phone": PHONE, "name": "张三丰", "gender": "m"}},
        {"type": "page", "userId": "u-1", "name": "Home", "messageId": "m-page",
         "properties": {"utm_source": "wechat_article"}},
        {"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": "m-order",
         "properties": {"order_id": "SO-1", "total": "199.00"}},
    ]
    assert send_batch(source.write_key, batch)["accepted"] == 3
    return find_person(Lookup("user_id", "u-1"))


def test_signing_in_shows_the_headline_counts(page, member, sign_in, shopper, screenshot):
    member("ops_lead", "lead")
    sign_in("lead")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("[data-metric=customers] .tile-value")).to_have_text("1")
    expect(page.locator("[data-metric=orders] .tile-value")).to_have_text("1")
    expect(page.locator("[data-metric=gmv] .tile-value")).to_have_text("¥199.00")
    expect(page.locator("[data-metric=events] .tile-value")).to_have_text("3")
    expect(page.locator(".barchart").first).to_be_visible()
    screenshot("home")


def test_live_search_finds_the_customer_and_the_detail_shows_the_timeline(
        page, member, sign_in, source, send_batch, shopper, screenshot):
    send_batch(source.write_key, [{"type": "identify", "userId": "u-2", "traits": {"phone": "13900001111"}}])
    member("data_analyst", "ana")
    sign_in("ana")
    page.click("nav.mainnav >> text=Customers")
    expect(page.locator("#result-count")).to_have_text("2 customers")
    page.locator("#q").press_sequentially(PHONE)  # no submit: htmx searches as the user types
    expect(page.locator("#result-count")).to_have_text("1 customer")
    expect(page).to_have_url(re.compile(rf"q={PHONE}"))
    screenshot("customers")
    page.click(f"#customer-table >> text=#{shopper.pk}")
    expect(page.locator("#personal")).to_contain_text("138****5678")
    expect(page.locator("#personal")).not_to_contain_text(PHONE)
    expect(page.locator("#timeline")).to_contain_text("Order Completed")
    expect(page.locator("#timeline li.event")).to_have_count(3)
    expect(page.locator("#orders")).to_contain_text("SO-1")
    screenshot("customer-detail")


def test_load_more_appends_older_events(page, member, sign_in, source, send_batch):
    batch = [{"type": "track", "userId": "u-busy", "event": f"Viewed {i}", "messageId": f"v{i}",
              "timestamp": f"2026-01-01T10:{i // 60:02d}:{i % 60:02d}Z"} for i in range(55)]
    send_batch(source.write_key, batch)
    person = find_person(Lookup("user_id", "u-busy"))
    member("data_analyst", "ana")
    sign_in("ana")
    page.goto(f"/customers/{person.pk}/")
    expect(page.locator("#timeline li.event")).to_have_count(50)
    page.click("#timeline-more button")
    expect(page.locator("#timeline li.event")).to_have_count(55)
    expect(page.locator("#timeline-more")).to_have_count(0)
    expect(page.locator("#timeline li.event").last).to_contain_text("Viewed 0")


def test_customer_service_reveals_personal_data_and_the_view_is_audited(
        page, member, sign_in, shopper, screenshot):
    agent = member("customer_service", "agent")
    sign_in("agent")
    page.goto(f"/customers/{shopper.pk}/")
    expect(page.locator("#personal")).to_contain_text("138****5678")
    page.click("text=Reveal personal data")
    expect(page.locator("#personal")).to_contain_text(f"+86{PHONE}")
    expect(page.locator("#personal")).to_contain_text("张三丰")
    screenshot("customer-revealed")
    assert AuditEvent.objects.filter(actor=agent, action="view_pii", object_id=str(shopper.pk)).count() == 1


def test_a_developer_creates_a_source_and_sees_its_write_key(page, member, sign_in, screenshot):
    from siyu.ingest.models import Source

    member("developer", "dev-li")
    sign_in("dev-li")
    page.goto("/sources/")
    page.fill("#id_name", "miniapp")
    page.select_option("#id_kind", "sensors")
    page.click("text=Create source")
    expect(page.locator(".flash")).to_contain_text("Source miniapp created")
    source = Source.objects.get(name="miniapp")
    row = page.locator(f"#source-{source.pk}")
    expect(row).to_contain_text(source.write_key)
    expect(row).to_contain_text("dev-li")
    expect(row).to_contain_text("/sa?project=miniapp")
    screenshot("sources")


def test_switching_to_chinese_translates_the_console_and_sticks(page, member, sign_in, shopper, screenshot):
    member("ops_lead", "lead")
    sign_in("lead")
    page.click(".langswitch >> text=简体中文")
    expect(page.locator("h1")).to_have_text("概览")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    page.click("nav.mainnav >> text=客户")
    expect(page.locator("h1")).to_have_text("客户")
    screenshot("customers-zh")
    page.goto("/")
    screenshot("home-zh")


def test_a_chinese_browser_gets_a_chinese_sign_in_page(browser, live_server, page_errors):
    context = browser.new_context(locale="zh-CN", base_url=live_server.url)
    page = context.new_page()
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    page.goto("/login/")
    expect(page.locator("h1")).to_have_text("登录")
    context.close()
    assert list(page_errors) == []


def test_an_operations_lead_merges_a_conflict_side_by_side(page, member, sign_in, source, send_batch, screenshot):
    for message in (
        {"type": "identify", "userId": "a", "traits": {"phone": "13800000001"}, "messageId": "c1"},
        {"type": "identify", "userId": "b", "traits": {"phone": "13800000002"}, "messageId": "c2"},
        {"type": "alias", "userId": "a", "previousId": "b", "previousIdKind": "user_id", "messageId": "c3"},
    ):
        send_batch(source.write_key, [message])
    conflict = MergeConflict.objects.get()
    member("ops_lead", "lead")
    sign_in("lead")
    page.goto("/conflicts/")
    card = page.locator(f"#conflict-{conflict.pk}")
    expect(card.locator(".side")).to_have_count(2)
    expect(card).to_contain_text("138****0001")
    expect(card).to_contain_text("138****0002")
    screenshot("conflicts")
    page.once("dialog", lambda dialog: dialog.accept())
    card.locator("button[value=merge]").click()
    expect(page.locator(".flash")).to_contain_text(f"Merged #{conflict.person_b_id} into #{conflict.person_a_id}")
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_by) == ("merged", "lead")
