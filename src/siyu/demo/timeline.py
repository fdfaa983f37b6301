"""Every visit of every demo customer, in time order.

A *session* is a burst of messages from one customer at one moment: a first
visit, a sign-up, an order, a refund, a browse, a check-in, an official-account
follow, an invitation, a login on a second device. ``render.py`` turns each
into the Segment or Sensors messages its app would send.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from siyu.demo import brand
from siyu.demo.population import DAY, Customers, Orders, Params, Window, sample_times

KINDS = ("acquire", "signup", "order", "refund", "browse", "checkin", "follow", "invite", "device2")
K = {name: i for i, name in enumerate(KINDS)}
SAME_VISIT_S = 1_800  # a sign-up this soon after arriving happens in the first visit


@dataclass
class Timeline:
    t: np.ndarray
    cust: np.ndarray
    kind: np.ndarray
    aux: np.ndarray  # order index for orders and refunds, the invitee for invites, else -1

    def __len__(self) -> int:
        return len(self.t)


def timeline(rng: np.random.Generator, c: Customers, o: Orders, w: Window, p: Params) -> Timeline:
    """All sessions, sorted by time."""
    everyone = np.arange(c.n, dtype=np.int32)
    plat = np.array(brand.PLATFORMS)[c.platform]
    oa = c.channel == brand.CHANNEL_INDEX["wechat_oa"]
    arrives_buying = c.voucher | (plat == "delivery")
    visits = ~arrives_buying & ~oa
    signs_in_visit = visits & (c.member_t >= 0) & (c.member_t - c.acq_t < SAME_VISIT_S)
    later_signup = (c.member_t >= 0) & ~signs_in_visit
    refunded = np.flatnonzero(o.refund_t >= 0)
    parts = [
        (c.acq_t[visits], everyone[visits], "acquire", None),
        (c.member_t[later_signup], everyone[later_signup], "signup", None),
        (o.t, o.cust, "order", np.arange(len(o), dtype=np.int32)),
        (o.refund_t[refunded], o.cust[refunded], "refund", refunded.astype(np.int32)),
        (c.follow_t[c.follow_t >= 0], everyone[c.follow_t >= 0], "follow", None),
        (c.device2_t[c.device2_t >= 0], everyone[c.device2_t >= 0], "device2", None),
        _invites(rng, c),
        _browses(rng, c, w, p, arrives_buying),
        _checkins(rng, c, w, p),
    ]
    t = np.concatenate([part[0] for part in parts])
    cust = np.concatenate([part[1] for part in parts]).astype(np.int32)
    kind = np.concatenate([np.full(len(part[0]), K[part[2]], np.int8) for part in parts])
    aux = np.concatenate([part[3] if part[3] is not None else np.full(len(part[0]), -1, np.int32)
                          for part in parts])
    order = np.lexsort((kind, t))
    return Timeline(t=t[order], cust=cust[order], kind=kind[order], aux=aux[order])


def _invites(rng: np.random.Generator, c: Customers) -> tuple:
    invited = np.flatnonzero(c.referrer >= 0).astype(np.int32)
    inviter = c.referrer[invited]
    t = c.acq_t[invited] - (rng.exponential(1.0, invited.size) * DAY).astype(np.int64)
    t = np.maximum(t, c.member_t[inviter] + 60)
    t = np.minimum(t, c.acq_t[invited] - 60)
    return t, inviter, "invite", invited


def _browses(rng: np.random.Generator, c: Customers, w: Window, p: Params, arrives_buying: np.ndarray) -> tuple:
    """Visits without a purchase: keen buyers browse more; delivery-only customers not at all."""
    lo = np.where(arrives_buying, c.member_t, c.acq_t)
    ok = lo >= 0
    lo = np.where(ok, lo + 60, 0)
    days = np.where(ok, (c.active_end - lo) / DAY, 0).clip(0)
    n = rng.poisson((p.browse_base + p.browse_per_purchase * c.rate) * days)
    who = np.repeat(np.arange(c.n, dtype=np.int32), n)
    t = sample_times(rng, w, lo[who], np.maximum(c.active_end[who], lo[who] + 60))
    return t, who, "browse", None


def _checkins(rng: np.random.Generator, c: Customers, w: Window, p: Params) -> tuple:
    """Mini-program members who collect daily check-in points."""
    keen = (c.member_t >= 0) & (rng.random(c.n) < np.where(c.platform == 0, p.checkin_share, p.checkin_share / 3))
    rate = rng.gamma(2.0, 0.1, c.n)
    days = np.where(keen, (c.active_end - c.member_t) / DAY, 0).clip(0)
    n = rng.poisson(rate * days)
    who = np.repeat(np.arange(c.n, dtype=np.int32), n)
    lo = c.member_t[who] + 120
    t = sample_times(rng, w, lo, np.maximum(c.active_end[who], lo + 60))
    return t, who, "checkin", None
