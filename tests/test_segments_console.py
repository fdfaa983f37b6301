"""The segment, tag and value-tier pages through Django's test client: permissions, the live
count, saving and refreshing, the detail page, masked and audited exports, tag imports, tiers.

Events go through the real ingestion path (``POST /v1/batch``), then the persons copy is synced
into the event store, as ``siyu serve`` does. Times are relative to now on the brand's clock.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from siyu.accounts.actions import create_user
from siyu.accounts.actor import Actor
from siyu.analytics.engine import get_store
from siyu.analytics.sync import sync_all
from siyu.customers.queries import Lookup, find_person
from siyu.privacy.models import AuditEvent
from siyu.segments import actions
from siyu.segments.models import PersonTag, Segment, SegmentRefresh, Tag, TierSettings
from siyu.segments.rules import parse_rule

pytestmark = pytest.mark.django_db(transaction=True)

REPEAT_BUYERS = {"and": [{"type": "event", "event": "Order Completed", "within_days": 90,
                          "count": {"op": "gte", "value": 2}}]}
PHONE_1 = "13812345678"


def login(client, role: str, username: str | None = None):
    user, _pw = create_user(username or f"u-{role}", role, password="pw-12345678")
    client.force_login(user)
    return user


def days_ago(n: int, hour: int = 10) -> str:
    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    return (now - timedelta(days=n)).replace(hour=hour, minute=0, second=0, microsecond=0).isoformat()


def track(user: str, event: str, ago: int, hour: int = 10, **properties) -> dict:
    return {"type": "track", "userId": user, "event": event, "timestamp": days_ago(ago, hour),
            "properties": properties}


def identify(user: str, ago: int, **traits) -> dict:
    return {"type": "identify", "userId": user, "timestamp": days_ago(ago, 9), "traits": traits}


@pytest.fixture
def shop(post_segment):
    """u-1 (张三丰) ordered twice this month, u-2 (李四) once 60 days ago, u-3 (王五) only looked
    around 3 days ago, u-4 last came 200 days ago. Only u-1 ordered twice in 90 days."""
    batch = [
        identify("u-1", 20, name="张三丰", phone=PHONE_1, gender="m", city="Shanghai"),
        identify("u-2", 60, name="李四", phone="13900000002", gender="f"),
        identify("u-3", 3, name="王五", phone="13900000003"),
        identify("u-4", 200, phone="13900000004"),
        track("u-1", "Order Completed", 20, order_id="o1", total="300.00"),
        track("u-1", "Order Completed", 5, order_id="o2", total="400.00"),
        track("u-2", "Order Completed", 60, order_id="o3", total="100.00"),
        track("u-3", "Product Viewed", 3),
        track("u-4", "Product Viewed", 200),
    ]
    response = post_segment("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.content
    sync_all(get_store())
    return {u: find_person(Lookup("user_id", u)) for u in ("u-1", "u-2", "u-3", "u-4")}


def saved_segment(name: str = "Repeat buyers", rule: dict | None = None) -> Segment:
    actor = Actor.system("test")
    segment = actions.create_segment(actor, name, rule or REPEAT_BUYERS)
    actions.refresh_segment(actor, segment)
    segment.refresh_from_db()
    return segment


def chart_rows(spec: dict) -> list[dict]:
    """The inline data of a Vega-Lite spec drawn by Altair."""
    return spec["datasets"][spec["data"]["name"]]


def count(client, rule, **extra):
    body = rule if isinstance(rule, str) else json.dumps(rule)
    return client.post("/segments/count/", {"rule": body}, **extra)


# -- permissions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/segments/", "/segments/new/", "/segments/tags/", "/segments/tiers/"])
def test_every_page_renders_for_a_data_analyst(client, shop, url):
    login(client, "data_analyst")
    response = client.get(url)
    assert response.status_code == 200
    assert 'href="/segments/tags/"' in response.content.decode()  # the section's own navigation


def test_a_segments_detail_and_persona_render_for_a_community_manager(client, shop):
    segment = saved_segment()
    login(client, "community_manager")
    assert client.get(f"/segments/{segment.pk}/").status_code == 200
    assert client.get(f"/segments/{segment.pk}/persona/").status_code == 200
    assert client.get("/segments/new/").status_code == 403  # may not build segments


@pytest.mark.parametrize(("role", "url", "status"), [
    ("content_specialist", "/segments/", 403),
    ("content_specialist", "/segments/tags/", 403),
    ("content_specialist", "/segments/tiers/", 403),
    ("customer_service", "/segments/", 403),
    ("customer_service", "/segments/tags/", 200),
    ("developer", "/segments/new/", 403),
    ("community_manager", "/segments/tags/", 200),
])
def test_pages_follow_the_role_permissions(client, db, role, url, status):
    login(client, role)
    assert client.get(url).status_code == status


@pytest.mark.parametrize("url", ["/segments/", "/segments/new/", "/segments/tags/", "/segments/tiers/"])
def test_anonymous_visitors_are_sent_to_sign_in(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_changes_need_the_change_permissions(client, shop):
    segment = saved_segment()
    login(client, "community_manager")
    assert client.post(f"/segments/{segment.pk}/refresh/").status_code == 403
    assert client.post(f"/segments/{segment.pk}/delete/").status_code == 403
    assert client.post("/segments/refresh/").status_code == 403
    assert client.post("/segments/tiers/", {"silent_after": 10}).status_code == 403
    assert Segment.objects.filter(pk=segment.pk).exists()
    assert SegmentRefresh.objects.filter(segment=segment).count() == 1


def test_the_main_navigation_shows_segments_only_to_roles_that_may_see_them(client, db):
    login(client, "data_analyst")
    assert 'href="/segments/"' in client.get("/settings/").content.decode()
    client.logout()
    login(client, "customer_service")
    assert 'href="/segments/"' not in client.get("/settings/").content.decode()


# -- the list ---------------------------------------------------------------------------------------
def test_the_list_creates_the_built_in_segments_labelled_in_the_readers_language(client, shop):
    login(client, "data_analyst")
    html = client.get("/segments/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert Segment.objects.exclude(key="").count() == 16  # 8 RFM classes, 5 lifecycle stages, 3 value tiers
    assert "高价值付费客户" in html and "重要价值客户" in html and "流失" in html
    assert "分群" in html
    html = client.get("/segments/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "High-value paying" in html and "RFM classes" in html


def test_refresh_all_refreshes_every_segment(client, shop):
    login(client, "data_analyst")
    client.get("/segments/")
    response = client.post("/segments/refresh/", follow=True)
    assert response.status_code == 200
    assert Segment.objects.filter(refreshed_at__isnull=True).count() == 0
    high_value = Segment.objects.get(key="tier:potential")
    assert high_value.size == 2  # u-1 and u-3 were active in the last 30 days; nobody spent 1,000
    assert "Refreshed 16 segments" in response.content.decode()


# -- the live count ---------------------------------------------------------------------------------
def test_the_count_endpoint_counts_and_previews_masked_customers(client, shop):
    login(client, "data_analyst")
    response = count(client, REPEAT_BUYERS, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert response.context["count"] == 1
    html = response.content.decode()
    assert 'data-count="1"' in html
    assert f"#{shop['u-1'].pk}" in html
    assert "张**" in html and "张三丰" not in html


def test_the_count_endpoint_names_each_bad_field(client, shop):
    login(client, "data_analyst")
    rule = {"and": [{"type": "attribute", "field": "nope", "op": "eq", "value": 1},
                    {"type": "event", "event": "Order Completed", "count": {"op": "gte", "value": -1}}]}
    response = count(client, rule)
    assert response.status_code == 400
    errors = {e["field"]: e["reason"] for e in response.context["errors"]}
    assert errors == {"rule.and[0]": "unknown attribute 'nope'", "rule.and[1].count.value": "must be at least 0"}
    assert 'data-error-path="rule.and[1].count.value"' in response.content.decode()


def test_the_count_endpoint_answers_in_the_readers_language(client, shop):
    login(client, "data_analyst")
    rule = {"and": [{"type": "attribute", "field": "order_count", "op": "gte", "value": "two"}]}
    response = count(client, rule, HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response.status_code == 200  # htmx swaps only successful answers
    assert response.context["errors"] == [{"field": "rule.and[0]", "reason": "“gte” 比较数值：值必须是数字"}]


def test_the_count_endpoint_refuses_text_that_is_not_json(client, shop):
    login(client, "data_analyst")
    response = count(client, "{not json")
    assert response.status_code == 400
    assert response.context["errors"] == [{"field": "rule", "reason": "not valid JSON"}]


def test_the_count_endpoint_needs_a_segment_or_tag_permission(client, shop):
    login(client, "customer_service")
    assert count(client, REPEAT_BUYERS).status_code == 403


# -- saving -----------------------------------------------------------------------------------------
def test_saving_a_new_segment_creates_refreshes_and_shows_it(client, shop):
    user = login(client, "data_analyst", "ana")
    response = client.post("/segments/new/", {"name": "Repeat buyers", "description": "twice in 90 days",
                                              "rule": json.dumps(REPEAT_BUYERS)})
    segment = Segment.objects.get(name="Repeat buyers")
    assert response.status_code == 302
    assert response["Location"] == f"/segments/{segment.pk}/"
    assert (segment.size, segment.created_by, segment.rule) == (1, "ana", parse_rule(REPEAT_BUYERS).to_json())
    assert get_store().segment_members(segment.pk) == [shop["u-1"].pk]
    assert AuditEvent.objects.filter(actor=user, object_type="segment", detail__op="refresh").exists()

    html = client.get(response["Location"]).content.decode()
    assert "Repeat buyers" in html
    assert "did Order Completed · times ≥ 2 · in the last 90 days" in html  # the rule in words
    assert "张**" in html and "张三丰" not in html  # members, masked
    assert 'id="entered-count"' in html
    detail = client.get(response["Location"])
    assert detail.context["changes"]["entered"] == 1
    assert detail.context["changes"]["entered_ids"] == [shop["u-1"].pk]
    assert [row["size"] for row in chart_rows(detail.context["size_spec"])] == [1]


def test_a_bad_rule_is_not_saved_and_the_page_names_the_field(client, shop):
    login(client, "data_analyst")
    rule = {"and": [{"type": "event", "event": "Order Completed", "within_days": 0}]}
    response = client.post("/segments/new/", {"name": "Broken", "rule": json.dumps(rule)})
    assert response.status_code == 400
    assert response.context["rule_errors"] == [{"field": "rule.and[0].within_days", "reason": "must be at least 1"}]
    assert not Segment.objects.filter(name="Broken").exists()


def test_a_segment_cannot_be_made_to_contain_itself_through_another(client, shop):
    login(client, "data_analyst")
    outer = saved_segment("Outer")
    inner = saved_segment("Inner", {"type": "segment", "segment": outer.pk})
    response = client.post(f"/segments/{outer.pk}/edit/",
                           {"name": "Outer", "rule": json.dumps({"type": "segment", "segment": inner.pk})})
    assert response.status_code == 400
    assert response.context["form"].non_field_errors() == ["A segment cannot contain itself."]
    outer.refresh_from_db()
    assert outer.rule == parse_rule(REPEAT_BUYERS).to_json()


def test_editing_a_segment_changes_its_rule_and_members(client, shop):
    segment = saved_segment()
    login(client, "data_analyst")
    buyers = {"and": [{"type": "attribute", "field": "order_count", "op": "gte", "value": 1}]}
    response = client.post(f"/segments/{segment.pk}/edit/", {"name": "Buyers", "rule": json.dumps(buyers)})
    assert response.status_code == 302
    segment.refresh_from_db()
    assert (segment.name, segment.size) == ("Buyers", 2)
    assert get_store().segment_members(segment.pk) == sorted([shop["u-1"].pk, shop["u-2"].pk])


def test_built_in_segments_cannot_be_edited_or_deleted(client, shop):
    login(client, "ops_lead")
    client.get("/segments/")
    builtin = Segment.objects.get(key="tier:high_value")
    assert client.get(f"/segments/{builtin.pk}/edit/")["Location"] == f"/segments/{builtin.pk}/"
    client.post(f"/segments/{builtin.pk}/delete/")
    assert Segment.objects.filter(pk=builtin.pk).exists()


def test_deleting_a_custom_segment(client, shop):
    segment = saved_segment()
    login(client, "data_analyst")
    response = client.post(f"/segments/{segment.pk}/delete/")
    assert response["Location"] == "/segments/"
    assert not Segment.objects.filter(pk=segment.pk).exists()
    assert get_store().segment_members(segment.pk) == []


def test_refresh_now_records_another_refresh(client, shop):
    segment = saved_segment()
    login(client, "ops_lead")
    assert client.post(f"/segments/{segment.pk}/refresh/").status_code == 302
    assert list(SegmentRefresh.objects.filter(segment=segment).values_list("size", "entered", "left")) == [
        (1, 0, 0), (1, 1, 0)]


# -- the detail page ---------------------------------------------------------------------------------
def test_members_are_paged_from_the_event_store(client, shop):
    segment = saved_segment("Everyone", {"type": "attribute", "field": "order_count", "op": "gte", "value": 0})
    login(client, "data_analyst")
    response = client.get(f"/segments/{segment.pk}/", {"page": 1}, HTTP_HX_REQUEST="true")
    assert response.templates[0].name == "console/segments/_members.html"
    assert [r["id"] for r in response.context["rows"]] == sorted(p.pk for p in shop.values())
    assert response.context["page"].paginator.count == 4


def test_the_persona_shows_key_figures_and_one_chart_per_dimension(client, shop):
    segment = saved_segment("Buyers", {"type": "attribute", "field": "order_count", "op": "gte", "value": 1})
    login(client, "data_analyst")
    response = client.get(f"/segments/{segment.pk}/persona/")
    figures = response.context["figures"]
    assert (figures.customers, figures.buyers, figures.orders) == (2, 2, 3)
    assert figures.total_spend == 800.0
    assert figures.average_order_value == round(800 / 3, 2)
    assert figures.repurchase_rate == 0.5
    charts = {d["key"]: d["spec"] for d in response.context["dimensions"]}
    assert set(charts) == {"gender", "age_band", "city", "acquisition_channel", "value_tier", "rfm_class",
                           "lifecycle_stage"}
    genders = {row["value"]: row["customers"] for row in chart_rows(charts["gender"])}
    assert genders == {"Male": 1, "Female": 1}
    html = response.content.decode()
    assert "¥800.00" in html and "50.0%" in html


def test_the_persona_speaks_chinese(client, shop):
    segment = saved_segment("Buyers", {"type": "attribute", "field": "order_count", "op": "gte", "value": 1})
    login(client, "data_analyst")
    response = client.get(f"/segments/{segment.pk}/persona/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    charts = {d["key"]: d["spec"] for d in response.context["dimensions"]}
    assert {row["value"] for row in chart_rows(charts["gender"])} == {"男", "女"}
    assert charts["value_tier"]["title"] == "价值分层"


# -- export -------------------------------------------------------------------------------------------
def export_rows(response) -> list[dict]:
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


def test_the_export_is_masked_for_roles_that_may_not_export_personal_data(client, shop):
    segment = saved_segment()
    login(client, "customer_service")  # sees personal data, may not export it; no segment access
    assert client.get(f"/segments/{segment.pk}/export.csv").status_code == 403
    client.logout()
    login(client, "data_analyst")
    response = client.get(f"/segments/{segment.pk}/export.csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = export_rows(response)
    assert [(r["customer_id"], r["name"], r["phone"]) for r in rows] == [(str(shop["u-1"].pk), "张**", "+86138****5678")]
    assert not AuditEvent.objects.filter(action="export_pii").exists()


def test_an_unmasked_export_is_written_to_the_audit_log(client, shop):
    segment = saved_segment()
    admin = login(client, "admin", "boss")
    rows = export_rows(client.get(f"/segments/{segment.pk}/export.csv"))
    assert [(r["name"], r["phone"]) for r in rows] == [("张三丰", "+86" + PHONE_1)]
    event = AuditEvent.objects.get(action="export_pii")
    assert (event.actor, event.object_type, event.object_id, event.detail["rows"]) == (
        admin, "segment", str(segment.pk), 1)


# -- tagging --------------------------------------------------------------------------------------------
def test_tagging_all_members_of_a_segment(client, shop):
    segment = saved_segment()
    login(client, "community_manager")
    response = client.post(f"/segments/{segment.pk}/tag/", {"tag": "vip"}, follow=True)
    assert "1 more customer now carries the tag vip." in response.content.decode()
    assert list(PersonTag.objects.values_list("person_id", "tag__name", "origin")) == [
        (shop["u-1"].pk, "vip", "segment")]


def test_creating_a_rule_tag_applies_its_rule(client, shop):
    login(client, "data_analyst")
    rule = {"and": [{"type": "attribute", "field": "order_count", "op": "gte", "value": 1}]}
    response = client.post("/segments/tags/", {"name": "buyer", "by_rule": "on", "rule": json.dumps(rule)})
    assert response.status_code == 302
    tag = Tag.objects.get(name="buyer")
    assert tag.rule == rule
    assert sorted(tag.people.values_list("person_id", flat=True)) == sorted([shop["u-1"].pk, shop["u-2"].pk])
    html = client.get("/segments/tags/").content.decode()
    assert f'id="tag-{tag.pk}"' in html and "by rule" in html


def test_a_tag_without_the_rule_box_ticked_ignores_the_rule(client, shop):
    login(client, "data_analyst")
    client.post("/segments/tags/", {"name": "hand-picked", "rule": "{broken"})
    assert Tag.objects.get(name="hand-picked").rule is None


def test_a_duplicate_tag_name_is_refused_in_the_readers_language(client, shop):
    login(client, "data_analyst")
    client.post("/segments/tags/", {"name": "vip"})
    response = client.post("/segments/tags/", {"name": "vip"}, HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert response.status_code == 400
    assert response.context["form"].errors["name"] == ["已有名为 'vip' 的标签。"]
    assert Tag.objects.filter(name="vip").count() == 1


def test_deleting_and_refreshing_tags(client, shop):
    actor = Actor.system("test")
    kept = actions.create_tag(actor, "buyer", rule={"type": "attribute", "field": "order_count", "op": "gte",
                                                    "value": 1})
    manual = actions.create_tag(actor, "vip")
    login(client, "ops_lead")
    client.post(f"/segments/tags/{kept.pk}/refresh/")
    assert kept.people.count() == 2
    client.post(f"/segments/tags/{manual.pk}/delete/")
    assert not Tag.objects.filter(pk=manual.pk).exists()


def csv_upload(text: str) -> SimpleUploadedFile:
    return SimpleUploadedFile("people.csv", text.encode("utf-8"), content_type="text/csv")


def test_a_tag_csv_is_checked_first_then_applied_with_bad_rows_reported(client, shop):
    login(client, "community_manager")
    text = f"customer_id,phone\n{shop['u-1'].pk},\nabc,\n,13700000000\n,{'13900000002'}\n"
    dry = client.post("/segments/tags/import/", {"tag": "spring", "action": "dry_run", "file": csv_upload(text)},
                      HTTP_HX_REQUEST="true")
    assert dry.status_code == 200
    assert [(e["row"], e["field"], e["reason"]) for e in dry.context["row_errors"]] == [
        (3, "customer_id", "'abc' is not a customer number"), (4, "phone", "no customer with this phone")]
    assert dry.context["result"].tagged == 2
    assert 'id="import-apply"' in dry.content.decode()
    assert not PersonTag.objects.exists() and not Tag.objects.exists()

    applied = client.post("/segments/tags/import/", {"tag": "spring", "action": "apply", "file": csv_upload(text)},
                          HTTP_HX_REQUEST="true")
    assert applied.context["result"].tagged == 2
    assert [e["row"] for e in applied.context["row_errors"]] == [3, 4]
    assert sorted(PersonTag.objects.values_list("person_id", flat=True)) == sorted(
        [shop["u-1"].pk, shop["u-2"].pk])


def test_a_csv_cannot_tag_customers_with_a_rule_tag(client, shop):
    actions.create_tag(Actor.system("test"), "buyer", rule={"type": "attribute", "field": "order_count",
                                                            "op": "gte", "value": 1})
    login(client, "community_manager")
    response = client.post("/segments/tags/import/", {"tag": "buyer", "action": "dry_run",
                                                      "file": csv_upload(f"customer_id\n{shop['u-3'].pk}\n")})
    assert response.status_code == 400
    assert response.context["import_form"].errors["file"] == [
        "Tag 'buyer' is kept by its rule; it cannot be set or removed by hand."]
    assert not PersonTag.objects.exists()


def test_a_csv_without_an_id_column_is_refused(client, shop):
    login(client, "community_manager")
    response = client.post("/segments/tags/import/", {"tag": "spring", "file": csv_upload("name\nx\n")})
    assert response.status_code == 400
    assert "The CSV needs a header with one of: customer_id" in response.content.decode()


def test_adding_and_removing_a_customers_tag(client, shop):
    person = shop["u-2"]
    login(client, "community_manager")
    html = client.get(f"/customers/{person.pk}/").content.decode()
    assert f'hx-get="/customers/{person.pk}/tags/"' in html
    response = client.post(f"/customers/{person.pk}/tags/", {"op": "add", "tag": "vip"}, HTTP_HX_REQUEST="true")
    assert 'data-tag="vip"' in response.content.decode()
    assert list(PersonTag.objects.values_list("person_id", "tag__name")) == [(person.pk, "vip")]
    response = client.post(f"/customers/{person.pk}/tags/", {"op": "remove", "tag": "vip"}, HTTP_HX_REQUEST="true")
    assert 'data-tag="vip"' not in response.content.decode()
    assert not PersonTag.objects.exists()


def test_a_rule_tag_cannot_be_set_by_hand(client, shop):
    actions.create_tag(Actor.system("test"), "buyer", rule={"type": "attribute", "field": "order_count",
                                                            "op": "gte", "value": 1})
    login(client, "community_manager")
    response = client.post(f"/customers/{shop['u-3'].pk}/tags/", {"op": "add", "tag": "buyer"},
                           HTTP_HX_REQUEST="true")
    assert response.context["error"] == "Tag 'buyer' is kept by its rule; it cannot be set or removed by hand."
    assert not PersonTag.objects.exists()


def test_customer_service_sees_tags_but_may_not_change_them(client, shop):
    actions.add_tag(Actor.system("test"), "vip", [shop["u-1"].pk])
    login(client, "customer_service")
    response = client.get(f"/customers/{shop['u-1'].pk}/tags/")
    html = response.content.decode()
    assert 'data-tag="vip"' in html and "add-tag-form" not in html
    assert client.post(f"/customers/{shop['u-1'].pk}/tags/", {"op": "remove", "tag": "vip"}).status_code == 403
    assert PersonTag.objects.count() == 1


# -- value tiers ------------------------------------------------------------------------------------------
TIERS = {"high_value_spend": "500", "high_value_orders": "2", "lookback_days": "180", "active_days": "14",
         "silent_after": "20", "churned_after": "60"}


def test_saving_the_tier_thresholds(client, db):
    login(client, "data_analyst", "ana")
    response = client.post("/segments/tiers/", TIERS)
    assert response.status_code == 302
    t = TierSettings.current()
    assert (t.high_value_spend, t.lookback_days, t.silent_after, t.churned_after, t.updated_by) == (
        Decimal("500"), 180, 20, 60, "ana")
    html = client.get("/segments/tiers/").content.decode()
    assert "At least 2 orders and 500.00 spent in the last 180 days." in html
    assert "高价值付费客户" in html and "High-value paying" in html


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"silent_after": "60", "churned_after": "30"}, "churned_after", "Must be larger than “silent after” (60 days)."),
    ({"high_value_spend": "-1"}, "high_value_spend", "Must be at least 0."),
    ({"active_days": "0"}, "active_days", "Must be at least 1."),
    ({"lookback_days": "4000"}, "lookback_days", "Must be at most 3650."),
    ({"high_value_orders": "two"}, "high_value_orders", "Enter a whole number."),
])
def test_bad_thresholds_are_refused_and_nothing_changes(client, db, change, field, message):
    login(client, "data_analyst")
    before = TierSettings.current()
    response = client.post("/segments/tiers/", {**TIERS, **change})
    assert response.status_code == 400
    assert response.context["form"].errors[field] == [message]
    after = TierSettings.current()
    assert (after.pk, after.silent_after, after.high_value_spend) == (before.pk, before.silent_after,
                                                                      before.high_value_spend)


def test_the_tier_page_speaks_chinese(client, db):
    login(client, "data_analyst")
    html = client.get("/segments/tiers/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert "价值分层与生命周期阶段" in html
    assert "最近 30 天内首次有活动。" in html
