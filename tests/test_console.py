"""The web console through Django's test client: pages, permissions, masking, audit, language."""

from __future__ import annotations

import re
from pathlib import Path

import polib
import pytest
from django.db import transaction
from django.utils import translation

from siyu.accounts.actions import create_user
from siyu.customers.identity import Resolver, make_claim
from siyu.customers.models import MergeConflict, Person
from siyu.customers.queries import Lookup, find_person
from siyu.ingest.models import DeadLetter, Source
from siyu.privacy.models import AuditEvent

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "13812345678"


def login(client, role: str, username: str | None = None):
    user, _pw = create_user(username or f"u-{role}", role, password="pw-12345678")
    client.force_login(user)
    return user


@pytest.fixture
def shopper(post_segment) -> Person:
    """One customer seeded through the real ingestion path: profile, a page view, an order."""
    batch = [
        {"type": "identify", "userId": "u-1", "messageId": "m-id",
         "traits": {"phone": PHONE, "name": "张三丰", "email": "zhang@example.com", "gender": "m"}},
        {"type": "page", "userId": "u-1", "name": "Home", "messageId": "m-page",
         "properties": {"utm_source": "wechat_article", "utm_campaign": "spring"}},
        {"type": "track", "userId": "u-1", "event": "Order Completed", "messageId": "m-order",
         "properties": {"order_id": "SO-1", "total": "199.00", "store": "SH-01"}},
    ]
    response = post_segment("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 3
    return find_person(Lookup("user_id", "u-1"))


def two_conflicting_customers() -> MergeConflict:
    """Two customers with different phones, then a message claiming they are one person."""
    claims = [
        [make_claim("user_id", "a"), make_claim("phone", "13800000001")],
        [make_claim("user_id", "b"), make_claim("phone", "13800000002")],
        [make_claim("user_id", "a"), make_claim("user_id", "b")],
    ]
    for i, claim_list in enumerate(claims):
        with transaction.atomic():
            Resolver("test").resolve([claim_list], [{"reason": "identify", "message_id": f"c-{i}"}])
    return MergeConflict.objects.get()


# -- sign-in and permissions --------------------------------------------------------
def test_sign_in_page_renders_for_anonymous_visitors(client):
    response = client.get("/login/")
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_signing_in_with_the_form_lands_on_home(client):
    create_user("lead", "ops_lead", password="pw-12345678")
    response = client.post("/login/", {"username": "lead", "password": "pw-12345678"}, follow=True)
    assert response.redirect_chain[-1][0] == "/"
    assert "Overview" in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/customers/", "/customers/1/", "/sources/", "/conflicts/", "/settings/"])
def test_every_page_sends_anonymous_visitors_to_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize(
    ("role", "url", "status"),
    [
        ("content_specialist", "/sources/", 403),
        ("content_specialist", "/conflicts/", 403),
        ("customer_service", "/conflicts/", 403),
        ("data_analyst", "/sources/", 200),
        ("data_analyst", "/conflicts/", 200),
        ("developer", "/conflicts/", 403),
        ("content_specialist", "/settings/", 200),
    ],
)
def test_pages_follow_the_role_permissions(client, role, url, status):
    login(client, role)
    assert client.get(url).status_code == status


def test_sign_out_is_a_post_that_ends_the_session(client):
    login(client, "data_analyst")
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


# -- home ------------------------------------------------------------------------------
def test_home_shows_the_headline_counts(client, shopper):
    login(client, "ops_lead")
    response = client.get("/")
    assert response.status_code == 200
    stats = response.context["stats"]
    assert (stats.customers, stats.identified, stats.with_orders, stats.orders) == (1, 1, 1, 1)
    assert str(stats.gmv) == "199.00"
    assert stats.events == 3
    assert sum(n for _d, n in stats.events_per_day) == 3
    assert sum(n for _d, n in stats.new_customers_per_day) == 1
    assert stats.channels == [("wechat_article", 1)]
    html = response.content.decode()
    assert "¥199.00" in html
    assert "<svg" in html


def test_home_hides_money_from_roles_without_order_access(client, shopper):
    login(client, "content_specialist")
    html = client.get("/").content.decode()
    assert "¥199.00" not in html
    assert 'data-metric="gmv"' not in html


# -- customers ---------------------------------------------------------------------------
def test_search_by_phone_lists_the_customer_with_a_masked_name(client, shopper):
    login(client, "data_analyst")
    response = client.get("/customers/", {"q": PHONE})
    html = response.content.decode()
    assert f'href="/customers/{shopper.pk}/"' in html
    assert "张**" in html and "张三丰" not in html
    assert "<html" in html


def test_live_search_returns_only_the_table_fragment(client, shopper):
    login(client, "data_analyst")
    response = client.get("/customers/", {"q": f"#{shopper.pk}"}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "<html" not in html
    assert f"#{shopper.pk}" in html
    assert "HX-Request" in response["Vary"]


def test_search_with_an_unknown_kind_explains_the_syntax(client, shopper):
    login(client, "data_analyst")
    html = client.get("/customers/", {"q": "shoe:42"}).content.decode()
    assert "KIND:VALUE" in html
    assert "No customer matches" in html


def test_channel_filter_keeps_only_that_channel(client, shopper):
    login(client, "data_analyst")
    assert client.get("/customers/", {"channel": "wechat_article"}).context["page"].paginator.count == 1
    assert client.get("/customers/", {"channel": "douyin"}).context["page"].paginator.count == 0


def test_customer_detail_masks_personal_data_for_an_analyst(client, shopper):
    login(client, "data_analyst")
    html = client.get(f"/customers/{shopper.pk}/").content.decode()
    assert "138****5678" in html
    assert PHONE not in html and "zhang@example.com" not in html
    assert "Reveal personal data" not in html
    assert "SO-1" in html and "Order Completed" in html
    assert "wechat_article" in html
    assert not AuditEvent.objects.filter(action="view_pii").exists()


def test_analyst_may_not_reveal_personal_data(client, shopper):
    login(client, "data_analyst")
    assert client.post(f"/customers/{shopper.pk}/reveal/").status_code == 403
    assert not AuditEvent.objects.filter(action="view_pii").exists()


def test_customer_service_sees_masked_values_until_an_audited_reveal(client, shopper):
    agent = login(client, "customer_service")
    page = client.get(f"/customers/{shopper.pk}/").content.decode()
    assert "138****5678" in page and "Reveal personal data" in page
    assert not AuditEvent.objects.filter(action="view_pii").exists()

    revealed = client.post(f"/customers/{shopper.pk}/reveal/", HTTP_HX_REQUEST="true").content.decode()

    assert f"+86{PHONE}" in revealed and "张三丰" in revealed
    event = AuditEvent.objects.get(action="view_pii")
    assert (event.actor, event.object_type, event.object_id) == (agent, "person", str(shopper.pk))


def test_reveal_without_javascript_answers_the_whole_page(client, shopper):
    login(client, "customer_service")
    html = client.post(f"/customers/{shopper.pk}/reveal/").content.decode()
    assert "<html" in html and f"+86{PHONE}" in html and "Order Completed" in html
    assert AuditEvent.objects.filter(action="view_pii").count() == 1


def test_a_merged_customer_number_redirects_to_the_survivor(client, post_segment):
    post_segment("/v1/page", {"anonymousId": "d1", "messageId": "a1"})
    post_segment("/v1/page", {"anonymousId": "d2", "messageId": "a2"})
    post_segment("/v1/alias", {"userId": "u-9", "previousId": "d1", "messageId": "a3"})
    post_segment("/v1/identify", {"userId": "u-9", "anonymousId": "d2", "messageId": "a4"})
    survivor = find_person(Lookup("user_id", "u-9"))
    merged = Person.objects.exclude(pk=survivor.pk).get()
    login(client, "data_analyst")
    response = client.get(f"/customers/{merged.pk}/")
    assert response.status_code == 302
    assert response["Location"] == f"/customers/{survivor.pk}/"
    html = client.get(response["Location"]).content.decode()
    assert f"Customer #{merged.pk} was merged into #{survivor.pk}" in html


def test_timeline_pages_neither_skip_nor_repeat_events_with_equal_times(post_segment):
    from siyu.console.queries import timeline_page

    same = "2026-01-05T10:00:00Z"
    batch = [{"type": "track", "userId": "u-t", "event": f"E{i}", "messageId": f"t{i}", "timestamp": same}
             for i in range(5)]
    post_segment("/v1/batch", {"batch": batch})
    person = find_person(Lookup("user_id", "u-t"))
    seen, cursor = [], None
    for _ in range(5):
        page = timeline_page(person, cursor, limit=2)
        seen += [e["event"] for e in page.events]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == [f"E{i}" for i in range(5)]


def test_load_more_returns_the_next_timeline_items(client, shopper):
    login(client, "data_analyst")
    first = client.get(f"/customers/{shopper.pk}/").context["timeline"]
    assert len(first.events) == 3 and first.next_cursor is None
    assert client.get(f"/customers/{shopper.pk}/timeline/", {"cursor": "nonsense"}).status_code == 400
    stamp = first.events[0]["timestamp"].isoformat()
    html = client.get(f"/customers/{shopper.pk}/timeline/",
                      {"cursor": f"{stamp}|{first.events[0]['uuid']}"}).content.decode()
    assert "<html" not in html
    assert html.count('class="event ') == 2


# -- sources ------------------------------------------------------------------------------
def test_sources_page_shows_write_keys_and_endpoints(client, source, sensors_source):
    login(client, "developer")
    html = client.get("/sources/").content.decode()
    assert source.write_key in html
    assert "http://testserver/v1/batch" in html
    assert "http://testserver/sa?project=miniapp" in html


def test_creating_a_source_records_who_created_it(client):
    dev = login(client, "developer", "dev-li")
    response = client.post("/sources/", {"name": "pos", "kind": "segment"})
    assert response.status_code == 302
    source = Source.objects.get(name="pos")
    assert source.created_by == "dev-li"
    assert AuditEvent.objects.filter(actor=dev, object_type="source", object_id=str(source.pk)).exists()


def test_a_taken_source_name_is_refused_with_the_reason(client, source):
    login(client, "developer")
    response = client.post("/sources/", {"name": "web", "kind": "segment"})
    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Source.objects.filter(name="web").count() == 1


def test_an_analyst_may_not_create_or_rotate_sources(client, source):
    login(client, "data_analyst")
    key = source.write_key
    assert client.post("/sources/", {"name": "pos", "kind": "segment"}).status_code == 403
    assert client.post(f"/sources/{source.pk}/rotate/").status_code == 403
    assert not Source.objects.filter(name="pos").exists()
    source.refresh_from_db()
    assert source.write_key == key


def test_rotating_a_key_replaces_it_and_is_audited(client, source):
    dev = login(client, "developer")
    old = source.write_key
    assert client.post(f"/sources/{source.pk}/rotate/").status_code == 302
    source.refresh_from_db()
    assert source.write_key != old
    assert AuditEvent.objects.filter(actor=dev, detail__op="rotate_key").exists()


def test_dead_letters_are_listed_for_developers_only(client, post_segment):
    post_segment("/v1/batch", {"batch": [{"type": "track", "userId": "u", "messageId": "bad-1"}]})
    assert DeadLetter.objects.count() == 1
    login(client, "developer")
    html = client.get("/sources/").content.decode()
    assert "track needs an event name" in html and "bad-1" in html
    client.logout()
    login(client, "data_analyst")
    assert "track needs an event name" not in client.get("/sources/").content.decode()


# -- merge conflicts --------------------------------------------------------------------------
def test_conflicts_show_both_customers_masked(client):
    conflict = two_conflicting_customers()
    login(client, "data_analyst")
    html = client.get("/conflicts/").content.decode()
    assert "138****0001" in html and "138****0002" in html
    assert "13800000001" not in html
    assert f"/conflicts/{conflict.pk}/resolve/" not in html  # no buttons without the permission


def test_merging_a_conflict_records_who_decided(client):
    conflict = two_conflicting_customers()
    lead = login(client, "ops_lead", "lead-wang")
    assert client.post(f"/conflicts/{conflict.pk}/resolve/", {"action": "merge"}).status_code == 302
    conflict.refresh_from_db()
    assert (conflict.status, conflict.resolved_by) == ("merged", "lead-wang")
    assert Person.objects.get(pk=conflict.person_b_id).merged_into_id == conflict.person_a_id
    assert AuditEvent.objects.filter(actor=lead, object_type="merge_conflict").exists()


def test_dismissing_a_conflict_keeps_both_customers(client):
    conflict = two_conflicting_customers()
    login(client, "ops_lead")
    client.post(f"/conflicts/{conflict.pk}/resolve/", {"action": "dismiss"})
    conflict.refresh_from_db()
    assert conflict.status == "dismissed"
    assert Person.objects.filter(merged_into__isnull=True).count() == 2


def test_an_analyst_may_not_resolve_conflicts(client):
    conflict = two_conflicting_customers()
    login(client, "data_analyst")
    assert client.post(f"/conflicts/{conflict.pk}/resolve/", {"action": "merge"}).status_code == 403
    conflict.refresh_from_db()
    assert conflict.status == "open"


# -- language ---------------------------------------------------------------------------------
def test_a_browser_preferring_chinese_gets_simplified_chinese(client, shopper):
    login(client, "data_analyst")
    html = client.get("/customers/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").content.decode()
    assert "获客渠道" in html
    assert 'lang="zh-Hans"' in html


def test_the_sign_in_page_follows_the_browser_language(client):
    assert "登录" in client.get("/login/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()


def test_a_chosen_language_beats_the_browser_and_is_kept_for_the_next_sign_in(client):
    user = login(client, "data_analyst")
    client.post("/settings/language/", {"language": "en", "next": "/settings/"})
    assert "Settings" in client.get("/settings/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode()
    assert user.siyu_settings.language == "en"
    client.post("/settings/language/", {"language": "zh-hans", "next": "/"})
    client.logout()
    client.force_login(user)
    assert "设置" in client.get("/settings/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_following_the_browser_again_forgets_the_choice(client):
    user = login(client, "data_analyst")
    client.post("/settings/language/", {"language": "zh-hans"})
    client.post("/settings/language/", {"language": ""})
    user.siyu_settings.refresh_from_db()
    assert user.siyu_settings.language == ""
    assert "获客渠道" not in client.get("/customers/", HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_language_switch_refuses_an_outside_redirect(client):
    response = client.post("/settings/language/", {"language": "en", "next": "https://evil.example/"})
    assert response["Location"] == "/"


# -- translations -----------------------------------------------------------------------------
LOCALE = Path(__file__).resolve().parents[1] / "src/siyu/locale/zh_Hans/LC_MESSAGES"


def test_every_message_has_a_chinese_translation():
    catalog = polib.pofile(str(LOCALE / "django.po"))
    assert catalog.untranslated_entries() == []
    assert catalog.fuzzy_entries() == []
    placeholders = re.compile(r"%\(\w+\)[sdr]")
    for entry in catalog.translated_entries():
        translations = entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
        for text in translations:
            assert sorted(placeholders.findall(entry.msgid)) == sorted(placeholders.findall(text)), entry.msgid


def test_the_compiled_catalog_matches_the_source(tmp_path):
    polib.pofile(str(LOCALE / "django.po")).save_as_mofile(str(tmp_path / "django.mo"))
    assert (tmp_path / "django.mo").read_bytes() == (LOCALE / "django.mo").read_bytes(), (
        "run: .venv/bin/python scripts/compile_messages.py"
    )


def test_model_choices_are_translated_too():
    from siyu.customers.models import IdentityKind

    with translation.override("zh-hans"):
        assert str(IdentityKind.PHONE.label) == "手机号"
