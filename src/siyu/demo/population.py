"""Who the demo customers are and when they buy: a heterogeneous buy-till-you-die process.

Everything is drawn at once with numpy from one seeded generator, so a seed
gives the same brand every time. Times are integer seconds since the epoch (UTC).

The purchase process follows BG/NBD (Fader, Hardie & Lee 2005): while a
customer is alive, purchases arrive as a Poisson process with a personal rate
λ ~ Gamma; after each purchase the customer drops out with a personal
probability p ~ Beta. Here the rate is also modulated by the calendar (month,
weekday, hour, festivals), sampled by thinning, and λ and p depend on the
channel that brought the customer. Order values follow a Gamma–Gamma-like
shape: a personal basket size ~ Gamma, items per order ~ 1 + Poisson(basket).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np

from siyu.demo import brand

DAY = 86_400
HOUR = 3_600
VENUE = {v: i for i, v in enumerate((*brand.VENUES, "douyin"))}  # mp pos h5 delivery douyin


@dataclass(frozen=True)
class Params:
    """The process parameters (docs/demo.md explains each)."""

    days: int = 182
    rate_mean: float = 0.05  # purchases per day of an average live customer
    rate_shape: float = 0.9  # Gamma shape of the per-customer rate: small = heterogeneous
    rate_cap: float = 0.7
    basket_shape: float = 1.6  # Gamma shape of the per-customer extra items per order
    basket_mean: float = 0.7
    growth: float = 0.8  # the brand acquires (1 + growth) times more per day at the end
    voucher_share: float = 0.6  # Douyin customers who arrive by buying a group-buy voucher
    signup: tuple[float, ...] = (0.93, 0.88, 0.78, 0.30, 0.55, 0.30, 0.30, 0.95)  # per channel
    signup_now: float = 0.6  # sign-ups that happen in the first visit
    follow_oa: float = 0.25  # members who also follow the official account
    second_device: float = 0.18  # members who later browse anonymously on another device
    browse_base: float = 0.055  # browsing sessions per day, plus ``browse_per_purchase`` x the purchase rate
    browse_per_purchase: float = 2.6
    checkin_share: float = 0.3  # mini-program members who check in for points
    conflict_rate: float = 0.002  # POS orders where the cashier typed someone else's phone
    prospects: float = 0.0  # share of visitors who come once and never sign up (the long tail)

    @classmethod
    def for_customers(cls, n: int) -> Params:
        """The parameters of a brand of ``n`` customers: larger brands have a longer tail.

        Up to ``FULL_ACTIVITY_UP_TO`` customers every customer behaves as the defaults say
        (about 50 messages each). Beyond it, with x = log(n / 20 000) / log(50) (0 at
        20 000, 1 at 1 000 000), browsing and check-ins fall to ``0.1^x`` of the default,
        the mean purchase rate to ``0.5^x``, and a share ``0.5 x`` of the visitors who arrive
        by visiting are prospects who never sign up: 20 000 customers send about 1 million
        messages, 1 000 000 about 10 million. Orders still follow the same BG/NBD process.
        """
        p = cls()
        if n <= FULL_ACTIVITY_UP_TO:
            return p
        x = min(1.0, math.log(n / FULL_ACTIVITY_UP_TO) / math.log(50))
        browse = 0.1**x
        return replace(p, rate_mean=p.rate_mean * 0.5**x, browse_base=p.browse_base * browse,
                       browse_per_purchase=p.browse_per_purchase * browse,
                       checkin_share=p.checkin_share * browse, prospects=0.5 * x)


FULL_ACTIVITY_UP_TO = 20_000  # customers; larger demo brands have a longer tail of lighter customers


@dataclass
class Customers:
    n: int
    channel: np.ndarray  # index into brand.CHANNELS
    platform: np.ndarray  # index into brand.PLATFORMS
    store: np.ndarray  # home store, index into brand.STORES
    female: np.ndarray
    birth: np.ndarray  # days since 1970-01-01
    acq_t: np.ndarray  # first contact
    member_t: np.ndarray  # became a member (-1: never)
    member_no: np.ndarray  # sequence number by sign-up time (-1: never)
    follow_t: np.ndarray  # followed the official account (-1: never)
    device2_t: np.ndarray  # browsed on a second device, then logged in (-1: never)
    referrer: np.ndarray  # index of the inviting customer (-1: none)
    voucher: np.ndarray  # arrived by buying a Douyin voucher
    delivery_app: np.ndarray  # 0 Meituan, 1 Ele.me
    rate: np.ndarray  # purchases per day while alive
    dropout: np.ndarray  # probability of leaving after each purchase
    basket: np.ndarray
    active_end: np.ndarray  # last moment of activity
    email: np.ndarray
    phone: np.ndarray  # 11-digit mainland mobile numbers, unique
    key: np.ndarray  # random material for every other id


@dataclass
class Orders:
    cust: np.ndarray
    t: np.ndarray
    venue: np.ndarray  # index into VENUE
    rank: np.ndarray  # 0 for the customer's first order
    item_start: np.ndarray  # items of order i are item_start[i]:item_start[i + 1]
    product: np.ndarray  # index into brand.PRODUCTS (-1: the Douyin voucher)
    qty: np.ndarray
    subtotal: np.ndarray  # fen
    discount: np.ndarray
    total: np.ndarray
    coupon: np.ndarray  # index into brand.COUPONS (-1: none)
    refund_t: np.ndarray  # -1: not refunded
    refund_amount: np.ndarray  # 0: the whole order
    wrong_phone: np.ndarray  # customer whose phone the cashier typed (-1: none)

    def __len__(self) -> int:
        return len(self.t)


@dataclass(frozen=True)
class Window:
    start_t: int  # local midnight of the first day, as UTC seconds
    end_t: int
    cal: brand.Calendar

    @classmethod
    def ending(cls, end: datetime, days: int) -> Window:
        end_t = int(end.timestamp())
        local_end = (end.astimezone(UTC) + timedelta(seconds=brand.UTC_OFFSET_S)).date()
        start: date = local_end - timedelta(days=days)
        start_t = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()) - brand.UTC_OFFSET_S
        return cls(start_t, end_t, brand.calendar(start, days + 1))

    def intensity(self, t: np.ndarray) -> np.ndarray:
        """Relative demand at each time (day factors x hour-of-day profile)."""
        day = np.clip((t - self.start_t) // DAY, 0, len(self.cal.demand) - 1)
        hour = ((t + brand.UTC_OFFSET_S) % DAY) // HOUR
        return self.cal.demand[day] * _HOUR_PROFILE[hour]

    @property
    def max_intensity(self) -> float:
        return float(self.cal.demand.max() * _HOUR_PROFILE.max())

    def day_of(self, t: np.ndarray) -> np.ndarray:
        return np.clip((t - self.start_t) // DAY, 0, len(self.cal.demand) - 1)


_HOUR_PROFILE = brand.HOUR_WEIGHTS / brand.HOUR_WEIGHTS.mean()


def thin(rng: np.random.Generator, w: Window, t: np.ndarray) -> np.ndarray:
    """Accept candidate times with probability intensity / max (Lewis–Shedler thinning)."""
    return rng.random(t.shape) * w.max_intensity < w.intensity(t)


def sample_times(rng: np.random.Generator, w: Window, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """One time in ``[lo, hi)`` for each pair, distributed like the calendar's intensity."""
    out = np.empty(len(lo), dtype=np.int64)
    todo = np.arange(len(lo))
    while todo.size:
        span = np.maximum(hi[todo] - lo[todo], 1)
        cand = lo[todo] + (rng.random(todo.size) * span).astype(np.int64)
        ok = thin(rng, w, cand)
        out[todo[ok]] = cand[ok]
        todo = todo[~ok]
    return out


