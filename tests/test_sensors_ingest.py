"""Sensors Data protocol (``POST /sa``): given what the WeChat mini-program SDK sends, then stored and resolved.

``MiniProgram`` below builds records and requests the way sa-sdk-miniprogram 1.19
does (read from its documented behaviour, not copied): ``wx.request`` POSTs the
string ``data_list=<urlencoded base64 of a JSON list>`` with wx.request's default
``Content-Type: application/json``; the gzip plug-in base64-encodes gzip output and
appends ``&gzip=1``; with ``batch_send: false`` each record goes as
``GET server_url&data=…``. Identities live in an ``identities`` map whose openid key
carries the mini program's appid (``$identity_mp_<appid>_openid``).
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import uuid
from urllib.parse import quote

import pytest

from siyu.analytics.engine import get_store
from siyu.customers.models import Identity, Person, PersonMerge
from siyu.customers.profile import read_pii
from siyu.customers.queries import Lookup, find_person
from siyu.ingest.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch milliseconds
_track_ids = itertools.count(100_000_001)


def encode(records: object, *, gzipped: bool = False) -> str:
    raw = json.dumps(records, ensure_ascii=False).encode()
    return base64.b64encode(gzip.compress(raw) if gzipped else raw).decode()


class MiniProgram:
    """One install of a WeChat mini program with the Sensors SDK, talking to siyu."""

    def __init__(self, client, appid: str = "wx0a1b2c3d4e5f6a7b", *, project: str = "miniapp",
                 gzipped: bool = False) -> None:
        self.client, self.appid, self.gzipped = client, appid, gzipped
        self.server_url = f"/sa?project={project}"
        self.distinct_id = str(uuid.uuid4())
        self.first_id: str | None = None
        self.identities = {"$identity_mp_id": self.distinct_id}
        self.queue: list[dict] = []
        self.clock = T0

    # -- the SDK's public calls ------------------------------------------------
    def track(self, event: str, properties: dict | None = None) -> dict:
        return self._record("track", event=event, properties=properties)

    def set_profile(self, properties: dict) -> dict:
        return self._record("profile_set", properties=properties)

    def set_once_profile(self, properties: dict) -> dict:
        return self._record("profile_set_once", properties=properties)

    def increment_profile(self, properties: dict) -> dict:
        return self._record("profile_increment", properties=properties)

    def append_profile(self, properties: dict) -> dict:
        return self._record("profile_append", properties=properties)

    def bind_openid(self, openid: str) -> dict:
        self.identities[f"$identity_mp_{self.appid}_openid"] = openid
        return self._record("track_id_bind", event="$BindID")

    def set_unionid(self, unionid: str) -> dict:
        self.identities["$identity_mp_unionid"] = unionid
        return self._record("track_id_bind", event="$BindID")

    def login(self, login_id: str) -> dict:
        self.identities["$identity_login_id"] = login_id
        self.first_id = self.first_id or self.distinct_id
        self.distinct_id = login_id
        record = self._record("track_signup", event="$SignUp", original_id=self.first_id,
                              distinct_id=login_id, login_id=login_id)
        self.identities = {"$identity_mp_id": self.identities["$identity_mp_id"],
                           "$identity_login_id": login_id}
        return record

    # -- transport ---------------------------------------------------------------
    def flush(self):
        """Send the queue as one batch, exactly as ``wx.request`` would."""
        for record in self.queue:
            record["_flush_time"] = self.clock + 500
        body = "data_list=" + quote(encode(self.queue, gzipped=self.gzipped), safe="")
        if self.gzipped:
            body += "&gzip=1"
        self.queue = []
        return self.client.generic("POST", self.server_url, body, content_type="application/json")

    def send_once(self):
        """``batch_send: false``: each record as a GET with ``data=`` appended to server_url."""
        responses = [self.client.get(f"{self.server_url}&data={quote(encode(r), safe='')}") for r in self.queue]
        self.queue = []
        return responses

    def _record(self, rtype: str, event: str | None = None, properties: dict | None = None, **extra) -> dict:
        self.clock += 1000
        record: dict = {
            "distinct_id": self.distinct_id,
            "identities": dict(self.identities),
            "lib": {"$lib": "MiniProgram", "$lib_method": "code", "$lib_version": "1.19.5"},
            "properties": {},
        }
        if self.first_id:
            record.update(login_id=self.distinct_id, anonymous_id=self.first_id)
        else:
            record["anonymous_id"] = self.distinct_id
        record["type"] = rtype
        if event:
            record["event"] = event
        record.update(extra)
        props = dict(properties or {})
        if not rtype.startswith("profile"):
            record["_track_id"] = next(_track_ids)
            props = {"$lib": "MiniProgram", "$lib_version": "1.19.5", "$url_path": "pages/index/index",
                     "$scene": "wx-1047", "$network_type": "WIFI", "$model": "iPhone 13", **props}
            if rtype == "track":
                props["$is_first_day"] = True
        record["properties"] = props
        record["time"] = self.clock
        self.queue.append(record)
        return record


@pytest.fixture
def app(client, sensors_source):
    return MiniProgram(client)


def stored(where: str = "TRUE") -> list[tuple]:
    return get_store().cursor().execute(
        f"SELECT type, event, person_id, properties FROM events WHERE {where} ORDER BY timestamp"
    ).fetchall()


def person_of(kind: str, value: str) -> Person:
    return find_person(Lookup(kind, value))


# -- transport -----------------------------------------------------------------
def test_a_batch_posted_as_the_sdk_posts_it_is_stored(app):
    app.track("$MPLaunch")
    app.track("Product Viewed", {"sku": "A1"})
    r = app.flush()
    assert r.status_code == 200, r.content
    assert r.json() == {"success": True, "accepted": 2, "rejected": []}
    assert [(t, e) for t, e, _p, _props in stored()] == [("track", "$MPLaunch"), ("track", "Product Viewed")]
    assert json.loads(stored()[1][3])["sku"] == "A1"


def test_a_form_encoded_batch_is_stored_too(client, sensors_source):
    record = {"distinct_id": "d1", "type": "track", "event": "A", "time": T0, "_track_id": 1}
    r = client.post("/sa?project=miniapp", {"data_list": encode([record])})
    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 1


def test_the_gzip_plugin_payload_is_stored(client, sensors_source):
    app = MiniProgram(client, gzipped=True)
    app.track("$MPShow", {"note": "压缩"})
    r = app.flush()
    assert r.status_code == 200, r.content
    assert r.json()["accepted"] == 1
    assert json.loads(stored()[0][3])["note"] == "压缩"


def test_one_record_per_get_when_batch_send_is_off(app):
    app.track("$MPLaunch")
    app.track("$MPShow")
    responses = app.send_once()
    assert [r.status_code for r in responses] == [200, 200]
    assert len(stored()) == 2


def test_a_retried_batch_is_stored_once(client, sensors_source):
    records = [{"distinct_id": "d1", "type": "track", "event": "A", "time": T0, "_track_id": 7},
               {"distinct_id": "d1", "type": "profile_increment", "time": T0, "properties": {"visits": 1}}]
    body = {"data_list": encode(records)}
    assert client.post("/sa?project=miniapp", body).status_code == 200
    assert client.post("/sa?project=miniapp", body).status_code == 200
    assert len(stored()) == 2
    assert person_of("anonymous_id", "d1").traits == {"visits": 1}


def test_unknown_project_is_401_with_the_reason(client, sensors_source):
    r = client.post("/sa?project=nope", {"data_list": encode([])})
    assert r.status_code == 401
    assert "nope" in r.json()["error"]
    r = client.post("/sa", {"data_list": encode([])})
    assert r.status_code == 401
    assert r.json()["error"].startswith("the project parameter (or token) is missing")


def test_a_data_list_that_is_not_a_list_is_400(client, sensors_source):
    r = client.post("/sa?project=miniapp", {"data_list": encode({"distinct_id": "d1", "type": "track", "event": "A"})})
    assert (r.status_code, r.json()["field"]) == (400, "data_list")
    assert "must be a JSON array" in r.json()["error"]
    assert stored() == []


@pytest.mark.parametrize(("time", "needle"), [
    (T0 // 1000, "is before the year 2000 (Sensors' time is epoch milliseconds"),
    ("yesterday", "not an ISO-8601 time: 'yesterday' (Sensors' time is epoch milliseconds"),
])
def test_a_bad_time_says_it_is_epoch_milliseconds(client, sensors_source, time, needle):
    record = {"distinct_id": "d1", "type": "track", "event": "A", "time": time}
    r = client.post("/sa?project=miniapp", {"data": encode(record)})
    assert (r.status_code, r.json()["field"]) == (400, "time")
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("form", "needle"),
    [
        ({"data_list": "!!!not base64!!!"}, "not valid"),
        ({"data_list": base64.b64encode(b"{oops").decode()}, "not valid JSON"),
        ({"data_list": base64.b64encode(b"plain").decode(), "gzip": "1"}, "gzip"),
        ({}, "data or data_list"),
    ],
)
def test_an_unreadable_payload_is_400_naming_the_form_field(client, sensors_source, form, needle):
    r = client.post("/sa?project=miniapp", form)
    assert r.status_code == 400
    assert needle in r.json()["error"]
    assert r.json()["field"] == "data"
    assert stored() == []


def test_an_oversized_body_is_413(client, sensors_source, settings):
    settings.SIYU_MAX_BATCH_BYTES = 1000
    r = client.post("/sa?project=miniapp", {"data_list": "A" * 2000})
    assert r.status_code == 413


def test_a_gzip_bomb_is_413_not_gigabytes_in_memory(client, sensors_source):
    bomb = base64.b64encode(gzip.compress(b"[" + b" " * 50_000_000 + b"]")).decode()
    assert len(bomb) < 500 * 1024
    r = client.post("/sa?project=miniapp", {"data_list": bomb, "gzip": "1"})
    assert r.status_code == 413
    assert "decompressed" in r.json()["error"]


def test_a_truncated_gzip_payload_is_400(client, sensors_source):
    cut = base64.b64encode(gzip.compress(json.dumps([{"type": "track"}]).encode())[:15]).decode()
    r = client.post("/sa?project=miniapp", {"data_list": cut, "gzip": "1"})
    assert r.status_code == 400
    assert "gzip" in r.json()["error"]


# -- identities ------------------------------------------------------------------
def test_the_appid_openid_key_is_an_openid(app):
    app.bind_openid("oAPP-openid-1")
    assert app.flush().status_code == 200
    person = person_of("openid", "oAPP-openid-1")
    assert person_of("anonymous_id", app.identities["$identity_mp_id"]).pk == person.pk
    assert stored()[0][1] == "$BindID"


def test_openid_and_unionid_from_two_mini_programs_are_one_person(client, sensors_source):
    shop = MiniProgram(client, appid="wx1111111111111111")
    shop.track("$MPLaunch")
    shop.bind_openid("o-shop-1")
    shop.set_unionid("u-union-1")
    assert shop.flush().json()["accepted"] == 3
    members = MiniProgram(client, appid="wx2222222222222222")
    members.bind_openid("o-members-1")
    members.track("Coupon Viewed")
    members.set_unionid("u-union-1")
    assert members.flush().json()["accepted"] == 3

    person = person_of("unionid", "u-union-1")
    assert person_of("openid", "o-shop-1").pk == person.pk
    assert person_of("openid", "o-members-1").pk == person.pk
    kinds = sorted(Identity.objects.filter(person=person).values_list("kind", flat=True))
    assert kinds == ["anonymous_id", "anonymous_id", "openid", "openid", "unionid"]
    assert Person.objects.filter(merged_into__isnull=True).count() == 1


def test_login_after_browsing_anonymously_joins_the_history(app):
    app.track("$MPLaunch")
    app.track("Product Viewed")
    app.flush()
    anonymous = person_of("anonymous_id", app.distinct_id)
    app.login("member-42")
    app.track("Order Submitted")
    assert app.flush().json()["accepted"] == 2
    person = person_of("user_id", "member-42")
    assert person.pk == anonymous.pk
    assert {row[2] for row in stored()} == {person.pk}
    assert [row[1] for row in stored()] == ["$MPLaunch", "Product Viewed", "$SignUp", "Order Submitted"]


def test_login_to_a_known_member_merges_the_anonymous_profile_into_it(client, sensors_source):
    phone = MiniProgram(client)
    phone.login("member-7")
    phone.flush()
    member = person_of("user_id", "member-7")
    tablet = MiniProgram(client)
    tablet.bind_openid("o-tablet")
    tablet.track("Product Viewed")
    tablet.flush()
    anonymous = person_of("openid", "o-tablet")
    assert anonymous.pk != member.pk

    tablet.login("member-7")
    assert tablet.flush().status_code == 200
    assert person_of("openid", "o-tablet").pk == member.pk
    merge = PersonMerge.objects.get()
    assert (merge.merged_id, merge.into_id) == (anonymous.pk, member.pk)
    assert merge.evidence["ids"] == ["anonymous_id", "openid", "user_id"]


def test_mobile_and_email_identities_are_normalised(client, sensors_source):
    record = {"distinct_id": "d1", "type": "profile_set", "time": T0, "properties": {},
              "identities": {"$identity_mobile": "138 0013 8000", "$identity_email": "A@Example.COM"}}
    assert client.post("/sa?project=miniapp", {"data_list": encode([record])}).json()["accepted"] == 1
    person = person_of("phone", "+8613800138000")
    assert person_of("email", "a@example.com").pk == person.pk


# -- profile operations ------------------------------------------------------------
def test_profile_operations_change_traits_as_the_protocol_says(app):
    app.set_profile({"gender": "f", "level": 1, "city": "上海"})
    app.set_once_profile({"gender": "m", "first_source": "ad"})
    app.increment_profile({"points": 10})
    app.increment_profile({"points": 5, "visits": 1})
    app.append_profile({"tags": ["new", "vip"]})
    app.append_profile({"tags": ["vip", "coffee"]})
    assert app.flush().json()["accepted"] == 6
    person = person_of("anonymous_id", app.distinct_id)
    assert person.traits == {"gender": "female", "level": 1, "city": "上海", "first_source": "ad", "points": 15,
                             "visits": 1, "tags": ["new", "vip", "coffee"]}


def test_two_profile_calls_in_the_same_millisecond_are_both_applied(client, sensors_source):
    records = [{"distinct_id": "d1", "type": "profile_increment", "time": T0, "properties": {"points": 1}},
               {"distinct_id": "d1", "type": "profile_increment", "time": T0, "properties": {"coupons": 1}}]
    assert client.post("/sa?project=miniapp", {"data_list": encode(records)}).json()["accepted"] == 2
    assert person_of("anonymous_id", "d1").traits == {"points": 1, "coupons": 1}


def test_profile_unset_removes_the_named_traits_and_personal_data(app):
    app.set_profile({"gender": "f", "level": 3, "$name": "李雷", "$email": "li@example.com"})
    app._record("profile_unset", properties={"level": True, "$name": True})
    app.flush()
    person = person_of("anonymous_id", app.distinct_id)
    assert person.traits == {"gender": "female"}
    assert read_pii(person) == {"email": "li@example.com"}


def test_profile_delete_clears_traits_and_personal_data_but_keeps_the_person(app):
    app.login("member-9")
    app.set_profile({"gender": "f", "level": 3, "$name": "李雷"})
    app._record("profile_delete", properties={})
    assert app.flush().json()["accepted"] == 3
    person = person_of("user_id", "member-9")
    assert (person.traits, read_pii(person)) == ({}, {})


def test_a_batch_that_merges_twice_credits_every_record_to_the_survivor(client, sensors_source):
    def rec(distinct_id, n, **identities):
        return {"distinct_id": distinct_id, "type": "track", "event": f"E{n}", "time": T0 + n, "_track_id": n,
                "identities": identities}

    client.post("/sa?project=miniapp", {"data_list": encode([rec("a", 1), rec("c", 2), rec("d", 3)])})
    batch = [rec("a", 4), rec("c", 5, **{"$identity_cookie_id": "a"}), rec("d", 6, **{"$identity_cookie_id": "c"})]
    assert client.post("/sa?project=miniapp", {"data_list": encode(batch)}).json()["accepted"] == 3
    survivor = person_of("anonymous_id", "a")
    assert person_of("anonymous_id", "d").pk == survivor.pk
    assert survivor.merged_into_id is None
    assert {pid for _t, _e, pid, _p in stored("event IN ('E4', 'E5', 'E6')")} == {survivor.pk}


def test_personal_data_in_profile_set_is_encrypted_and_kept_out_of_events(app):
    app.set_profile({"$name": "王小明", "$phone": "13900139000", "level": 2})
    app.track("Clicked", {"phone": "13900139000"})
    app.flush()
    person = person_of("anonymous_id", app.distinct_id)
    assert read_pii(person) == {"name": "王小明", "phone": "+8613900139000"}
    assert person.traits == {"level": 2}
    raw_row = Person.objects.filter(pk=person.pk).values_list("pii_enc", flat=True).get()
    assert "王小明" not in raw_row and "13900139000" not in raw_row
    blob = json.dumps(get_store().cursor().execute("SELECT * FROM events").fetchall(), default=str)
    assert "13900139000" not in blob and "王小明" not in blob


def test_channel_and_scene_are_taken_from_sensors_properties(app):
    app.track("$MPLaunch", {"$utm_source": "wechat_moments", "$utm_campaign": "spring"})
    app.flush()
    person = person_of("anonymous_id", app.distinct_id)
    assert person.acquisition_channel == "wechat_moments"
    assert person.first_touch["utm_campaign"] == "spring"
    assert person.first_touch["qr_scene"] == "wx-1047"


def test_an_order_completed_event_records_the_order(app):
    app.login("buyer-1")
    app.track("Order Completed", {"order_id": "SA-1", "total": 88.5})
    app.flush()
    person = person_of("user_id", "buyer-1")
    assert (person.order_count, str(person.total_spend)) == (1, "88.50")


# -- rejected records --------------------------------------------------------------
def test_bad_records_are_dead_lettered_with_field_and_reason_and_the_rest_kept(client, sensors_source):
    good = {"distinct_id": "d1", "type": "track", "event": "A", "time": T0, "_track_id": 1}
    records = [
        good,
        {**good, "type": "nope", "_track_id": 2},
        {"type": "track", "event": "A", "time": T0, "_track_id": 3},
        {"distinct_id": "d1", "type": "profile_increment", "time": T0, "properties": {"points": "ten"}},
        {**good, "time": "yesterday", "_track_id": 4},
        {**good, "event": "", "_track_id": 5},
        {**good, "identities": {"$identity_mobile": "12"}, "_track_id": 6},
        "not a record",
        {**good, "event": "B", "_track_id": 8},
    ]
    r = client.post("/sa?project=miniapp", {"data_list": encode(records)})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert [(x["index"], x["field"]) for x in body["rejected"]] == [
        (1, "type"), (2, "distinct_id"), (3, "properties.points"), (4, "time"), (5, "event"),
        (6, "identities.$identity_mobile"), (7, ""),
    ]
    assert all(x["reason"] for x in body["rejected"])
    letters = DeadLetter.objects.order_by("message_index")
    assert [(d.endpoint, d.message_index, d.field) for d in letters] == [
        ("/sa", x["index"], x["field"]) for x in body["rejected"]
    ]
    assert letters[0].source_id == sensors_source.pk
    assert [row[1] for row in stored()] == ["A", "B"]


def test_a_single_bad_record_sent_as_data_is_400_naming_the_field(client, sensors_source):
    record = {"distinct_id": "d1", "type": "profile_append", "time": T0, "properties": {"tags": "vip"}}
    r = client.post("/sa?project=miniapp", {"data": encode(record)})
    assert r.status_code == 400
    assert r.json()["field"] == "properties.tags"
    assert "list" in r.json()["error"]
    assert DeadLetter.objects.get().field == "properties.tags"


def test_dead_letter_payloads_are_encrypted(client, sensors_source):
    record = {"distinct_id": "d1", "type": "nope", "properties": {"phone": "13700137000"}}
    client.post("/sa?project=miniapp", {"data": encode(record)})
    assert "13700137000" not in DeadLetter.objects.values_list("payload_enc", flat=True).get()


@pytest.mark.parametrize(("record", "message_id"), [
    ({"distinct_id": "会员-7", "_track_id": 100000009, "time": 1767225600000, "event": "$MPViewScreen", "type": "track"},
     "sa:8552c1e81c6b1c1c6c6baaadf8341d82"),
    # No _track_id (profile records): the properties count, whatever order their keys come in.
    ({"distinct_id": 42, "time": 1767225600000, "type": "profile_set",
      "properties": {"z": 1.5, "a": {"y": [True, None], "b": "名"}}}, "sa:4e1050d5b4c1553a42be2c7bd446334c"),
    ({"properties": {"a": {"b": "名", "y": [True, None]}, "z": 1.5}, "type": "profile_set", "time": 1767225600000,
      "distinct_id": 42}, "sa:4e1050d5b4c1553a42be2c7bd446334c"),
])
def test_a_records_message_id_stays_what_earlier_versions_made(record, message_id):
    # Retries are deduplicated on these ids: an SDK that resends across an upgrade must get the same one.
    from siyu.ingest.sensors import _message_id

    assert _message_id(record) == message_id
