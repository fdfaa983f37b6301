"""Processing the intake log in a process of its own: the child's event store is a proxy
(``ingest.remote``) that the server's writer thread answers (``processor.StoreAgent``).

Here both ends run in this process, one per thread, over a real pipe, so a test can stand in for
a child that dies at the worst moment. ``test_cli`` runs the real server with its real child.
"""

from __future__ import annotations

import multiprocessing
import threading

import pytest
from django.db import connection

from siyu.analytics.engine import get_store, utcnow
from siyu.customers.queries import Lookup, find_person
from siyu.ingest import pipeline, processor, remote, segment
from siyu.ingest.models import IntakePosition

pytestmark = pytest.mark.django_db(transaction=True)


class _Host:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def recovered(self, *args) -> None:
        self.calls.append(("recovered", *args))

    def advanced(self, *args) -> None:
        self.calls.append(("advanced", *args))

    def wait_for_work(self, processed: int, timeout: float) -> str:
        return processor.STOP


@pytest.fixture
def child_end():
    """The child's end of a pipe whose other end a ``StoreAgent`` serves on a thread; ``.exited``
    is the agent's answer once it ended (True: the child said so; False: the pipe broke)."""
    ours, theirs = multiprocessing.Pipe()
    agent = processor.StoreAgent(ours, _Host())

    def serve() -> None:
        try:
            theirs.exited = agent.serve()
        finally:
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    theirs.agent_thread = thread
    yield theirs
    if thread.is_alive():
        theirs.send(("exit",))
        thread.join(10)


def _message(message_id: str, **ids) -> tuple:
    return (None, segment.parse({"type": "track", "event": "Tap", "messageId": message_id, **ids}, utcnow()))


def _stored() -> list[str]:
    return sorted(m for (m,) in get_store().cursor().execute("SELECT message_id FROM events").fetchall())


def test_groups_processed_through_the_proxy_land_in_the_servers_store(child_end, monkeypatch):
    proxy = remote.RemoteStore(child_end)
    monkeypatch.setattr(pipeline, "get_store", lambda: proxy)
    pipeline.DEDUPE.reset()  # loaded through the proxy
    pipeline.process([_message("a", anonymousId="anon-1")], intake=("log-1", 1))
    pipeline.process([_message("b", userId="u1")], intake=("log-1", 2))
    pipeline.process([_message("c", userId="u1", anonymousId="anon-1")], intake=("log-1", 3))  # a merge
    pipeline.process([_message("c", userId="u1")], intake=("log-1", 4))  # a duplicate
    pipeline.DEDUPE.reset()  # as a new child starts: the window is read back from the store
    assert pipeline.process([_message("a", userId="u1")], intake=("log-1", 5)).duplicates == 1

    assert _stored() == ["a", "b", "c"]
    assert IntakePosition.of("log-1") == 5
    user = find_person(Lookup("user_id", "u1"))
    assert find_person(Lookup("anonymous_id", "anon-1")) == user
    persons = {pid for (pid,) in get_store().cursor().execute(
        "SELECT person_id FROM events WHERE message_id IN ('a', 'b')").fetchall()}
    assert len(persons) == 2 and user.pk in persons  # stored before the merge, as two persons
    assert get_store().overrides_of(persons) == {(persons - {user.pk}).pop(): user.pk}
    assert get_store().activity_size() > 0  # the known customers' activity waits for the fold
    pipeline.ACTIVITY.fold(proxy)  # read in the server, written here
    assert get_store().activity_size() == 0


@pytest.mark.parametrize("facts_committed", [True, False])
def test_a_child_that_dies_between_the_two_commits_loses_nothing_and_doubles_nothing(child_end, facts_committed):
    """The events are inserted, the operational transaction commits with the intake position,
    then the events commit. Dying in between, the child leaves the agent to decide."""
    proxy = remote.RemoteStore(child_end)
    assert proxy.call("lock") is None  # taken as ``pipeline.process`` does, never given back
    pending = proxy.begin_append(pipeline._event_columns([_message("x", userId="u1")], [1]), intake=("log-2", 5))
    pending.wait()
    if facts_committed:
        IntakePosition.save_position("log-2", 5)
    child_end.close()  # the child is gone
    child_end.agent_thread.join(10)

    assert child_end.exited is False
    assert _stored() == (["x"] if facts_committed else [])
    assert get_store().write_lock().acquire(blocking=False)  # the agent let go of the store
    get_store().write_lock().release()


def test_an_error_in_the_server_is_raised_in_the_child(child_end):
    proxy = remote.RemoteStore(child_end)
    with pytest.raises(AttributeError):
        proxy.no_such_method()
    with pytest.raises(RuntimeError, match="could not be sent"):
        proxy.cursor()  # a DuckDB cursor cannot cross a pipe
    assert proxy.get_position("nothing") == 0  # the pipe still works
