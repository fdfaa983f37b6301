"""Where siyu keeps its files and secrets, resolved once from the environment."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

temporary_data_dir: str | None = None  # made by ``data_dir`` under pytest; the test session removes it


def data_dir() -> Path:
    """Return the data folder (``SIYU_DATA_DIR``, default ``./siyu-data``), creating it.

    Under pytest (which sets ``PYTEST_VERSION``) the default is a temporary folder,
    so a test run never touches a real data folder in the working directory.
    """
    if not os.environ.get("SIYU_DATA_DIR") and os.environ.get("PYTEST_VERSION"):
        import tempfile

        global temporary_data_dir
        temporary_data_dir = os.environ["SIYU_DATA_DIR"] = tempfile.mkdtemp(prefix="siyu-test-")
    path = Path(os.environ.get("SIYU_DATA_DIR") or Path.cwd() / "siyu-data").resolve()
    if not path.exists():
        # The folder holds personal data (encrypted) and its keys: owner-only.
        path.mkdir(parents=True, mode=0o700, exist_ok=True)
    return path


def _secret_from_file(env_name: str, file_name: str, nbytes: int) -> str:
    """Read a secret from the environment, or from (and generated into) the data folder.

    Demo installs have no secret manager: we generate one into the data folder and
    say so in the logs, so that a restart keeps decrypting what it wrote.
    """
    value = os.environ.get(env_name)
    if value:
        return value
    path = data_dir() / file_name
    value = secrets.token_urlsafe(nbytes)
    try:
        # O_EXCL: when two processes start on a fresh folder, exactly one key wins
        # and both use it (two keys would hash the same phone two ways).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the winner may still be writing it
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it or set {env_name}") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def secret_key() -> str:
    return _secret_from_file("SIYU_SECRET_KEY", "secret_key", 48)


def pii_keys() -> list[str]:
    """Personal-data keys, newest first (comma-separated in ``SIYU_PII_KEYS`` to rotate)."""
    raw = _secret_from_file("SIYU_PII_KEYS", "pii_keys", 32)
    return [k.strip() for k in raw.split(",") if k.strip()]
