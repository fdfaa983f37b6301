"""The management REST API (/api/v1/*): auth, roles, sources, customers, merges, conflicts, dead letters.

Requests carry ``Authorization: Bearer <token>`` as ``siyu token create`` issues
it. Data arrives the way it does in production: through the Segment endpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from siyu.accounts.models import ApiToken
from siyu.customers.models import MergeConflict, Person
from siyu.customers.queries import Lookup, find_person
from siyu.privacy.models import AuditEvent

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[1]


def make_user(role: str, username: str | None = None):
    from siyu.accounts.actions import create_user

    user, _password = create_user(username or f"u-{role}", role, password="pw-12345678")
    return user


class Api:
    """The test client with one user's bearer token."""

    def __init__(self, client, user) -> None:
        _token, raw = ApiToken.issue(user, "test")
        self.client, self.auth = client, {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    def get(self, path: str, **params):
        return self.client.get(f"/api{path}", params, **self.auth)

    def post(self, path: str, body: dict | None = None):
        return self.client.post(f"/api{path}", json.dumps(body or {}), content_type="application/json", **self.auth)


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def as_role(client):
    users: dict = {}

    def _as(role: str) -> Api:
        if role not in users:
            users[role] = make_user(role)
        return Api(client, users[role])

    return _as


@pytest.fixture
def customer(post_segment):
    """A customer who identified with one id of every kind, browsed and bought."""
    traits = {"phone": "13800138000", "email": "Li.Lei@Example.com", "name": "李雷", "unionid": "uX1",
              "openid": "oX1", "wecom_id": "wmX1", "member_no": "M0001", "gender": "m"}
    post_segment("/v1/page", {"anonymousId": "dev-1", "name": "Home", "messageId": "p1",
                              "timestamp": "2026-01-01T10:00:00Z",
                              "context": {"campaign": {"source": "xiaohongshu"}}})
    post_segment("/v1/identify", {"anonymousId": "dev-1", "userId": "u-li", "traits": traits, "messageId": "i1",
                                  "timestamp": "2026-01-01T10:01:00Z"})
    post_segment("/v1/track", {"userId": "u-li", "event": "Order Completed", "messageId": "o1",
                               "timestamp": "2026-01-02T10:00:00Z",
                               "properties": {"order_id": "A-1", "total": "99.90"}})
    return find_person(Lookup("user_id", "u-li"))


# -- schema, docs, auth ---------------------------------------------------------------
def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "siyu API"
    assert schema.json()["components"]["securitySchemes"]["TokenAuth"]["scheme"] == "bearer"
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert b"openapi.json" in docs.content


def test_the_committed_openapi_schema_matches_the_code():
    from siyu.api import api

    committed = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert committed == json.loads(json.dumps(api.get_openapi_schema(), default=str)), (
        "docs/openapi.json is out of date: regenerate it with `siyu openapi --output docs/openapi.json`"
    )


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/sources", "/v1/sources/dead-letters",
                                  "/v1/sources/ingestion", "/v1/me",
                                  "/v1/customers/conflicts", "/v1/customers/1", "/v1/imports"])
def test_no_token_is_401_with_a_json_reason(client, db, path):
    r = client.get(f"/api{path}")
    assert r.status_code == 401
    assert "Bearer" in r.json()["error"]


def test_an_unknown_or_revoked_token_is_401(client, analyst):
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION="Bearer sy_not-a-token").status_code == 401
    api = Api(client, analyst)
    analyst.is_active = False
    analyst.save(update_fields=["is_active"])
    assert api.get("/v1/me").status_code == 401


def test_me_names_the_roles_and_whether_personal_data_is_visible(as_role):
    r = as_role("customer_service").get("/v1/me")
    assert r.json() == {"username": "u-customer_service", "roles": ["customer_service"],
                        "can_see_personal_data": True}
    assert as_role("data_analyst").get("/v1/me").json()["can_see_personal_data"] is False


def test_a_signed_in_console_session_works_too(api_client, analyst):
    assert api_client(analyst).get("/api/v1/me").json()["username"] == "u-data_analyst"


def test_token_use_is_recorded(client, analyst):
    api = Api(client, analyst)
    api.get("/v1/me")
    assert ApiToken.objects.get(user=analyst).last_used_at is not None


