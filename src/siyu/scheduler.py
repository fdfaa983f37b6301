"""Background work of the process that owns the event store: refresh segments and rule tags,
refit the CLV models when due. One daemon thread, started by ``siyu serve``."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

log = logging.getLogger("siyu")


class Scheduler:
    def __init__(self, *, first_delay: float = 15.0) -> None:
        self.first_delay = first_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="siyu-scheduler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        wait = self.first_delay
        while not self._stop.wait(wait):
            started = time.monotonic()
            self.run_once()
            period = settings.SIYU_SEGMENT_REFRESH_MINUTES * 60
            wait = max(60.0, period - (time.monotonic() - started))

    @staticmethod
    def run_once() -> dict:
        """Refit the CLV models if due, then refresh every rule tag and segment. Errors are logged,
        never raised: the next round tries again."""
        from django.db import close_old_connections

        from siyu.accounts.actor import Actor
        from siyu.segments.actions import refresh_all
        from siyu.valuation.fitting import refit_if_due

        done: dict = {}
        close_old_connections()
        try:
            model = refit_if_due(settings.SIYU_CLV_REFIT_HOURS, Actor.system("scheduler"))
            done["clv_model"] = model.pk if model is not None else None
        except Exception:
            log.exception("scheduled CLV refit failed; will retry")
        try:
            done.update(refresh_all(Actor.system("scheduler")))
            log.info("segments refreshed: %s", done)
        except Exception:
            log.exception("scheduled segment refresh failed; will retry")
        finally:
            close_old_connections()
        return done
