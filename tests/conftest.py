"""Shared fixtures: a fresh event store and intake log per test, synchronous ingestion (or a writer
thread, for the tests of it), write keys, users."""

from __future__ import annotations

import base64
import json
import shutil
import threading

import pytest


def pytest_sessionfinish(session, exitstatus):
    """Remove the temporary data folder this test process made (``conf.data_dir`` under pytest);
    one given in ``SIYU_DATA_DIR`` is left alone."""
    from siyu import conf

    if conf.temporary_data_dir is not None:
        shutil.rmtree(conf.temporary_data_dir, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_stores(settings, tmp_path):
    from siyu.analytics import engine
    from siyu.customers.identity import CACHE
    from siyu.ingest import views
    from siyu.ingest.pipeline import ACTIVITY, DEDUPE

    settings.SIYU_INGEST_SYNC = True
    settings.SIYU_EVENT_STORE = str(tmp_path / "events.duckdb")
    settings.SIYU_INGEST_INTAKE = str(tmp_path / "intake.sqlite3")
    engine.close_store()
    CACHE.clear()
    DEDUPE.reset()
    ACTIVITY.reset()
    views._keys.clear()
    yield
    engine.close_store()
    CACHE.clear()
    DEDUPE.reset()


@pytest.fixture
def source(db):
    from siyu.accounts.actor import Actor
    from siyu.ingest.actions import create_source

    return create_source(Actor.system("test"), "web")


@pytest.fixture
def sensors_source(db):
    from siyu.accounts.actor import Actor
    from siyu.ingest.actions import create_source

    return create_source(Actor.system("test"), "miniapp", kind="sensors")


def basic(write_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


@pytest.fixture
def post_segment(client, source):
    """POST a Segment payload with the source's write key; returns the response."""

    def _post(path: str, body, **extra):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post(path, data=data, content_type="application/json", **{**basic(source.write_key), **extra})

    return _post


def make_user(role: str, username: str | None = None):
    from siyu.accounts.actions import create_user

    user, _pw = create_user(username or f"u-{role}", role, password="pw-12345678")
    return user


@pytest.fixture
def analyst(db):
    return make_user("data_analyst")


@pytest.fixture
def service_agent(db):
    return make_user("customer_service")


@pytest.fixture
def admin_user(db):
    return make_user("admin", "admin")


@pytest.fixture
def api_client(client):
    """A client signed in as a given user (console session auth works for the API too)."""

    def _as(user):
        client.force_login(user)
        return client

    return _as


# -- the intake log and the writer thread (SIYU_INGEST_SYNC off) -----------------------
@pytest.fixture
def make_writer(settings):
    """Writers for one test, stopped (and their database connections closed) after it."""
    from siyu.ingest import writer

    made: list[writer.IngestWriter] = []
    settings.SIYU_INGEST_SYNC = False

    def _make(queue_limit: int = 200, **kwargs) -> writer.IngestWriter:
        made.append(writer.IngestWriter(queue_limit, **kwargs))
        return made[-1]

    yield _make
    for fresh in made:
        assert fresh.stop(timeout=30), "the writer threads did not end"


@pytest.fixture
def threaded_writer(monkeypatch, make_writer):
    """Ingestion through the intake log and the writer thread, with a fresh writer for this test."""
    from siyu.ingest import writer

    fresh = make_writer()
    monkeypatch.setattr(writer, "_writer", fresh)
    return fresh


@pytest.fixture
def held_pipeline(monkeypatch):
    """``pipeline.process`` waits for the returned ``release`` event; ``entered`` is set when a
    group has reached it (the writer is then busy)."""
    from siyu.ingest import pipeline

    entered, release = threading.Event(), threading.Event()
    real_process = pipeline.process

    def held_process(items, *args, **kwargs):
        entered.set()
        assert release.wait(timeout=30)
        return real_process(items, *args, **kwargs)

    monkeypatch.setattr(pipeline, "process", held_process)
    return entered, release
