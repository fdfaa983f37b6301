"""The ``siyu`` command, run as a user runs it: the installed entry point in a subprocess.

Each module run gets its own ``SIYU_DATA_DIR``, so the subprocesses use the SQLite
file and DuckDB file in that folder (not the test database). Data arrives the
production way: ``siyu serve`` runs in the background and the official Segment
client posts to it; the CLI reads the operational DB while the server runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from segment.analytics import Client

ENTRY_POINT = Path(sys.executable).with_name("siyu")
SIYU = [str(ENTRY_POINT)] if ENTRY_POINT.exists() else [sys.executable, "-m", "siyu.cli"]
# Settings that would point the subprocess at the test run's stores instead of its own folder.
FOREIGN = ("DATABASE_URL", "SIYU_EVENT_STORE", "SIYU_PII_KEYS", "SIYU_SECRET_KEY", "DJANGO_SETTINGS_MODULE")
KINDS = {
    "user_id": "u-li", "anonymous_id": "dev-li", "phone": "13800138000", "email": "Li.Lei@Example.com",
    "unionid": "uLi001", "openid": "oLi001", "wecom_id": "wmLi001", "member_no": "M0001",
}


class World:
    """A data folder and the commands run against it."""

    def __init__(self, root: Path) -> None:
        self.data_dir, self.cwd = root / "data", root / "cwd"
        self.cwd.mkdir(parents=True)
        self.env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        self.env["SIYU_DATA_DIR"] = str(self.data_dir)
        # Each command is a fresh interpreter: let them share compiled bytecode, kept
        # outside the repository and the virtual environment.
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "siyu-test-pycache")

    def run(self, *args: str, status: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([*SIYU, *args], cwd=self.cwd, env=self.env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == status, f"siyu {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def server(world):
    """``siyu serve`` on a free port, stopped with Ctrl-C at the end of the module."""
    port, log = _free_port(), world.cwd / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([*SIYU, "serve", "--port", str(port), "--threads", "4"], cwd=world.cwd,
                                env=world.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_serving(proc, url, log)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_until_serving(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"siyu serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/api/openapi.json", timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"siyu serve did not answer within 90 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def source(world) -> dict:
    return world.json("source", "create", "web")


@pytest.fixture(scope="module")
def li(world, server, source) -> dict:
    """One customer sent through the running server with the official Segment client."""
    analytics = Client(source["write_key"], host=server, sync_mode=True)
    analytics.page(anonymous_id="dev-li", name="Home", context={"campaign": {"source": "xiaohongshu"}})
    traits = {k: v for k, v in KINDS.items() if k not in ("user_id", "anonymous_id")}
    analytics.identify("u-li", {**traits, "name": "李雷", "level": "gold"}, anonymous_id="dev-li")
    analytics.track("u-li", "Order Completed", {"order_id": "A-1", "total": "120.00"})
    analytics.track("u-li", "Order Completed", {"order_id": "A-2", "total": "80.50"})
    analytics.track(anonymous_id="tablet-li", event="Coupon Viewed")
    # Processed before the alias arrives, as a later visit would be: the tablet is a profile of its own
    # that the alias then merges (in one group, the alias would only attach the new id: no merge).
    world.json("customer", "show", "anonymous_id:tablet-li")
    analytics.alias("tablet-li", "u-li")
    return world.json("customer", "show", "user_id:u-li")


# -- sources and the data folder ------------------------------------------------------------
def test_source_create_prints_the_write_key_as_json(source):
    assert source["name"] == "web" and source["kind"] == "segment"
    assert source["write_key"].startswith("wk_")
    assert source["endpoints"] == {"segment": "/v1/batch"}


def test_source_list_shows_every_source(world, source):
    world.run("source", "create", "miniapp", "--kind", "sensors")
    rows = world.json("source", "list")
    assert [(r["name"], r["kind"]) for r in rows] == [("miniapp", "sensors"), ("web", "segment")]
    assert "wk_" in world.run("source", "list").stdout


def test_siyu_data_dir_holds_the_stores(world, li):
    assert (world.data_dir / "siyu.sqlite3").exists()
    assert (world.data_dir / "events.duckdb").exists()
    assert (world.data_dir / "pii_keys").exists()
    assert not (world.cwd / "siyu-data").exists()


# -- customers -------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_customer_show_finds_the_profile_by_each_identity_kind(world, li, kind):
    assert world.json("customer", "show", f"{kind}:{KINDS[kind]}")["id"] == li["id"]


def test_customer_show_prints_identities_traits_and_computed_attributes(li):
    values = {(i["kind"], i["value"]) for i in li["identities"]}
    assert values >= {("user_id", "u-li"), ("phone", "+8613800138000"), ("email", "li.lei@example.com"),
                      ("unionid", "uLi001"), ("openid", "oLi001"), ("wecom_id", "wmLi001"),
                      ("member_no", "M0001"), ("anonymous_id", "dev-li"), ("anonymous_id", "tablet-li")}
    assert li["traits"] == {"level": "gold"}
    assert li["personal"] == {"phone": "+8613800138000", "email": "li.lei@example.com", "name": "李雷"}
    computed = li["computed"]
    assert (computed["order_count"], computed["total_spend"], computed["average_order_value"]) == (
        2, "200.50", "100.25")
    assert computed["acquisition_channel"] == "xiaohongshu"
    assert [m["reason"] for m in li["merges"]] == ["alias"]


def test_customer_show_without_json_is_readable(world, li):
    out = world.run("customer", "show", "phone:13800138000").stdout
    assert out.startswith(f"customer #{li['id']}\n")
    assert "order_count" in out and "200.50" in out and "merges:\n  person" in out


def test_customer_list_and_search(world, li):
    everyone = world.json("customer", "list")
    assert everyone["count"] == 1
    assert everyone["items"][0]["id"] == li["id"]
    assert everyone["items"][0]["total_spend"] == "200.50"
    assert world.json("customer", "list", "--q", "nobody@example.com") == {"count": 0, "items": []}
    assert world.json("customer", "list", "--channel", "xiaohongshu")["count"] == 1


def test_customer_merges_explains_the_alias(world, li):
    [merge] = world.json("customer", "merges", "user_id:u-li")
    assert merge["into"] == li["id"] and merge["reason"] == "alias"
    assert "seen together (anonymous_id, user_id) in alias message" in merge["explanation"]


# -- commands that read the event store while the server holds it -------------------------------
def test_store_commands_ask_the_running_server(world, server, li):
    # DuckDB admits one process: these commands send the same request to `siyu serve` instead
    twice = {"type": "event", "event": "Order Completed", "count": {"op": "gte", "value": 2}}
    deadline = time.monotonic() + 30  # the server copies new customers into the event store when idle (5 s)
    while world.json("segment", "count", "--rule", json.dumps(twice)) != {"count": 1}:
        assert time.monotonic() < deadline, "the new customer never reached segments"
        time.sleep(1)
    bad = world.run("segment", "count", "--rule", '{"type": "event", "within_days": 0}', "--json", status=2)
    assert json.loads(bad.stdout)["errors"][0]["field"] == "rule.within_days"
    made = world.json("segment", "create", "--name", "Repeat buyers", "--rule", json.dumps(twice))
    assert made["size"] == 1
    members = world.json("segment", "members", str(made["id"]))
    assert [m["id"] for m in members["items"]] == [li["id"]]
    assert world.json("segment", "changes", str(made["id"]))["entered"] == [li["id"]]
    trends = world.json("query", "trends", "--query", json.dumps(
        {"series": [{"event": "Order Completed", "math": "count"}]}))
    assert sum(p["value"] for p in trends["series"][0]["points"]) == 2
    assert not (world.data_dir / "server.json").stat().st_mode & 0o077  # the token is the owner's only


# -- team and tokens ------------------------------------------------------------------------------
def test_a_token_from_the_cli_authenticates_on_the_api(world, server, li):
    user = world.json("user", "create", "agent-1", "--role", "customer_service")
    assert (user["username"], user["role"]) == ("agent-1", "customer_service") and user["password"]
    token = world.json("token", "create", "agent-1")
    assert token["token"].startswith("sy_")
    headers = {"Authorization": f"Bearer {token['token']}"}
    r = requests.get(f"{server}/api/v1/customers/lookup", params={"kind": "phone", "value": "13800138000"},
                     headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == li["id"] and r.json()["personal"]["phone"] == "+8613800138000"
    assert requests.get(f"{server}/api/v1/me", timeout=10).status_code == 401


def test_the_server_processes_ingestion_in_a_process_of_its_own(world, server, li):
    world.run("user", "create", "dev-1", "--role", "developer", "--password", "a-long-password")
    token = world.json("token", "create", "dev-1")["token"]
    r = requests.get(f"{server}/api/v1/sources/ingestion", params={"wait": 10},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    status = r.json()
    assert (status["processing"], status["processed_in"], status["backlog"]) == (True, "process", 0)
    assert status["processed_position"] == status["accepted_position"] > 0


def test_an_analysts_token_sees_masked_data(world, server, li):
    world.run("user", "create", "analyst-1", "--role", "data_analyst", "--password", "a-long-password")
    raw = world.json("token", "create", "analyst-1", "--name", "notebook")["token"]
    r = requests.get(f"{server}/api/v1/customers/{li['id']}", headers={"Authorization": f"Bearer {raw}"},
                     timeout=10)
    assert r.json()["personal"]["phone"] == "+86138****8000"


# -- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("customer", "show", "qq:12345"), "unknown identity kind 'qq'; use one of " + ", ".join(KINDS)),
        (("customer", "show", "13800138000"), "expected KIND:VALUE"),
        (("customer", "show", "phone:13900000000"), "no customer with phone"),
        (("customer", "show", "phone:12"), "not a"),
        (("customer", "merges", "user_id:nobody"), "no customer"),
        (("token", "create", "nobody"), "no user 'nobody'"),
    ],
)
def test_user_errors_exit_2_with_a_clear_message(world, li, args, needle):
    done = world.run(*args, status=2)
    assert done.stderr.startswith("siyu: error: ")
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_errors_are_json_on_stdout_with_json(world, li):
    done = world.run("customer", "show", "phone:13900000000", "--json", status=2)
    assert json.loads(done.stdout) == {"error": "no customer with phone '13900000000'"}


def test_duplicates_are_refused(world, source):
    assert "already exists" in world.run("source", "create", "web", status=2).stderr
    world.run("user", "create", "dup", "--role", "developer")
    assert "already exists" in world.run("user", "create", "dup", "--role", "developer", status=2).stderr


def test_argument_errors_exit_2_with_usage(world):
    done = world.run("user", "create", "x", "--role", "emperor", status=2)
    assert "invalid choice: 'emperor'" in done.stderr
    assert "usage: siyu" in world.run("frobnicate", status=2).stderr


def test_openapi_writes_the_committed_schema(world):
    out = world.cwd / "schema.json"
    world.run("openapi", "--output", str(out))
    root = Path(__file__).resolve().parents[1]
    assert json.loads(out.read_text()) == json.loads((root / "docs" / "openapi.json").read_text())


def test_help_lists_every_command(world):
    out = world.run("--help").stdout
    for command in ("serve", "demo", "source", "import", "customer", "user", "token", "openapi"):
        assert command in out


@pytest.fixture(scope="module", autouse=True)
def _cleanup(world):
    yield
    shutil.rmtree(world.data_dir, ignore_errors=True)


def test_a_log_line_is_printed_once_even_when_a_library_configured_the_root_logger(tmp_path):
    """Some dependencies log through the root logger, which gives it a handler of its own; the
    ``siyu`` loggers must not print through it as well (the server's log showed every line twice)."""
    script = ("import logging, os\n"
              "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'siyu.settings')\n"
              "import django\n"
              "django.setup()\n"
              "logging.info('a library')\n"
              "logging.getLogger('siyu.ingest').info('event store synced')\n")
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    out = subprocess.run([sys.executable, "-c", script], env={**env, "SIYU_DATA_DIR": str(tmp_path)},
                         capture_output=True, text=True, timeout=120, check=True)
    assert (out.stdout + out.stderr).count("event store synced") == 1
