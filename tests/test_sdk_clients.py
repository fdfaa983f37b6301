"""Real clients against the real server: the official Segment Python library, and the group-commit writer.

The WSGI app runs under waitress (what ``siyu serve`` uses) in a thread on
127.0.0.1; the official ``segment-analytics-python`` client is configured with
nothing but ``host``. Then we check what reached the operational DB and the
event store.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests
from segment.analytics import Client
from waitress import wasyncore
from waitress.server import create_server

from siyu.analytics.engine import get_store, utcnow
from siyu.customers.models import Person
from siyu.customers.profile import read_pii
from siyu.customers.queries import Lookup, find_person
from siyu.ingest import pipeline, segment, writer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    """siyu's WSGI application served by waitress on a free local port."""
    from siyu.wsgi import application

    srv = create_server(application, host="127.0.0.1", port=0, threads=8)
    stop = threading.Event()

    def run() -> None:
        # waitress's own run() never returns while keep-alive channels are open;
        # polling here lets the fixture stop it and close every socket on this thread.
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=srv._map, count=1)
        srv.task_dispatcher.shutdown()
        wasyncore.close_all(srv._map)

    thread = threading.Thread(target=run, name="test-waitress", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.effective_port}"
    stop.set()
    thread.join(timeout=5)


def events(columns: str = "type, event") -> list[tuple]:
    return get_store().cursor().execute(f"SELECT {columns} FROM events ORDER BY timestamp, event").fetchall()


def count_events() -> int:
    return get_store().cursor().execute("SELECT count(*) FROM events").fetchone()[0]


def test_the_official_python_client_delivers_every_call_type(server, source):
    analytics = Client(source.write_key, host=server, sync_mode=True)
    analytics.page(anonymous_id="anon-1", category="Shop", name="Home", properties={"url": "/"})
    analytics.identify("u1", {"email": "Li@Example.com", "phone": "13800138000", "name": "李雷", "plan": "gold"})
    analytics.track("u1", "Product Viewed", {"sku": "A1", "price": 12.5})
    analytics.screen("u1", "App", "Cart")
    analytics.group("u1", "brand-1", {"name": "Acme", "industry": "coffee"})
    analytics.alias("anon-1", "u1")

    person = find_person(Lookup("user_id", "u1"))
    assert find_person(Lookup("email", "li@example.com")).pk == person.pk
    assert find_person(Lookup("phone", "+8613800138000")).pk == person.pk
    assert find_person(Lookup("anonymous_id", "anon-1")).pk == person.pk
    assert person.traits == {"plan": "gold"}
    assert read_pii(person) == {"email": "li@example.com", "phone": "+8613800138000", "name": "李雷"}
    stored = {(t, e) for t, e in events()}
    assert stored == {("page", "$page"), ("identify", "$identify"), ("track", "Product Viewed"),
                      ("screen", "$screen"), ("group", "$group"), ("alias", "$alias")}
    props = dict(events("event, properties"))
    assert json.loads(props["Product Viewed"]) == {"sku": "A1", "price": 12.5}
    assert json.loads(props["$group"])["group_id"] == "brand-1"


def test_the_batching_client_with_gzip_delivers_on_flush(server, source):
    analytics = Client(source.write_key, host=server, gzip=True, upload_size=10)
    for i in range(25):
        analytics.track(f"user-{i % 5}", "Coupon Viewed", {"n": i})
    analytics.flush()
    analytics.shutdown()
    assert count_events() == 25
    assert Person.objects.count() == 5


def test_a_past_timestamp_from_the_client_is_kept(server, source):
    when = datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    Client(source.write_key, host=server, sync_mode=True).track("u1", "Store Visited", timestamp=when)
    [(stored,)] = events("timestamp")
    assert abs(stored - when) < timedelta(seconds=5)


def test_retried_messages_with_the_same_message_id_are_stored_once(server, source):
    analytics = Client(source.write_key, host=server, sync_mode=True)
    for _ in range(3):
        analytics.track("u1", "Signed Up", message_id="fixed-id-1")
    assert count_events() == 1


def test_an_unknown_write_key_is_refused_with_401(server, source):
    from segment.analytics.request import APIError

    with pytest.raises(APIError) as err:
        Client("wk_not-a-key", host=server, sync_mode=True).track("u1", "A")
    assert err.value.status == 401
    assert count_events() == 0


# -- the intake log and the writer ----------------------------------------------------
def _post(url: str, key: str, body: dict) -> requests.Response:
    return requests.post(f"{url}/v1/batch", json=body, auth=(key, ""), timeout=30)


def _track(source, message_id: str) -> list:
    return [(source.pk, segment.parse({"type": "track", "userId": "u1", "event": "Tap", "messageId": message_id},
                                      utcnow()))]


def test_concurrent_requests_share_commits_and_each_message_is_stored_once(
        server, source, threaded_writer, monkeypatch):
    groups = []
    real_process = pipeline.process

    def counting_process(items, *args, **kwargs):
        groups.append(len(items))
        return real_process(items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process", counting_process)
    appends = []
    real_append = writer.IntakeLog.append

    def counting_append(self, records, **kwargs):
        appends.append(len(records))
        return real_append(self, records, **kwargs)

    monkeypatch.setattr(writer.IntakeLog, "append", counting_append)

    def send(n: int) -> requests.Response:
        # Every request repeats the previous request's last message, as a retrying client would.
        batch = [{"type": "track", "userId": f"u{n % 7}", "event": "Tap", "messageId": f"m{n}-{i}"}
                 for i in range(10)]
        if n:
            batch.append({"type": "track", "userId": f"u{(n - 1) % 7}", "event": "Tap",
                          "messageId": f"m{n - 1}-9"})
        return _post(server, source.write_key, {"batch": batch})

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(send, range(40)))

    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["accepted"] for r in responses) == 40 * 10 + 39
    assert threaded_writer.flush(timeout=30)
    rows = get_store().cursor().execute("SELECT message_id, count(*) FROM events GROUP BY message_id").fetchall()
    assert len(rows) == 400
    assert {n for _m, n in rows} == {1}
    assert Person.objects.count() == 7
    assert sum(groups) == 439
    assert sum(appends) == 40
    assert len(appends) < 40, "requests should share commits of the intake log"
    assert len(groups) < 40, "the writer should process many requests at once"


