"""Realistic Segment messages for the ingestion benchmarks (deterministic for a seed)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

EVENTS = [
    ("Product Viewed", 0.45), ("Product Added", 0.15), ("Checkout Started", 0.06),
    ("Coupon Applied", 0.03), ("Order Completed", 0.04), ("Signed In", 0.07), ("Checked In", 0.05),
]


def message(rng: random.Random, users: int, now: datetime) -> dict:
    """One message like a shop's web/app SDK sends: ~70% track, 20% page, 10% identify."""
    uid = rng.randrange(users)
    ts = (now - timedelta(seconds=rng.randrange(86_400))).isoformat()
    common = {
        "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
        "anonymousId": f"anon-{uid}",
        "originalTimestamp": ts,
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "campaign": {"source": rng.choice(["wechat", "douyin", "xiaohongshu", "store_qr"]),
                         "medium": "social", "name": "autumn"},
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0",
            "ip": "10.0.0.1", "locale": "zh-CN",
        },
    }
    if uid % 3:
        common["userId"] = f"user-{uid}"
    roll = rng.random()
    if roll < 0.1:
        return {**common, "type": "identify", "userId": f"user-{uid}",
                "traits": {"phone": f"13{uid % 10}{uid:08d}"[:11], "gender": rng.choice(["f", "m"]),
                           "city": rng.choice(["上海", "杭州", "苏州"]), "member_level": "silver"}}
    if roll < 0.3:
        return {**common, "type": "page", "name": rng.choice(["Home", "Category", "Product"]),
                "properties": {"path": "/p/123", "title": "新品上市", "url": "https://shop.example/p/123"}}
    name = rng.choices([e for e, _w in EVENTS], [w for _e, w in EVENTS])[0]
    props = {"product_id": f"sku-{rng.randrange(500)}", "price": round(rng.uniform(9, 399), 2),
             "category": rng.choice(["tea", "bakery", "gift"]), "quantity": rng.randint(1, 3)}
    if name == "Order Completed":
        props = {"order_id": str(uuid.UUID(int=rng.getrandbits(128))), "total": round(rng.uniform(20, 500), 2),
                 "currency": "CNY", "products": [props], "store": f"S{rng.randrange(8)}"}
    return {**common, "type": "track", "event": name, "properties": props}


def batches(n_batches: int, size: int = 100, users: int = 50_000, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [{"batch": [message(rng, users, now) for _ in range(size)], "sentAt": now.isoformat()}
            for _ in range(n_batches)]
