"""Property-based fuzzing of the ingestion endpoints and the management API: no input makes a 5xx.

For every body hypothesis can think of — arbitrary JSON, message-shaped objects
with wrong types in every field, undecodable bytes, broken base64 and gzip — the
answer is a 2xx or 4xx with a JSON body, and a refusal says why. The management
API is driven from its own OpenAPI schema: every GET path with generated path and
query parameters. Runs are bounded so the suite stays fast.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# NUL is spelled out: PostgreSQL can store it neither in text nor in jsonb.
texts = st.text(max_size=30) | st.sampled_from(["\x00", "a\x00b", "\u0000x", "🙂", "李雷"])
scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | texts)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=15,
)
ids = st.one_of(texts, st.integers(), json_values)
times = st.one_of(st.just("2026-01-01T00:00:00Z"), st.integers(), st.text(max_size=25), json_values)
plausible = {
    "type": st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "nope"]) | json_values,
    "userId": ids, "anonymousId": ids, "previousId": ids, "groupId": ids,
    "event": st.sampled_from(["Order Completed", "Order Refunded", "Tap", ""]) | json_values,
    "messageId": ids, "name": json_values,
    "timestamp": times, "originalTimestamp": times, "sentAt": times,
    "properties": json_values | st.fixed_dictionaries(
        {}, optional={"order_id": ids, "total": json_values, "revenue": json_values, "products": json_values,
                      "currency": json_values, "channel": json_values, "store": json_values}),
    "traits": json_values | st.fixed_dictionaries(
        {}, optional={"phone": json_values, "email": json_values, "name": json_values, "unionid": ids}),
    "context": json_values | st.fixed_dictionaries(
        {}, optional={"campaign": json_values, "traits": json_values, "ip": json_values}),
}
segment_messages = st.fixed_dictionaries({}, optional=plausible)
segment_bodies = st.one_of(
    json_values,
    segment_messages,
    st.fixed_dictionaries({"batch": st.lists(segment_messages | json_values, max_size=5)},
                          optional={"sentAt": times, "context": json_values}),
)


def _encode(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


raw_bodies = st.one_of(
    segment_bodies.map(_encode),
    st.binary(max_size=200),
    segment_bodies.map(lambda v: _encode(v)[: max(1, len(_encode(v)) // 2)]),
)


def assert_clean_answer(response) -> None:
    """A 2xx/4xx with JSON; a refusal carries its reason."""
    assert response.status_code < 500, response.content[:500]
    body = json.loads(response.content)
    if response.status_code != 200:
        assert isinstance(body, dict) and (body.get("error") or body.get("detail")), body


DEEP_MEMBER = b'{"type": "track", "userId": "u", "event": "A", "properties": ' + b'{"a": ' * 300 + b"1" + b"}" * 301


@pytest.mark.parametrize(
    ("endpoint", "body", "needle"),
    [
        ("track", b'{"userId": "u", "event": "A", "properties": {"x": NaN}}', "not valid JSON"),
        ("track", b'{"userId": "u", "event": "A", "properties": {"x": -Infinity}}', "not valid JSON"),
        ("track", b"[" * 5000 + b"]" * 5000, "not valid JSON"),
        ("track", b'{"userId": "u", "event": "A", "properties": ' + b'{"a": ' * 70 + b"1" + b"}" * 71,
         "nested deeper than 64 levels"),
        ("batch", b'{"batch": [' + DEEP_MEMBER + b"]}", "nested deeper than 64 levels"),
        ("batch", b'{"batch": [{"type": "track", "userId": "u", "event": "A", "properties": ' + b'{"a": ' * 70
         + b"1" + b"}" * 71 + b"]}", "nested deeper than 64 levels"),
        ("track", b'{"userId": "u", "event": "A", "timestamp": 99999999999999999999999}', "out of range"),
        ("track", b'{"userId": "u", "event": "A", "timestamp": -1}', "before the year 2000"),
        ("track", b'{"userId": "u", "event": "A", "messageId": 12}', "messageId"),
        ("track", b'{"userId": "' + b"x" * 201 + b'", "event": "A"}', "longer than 200"),
        ("track", b"\xff\xfe{", "not valid JSON"),
    ],
)
def test_known_hostile_bodies_are_refused_with_the_reason(post_segment, endpoint, body, needle):
    r = post_segment(f"/v1/{endpoint}", body)
    assert r.status_code == 400
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("payload", "needle"),
    [(b'[{"type": "track", "event": "A", "distinct_id": "d", "properties": {"x": NaN}}]', "not valid JSON"),
     (b"[" * 5000 + b"]" * 5000, "not valid JSON"),
     (b"[" * 70 + b"]" * 70, "nested deeper than 64 levels")],
)
def test_known_hostile_sensors_payloads_are_refused_with_the_reason(client, sensors_source, payload, needle):
    r = client.post("/sa?project=miniapp", {"data_list": base64.b64encode(payload).decode()})
    assert r.status_code == 400
    assert needle in r.json()["error"]


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ({"type": "identify", "userId": "u", "traits": {"nick": "a\x00b"}}, "traits.nick"),
        ({"type": "track", "userId": "u", "event": "A", "properties": {"k\x00": 1}}, "properties.k\\u0000"),
        ({"type": "track", "userId": "u\x00", "event": "A"}, "userId"),
        ({"type": "track", "userId": "u", "event": "A", "messageId": "m\x00"}, "messageId"),
    ],
)
def test_a_nul_character_rejects_only_its_message_naming_the_field(post_segment, message, field):
    from siyu.ingest.models import DeadLetter

    ok = {"type": "track", "userId": "u", "event": "Fine", "messageId": "fine-1"}
    r = post_segment("/v1/batch", {"batch": [ok, message]})
    assert r.status_code == 200
    assert r.json()["accepted"] == 1
    [rejected] = r.json()["rejected"]
    assert (rejected["index"], rejected["field"]) == (1, field)
    assert "NUL" in rejected["reason"]
    assert DeadLetter.objects.get().field == field


def test_a_nul_character_in_a_sensors_record_is_dead_lettered(client, sensors_source):
    records = [{"type": "track", "event": "A", "distinct_id": "d", "_track_id": 1, "time": 1767225600000},
               {"type": "profile_set", "distinct_id": "d", "properties": {"nick": "a\x00"}}]
    r = client.post("/sa?project=miniapp", {"data_list": base64.b64encode(json.dumps(records).encode()).decode()})
    assert r.json()["accepted"] == 1
    assert [(x["index"], x["field"]) for x in r.json()["rejected"]] == [(1, "properties.nick")]


def test_a_nul_in_a_write_key_or_project_is_just_unknown(client, sensors_source):
    assert client.post("/sa?project=mini%00app", {"data": "e30="}).status_code == 401
    body = json.dumps({"userId": "u", "event": "A", "writeKey": "wk\x00"})
    assert client.post("/v1/track", body, content_type="application/json").status_code == 401


@pytest.mark.parametrize("endpoint", ["identify", "track", "page", "screen", "group", "alias", "batch"])
def test_segment_endpoints_never_fail_on_any_body(client, source, endpoint):
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()

    @settings(FUZZ, max_examples=100)
    @given(body=raw_bodies, gzipped=st.booleans())
    def check(body: bytes, gzipped: bool) -> None:
        extra = {"HTTP_AUTHORIZATION": auth}
        if gzipped:
            body, extra["HTTP_CONTENT_ENCODING"] = gzip.compress(body), "gzip"
        assert_clean_answer(client.generic("POST", f"/v1/{endpoint}", body, content_type="application/json", **extra))

    check()


def test_segment_rejections_name_the_message_and_field(client, source):
    """Every rejected batch member is reported with its index and a field, and kept in the dead letters."""
    from siyu.ingest.models import DeadLetter

    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()

    @FUZZ
    @given(batch=st.lists(segment_messages, min_size=1, max_size=5))
    def check(batch: list) -> None:
        before = DeadLetter.objects.count()
        r = client.generic("POST", "/v1/batch", _encode({"batch": batch}), content_type="application/json",
                           HTTP_AUTHORIZATION=auth)
        assert_clean_answer(r)
        if r.status_code == 200:
            data = r.json()
            assert data["accepted"] + len(data["rejected"]) == len(batch)
            assert all(isinstance(x["index"], int) and x["reason"] for x in data["rejected"])
            assert DeadLetter.objects.count() - before == len(data["rejected"])

    check()


record_fields = {
    "distinct_id": ids, "type": st.sampled_from(
        ["track", "track_signup", "track_id_bind", "profile_set", "profile_set_once", "profile_increment",
         "profile_append", "profile_unset", "profile_delete", "x"]) | json_values,
    "event": st.sampled_from(["$MPLaunch", "Order Completed", ""]) | json_values,
    "time": times, "_track_id": ids, "login_id": ids, "anonymous_id": ids, "original_id": ids,
    "properties": json_values, "lib": json_values,
    "identities": json_values | st.dictionaries(
        st.sampled_from(["$identity_mp_openid", "$identity_mp_unionid", "$identity_login_id", "$identity_mobile",
                         "$identity_email", "$identity_mp_wx0123456789abcdef_openid", "$identity_other"]),
        ids, max_size=4),
}
sensors_records = st.fixed_dictionaries({}, optional=record_fields)


@st.composite
def sensors_forms(draw) -> dict:
    payload = draw(st.one_of(st.lists(sensors_records | json_values, max_size=4), sensors_records, json_values))
    raw = json.dumps(payload, allow_nan=True).encode()
    gzipped = draw(st.booleans())
    if gzipped and draw(st.booleans()):
        raw = gzip.compress(raw)
    text = draw(st.one_of(st.just(base64.b64encode(raw).decode()), st.text(max_size=40)))
    form = {draw(st.sampled_from(["data", "data_list"])): text}
    if gzipped:
        form["gzip"] = "1"
    return form


def test_sensors_endpoint_never_fails_on_any_form(client, sensors_source):
    @FUZZ
    @given(form=sensors_forms(), as_sdk=st.booleans())
    def check(form: dict, as_sdk: bool) -> None:
        if as_sdk:  # the mini-program SDK's raw string body with Content-Type: application/json
            body = "&".join(f"{k}={quote(v, safe='')}" for k, v in form.items())
            r = client.generic("POST", "/sa?project=miniapp", body, content_type="application/json")
        else:
            r = client.post("/sa?project=miniapp", form)
        assert_clean_answer(r)

    check()


# -- the management API, driven by its OpenAPI schema ------------------------------------
def _get_operations() -> list[tuple[str, list[dict]]]:
    from siyu.api import api

    schema = api.get_openapi_schema()
    return [(path, op.get("parameters", [])) for path, item in sorted(schema["paths"].items())
            for method, op in item.items() if method == "get"]


param_values = st.one_of(st.integers(min_value=-(2**65), max_value=2**65).map(str), texts,
                         st.sampled_from(["phone", "email", "user_id", "unionid", "0", "-1", "1e9", "", "a\x00"]))


@pytest.mark.parametrize(("path", "parameters"), _get_operations(), ids=lambda v: v if isinstance(v, str) else "")
def test_management_api_get_endpoints_never_fail(client, admin_user, path, parameters):
    from siyu.accounts.models import ApiToken

    _token, raw = ApiToken.issue(admin_user, "fuzz")
    in_path = [p["name"] for p in parameters if p["in"] == "path"]
    in_query = [p["name"] for p in parameters if p["in"] == "query"]

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(path_args=st.fixed_dictionaries({n: param_values for n in in_path}),
           query=st.fixed_dictionaries({}, optional={n: param_values for n in in_query}))
    def check(path_args: dict, query: dict) -> None:
        url = re.sub(r"\{(\w+)\}", lambda m: quote(path_args[m.group(1)] or "x", safe=""), path)
        r = client.get(url, query, HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert r.status_code < 500, (url, query, r.content[:300])
        if r.status_code not in (200, 404) or r["Content-Type"].startswith("application/json"):
            json.loads(r.content)

    check()


def test_management_api_write_endpoints_never_fail_on_any_body(client, admin_user):
    from siyu.accounts.models import ApiToken

    _token, raw = ApiToken.issue(admin_user, "fuzz")

    @FUZZ
    @given(target=st.sampled_from(["/api/v1/sources", "/api/v1/customers/conflicts/1",
                                   "/api/v1/sources/1/rotate-key"]),
           body=json_values.map(lambda v: json.dumps(v, allow_nan=True)) | st.text(max_size=40))
    def check(target: str, body: str) -> None:
        r = client.generic("POST", target, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}")
        assert r.status_code < 500, (target, body, r.content[:300])
        json.loads(r.content)

    check()


def _batch_nested(levels: int) -> bytes:
    """A batch body whose one message's properties nest so that the body has ``levels`` levels."""
    inner = levels - 4  # the body, its batch list, the message, its properties
    return (b'{"batch": [{"type": "track", "userId": "u", "event": "A", "properties": {"x": '
            + b"[" * inner + b"1" + b"]" * inner + b"}}]}")


def test_a_batch_may_nest_to_the_limit_and_no_deeper(post_segment):
    assert post_segment("/v1/batch", _batch_nested(64)).status_code == 200
    r = post_segment("/v1/batch", _batch_nested(65))
    assert r.status_code == 400 and "nested deeper than 64 levels" in r.json()["error"]