# -- customers ---------------------------------------------------------------
def customers(rng: np.random.Generator, n: int, w: Window, p: Params) -> Customers:
    """Draw ``n`` customers: who they are, when they arrive, how they will behave."""
    ch = rng.choice(len(brand.CHANNELS), size=n, p=_norm([c.share for c in brand.CHANNELS])).astype(np.int8)
    platform = np.array([brand.PLATFORMS.index(c.platform) for c in brand.CHANNELS], dtype=np.int8)[ch]
    store = rng.choice(len(brand.STORES), size=n, p=_norm([s.weight for s in brand.STORES])).astype(np.int8)
    age = np.clip(17 + rng.gamma(3.0, 3.6, n), 16, 62)
    end_day = w.end_t // DAY
    c = Customers(
        n=n, channel=ch, platform=platform, store=store, female=rng.random(n) < 0.68,
        birth=(end_day - age * 365.25).astype(np.int32), acq_t=_acquisition_times(rng, w, n, p),
        member_t=np.full(n, -1, np.int64), member_no=np.full(n, -1, np.int64),
        follow_t=np.full(n, -1, np.int64), device2_t=np.full(n, -1, np.int64),
        referrer=np.full(n, -1, np.int32), voucher=np.zeros(n, bool),
        delivery_app=(rng.random(n) < 0.32).astype(np.int8),
        rate=_rates(rng, ch, p), dropout=_dropouts(rng, ch), basket=_baskets(rng, ch, p),
        active_end=np.full(n, w.end_t, np.int64), email=rng.random(n) < 0.22,
        phone=_phones(rng, n), key=rng.integers(1, 2**62, size=n, dtype=np.int64),
    )
    c.delivery_app[ch == brand.CHANNEL_INDEX["eleme"]] = 1
    c.delivery_app[ch == brand.CHANNEL_INDEX["meituan"]] = 0
    _memberships(rng, c, w, p)
    _referrers(rng, c)
    return c


