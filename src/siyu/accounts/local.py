"""The local operator: ``siyu`` commands run beside ``siyu serve`` ask the server through its API.

DuckDB lets one process open the event store, so while the server runs, a
command that reads the store (``siyu query``, ``siyu segment count`` …) sends the
same request to the server instead. The server writes ``server.json`` into the
data folder (readable by its owner only) with its address and a random token;
the token acts as the command-line user, who can read the data folder anyway.
"""

from __future__ import annotations

import atexit
import getpass
import hmac
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVER_FILE = "server.json"
CLI_USER_HEADER = "X-Siyu-Cli-User"
_token: str | None = None


class LocalOperator:
    """Whoever runs ``siyu`` on this machine: every permission, audited as ``cli:<user>``."""

    is_local_cli = True
    is_active = True
    is_authenticated = True
    is_anonymous = False
    pk = None

    def __init__(self, user: str) -> None:
        self.label = f"cli:{user}"

    def get_username(self) -> str:
        return self.label

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return True


def _path() -> Path:
    from siyu.conf import data_dir

    return data_dir() / SERVER_FILE


def publish(url: str) -> Path:
    """Write the server file for this process; it is removed when the process exits."""
    global _token
    _token = secrets.token_urlsafe(32)
    path = _path()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "pid": os.getpid(), "token": _token}, out)
    pid = os.getpid()

    def _remove() -> None:
        info = _read(path)
        if info and info.get("pid") == pid:
            path.unlink(missing_ok=True)

    atexit.register(_remove)
    return path


def operator_for(token: str, user: str | None) -> LocalOperator | None:
    """The local operator when ``token`` is this server's, else None."""
    if _token is None or not hmac.compare_digest(token.encode(), _token.encode()):
        return None
    return LocalOperator((user or "unknown")[:64])


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def running_server() -> dict[str, Any] | None:
    """The server holding this data folder, when one is running."""
    info = _read(_path())
    if not info or not isinstance(info.get("pid"), int):
        return None
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    return info


def ask(info: dict[str, Any], method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Send one API request to the running server; (status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        info["url"].rstrip("/") + path, data=data, method=method,
        headers={"Authorization": f"Bearer {info['token']}", "Content-Type": "application/json",
                 CLI_USER_HEADER: getpass.getuser()})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    text = raw.decode("utf-8")
    return status, (json.loads(text) if "json" in kind and text else text)
