"""Parse workers: request bodies parsed in other processes give the same result as in-process.

``siyu serve`` hands ingestion bodies to spawned processes (``ingest.parsers``);
messages come back encoded for the intake log (``intake.pack``), their properties as JSON text. These tests run the
endpoints with a real worker process and check what was recorded.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle

import pytest


@pytest.fixture
def workers():
    from siyu.ingest import parsers

    parsers.start(1)
    yield parsers
    parsers.stop()


def _batch(n: int) -> dict:
    return {"batch": [
        {"type": "identify", "userId": "u-1", "messageId": "m-id", "traits": {"phone": "13800138000", "city": "杭州"}},
        *({"type": "track", "userId": "u-1", "event": "Product Viewed", "messageId": f"m-{i}",
           "properties": {"sku": f"s{i}", "note": "新品"}, "context": {"campaign": {"source": "wechat"}}}
          for i in range(n)),
        {"type": "track", "userId": "u-1", "messageId": "bad"},  # no event name: rejected
    ]}


@pytest.mark.django_db(transaction=True)
def test_a_batch_parsed_in_a_worker_is_recorded_like_one_parsed_here(post_segment, workers):
    from siyu.analytics.engine import get_store
    from siyu.customers.models import Identity
    from siyu.ingest.models import DeadLetter
    from siyu.privacy import crypto

    assert workers.run(os.getpid) != os.getpid()  # really another process

    resp = post_segment("/v1/batch", gzip.compress(json.dumps(_batch(3)).encode()), HTTP_CONTENT_ENCODING="gzip")
    body = resp.json()
    assert resp.status_code == 200, body
    assert body["accepted"] == 4
    assert body["rejected"] == [{"index": 4, "messageId": "bad", "field": "event", "reason": "track needs an event name"}]
    assert DeadLetter.objects.get().message_id == "bad"

    # The worker hashed ids with this folder's key: the phone is found by the hash computed here.
    phone = Identity.objects.get(kind="phone")
    assert phone.value_hash == crypto.lookup_hash("phone", "+8613800138000")
    rows = get_store().cursor().execute(
        "SELECT message_id, properties->>'sku', properties->>'note', context->'campaign'->>'source' FROM events"
        " WHERE event = 'Product Viewed' ORDER BY message_id").fetchall()
    assert rows == [(f"m-{i}", f"s{i}", "新品", "wechat") for i in range(3)]


@pytest.mark.django_db(transaction=True)
def test_body_errors_from_a_worker_keep_their_status_and_order(client, post_segment, workers):
    bad_json = post_segment("/v1/batch", b"{not json")
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["error"]
    bad_gzip = post_segment("/v1/batch", b"plain", HTTP_CONTENT_ENCODING="gzip")
    assert bad_gzip.status_code == 400 and "gzip" in bad_gzip.json()["error"]
    # The write key is checked before the shape of the batch, as without workers.
    unknown = client.post("/v1/batch", data=json.dumps({"batch": "x", "writeKey": "nope"}),
                          content_type="application/json")
    assert unknown.status_code == 401
    not_a_list = post_segment("/v1/batch", {"batch": "x"})
    assert not_a_list.status_code == 400 and not_a_list.json()["field"] == "batch"
    single = post_segment("/v1/track", {"userId": "u"})
    assert single.status_code == 400 and single.json()["field"] == "event"


@pytest.mark.parametrize("encoding", ["intake", "pickle"])  # pickle: the fallback of intake.pack
def test_a_message_crosses_processes_with_its_hashes_and_its_properties_as_json(encoding):
    from siyu.analytics.engine import utcnow
    from siyu.ingest import intake, segment

    msg = segment.parse({"type": "track", "userId": "u-9", "anonymousId": "a-9", "event": "Signed In",
                         "messageId": "x", "properties": {"k": 1}, "context": {"locale": "zh-CN"}}, utcnow())
    back = intake.unpack(intake.pack([msg]))[0] if encoding == "intake" else pickle.loads(pickle.dumps(msg))
    assert back.claims == msg.claims and [c.key for c in back.claims] == [c.key for c in msg.claims]
    assert back.distinct == msg.distinct and back.distinct.strong
    assert (back.message_id, back.timestamp, back.event, back.touch) == (msg.message_id, msg.timestamp, msg.event,
                                                                          msg.touch)
    assert back.event_json == msg.event_json == ('{"k":1}', '{"locale":"zh-CN"}')  # JSON text from the start


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_loses_no_request_and_the_workers_come_back(post_segment, workers):
    import signal
    import time

    os.kill(workers.run(os.getpid), signal.SIGKILL)
    time.sleep(0.5)
    resp = post_segment("/v1/batch", _batch(2))  # parsed in this process while the pool restarts
    assert resp.status_code == 200 and resp.json()["accepted"] == 3
    deadline = time.monotonic() + 60
    while workers._pool is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers.run(os.getpid) != os.getpid()


def test_stopping_the_workers_lets_the_calls_under_way_finish():
    import threading
    import time

    from siyu.ingest import parsers

    parsers.start(1)
    results = []
    caller = threading.Thread(target=lambda: results.append(parsers.run(time.sleep, 0.5)))
    caller.start()
    time.sleep(0.1)  # the call is in the worker
    parsers.stop()  # waits for it, then closes the worker's pipe
    caller.join(timeout=30)
    assert results == [None]
    assert parsers.run(os.getpid) == os.getpid()  # no workers: parsed here
