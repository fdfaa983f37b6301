"""The one query endpoint and ``siyu query``: dispatch by kind, typed errors, permission, cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.django_db

ENTRY_POINT = Path(sys.executable).with_name("siyu")
SIYU = [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "siyu.cli"]
BODY = {"kind": "trends", "date_from": "2026-03-01", "date_to": "2026-03-07", "interval": "day",
        "series": [{"event": "Order Completed", "math": "count"}]}


@pytest.fixture
def orders_ingested(post_segment):
    """Two orders and a page view arrive through the Segment endpoint, as a shop sends them."""
    batch = [
        {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "m1",
         "timestamp": "2026-03-02T02:00:00Z", "properties": {"order_id": "A1", "total": 99}},
        {"type": "track", "event": "Order Completed", "userId": "u2", "messageId": "m2",
         "timestamp": "2026-03-02T15:30:00Z", "properties": {"order_id": "A2", "total": 50}},
        {"type": "page", "name": "Home", "userId": "u1", "messageId": "m3", "timestamp": "2026-03-03T02:00:00Z"},
    ]
    assert post_segment("/v1/batch", {"batch": batch}).status_code == 200
    from siyu.analytics import queries, sync
    from siyu.analytics.engine import get_store

    sync.sync_all(get_store())
    queries.clear_cache()


def _post(client, body):
    return client.post("/api/v1/analytics/query", data=json.dumps(body), content_type="application/json")


def test_query_runs_the_kinds_runner_on_ingested_events(api_client, analyst, orders_ingested):
    # Given two orders on 2 March (10:00 and 23:30 Shanghai) when trends of orders by day are asked
    response = _post(api_client(analyst), BODY)
    # Then both count on 2 March, the brand's day
    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["kind"] == "trends" and answer["engine"] == "duckdb" and answer["timezone"] == "Asia/Shanghai"
    assert answer["cached"] is False
    per_day = {p["date"]: p["value"] for p in answer["series"][0]["points"]}
    assert per_day["2026-03-02"] == 2 and per_day["2026-03-01"] == 0 and per_day["2026-03-03"] == 0
    # And asking again, with no new events, is answered from the cache
    assert _post(api_client(analyst), BODY).json()["cached"] is True


def test_new_events_invalidate_the_cache(api_client, analyst, orders_ingested, post_segment):
    _post(api_client(analyst), BODY)
    post_segment("/v1/track", {"event": "Order Completed", "userId": "u3", "messageId": "m9",
                               "timestamp": "2026-03-04T02:00:00Z", "properties": {"order_id": "A9", "total": 5}})
    assert _post(api_client(analyst), BODY).json()["cached"] is False


@pytest.mark.parametrize("body, field, reason", [
    ({"kind": "nope"}, "kind", "does not match any of the expected tags"),
    ({**BODY, "interval": "year"}, "interval", "'day', 'week' or 'month'"),
    ({**BODY, "date_from": "2026-04-01"}, "body", "date_from is after date_to"),
    ({**BODY, "filters": [{"field": "phone", "value": "x"}]}, "filters", "unknown event field 'phone'"),
    ({**BODY, "surprise": 1}, "surprise", "Extra inputs are not permitted"),
])
def test_bad_queries_name_the_field(api_client, analyst, body, field, reason):
    response = _post(api_client(analyst), body)
    assert response.status_code == 422, response.content
    errors = response.json()["errors"]
    assert any(field in e["field"] and reason in e["reason"] for e in errors), errors


def test_a_role_without_analytics_is_refused(api_client, db):
    from siyu.accounts.actions import create_user

    user, _pw = create_user("writer", "content_specialist", password="pw-12345678")
    response = _post(api_client(user), BODY)
    assert response.status_code == 403


def _siyu(args, data_dir):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "SIYU_EVENT_STORE", "DJANGO_SETTINGS_MODULE", "SIYU_PII_KEYS")}
    env["SIYU_DATA_DIR"] = str(data_dir)
    return subprocess.run([*SIYU, *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_query_prints_the_api_answer(tmp_path):
    done = _siyu(["query", "trends", "--query", json.dumps(BODY), "--json"], tmp_path)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["kind"] == "trends" and answer["date_from"] == "2026-03-01"


def test_cli_query_reports_bad_json_and_bad_fields(tmp_path):
    bad_json = _siyu(["query", "trends", "--query", "{nope", "--json"], tmp_path)
    assert bad_json.returncode == 2 and "not valid JSON" in json.loads(bad_json.stdout)["error"]
    bad_field = _siyu(["query", "trends", "--query", '{"interval": "year"}', "--json"], tmp_path)
    assert bad_field.returncode == 2
    assert json.loads(bad_field.stdout)["errors"][0]["field"] == "interval"


def test_cli_query_help_documents_the_body_with_an_example(tmp_path):
    done = _siyu(["query", "retention", "--help"], tmp_path)
    assert done.returncode == 0
    assert "body fields:" in done.stdout and "example:" in done.stdout and "siyu query retention --query" in done.stdout
