"""Reads behind the console pages: headline counts, list rows, timeline pages.

Operational facts come from the ORM; events only through ``EventStore`` methods
(the engine module is the only code that touches DuckDB).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Exists, F, OuterRef, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from siyu.accounts.actor import Actor
from siyu.analytics.engine import get_store
from siyu.customers import queries as customer_queries
from siyu.customers.models import Identity, IdentityKind, MergeConflict, Person
from siyu.ingest.models import DeadLetter
from siyu.orders.models import Order

DEAD_LETTER_DAYS = 7
TIMELINE_PAGE = 50


@dataclass(frozen=True)
class HomeStats:
    customers: int
    identified: int
    with_orders: int
    orders: int
    gmv: Decimal
    currency: str
    events: int
    events_per_day: list[tuple[date, int]]
    new_customers_per_day: list[tuple[date, int]]
    channels: list[tuple[str, int]]
    open_conflicts: int
    dead_letters: int

    @property
    def anonymous(self) -> int:
        return self.customers - self.identified

    @property
    def identified_share(self) -> float:
        return self.identified / self.customers if self.customers else 0.0


def masked(actor: Actor) -> Actor:
    """The same person seeing only masked values: lists never unmask, only an audited reveal does."""
    return replace(actor, can_see_pii=False)


def customers() -> QuerySet[Person]:
    """Surviving customers: not merged into another, not erased."""
    return Person.objects.filter(merged_into__isnull=True, erased_at__isnull=True)


def last_days(days: int, today: date | None = None) -> list[date]:
    today = today or timezone.localdate()
    return [today - timedelta(days=n) for n in range(days - 1, -1, -1)]


def fill_days(days: list[date], counts: Iterable[tuple[Any, int]]) -> list[tuple[date, int]]:
    """One (day, count) per day, zero where nothing happened."""
    by_day = {(d.date() if isinstance(d, datetime) else d): n for d, n in counts}
    return [(d, int(by_day.get(d, 0))) for d in days]


def home_stats(days: int = 30) -> HomeStats:
    persons = customers()
    known = Identity.objects.filter(person=OuterRef("pk")).exclude(kind=IdentityKind.ANONYMOUS_ID)
    store = get_store()
    window = last_days(days)
    gmv = Order.objects.aggregate(v=Sum(F("amount") - F("refunded_amount")))["v"]
    return HomeStats(
        customers=persons.count(),
        identified=persons.filter(Exists(known)).count(),
        with_orders=persons.filter(order_count__gt=0).count(),
        orders=Order.objects.count(),
        gmv=Decimal(gmv or 0).quantize(Decimal("0.01")),
        currency=settings.SIYU_CURRENCY,
        events=store.counts()["events"],
        events_per_day=fill_days(window, store.daily_counts(days)),
        new_customers_per_day=fill_days(window, new_customers_by_day(window[0])),
        channels=top_channels(10),
        open_conflicts=MergeConflict.objects.filter(status=MergeConflict.Status.OPEN).count(),
        dead_letters=DeadLetter.objects.filter(
            received_at__gte=timezone.now() - timedelta(days=DEAD_LETTER_DAYS)).count(),
    )


def new_customers_by_day(since: date) -> list[tuple[date, int]]:
    """Customers by the brand-local day they were first seen (or created, for imports)."""
    tz = ZoneInfo(settings.TIME_ZONE)
    rows = (
        customers()
        .annotate(seen=Coalesce("first_seen", "created_at"))
        .filter(seen__gte=datetime.combine(since, time.min, tzinfo=tz))
        .annotate(day=TruncDate("seen", tzinfo=tz))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    return [(r["day"], r["n"]) for r in rows]


def top_channels(limit: int) -> list[tuple[str, int]]:
    """Acquisition channels by customers acquired; '' is customers with no known channel."""
    rows = (
        customers().values("acquisition_channel").annotate(n=Count("id"))
        .order_by("-n", "acquisition_channel")[:limit]
    )
    return [(r["acquisition_channel"], r["n"]) for r in rows]


def channel_choices(limit: int = 50) -> list[str]:
    return [c for c, _n in top_channels(limit + 1) if c][:limit]


def masked_name(person: Person, actor: Actor) -> str:
    """The person's name masked, or '' when we know no name."""
    name = customer_queries.display_name(person, masked(actor))
    return "" if name == f"#{person.pk}" else name


def customer_rows(persons: Iterable[Person], actor: Actor) -> list[dict[str, Any]]:
    """What the customer list shows per person, names always masked."""
    return [
        {
            "id": p.pk,
            "name": masked_name(p, actor),
            "order_count": p.order_count,
            "total_spend": p.total_spend,
            "last_seen": p.last_seen,
            "channel": p.acquisition_channel,
        }
        for p in persons
    ]


def normalise_search(q: str) -> str:
    """Accept '#123' for customer number 123, as the console prints numbers."""
    q = q.strip()
    return q[1:] if q.startswith("#") and q[1:].isdigit() else q


@dataclass(frozen=True)
class TimelinePage:
    events: list[dict[str, Any]]
    next_cursor: str | None


def timeline_page(person: Person, cursor: str | None = None, limit: int = TIMELINE_PAGE) -> TimelinePage:
    """A page of the person's events (and of everyone merged into them), newest first."""
    after = parse_cursor(cursor) if cursor else None
    rows = get_store().timeline_page(customer_queries.merged_ids(person), limit + 1, after)
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = f"{rows[-1]['timestamp'].isoformat()}|{rows[-1]['uuid']}" if more and rows else None
    return TimelinePage(rows, next_cursor)


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    """'<iso timestamp>|<uuid>' -> (timestamp, uuid); raises ValueError when malformed."""
    stamp, sep, uuid = cursor.partition("|")
    if not sep or not uuid:
        raise ValueError("cursor must be TIMESTAMP|UUID")
    return datetime.fromisoformat(stamp), uuid


def person_orders(person: Person, limit: int = 50) -> list[Order]:
    return list(Order.objects.filter(person=person).order_by("-placed_at")[:limit])


def dead_letters(limit: int = 50) -> list[DeadLetter]:
    return list(DeadLetter.objects.select_related("source").order_by("-received_at")[:limit])


def open_conflicts(limit: int = 50) -> list[MergeConflict]:
    return list(
        MergeConflict.objects.filter(status=MergeConflict.Status.OPEN)
        .select_related("person_a", "person_b").order_by("-at")[:limit]
    )