# -- sources ------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_developer_creates_lists_and_rotates_a_source(as_role, client):
    dev = as_role("developer")
    created = dev.post("/v1/sources", {"name": "shop", "kind": "segment"})
    assert created.status_code == 201, created.content
    source = created.json()
    assert source["name"] == "shop" and source["write_key"].startswith("wk_")
    assert source["endpoints"] == {"segment": "/v1/batch"}
    assert [s["name"] for s in dev.get("/v1/sources").json()] == ["shop"]

    old_key = source["write_key"]
    body = json.dumps({"userId": "u", "event": "A", "writeKey": old_key})
    assert client.post("/v1/track", body, content_type="application/json").status_code == 200
    rotated = dev.post(f"/v1/sources/{source['id']}/rotate-key")
    assert rotated.status_code == 200
    new_key = rotated.json()["write_key"]
    assert new_key != old_key
    assert client.post("/v1/track", body, content_type="application/json").status_code == 401
    body = json.dumps({"userId": "u", "event": "A", "writeKey": new_key})
    assert client.post("/v1/track", body, content_type="application/json").status_code == 200


def test_a_rotation_is_audited(as_role):
    dev = as_role("developer")
    source_id = dev.post("/v1/sources", {"name": "shop"}).json()["id"]
    dev.post(f"/v1/sources/{source_id}/rotate-key")
    ops = list(AuditEvent.objects.filter(object_type="source").values_list("detail__op", "actor_label"))
    assert sorted(ops) == [("create", "u-developer"), ("rotate_key", "u-developer")]


@pytest.mark.parametrize(("body", "needle"), [({"name": ""}, "1-100"), ({"name": "x", "kind": "fax"}, "kind")])
def test_an_invalid_source_is_422_naming_the_problem(as_role, body, needle):
    r = as_role("developer").post("/v1/sources", body)
    assert r.status_code == 422
    assert needle in json.dumps(r.json())


def test_a_duplicate_source_name_is_422(as_role):
    dev = as_role("developer")
    dev.post("/v1/sources", {"name": "shop"})
    r = dev.post("/v1/sources", {"name": "shop"})
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]


def test_rotating_an_unknown_source_is_404(as_role):
    assert as_role("developer").post("/v1/sources/999/rotate-key").status_code == 404


@pytest.mark.parametrize(
    ("role", "method", "path", "body"),
    [
        ("content_specialist", "get", "/v1/sources", None),
        ("content_specialist", "get", "/v1/sources/ingestion", None),
        ("data_analyst", "post", "/v1/sources", {"name": "x"}),
        ("ops_lead", "post", "/v1/sources/1/rotate-key", None),
        ("data_analyst", "get", "/v1/sources/dead-letters", None),
        ("content_specialist", "get", "/v1/customers/conflicts", None),
        ("data_analyst", "post", "/v1/customers/conflicts/1", {"action": "merge"}),
        ("community_manager", "get", "/v1/imports", None),
    ],
)
def test_roles_without_the_permission_get_403_naming_it(as_role, role, method, path, body):
    api = as_role(role)
    r = api.get(path) if method == "get" else api.post(path, body)
    assert r.status_code == 403
    assert "permission" in r.json()["detail"]


# -- customers -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "value"),
    [("user_id", "u-li"), ("anonymous_id", "dev-1"), ("phone", "+8613800138000"), ("phone", "138 0013 8000"),
     ("email", "li.lei@example.com"), ("email", "LI.LEI@example.com"), ("unionid", "uX1"), ("openid", "oX1"),
     ("wecom_id", "wmX1"), ("member_no", "M0001")],
)
def test_lookup_finds_the_customer_by_each_identity_kind(as_role, customer, kind, value):
    r = as_role("customer_service").get("/v1/customers/lookup", kind=kind, value=value)
    assert r.status_code == 200, r.content
    assert r.json()["id"] == customer.pk


def test_lookup_of_an_unknown_id_is_404_and_a_malformed_one_422(as_role, customer):
    api = as_role("data_analyst")
    missing = api.get("/v1/customers/lookup", kind="phone", value="13900000000")
    assert missing.status_code == 404
    assert "no customer" in missing.json()["detail"]
    assert api.get("/v1/customers/lookup", kind="phone", value="12").status_code == 422
    bad_kind = api.get("/v1/customers/lookup", kind="qq", value="1")
    assert bad_kind.status_code == 422
    assert bad_kind.json()["errors"][0]["field"].endswith("kind")


