"""Background work of the process that owns the event store: keep its copies of the persons
and tags current while ingestion is idle, refresh segments and rule tags, refit the CLV models
when due, and recompute the default dashboard once new events have settled, so its first
visitor gets a cached answer. One daemon thread, started by ``siyu serve``."""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

log = logging.getLogger("siyu")


TICK_SECONDS = 5.0  # how often the thread looks for settled new events


class Scheduler:
    def __init__(self, *, first_delay: float = 15.0) -> None:
        self.first_delay = first_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warmed: object = None  # the engine version the dashboard was last computed for
        self._seen: object = None  # the version seen at the previous tick

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="siyu-scheduler", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 0.0) -> bool:
        """Start no new work, and wait up to ``timeout`` seconds for work under way (a refresh
        reading the databases keeps SQLite's log from being emptied at shutdown). True when the
        thread has ended."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        due = time.monotonic() + self._first_refresh_in()
        self.warm_dashboard()
        while not self._stop.wait(TICK_SECONDS):
            self.sync_copies()
            self.warm_dashboard()
            if time.monotonic() >= due:
                started = time.monotonic()
                self.run_once()
                period = settings.SIYU_SEGMENT_REFRESH_MINUTES * 60
                due = started + max(60.0, period)

    def _first_refresh_in(self) -> float:
        """Seconds until the first segment refresh: ``first_delay``, or later when the newest
        refresh (the demo build's, a previous server's) is younger than the refresh period."""
        from django.utils import timezone

        from siyu.segments.models import SegmentRefresh

        try:
            last = SegmentRefresh.objects.order_by("-at").values_list("at", flat=True).first()
        except Exception:
            log.exception("could not read the last segment refresh; refreshing soon")
            last = None
        if last is None:
            return self.first_delay
        age = (timezone.now() - last).total_seconds()
        return max(self.first_delay, settings.SIYU_SEGMENT_REFRESH_MINUTES * 60 - age)

    @staticmethod
    def sync_copies() -> bool:
        """Bring the event store's copies of the persons and their tags up to date once ingestion
        has been idle for a while (as the writer brings in merges then); True when it ran. On this
        thread, so that requests never wait for a full copy. Errors are logged, never raised."""
        from siyu.analytics import sync
        from siyu.analytics.engine import get_store
        from siyu.ingest.writer import IDLE_SYNC_SECONDS, get_writer

        if get_writer().idle_seconds() < IDLE_SYNC_SECONDS:
            return False
        try:
            done = sync.sync_copies(get_store())
        except Exception:
            log.exception("copying the persons into the event store failed; will retry")
            return False
        if any(done.values()):
            log.info("event store copies synced: %s", done)
        return True

    def warm_dashboard(self) -> bool:
        """Compute the default dashboard when the data changed and has not changed since the last
        tick (ingestion has settled); True when it ran. Errors are logged, never raised."""
        from siyu.analytics.engines import get_engine
        from siyu.console.analytics_views import warm_default_dashboard

        if not settings.SIYU_DASHBOARD_WARMUP:
            return False
        try:
            version = get_engine().version()
            settled, self._seen = version == self._seen, version
            if version == self._warmed or (self._warmed is not None and not settled):
                return False
            warm_default_dashboard()
            self._warmed = version
            return True
        except Exception:
            log.exception("dashboard warm-up failed; will retry")
            return False

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
