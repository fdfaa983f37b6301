"""Tags and segments end to end: actions, refresh with entered/left, the API, and the CLI.

Customers arrive through the real ingestion path (``POST /v1/batch``); the persons
and tags copies are synced into the event store as ``siyu serve`` does. Rule
semantics on each engine are pinned in tests/analytics/test_segment_rules.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction

from siyu.accounts.actions import create_user
from siyu.accounts.actor import Actor
from siyu.analytics.engine import get_store
from siyu.analytics.sync import sync_all
from siyu.customers.identity import merge_persons
from siyu.customers.queries import Lookup, find_person
from siyu.privacy.models import AuditEvent
from siyu.segments import actions, queries
from siyu.segments.models import PersonTag, Segment, Tag
from siyu.segments.rules import RuleError

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor.system("test")
BUYERS = {"type": "event", "event": "Order Completed"}
TWICE = {"type": "event", "event": "Order Completed", "count": {"op": "gte", "value": 2}}


def track(user: str, event: str, days_ago: int, **properties) -> dict:
    at = datetime.now(UTC) - timedelta(days=days_ago)
    return {"type": "track", "userId": user, "event": event, "timestamp": at.isoformat(), "properties": properties}


@pytest.fixture
def shop(post_segment):
    """u-1 bought twice, u-2 once, u-3 only looked; u-2 has a phone number."""
    batch = [
        track("u-1", "Order Completed", 20, order_id="o1", total="100.00"),
        track("u-1", "Order Completed", 5, order_id="o2", total="50.00"),
        track("u-2", "Order Completed", 3, order_id="o3", total="30.00"),
        {"type": "identify", "userId": "u-2", "traits": {"phone": "13800138002", "name": "韩梅梅"}},
        track("u-3", "Product Viewed", 1),
    ]
    response = post_segment("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.content
    sync_all(get_store())
    return {u: find_person(Lookup("user_id", u)).pk for u in ("u-1", "u-2", "u-3")}


def stored(segment: Segment) -> list[int]:
    return get_store().segment_members(segment.pk, limit=None)


# -- segments --------------------------------------------------------------------------------
def test_a_segment_refresh_records_size_and_who_entered_and_left(shop, post_segment):
    segment = actions.create_segment(ACTOR, "Repeat buyers", TWICE)
    first = actions.refresh_segment(ACTOR, segment)
    assert (first.size, first.entered, first.left) == (1, 1, 0)
    assert stored(segment) == [shop["u-1"]]
    # u-2 buys again: enters; then the rule changes so that u-1 leaves
    post_segment("/v1/batch", {"batch": [track("u-2", "Order Completed", 0, order_id="o4", total="20.00")]})
    second = actions.refresh_segment(ACTOR, segment)
    assert (second.size, second.entered, second.left) == (2, 1, 0)
    actions.update_segment(ACTOR, segment, "Repeat buyers", {"and": [TWICE, {"type": "event",
                                                                             "event": "Order Completed",
                                                                             "within_days": 2}]})
    third = actions.refresh_segment(ACTOR, segment)
    assert (third.size, third.entered, third.left) == (1, 0, 1)
    changes = get_store().segment_changes(segment.pk, datetime.now(UTC) - timedelta(hours=1))
    assert sorted((p, c) for p, c, _at in changes) == [(shop["u-1"], "entered"), (shop["u-1"], "left"),
                                                        (shop["u-2"], "entered")]
    assert [r.size for r in segment.refreshes.order_by("at")] == [1, 2, 1]
    assert AuditEvent.objects.filter(object_type="segment", detail__op="refresh").count() == 3


def test_a_bad_rule_saves_nothing_and_names_the_field():
    with pytest.raises(RuleError) as caught:
        actions.create_segment(ACTOR, "bad", {"and": [BUYERS, {"type": "event", "count": {"op": "most"}}]})
    assert caught.value.errors[0]["field"].startswith("rule.and[1].count.op")
    with pytest.raises(actions.SegmentError, match="no segment 999"):
        actions.create_segment(ACTOR, "bad", {"type": "segment", "segment": 999})
    assert not Segment.objects.filter(key="").exists()


def test_builtin_segments_cannot_be_edited_or_deleted():
    actions.ensure_builtin_segments()
    keys = set(Segment.objects.exclude(key="").values_list("key", flat=True))
    assert {"rfm:important_value", "lifecycle:churned", "tier:high_value", "tier:potential"} <= keys
    assert len(keys) == 16
    tier = Segment.objects.get(key="tier:high_value")
    with pytest.raises(actions.SegmentError):
        actions.update_segment(ACTOR, tier, "x", BUYERS)
    with pytest.raises(actions.SegmentError):
        actions.delete_segment(ACTOR, tier)


def test_a_segment_used_by_another_cannot_be_deleted(shop):
    base = actions.create_segment(ACTOR, "Buyers", BUYERS)
    actions.create_segment(ACTOR, "Buyers with a phone tag", {"and": [{"type": "segment", "segment": base.pk},
                                                                      {"type": "tag", "tag": "x"}]})
    with pytest.raises(actions.SegmentError, match="used by"):
        actions.delete_segment(ACTOR, base)


def test_a_segment_cannot_reach_itself_through_another(shop):
    a = actions.create_segment(ACTOR, "A", BUYERS)
    b = actions.create_segment(ACTOR, "B", {"type": "segment", "segment": a.pk})
    with pytest.raises(actions.SegmentError, match="cannot contain itself"):
        actions.update_segment(ACTOR, a, "A", {"type": "segment", "segment": b.pk})
    a.refresh_from_db()
    assert a.rule == {**BUYERS, "filters": []}  # unchanged (stored in canonical form)


def test_value_tier_thresholds_change_the_tiers(shop):
    rule = {"type": "attribute", "field": "value_tier", "value": "high_value"}
    assert queries.count(rule) == 0
    actions.update_tier_settings(ACTOR, {"high_value_spend": "120", "high_value_orders": "2"})
    assert queries.count(rule) == 1
    with pytest.raises(actions.SegmentError, match="silent_after must be smaller"):
        actions.update_tier_settings(ACTOR, {"silent_after": 100})
    with pytest.raises(actions.SegmentError, match="high_value_orders: 'x' is not a whole number"):
        actions.update_tier_settings(ACTOR, {"high_value_orders": "x"})


# -- tags --------------------------------------------------------------------------------------
def test_tags_by_hand_reach_segments_at_once(shop):
    assert actions.add_tag(ACTOR, "vip", [shop["u-1"], shop["u-2"]]) == 2
    assert actions.add_tag(ACTOR, "vip", [shop["u-1"]]) == 0  # already tagged
    assert queries.count({"type": "tag", "tag": "vip"}) == 2  # the copy in the event store follows at once
    assert actions.remove_tag(ACTOR, "vip", [shop["u-2"]]) == 1
    assert queries.count({"and": [{"type": "tag", "tag": "vip"}, BUYERS]}) == 1


def test_tagging_an_unknown_customer_tags_nobody(shop):
    with pytest.raises(actions.SegmentError, match="unknown or merged customer ids: 999999"):
        actions.add_tag(ACTOR, "vip", [shop["u-1"], 999_999])
    assert not PersonTag.objects.exists()


def test_tag_csv_import_reports_bad_rows_and_tags_the_rest(shop):
    data = ("customer_id,phone\n"
            f"{shop['u-1']},\n"
            ",13800138002\n"
            "abc,\n"
            ",13900000000\n"
            ",\n").encode()
    dry = actions.import_tag_csv(ACTOR, "csv", data, dry_run=True)
    assert (dry.rows, dry.tagged, dry.dry_run) == (5, 2, True)
    assert not PersonTag.objects.exists()
    result = actions.import_tag_csv(ACTOR, "csv", data)
    assert result.tagged == 2
    assert [(e["row"], e["field"]) for e in result.errors] == [(4, "customer_id"), (5, "phone"),
                                                               (6, "customer_id,phone")]
    assert set(PersonTag.objects.values_list("person_id", flat=True)) == {shop["u-1"], shop["u-2"]}
    with pytest.raises(actions.SegmentError, match="needs a header"):
        actions.import_tag_csv(ACTOR, "csv", b"name\nli\n")


def test_a_rule_tag_follows_its_rule_and_refuses_hand_edits(shop, post_segment):
    tag = actions.create_tag(ACTOR, "repeat", rule=TWICE)
    assert actions.refresh_rule_tag(ACTOR, tag) == {"added": 1, "removed": 0, "size": 1}
    post_segment("/v1/batch", {"batch": [track("u-2", "Order Completed", 0, order_id="o9", total="5.00")]})
    sync_all(get_store())
    assert actions.refresh_rule_tag(ACTOR, tag)["added"] == 1
    assert set(tag.people.values_list("person_id", flat=True)) == {shop["u-1"], shop["u-2"]}
    with pytest.raises(actions.SegmentError, match="kept by its rule"):
        actions.add_tag(ACTOR, "repeat", [shop["u-3"]])
    with pytest.raises(actions.SegmentError, match="cannot test itself"):
        actions.create_tag(ACTOR, "loop", rule={"type": "tag", "tag": "loop"})


def test_tag_every_member_of_a_segment(shop):
    segment = actions.create_segment(ACTOR, "Buyers", BUYERS)
    with pytest.raises(actions.SegmentError, match="not been refreshed"):
        actions.tag_segment(ACTOR, "buyers", segment)
    actions.refresh_segment(ACTOR, segment)
    assert actions.tag_segment(ACTOR, "buyers", segment) == 2
    assert set(Tag.objects.get(name="buyers").people.values_list("origin", flat=True)) == {"segment"}


def test_a_merge_moves_tags_to_the_survivor(shop):
    actions.add_tag(ACTOR, "vip", [shop["u-3"]])
    actions.add_tag(ACTOR, "new", [shop["u-3"], shop["u-1"]])
    with transaction.atomic():  # as every caller merges
        merge_persons(shop["u-3"], shop["u-1"], reason="manual", evidence={}, actor_label="test")
    names = set(PersonTag.objects.filter(person_id=shop["u-1"]).values_list("tag__name", flat=True))
    assert names == {"vip", "new"}
    assert not PersonTag.objects.filter(person_id=shop["u-3"]).exists()


# -- API ---------------------------------------------------------------------------------------
def bearer(role: str) -> dict:
    from siyu.accounts.models import ApiToken

    user = create_user(f"api-{role}", role, password="pw-12345678")[0]
    return {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 't')[1]}"}


def test_api_counts_a_rule_and_names_bad_fields(client, shop):
    auth = bearer("data_analyst")
    ok = client.post("/api/v1/segments/count", {"rule": TWICE}, content_type="application/json", **auth)
    assert ok.status_code == 200 and ok.json() == {"count": 1}
    bad = client.post("/api/v1/segments/count", {"rule": {"type": "attribute", "field": "nope"}},
                      content_type="application/json", **auth)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "rule" and "unknown attribute 'nope'" in bad.json()["errors"][0]["reason"]
    denied = client.post("/api/v1/segments/count", {"rule": TWICE}, content_type="application/json",
                         **bearer("content_specialist"))
    assert denied.status_code == 403


def test_api_segment_lifecycle_members_persona_and_export(client, shop):
    auth = bearer("data_analyst")
    made = client.post("/api/v1/segments", {"name": "Buyers", "rule": BUYERS}, content_type="application/json",
                       **auth)
    assert made.status_code == 201, made.content
    pk = made.json()["id"]
    assert made.json()["size"] == 2
    members = client.get(f"/api/v1/segments/{pk}/members", **auth).json()
    assert members["count"] == 2 and {m["id"] for m in members["items"]} == {shop["u-1"], shop["u-2"]}
    changes = client.get(f"/api/v1/segments/{pk}/changes", **auth).json()
    assert sorted(changes["entered"]) == sorted([shop["u-1"], shop["u-2"]]) and changes["left"] == []
    persona = client.get(f"/api/v1/segments/{pk}/persona", **auth).json()
    assert persona["figures"]["customers"] == 2 and persona["figures"]["orders"] == 3
    assert persona["figures"]["repurchase_rate"] == 0.5
    # the analyst's export is masked and not audited as a personal-data export
    masked = b"".join(client.get(f"/api/v1/segments/{pk}/export", **auth).streaming_content).decode()
    assert "13800138002" not in masked and "138****8002" in masked
    assert not AuditEvent.objects.filter(action="export_pii").exists()
    admin = b"".join(client.get(f"/api/v1/segments/{pk}/export", **bearer("admin")).streaming_content).decode()
    assert "13800138002" in admin
    assert AuditEvent.objects.filter(action="export_pii", object_type="segment", object_id=str(pk)).count() == 1
    sizes = client.get(f"/api/v1/segments/{pk}/sizes", **auth).json()
    assert [s["size"] for s in sizes] == [2]


def test_api_tags(client, shop):
    auth = bearer("data_analyst")
    added = client.post("/api/v1/tags/vip/add", {"customers": [shop["u-1"]]}, content_type="application/json",
                        **auth)
    assert added.json() == {"changed": 1}
    listed = client.get("/api/v1/tags", **auth).json()
    assert [(t["name"], t["people"]) for t in listed] == [("vip", 1)]
    bad = client.post("/api/v1/tags/vip/add", {"customers": [123456789]}, content_type="application/json", **auth)
    assert bad.status_code == 422 and "unknown" in bad.json()["error"]


# -- CLI (in process: the test's stores) --------------------------------------------------------
def test_cli_segment_count_prints_the_count(shop, capsys):
    from siyu.cli import main

    main(["segment", "count", "--rule", json.dumps(TWICE), "--json"])
    assert json.loads(capsys.readouterr().out) == {"count": 1}
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "count", "--rule", json.dumps({"type": "event", "within_days": 0}), "--json"])
    assert exit_.value.code == 2
    out = json.loads(capsys.readouterr().out)
    assert out["errors"][0]["field"] == "rule.within_days"