def test_an_answer_means_the_messages_are_durable_in_the_intake_log_before_they_are_processed(
        source, make_writer, held_pipeline, settings):
    fresh = make_writer()
    entered, release = held_pipeline
    receipt = fresh.submit(_track(source, "first")).result(timeout=10)
    assert receipt.accepted == 1
    assert entered.wait(timeout=10)  # the writer has it, and is held before committing anything
    with sqlite3.connect(settings.SIYU_INGEST_INTAKE) as con:  # another connection: what is on disk
        assert con.execute("SELECT count(*), sum(n) FROM intake WHERE id > 0").fetchone() == (1, 1)
    assert events("message_id") == []
    assert fresh.backlog() == 1
    release.set()
    assert fresh.flush(timeout=30)
    assert events("message_id") == [("first",)]
    assert fresh.backlog() == 0


def test_a_full_backlog_answers_429_with_retry_after_and_loses_nothing_acknowledged(
        client, source, monkeypatch, make_writer, held_pipeline):
    monkeypatch.setattr(writer, "BACKLOG_WAIT_SECONDS", 0.2)
    small = make_writer(backlog_limit=2)
    monkeypatch.setattr(writer, "_writer", small)
    entered, release = held_pipeline
    auth = "Basic " + base64.b64encode(f"{source.write_key}:".encode()).decode()

    def post(message_id: str):
        body = json.dumps({"userId": "u1", "event": "Tap", "messageId": message_id})
        return client.post("/v1/track", data=body, content_type="application/json", HTTP_AUTHORIZATION=auth)

    assert post("busy-1").status_code == 200
    assert entered.wait(timeout=10)  # the writer holds the first message
    assert post("waiting-2").status_code == 200
    refused = post("refused-3")  # two accepted, none processed: the backlog is full
    assert refused.status_code == 429
    assert refused["Retry-After"] == "1"
    assert "retry" in refused.json()["error"]
    release.set()
    assert small.flush(timeout=30)
    assert sorted(m for (m,) in events("message_id")) == ["busy-1", "waiting-2"]
    assert post("refused-3").status_code == 200
    assert small.flush(timeout=30)
    assert sorted(m for (m,) in events("message_id")) == ["busy-1", "refused-3", "waiting-2"]


def test_a_full_queue_answers_429(client, source, monkeypatch, make_writer):
    small = make_writer(queue_limit=1)
    monkeypatch.setattr(writer, "_writer", small)
    entered, release = threading.Event(), threading.Event()
    real_append = writer.IntakeLog.append

    def held_append(self, records, **kwargs):
        entered.set()
        assert release.wait(timeout=30)
        return real_append(self, records, **kwargs)

    monkeypatch.setattr(writer.IntakeLog, "append", held_append)
    first = small.submit(_track(source, "writing"))
    assert entered.wait(timeout=10)  # the intake thread is writing the first request
    queued = small.submit(_track(source, "queued"))
    with pytest.raises(writer.Overloaded, match="queue is full"):
        small.submit(_track(source, "refused"))
    release.set()
    assert first.result(timeout=10).accepted == queued.result(timeout=10).accepted == 1
    assert small.flush(timeout=30)
    assert sorted(m for (m,) in events("message_id")) == ["queued", "writing"]


def test_stopping_the_writer_processes_what_was_accepted_and_refuses_what_comes_after(
        source, make_writer, held_pipeline):
    fresh = make_writer(queue_limit=10)
    entered, release = held_pipeline
    first = fresh.submit(_track(source, "first"))
    assert entered.wait(timeout=10)  # the writer is processing the first request
    queued = fresh.submit(_track(source, "queued"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        stopping = pool.submit(fresh.stop, 30)
        deadline = time.monotonic() + 10
        while not fresh._stopped and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(writer.Overloaded, match="stopping"):
            fresh.submit(_track(source, "too-late"))
        release.set()
        assert stopping.result(timeout=30) is True

    assert first.result(timeout=1).accepted == 1 and queued.result(timeout=1).accepted == 1
    assert not fresh._thread.is_alive() and not fresh._intake_thread.is_alive()
    assert sorted(m for (m,) in events("message_id")) == ["first", "queued"]


def test_the_official_client_retries_after_429_and_delivers(server, source, monkeypatch, threaded_writer):
    refusals = []
    real_accept = writer.IngestWriter.accept

    def overloaded_once(self, records):
        if not refusals:
            refusals.append(sum(r.n for r in records))
            raise writer.Overloaded("ingestion queue is full")
        return real_accept(self, records)

    monkeypatch.setattr(writer.IngestWriter, "accept", overloaded_once)
    analytics = Client(source.write_key, host=server, max_rate_limit_duration=30)
    analytics.track("u1", "Checkout Started")
    analytics.flush()
    analytics.shutdown()
    assert refusals == [1]
    assert threaded_writer.flush(timeout=30)
    assert events("event") == [("Checkout Started",)]
