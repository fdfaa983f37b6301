"""Input a new user may send by mistake: numbers too large for any database, unknown paths,
requests without credentials, bodies that are not JSON. Each is answered with what is wrong and
where (the field, the option), never a 5xx or a traceback.

The API through the test client; the ``siyu`` command as a user runs it, in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.test import Client

from siyu.accounts.models import ApiToken

BIG = "99999999999999999999"  # past 2**63 - 1
MAX_INT = 2**63 - 1


@pytest.fixture
def api(client, admin_user):
    """GET/POST as the admin with a bearer token; no exception re-raised, so a 500 is seen as one."""
    _token, raw = ApiToken.issue(admin_user, "bounds")
    client.raise_request_exception = False
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    class Api:
        def get(self, path: str):
            return client.get(path, **auth)

        def post(self, path: str, body, content_type: str = "application/json"):
            data = body if isinstance(body, (str, bytes)) else json.dumps(body)
            return client.post(path, data, content_type=content_type, **auth)

    return Api()


@pytest.fixture
def segment_id(db):
    from siyu.segments.actions import ensure_builtin_segments
    from siyu.segments.models import Segment

    ensure_builtin_segments()
    return Segment.objects.order_by("pk").first().pk


def _fields(response) -> list[str]:
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["error"] == "invalid request"
    return [e["field"] for e in body["errors"]]


# -- numbers past what the databases hold --------------------------------------------------------------
def test_a_huge_customer_list_offset_is_a_422_naming_it(api):
    assert _fields(api.get(f"/api/v1/customers?offset={BIG}")) == ["query.offset"]
    assert _fields(api.get("/api/v1/customers?offset=-1")) == ["query.offset"]


def test_a_huge_segment_members_offset_is_a_422_naming_it(api, segment_id):
    assert _fields(api.get(f"/api/v1/segments/{segment_id}/members?offset={BIG}")) == ["query.offset"]


@pytest.mark.parametrize("offset", [MAX_INT - 1, MAX_INT])
def test_the_largest_offsets_allowed_answer_an_empty_page(api, segment_id, offset):
    assert api.get(f"/api/v1/customers?offset={offset}").json()["items"] == []
    r = api.get(f"/api/v1/segments/{segment_id}/members?offset={offset}")
    assert r.status_code == 200, r.content
    assert r.json()["items"] == []


@pytest.mark.parametrize("action", ["add", "remove"])
@pytest.mark.parametrize("number", [int(BIG), MAX_INT + 1, 0, -5])
def test_a_customer_number_out_of_range_in_a_tag_body_is_a_422_naming_it(api, action, number):
    r = api.post(f"/api/v1/tags/rvtag/{action}", {"customers": [1, number]})
    assert _fields(r) == ["body.customers.1"]


@pytest.mark.parametrize("q", [BIG, "9" * 5000, "²"])
def test_a_search_for_digits_no_customer_number_can_be_finds_nobody(api, q):
    r = api.get(f"/api/v1/customers?q={q}")
    assert (r.status_code, r.json()) == (200, {"count": 0, "items": []})


@pytest.mark.parametrize("path", ["/api/v1/customers/{n}", "/api/v1/customers/{n}/timeline",
                                  "/api/v1/segments/{n}", "/api/v1/segments/{n}/members", "/api/v1/imports/{n}"])
def test_a_huge_path_id_is_not_found(api, path):
    r = api.get(path.format(n=BIG))
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})


# -- unknown paths ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/nope", "/api/v1/customers/1/nope"])
def test_an_unknown_api_path_is_a_json_404(client, db, method, path):
    r = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert r.status_code == 404
    assert r.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("path", ["/v1/foo", "/v1/track/extra", "/v1/"])
def test_an_unknown_segment_path_is_a_segment_style_404(db, method, path):
    r = getattr(Client(enforce_csrf_checks=True), method)(path)
    assert r.status_code == 404
    body = r.json()
    assert body["success"] is False
    assert path in body["error"] and "/v1/batch" in body["error"]


def test_the_segment_endpoints_still_answer(db):
    r = Client().get("/v1/track")
    assert (r.status_code, r.json()["success"]) == (405, False)


# -- authentication and CSRF ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/imports/orders", "/api/v1/segments/count", "/api/v1/tags/x/add"])
def test_a_post_without_credentials_is_the_documented_401(db, path):
    r = Client(enforce_csrf_checks=True).post(path, {})
    assert r.status_code == 401
    assert r.json() == {"error": "authentication required: send a Bearer token"}


def test_a_post_with_an_unknown_token_and_no_cookie_is_401(db):
    r = Client(enforce_csrf_checks=True).post("/api/v1/segments/count", "{}", content_type="application/json",
                                              HTTP_AUTHORIZATION="Bearer sy_not-a-token")
    assert r.status_code == 401


def test_a_console_session_still_needs_the_csrf_token(analyst):
    from django.middleware.csrf import _get_new_csrf_string

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(analyst)
    body = json.dumps({"rule": {"type": "attribute", "field": "order_count", "op": "gte", "value": 1}})
    forged = browser.post("/api/v1/segments/count", body, content_type="application/json")
    assert (forged.status_code, forged.json()) == (403, {"detail": "CSRF check Failed"})
    secret = _get_new_csrf_string()
    browser.cookies["csrftoken"] = secret
    ok = browser.post("/api/v1/segments/count", body, content_type="application/json", HTTP_X_CSRFTOKEN=secret)
    assert (ok.status_code, ok.json()) == (200, {"count": 0})


# -- bodies ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body", ["{nope", b"\xff\xfe", "[1, 2"])
def test_a_body_that_is_not_json_is_a_422_naming_the_body(api, body):
    r = api.post("/api/v1/customers/conflicts/1", body)
    assert _fields(r) == ["body"]
    assert "not valid JSON" in r.json()["errors"][0]["reason"]


def test_an_import_refusal_names_the_apis_mapping_field_not_the_cli_option(api, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = SimpleUploadedFile("orders.csv", "订单号,备注\nA-1,x\n".encode(), content_type="text/csv")
    r = client.post("/api/v1/imports/orders", {"file": upload},
                    HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(ApiToken.objects.first().user, 'i')[1]}")
    assert r.status_code == 422, r.content
    detail = r.json()["detail"]
    assert "--map" not in detail
    assert detail.endswith('(columns found: 订单号, 备注). Map a column with mapping={"COLUMN": "FIELD"}.')

    upload.seek(0)
    zh = client.post("/api/v1/imports/orders", {"file": upload}, HTTP_ACCEPT_LANGUAGE="zh-hans",
                     HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(ApiToken.objects.first().user, 'j')[1]}")
    assert zh.json()["detail"].endswith('（已找到的列：订单号, 备注）。可用 mapping={"列名": "字段"} 映射列。')


# -- the CLI -------------------------------------------------------------------------------------------
ENTRY_POINT = Path(sys.executable).with_name("siyu")
SIYU = [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "siyu.cli"]
FOREIGN = ("DATABASE_URL", "SIYU_EVENT_STORE", "SIYU_PII_KEYS", "SIYU_SECRET_KEY", "DJANGO_SETTINGS_MODULE")


@pytest.fixture(scope="module")
def siyu(tmp_path_factory):
    """Run ``siyu`` on a data folder of its own; returns (exit status, stdout, stderr)."""
    root = tmp_path_factory.mktemp("bounds")
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env["SIYU_DATA_DIR"] = str(root / "data")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "siyu-test-pycache")

    def run(*args: str) -> tuple[int, str, str]:
        done = subprocess.run([*SIYU, *args], cwd=root, env=env, capture_output=True, text=True, timeout=120)
        return done.returncode, done.stdout, done.stderr

    run("user", "create", "ops", "--role", "admin", "--password", "pw-12345678")
    return run


def _refused(result: tuple[int, str, str], *words: str) -> str:
    """The command exited 2 with a JSON error (no traceback) holding ``words``; the error."""
    status, out, err = result
    assert status == 2, (status, out, err)
    assert "Traceback" not in out + err, err
    error = json.loads(out)["error"]
    for word in words:
        assert word in error, error
    return error


@pytest.mark.parametrize(("args", "option"), [
    (("customer", "list", "--offset", BIG), "--offset"),
    (("customer", "list", "--offset", "-1"), "--offset"),
    (("customer", "list", "--offset", "9" * 5000), "--offset"),
    (("segment", "members", "1", "--offset", BIG), "--offset"),
    (("segment", "members", "1", "--limit", "0"), "--limit"),
    (("segment", "changes", "1", "--hours", BIG), "--hours"),
    (("tag", "add", "rvtag", "--customer", BIG), "--customer"),
    (("tag", "remove", "rvtag", "--customer", "0"), "--customer"),
    (("demo", "--seed", "-1", "--no-serve"), "--seed"),
])
def test_an_out_of_range_number_is_a_clean_error_naming_the_option(siyu, args, option):
    _refused(siyu(*args, "--json"), option)


@pytest.mark.parametrize("limit", ["0", "501", "100000"])
def test_customer_list_takes_the_apis_page_sizes(siyu, limit):
    _refused(siyu("customer", "list", "--limit", limit, "--json"), "--limit", "1 to 500")


def test_customer_list_searches_digits_no_customer_number_can_be(siyu):
    status, out, err = siyu("customer", "list", "--q", BIG, "--json")
    assert status == 0, err
    assert json.loads(out)["count"] == 0


def test_a_token_needs_a_name(siyu):
    _refused(siyu("token", "create", "ops", "--name", "", "--json"), "--name", "empty")


def test_an_empty_lookup_value_is_called_empty(siyu):
    error = _refused(siyu("customer", "show", "phone:", "--json"), "empty")
    assert "expected KIND:VALUE" not in error


def test_importing_a_directory_says_it_is_a_directory(siyu, tmp_path):
    _refused(siyu("import", "orders", str(tmp_path), "--json"), "is a directory")


def test_the_cli_checks_the_apis_bounds():
    from siyu import api, cli

    schema = {p["name"]: p["schema"]
              for p in api.api.get_openapi_schema()["paths"]["/api/v1/customers"]["get"]["parameters"]}
    assert (schema["limit"]["minimum"], schema["limit"]["maximum"]) == cli.PAGE_SIZE
    assert (schema["offset"]["minimum"], schema["offset"]["maximum"]) == (0, cli.MAX_INT)


@pytest.mark.parametrize("rule", [
    {"type": "attribute", "field": "order_count", "op": "gte", "value": 2**64},
    {"type": "attribute", "field": "order_count", "op": "in", "value": [1, -(2**63) - 1]},
    {"type": "trait", "key": "age", "op": "eq", "value": 10**30},
    {"type": "segment", "segment": 2**63},
])
def test_a_rule_with_a_number_past_64_bits_is_422_naming_the_rule(api_client, admin_user, rule):
    r = api_client(admin_user).post("/api/v1/segments/count", data=json.dumps({"rule": rule}),
                                    content_type="application/json")
    assert r.status_code == 422, r.content
    assert "rule" in json.dumps(r.json())