def test_the_profile_has_identities_traits_and_computed_attributes(as_role, customer):
    profile = as_role("customer_service").get(f"/v1/customers/{customer.pk}").json()
    assert sorted(i["kind"] for i in profile["identities"]) == [
        "anonymous_id", "email", "member_no", "openid", "phone", "unionid", "user_id", "wecom_id"]
    assert profile["traits"] == {"gender": "male"}
    computed = profile["computed"]
    assert (computed["order_count"], computed["total_spend"], computed["average_order_value"]) == (1, "99.90", "99.90")
    assert computed["acquisition_channel"] == "xiaohongshu"
    assert computed["first_seen"].startswith("2026-01-01T10:00")
    # The order's message was the known customer's latest activity, not yet folded into the
    # database (``sync.fold_activity``): the profile adds it.
    assert Person.objects.get(pk=customer.pk).last_seen.isoformat().startswith("2026-01-01T10:01")
    assert computed["last_seen"].startswith("2026-01-02T10:00")


def test_an_analyst_sees_personal_data_masked_and_nothing_is_audited(as_role, customer):
    profile = as_role("data_analyst").get(f"/v1/customers/{customer.pk}").json()
    assert profile["masked"] is True
    assert profile["personal"] == {"phone": "+86138****8000", "email": "li***@example.com", "name": "李*"}
    values = {i["kind"]: i["value"] for i in profile["identities"]}
    assert values["phone"] == "+86138****8000"
    assert values["email"] == "li***@example.com"
    assert values["unionid"] == "uX***"
    assert "13800138000" not in json.dumps(profile)
    assert not AuditEvent.objects.filter(action="view_pii").exists()


def test_customer_service_sees_personal_data_in_clear_and_the_view_is_audited(as_role, customer):
    profile = as_role("customer_service").get(f"/v1/customers/{customer.pk}").json()
    assert profile["masked"] is False
    assert profile["personal"] == {"phone": "+8613800138000", "email": "li.lei@example.com", "name": "李雷"}
    assert {i["kind"]: i["value"] for i in profile["identities"]}["phone"] == "+8613800138000"
    audit = AuditEvent.objects.get(action="view_pii")
    assert (audit.actor_label, audit.object_type, audit.object_id) == ("u-customer_service", "person",
                                                                        str(customer.pk))
    assert set(audit.detail["fields"]) == {"email", "identities", "name", "phone"}


def test_lookup_by_customer_service_is_audited_too(as_role, customer):
    as_role("customer_service").get("/v1/customers/lookup", kind="member_no", value="M0001")
    assert AuditEvent.objects.filter(action="view_pii", object_id=str(customer.pk)).count() == 1


def test_list_and_search_customers(as_role, customer, post_segment):
    post_segment("/v1/identify", {"userId": "u-han", "traits": {"phone": "13900139000"}, "messageId": "i2"})
    api = as_role("data_analyst")
    everyone = api.get("/v1/customers").json()
    assert everyone["count"] == 2
    assert [p["id"] for p in api.get("/v1/customers", q="13800138000").json()["items"]] == [customer.pk]
    assert [p["id"] for p in api.get("/v1/customers", q="member_no:M0001").json()["items"]] == [customer.pk]
    assert [p["id"] for p in api.get("/v1/customers", q=str(customer.pk)).json()["items"]] == [customer.pk]
    assert api.get("/v1/customers", q="nobody@example.com").json() == {"count": 0, "items": []}
    assert [p["id"] for p in api.get("/v1/customers", channel="xiaohongshu").json()["items"]] == [customer.pk]
    row = api.get("/v1/customers", q="u-li").json()["items"][0]
    assert (row["display"], row["order_count"], row["total_spend"]) == ("李*", 1, "99.90")
    page = api.get("/v1/customers", limit=1, offset=1).json()
    assert (page["count"], len(page["items"])) == (2, 1)
    assert api.get("/v1/customers", limit=0).status_code == 422


def test_timeline_is_newest_first_and_includes_merged_history(as_role, customer, post_segment):
    post_segment("/v1/track", {"anonymousId": "tablet", "event": "Coupon Viewed", "messageId": "t1",
                               "timestamp": "2026-01-03T09:00:00Z"})
    post_segment("/v1/alias", {"previousId": "tablet", "userId": "u-li", "messageId": "a1",
                               "timestamp": "2026-01-04T09:00:00Z"})
    items = as_role("data_analyst").get(f"/v1/customers/{customer.pk}/timeline").json()
    assert [i["event"] for i in items] == ["$alias", "Coupon Viewed", "Order Completed", "$identify", "$page"]
    order = items[2]
    assert (order["order_id"], order["revenue"]) == ("A-1", "99.90")
    limited = as_role("ops_lead").get(f"/v1/customers/{customer.pk}/timeline", limit=2).json()
    assert len(limited) == 2