def _norm(weights: list[float]) -> np.ndarray:
    a = np.asarray(weights, dtype=float)
    return a / a.sum()


def _acquisition_times(rng: np.random.Generator, w: Window, n: int, p: Params) -> np.ndarray:
    days = len(w.cal.acquisition)
    weight = w.cal.acquisition * (1 + p.growth * np.arange(days) / days)
    out = np.empty(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:  # redraw the few that land after the end of the (partial) last day
        day = rng.choice(days, size=todo.size, p=weight / weight.sum())
        hour = rng.choice(24, size=todo.size, p=brand.HOUR_WEIGHTS / brand.HOUR_WEIGHTS.sum())
        t = w.start_t + day * DAY + hour * HOUR + rng.integers(0, HOUR, todo.size)
        ok = t < w.end_t - 600
        out[todo[ok]] = t[ok]
        todo = todo[~ok]
    return out


def _rates(rng: np.random.Generator, ch: np.ndarray, p: Params) -> np.ndarray:
    mult = np.array([c.rate for c in brand.CHANNELS])[ch]
    lam = rng.gamma(p.rate_shape, p.rate_mean / p.rate_shape, len(ch)) * mult
    return np.minimum(lam, p.rate_cap)


def _dropouts(rng: np.random.Generator, ch: np.ndarray) -> np.ndarray:
    a = np.array([c.churn[0] for c in brand.CHANNELS])[ch]
    b = np.array([c.churn[1] for c in brand.CHANNELS])[ch]
    return rng.beta(a, b)


def _baskets(rng: np.random.Generator, ch: np.ndarray, p: Params) -> np.ndarray:
    mult = np.array([c.basket for c in brand.CHANNELS])[ch]
    return rng.gamma(p.basket_shape, p.basket_mean / p.basket_shape, len(ch)) * mult


def _phones(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct 11-digit mobile numbers on real mainland prefixes."""
    prefixes = np.array(brand.PHONE_PREFIXES, dtype=np.int64)
    phones = prefixes[rng.integers(0, len(prefixes), n)] * 10**8 + rng.integers(0, 10**8, n)
    while True:
        _u, first = np.unique(phones, return_index=True)
        dup = np.setdiff1d(np.arange(n), first)
        if not dup.size:
            return phones
        phones[dup] = prefixes[rng.integers(0, len(prefixes), dup.size)] * 10**8 + rng.integers(0, 10**8, dup.size)


def _memberships(rng: np.random.Generator, c: Customers, w: Window, p: Params) -> None:
    """Who signs up (and when), follows the official account, uses a second device."""
    n, end = c.n, w.end_t
    plat = np.array(brand.PLATFORMS)[c.platform]
    c.voucher[:] = (plat == "douyin") & (rng.random(n) < p.voucher_share)
    oa = c.channel == brand.CHANNEL_INDEX["wechat_oa"]
    c.follow_t[oa] = c.acq_t[oa]
    joins = rng.random(n) < np.array(p.signup)[c.channel]
    if p.prospects > 0:  # drawn only then, so smaller brands keep their exact draws
        visits = ~c.voucher & (plat != "delivery") & ~oa
        joins &= ~(visits & (rng.random(n) < p.prospects / max(visits.mean(), 1e-9)))
    now = (rng.random(n) < p.signup_now) & ~c.voucher & (plat != "delivery") & ~oa
    later_days = np.where(plat == "delivery", 25.0, np.where(c.voucher, 20.0, 5.0))
    later = c.acq_t + HOUR + (rng.exponential(later_days) * DAY).astype(np.int64)
    member_t = np.where(now, c.acq_t + rng.integers(90, 600, n), later)
    ok = joins & (member_t < end)
    c.member_t[ok] = member_t[ok]
    order = np.argsort(np.where(ok, c.member_t, np.iinfo(np.int64).max), kind="stable")
    c.member_no[order[: ok.sum()]] = np.arange(ok.sum()) + 1_000_001
    # Members who follow the OA later; some delivery and voucher customers follow before joining.
    follows = ok & ~oa & (rng.random(n) < p.follow_oa)
    base = np.where(ok, c.member_t, c.acq_t)
    t = base + (rng.exponential(20.0, n) * DAY).astype(np.int64)
    pre = ~oa & ((plat == "delivery") | c.voucher) & (rng.random(n) < 0.12)
    t = np.where(pre & ~follows, c.acq_t + (rng.exponential(10.0, n) * DAY).astype(np.int64), t)
    sel = (follows | pre) & (t < end)
    c.follow_t[sel] = t[sel]
    second = ok & np.isin(plat, ["mp", "h5"]) & (rng.random(n) < p.second_device)
    t2 = c.member_t + DAY + (rng.exponential(25.0, n) * DAY).astype(np.int64)
    sel = second & (t2 < end)
    c.device2_t[sel] = t2[sel]


def _referrers(rng: np.random.Generator, c: Customers) -> None:
    """Each referral customer was invited by an earlier member, the keen ones more often."""
    referred = np.flatnonzero(c.channel == brand.CHANNEL_INDEX["referral"])
    members = np.flatnonzero((c.member_t >= 0) & (c.platform == 0))
    if not referred.size or not members.size:
        c.channel[referred] = brand.CHANNEL_INDEX["mini_program"]
        return
    members = members[np.argsort(c.member_t[members], kind="stable")]
    cum = np.cumsum(c.rate[members] + 0.01)
    before = np.searchsorted(c.member_t[members], c.acq_t[referred] - HOUR)
    has = before > 0
    pick = np.searchsorted(cum, rng.random(referred.size) * cum[np.maximum(before - 1, 0)])
    c.referrer[referred[has]] = members[np.minimum(pick[has], before[has] - 1)]
    c.channel[referred[~has]] = brand.CHANNEL_INDEX["mini_program"]


# -- purchases ---------------------------------------------------------------
def purchases(rng: np.random.Generator, c: Customers, w: Window) -> tuple[np.ndarray, np.ndarray]:
    """(customer, time) of every purchase; also sets each customer's ``active_end``."""
    first = _first_purchase(rng, c, w)
    buyers = np.flatnonzero(first >= 0)
    owners, times = [buyers], [first[buyers]]
    t = first[buyers].copy()
    last = t.copy()
    alive = np.flatnonzero(rng.random(buyers.size) >= c.dropout[buyers])
    lam = c.rate[buyers] * w.max_intensity  # candidate rate for thinning
    while alive.size:
        t[alive] += (rng.exponential(1.0 / lam[alive]) * DAY).astype(np.int64) + 60
        alive = alive[t[alive] < w.end_t]
        hit = thin(rng, w, t[alive])
        bought = alive[hit]
        owners.append(buyers[bought])
        times.append(t[bought].copy())
        last[bought] = t[bought]
        leaves = rng.random(bought.size) < c.dropout[buyers[bought]]
        alive = np.concatenate([alive[~hit], bought[~leaves]])
    _activity_ends(rng, c, w, buyers, last, t)
    return np.concatenate(owners).astype(np.int32), np.concatenate(times)


def _first_purchase(rng: np.random.Generator, c: Customers, w: Window) -> np.ndarray:
    n = c.n
    plat = np.array(brand.PLATFORMS)[c.platform]
    convert = np.array([ch.convert for ch in brand.CHANNELS])[c.channel]
    first = np.full(n, -1, np.int64)
    arrives_buying = c.voucher | (plat == "delivery")
    first[arrives_buying] = c.acq_t[arrives_buying]
    members = (c.member_t >= 0) & ~arrives_buying & (rng.random(n) < convert)
    soon = rng.random(n) < 0.5
    wait = np.where(soon, rng.integers(120, 900, n),
                    (rng.exponential(1.0 / np.maximum(c.rate, 0.01)) * DAY).astype(np.int64))
    t = c.member_t + wait
    ok = members & (t < w.end_t)
    first[ok] = t[ok]
    return first


def _activity_ends(rng: np.random.Generator, c: Customers, w: Window, buyers: np.ndarray,
                   last: np.ndarray, t_next: np.ndarray) -> None:
    """Buyers stay active a while after their last purchase; others fade out sooner."""
    n = c.n
    tail = (rng.exponential(18.0, n) * DAY).astype(np.int64)
    nonbuyer_end = np.where(c.member_t >= 0, c.member_t, c.acq_t) + np.where(
        c.member_t >= 0, (rng.exponential(20.0, n) * DAY).astype(np.int64),
        (rng.exponential(4.0, n) * DAY).astype(np.int64))
    end = nonbuyer_end
    # A buyer whose next candidate purchase fell past the window was still alive at the end.
    still = t_next >= w.end_t
    end[buyers] = np.where(still, w.end_t, last + tail[buyers])
    c.active_end[:] = np.minimum(end, w.end_t)


# -- orders ------------------------------------------------------------------
def orders(rng: np.random.Generator, c: Customers, w: Window, owners: np.ndarray, times: np.ndarray,
           p: Params) -> Orders:
    """Give every purchase a venue, a basket, a coupon and maybe a refund."""
    order = np.lexsort((times, owners))
    owners, times = owners[order], times[order]
    start_of = np.r_[0, np.flatnonzero(np.diff(owners)) + 1]
    rank = np.arange(len(owners)) - np.repeat(start_of, np.diff(np.r_[start_of, len(owners)]))
    by_time = np.argsort(times, kind="stable")
    owners, times, rank = owners[by_time], times[by_time], rank[by_time]
    venue = _venues(rng, c, owners, times, rank)
    item_start, product, qty = _baskets_of(rng, c, w, owners, times, venue)
    subtotal = np.add.reduceat(_item_prices(product) * qty, item_start[:-1]) if len(owners) else np.zeros(0, np.int64)
    coupon, discount = _coupons(rng, c, w, owners, times, venue, rank, item_start, product, subtotal)
    total = np.maximum(subtotal - discount, 1)
    refund_t, refund_amount = _refunds(rng, w, times, venue, item_start, product, total)
    wrong = np.full(len(owners), -1, np.int32)
    pos = np.flatnonzero((venue == VENUE["pos"]) & (rng.random(len(owners)) < p.conflict_rate))
    if pos.size:
        others = rng.integers(0, c.n, pos.size)
        known = (c.member_t[others] >= 0) & (c.member_t[others] < times[pos]) & (others != owners[pos])
        wrong[pos[known]] = others[known]
    return Orders(cust=owners, t=times, venue=venue, rank=rank, item_start=item_start, product=product, qty=qty,
                  subtotal=subtotal, discount=discount, total=total, coupon=coupon, refund_t=refund_t,
                  refund_amount=refund_amount, wrong_phone=wrong)


def _venues(rng: np.random.Generator, c: Customers, owners: np.ndarray, times: np.ndarray,
            rank: np.ndarray) -> np.ndarray:
    plat = c.platform[owners]
    cum = np.cumsum(brand.VENUE_MIX, axis=1)[plat]
    venue = np.minimum((rng.random(len(owners))[:, None] > cum).sum(axis=1), len(brand.VENUES) - 1).astype(np.int8)
    member = (c.member_t[owners] >= 0) & (c.member_t[owners] <= times)
    home = np.array([VENUE["mp"], VENUE["h5"], VENUE["delivery"], VENUE["h5"]], dtype=np.int8)[plat]
    venue = np.where(member & (rank == 0), home, venue)
    outsider = np.where(c.voucher[owners], VENUE["douyin"], VENUE["delivery"]).astype(np.int8)
    venue = np.where(member, venue, outsider)
    venue[(rank == 0) & c.voucher[owners]] = VENUE["douyin"]
    return venue


def _baskets_of(rng: np.random.Generator, c: Customers, w: Window, owners: np.ndarray, times: np.ndarray,
                venue: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_items = 1 + rng.poisson(c.basket[owners])
    n_items[venue == VENUE["douyin"]] = 1
    n_items = np.minimum(n_items, 8)
    item_start = np.r_[0, np.cumsum(n_items)].astype(np.int64)
    of = np.repeat(np.arange(len(owners)), n_items)
    cum = np.cumsum(brand.PRODUCT_WEIGHT)
    product = np.minimum(np.searchsorted(cum, rng.random(len(of)) * cum[-1]), len(cum) - 1).astype(np.int16)
    day = w.day_of(times)[of]
    season = np.array([p.season for p in brand.PRODUCTS])[product]
    sku = brand.SKU_INDEX
    product[(season == "summer") & ~w.cal.summer[day]] = sku["CY-D01"]
    product[(season == "autumn") & ~w.cal.autumn[day]] = sku["CY-D02"]
    gift = w.cal.gift_season[day]
    festive = (gift >= 0) & (rng.random(len(of)) < 0.05) & (venue[of] != VENUE["delivery"])
    product[festive] = gift[festive]
    product[venue[of] == VENUE["douyin"]] = -1
    qty = np.where(rng.random(len(of)) < 0.14, 2, 1).astype(np.int8)
    qty[product == -1] = 1
    return item_start, product, qty


def _item_prices(product: np.ndarray) -> np.ndarray:
    return np.where(product >= 0, brand.PRODUCT_PRICE[np.maximum(product, 0)], brand.VOUCHER.price)


def _coupons(rng: np.random.Generator, c: Customers, w: Window, owners: np.ndarray, times: np.ndarray,
             venue: np.ndarray, rank: np.ndarray, item_start: np.ndarray, product: np.ndarray,
             subtotal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = len(owners)
    idx = brand.COUPON_INDEX
    coupon = np.full(m, -1, np.int16)
    u = rng.random(m)
    keen = np.where(c.channel[owners] == brand.CHANNEL_INDEX["douyin"], 1.6, 1.0)
    own = np.isin(venue, [VENUE["mp"], VENUE["h5"], VENUE["pos"]])
    campaign = w.cal.coupon[w.day_of(times)]
    min_spend = np.array([cp.min_spend for cp in brand.COUPONS])

    def offer(mask: np.ndarray, code_idx: np.ndarray | int) -> None:
        codes = np.broadcast_to(code_idx, (m,))
        ok = mask & (coupon < 0) & (codes >= 0) & (subtotal >= min_spend[np.maximum(codes, 0)])
        coupon[ok] = codes[ok]

    offer(own & (rank == 0) & (c.referrer[owners] >= 0) & (u < 0.9), idx["REF-15"])
    offer(own & (rank == 0) & (u < 0.75), idx["NEW10"])
    offer(own & (u < 0.45 * keen), campaign)
    offer((venue == VENUE["delivery"]) & (u < 0.5), idx["MT-5"])
    drinks = np.array([p.category == "drink" for p in brand.PRODUCTS])
    lead = item_start[:-1]
    two = (np.diff(item_start) >= 2) & drinks[np.maximum(product[lead], 0)] & (product[lead] >= 0)
    two[two] &= drinks[product[lead[two] + 1]]
    offer(own & two & (u < 0.12 * keen), idx["BOGO-HALF"])
    offer(own & (u < 0.25 * keen), idx["MAN50-8"])
    fixed = np.array([cp.discount for cp in brand.COUPONS])
    discount = np.where(coupon >= 0, fixed[np.maximum(coupon, 0)], 0)
    bogo = np.flatnonzero(coupon == idx["BOGO-HALF"])
    pair = np.minimum(_item_prices(product[lead[bogo]]), _item_prices(product[lead[bogo] + 1]))
    discount[bogo] = pair // 2
    return coupon, discount.astype(np.int64)


def _refunds(rng: np.random.Generator, w: Window, times: np.ndarray, venue: np.ndarray,
             item_start: np.ndarray, product: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = len(times)
    names = (*brand.VENUES, "douyin")
    rate = np.array([brand.REFUND_RATE[v] for v in names])[venue]
    refunded = rng.random(m) < rate
    delay = np.where(venue == VENUE["douyin"], rng.exponential(4 * DAY, m), rng.exponential(5 * HOUR, m))
    refund_t = np.where(refunded, times + 300 + delay.astype(np.int64), -1)
    refund_t[refund_t >= w.end_t] = -1
    first_price = _item_prices(product[item_start[:-1]]) if m else np.zeros(0, np.int64)
    partial = (rng.random(m) < 0.2) & (first_price < total)
    amount = np.where(partial, first_price, 0)
    return refund_t, amount.astype(np.int64)
