"""The tracking endpoints served straight from WSGI (``ingest.wsgi.TrackingFastPath``), past the
middleware: the same answers as through Django's handler, other paths left to Django, and a
view's exception answered as Django answers it."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.exceptions import SuspiciousOperation
from django.test import RequestFactory

from siyu.ingest import wsgi as fastpath
from siyu.wsgi import application

pytestmark = pytest.mark.django_db(transaction=True)


def call(method: str, path: str, body: bytes = b"", **headers) -> tuple[str, dict, bytes]:
    """The WSGI application called as a server calls it: (status line, headers, body)."""
    request = getattr(RequestFactory(), method)(path, data=body, content_type="application/json", **headers)
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=dict(response_headers))

    result = application(request.environ, start_response)
    try:
        content = b"".join(result)
    finally:
        result.close()
    return started["status"], started["headers"], content


def basic(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_segment_answers_are_those_of_the_django_handler(source, post_segment):
    good = json.dumps({"batch": [{"type": "track", "userId": "u1", "event": "Viewed", "messageId": "f1"}]}).encode()
    bad = json.dumps({"type": "track", "userId": "u1"}).encode()
    status, headers, content = call("post", "/v1/batch", good, **basic(source.write_key))
    assert status == "200 OK" and json.loads(content) == {"success": True, "accepted": 1, "rejected": []}
    assert headers["Content-Type"] == "application/json" and headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Length"] == str(len(content))  # else the server closes keep-alive connections
    status, _h, content = call("post", "/v1/track/", bad, **basic(source.write_key))
    assert (status, json.loads(content)) == ("400 Bad Request", post_segment("/v1/track", bad).json())
    assert call("post", "/v1/batch", good)[0] == "401 Unauthorized"  # no write key
    assert call("get", "/v1/batch")[0] == "405 Method Not Allowed"


def test_sensors_is_served_there_too(sensors_source):
    record = {"type": "track", "event": "AppStart", "distinct_id": "d1", "time": 1780000000000, "properties": {}}
    data = base64.b64encode(json.dumps(record).encode()).decode()
    status, _h, content = call("get", f"/sa?project={sensors_source.name}&data={data}")
    assert status == "200 OK" and json.loads(content)["accepted"] == 1


def test_a_host_not_allowed_is_refused_there_too(source, settings):
    settings.ALLOWED_HOSTS = ["shop.example"]
    assert call("post", "/v1/batch", b"{}", HTTP_HOST="evil.example")[0] == "400 Bad Request"


def test_other_paths_go_through_django(source):
    status, _h, content = call("post", "/v1/nope", b"{}")
    assert status == "404 Not Found" and "no such endpoint /v1/nope" in json.loads(content)["error"]
    status, headers, _c = call("get", "/api/v1/customers")
    assert status == "401 Unauthorized"
    assert "X-Frame-Options" in call("get", "/login/")[1]  # the console keeps its middleware


def test_an_exception_in_a_view_is_answered_as_django_answers_it(source, monkeypatch):
    def suspicious(request, msg_type):
        raise SuspiciousOperation("odd")

    def broken(request, msg_type):
        raise RuntimeError("boom")

    monkeypatch.setattr(fastpath, "segment_endpoint", suspicious)
    assert call("post", "/v1/batch", b"{}")[0] == "400 Bad Request"
    monkeypatch.setattr(fastpath, "segment_endpoint", broken)
    assert call("post", "/v1/batch", b"{}")[0] == "500 Internal Server Error"