def test_merges_explain_why_a_profile_is_one_person(as_role, customer, post_segment):
    post_segment("/v1/track", {"anonymousId": "tablet", "event": "Coupon Viewed", "messageId": "t1"})
    tablet = find_person(Lookup("anonymous_id", "tablet"))
    post_segment("/v1/alias", {"previousId": "tablet", "userId": "u-li", "messageId": "a1"})
    merges = as_role("data_analyst").get(f"/v1/customers/{customer.pk}/merges").json()
    assert len(merges) == 1
    assert (merges[0]["merged"], merges[0]["into"], merges[0]["reason"]) == (tablet.pk, customer.pk, "alias")
    assert merges[0]["explanation"] == (
        f"person {tablet.pk} merged into {customer.pk}: they were seen together"
        " (anonymous_id, user_id) in alias message a1"
    )
    # The merged profile's own address leads to the survivor.
    assert as_role("data_analyst").get(f"/v1/customers/{tablet.pk}").json()["id"] == customer.pk


def test_unknown_customer_is_404(as_role, db):
    assert as_role("data_analyst").get("/v1/customers/424242").status_code == 404


# -- conflicts -------------------------------------------------------------------------------
@pytest.fixture
def conflict(post_segment):
    """Two customers with different phones that one message claims are the same person."""
    post_segment("/v1/identify", {"userId": "alice", "traits": {"phone": "13800000001"}, "messageId": "c1"})
    post_segment("/v1/identify", {"userId": "bob", "traits": {"phone": "13800000002"}, "messageId": "c2"})
    post_segment("/v1/identify", {"userId": "alice", "traits": {"member_no": "shared"}, "messageId": "c3"})
    post_segment("/v1/identify", {"userId": "bob", "traits": {"member_no": "shared"}, "messageId": "c4"})
    return MergeConflict.objects.get()


def test_open_conflicts_are_listed_for_review(as_role, conflict):
    rows = as_role("data_analyst").get("/v1/customers/conflicts").json()
    assert [(r["id"], r["status"]) for r in rows] == [(conflict.pk, "open")]
    assert rows[0]["conflicting_kinds"] == ["phone", "user_id"]
    assert rows[0]["evidence"]["message_id"] == "c4"


def test_an_ops_lead_merges_a_conflict(as_role, conflict):
    r = as_role("ops_lead").post(f"/v1/customers/conflicts/{conflict.pk}", {"action": "merge"})
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "merged"
    a, b = conflict.person_a_id, conflict.person_b_id
    assert Person.objects.get(pk=b).merged_into_id == a
    assert find_person(Lookup("user_id", "bob")).pk == a
    assert as_role("data_analyst").get("/v1/customers/conflicts").json() == []
    again = as_role("ops_lead").post(f"/v1/customers/conflicts/{conflict.pk}", {"action": "dismiss"})
    assert again.status_code == 422
    assert "already merged" in again.json()["detail"]
    audit = AuditEvent.objects.get(object_type="merge_conflict")
    assert (audit.actor_label, audit.detail) == ("u-ops_lead", {"op": "merge"})


def test_an_ops_lead_dismisses_a_conflict(as_role, conflict):
    r = as_role("ops_lead").post(f"/v1/customers/conflicts/{conflict.pk}", {"action": "dismiss"})
    assert r.json()["status"] == "dismissed"
    assert Person.objects.filter(merged_into__isnull=True).count() == 2


def test_an_unknown_conflict_action_is_422_and_changes_nothing(as_role, conflict):
    r = as_role("ops_lead").post(f"/v1/customers/conflicts/{conflict.pk}", {"action": "fuse"})
    assert r.status_code == 422
    conflict.refresh_from_db()
    assert conflict.status == "open"


# -- dead letters ------------------------------------------------------------------------------
def test_dead_letters_show_what_was_refused_and_why(as_role, post_segment, source):
    post_segment("/v1/batch", {"batch": [{"type": "track", "userId": "u", "event": "A", "messageId": "ok"},
                                         {"type": "track", "userId": "u", "messageId": "bad-1"}]})
    rows = as_role("developer").get("/v1/sources/dead-letters").json()
    assert len(rows) == 1
    row = rows[0]
    assert (row["source_id"], row["endpoint"], row["message_index"], row["message_id"], row["field"]) == (
        source.pk, "/v1/batch", 1, "bad-1", "event")
    assert row["reason"] == "track needs an event name"
    assert "payload" not in json.dumps(row)
