"""Sessions -> the raw messages each app would send (Segment dicts, Sensors records).

Sources, as a real brand would wire them:

- ``mini-program`` (Sensors): the WeChat ordering mini program; anonymous until
  the customer authorises, then ``login_id`` plus an ``identities`` map;
- ``h5-shop`` (Segment analytics.js): the web shop that Douyin, Xiaohongshu and
  official-account links land on, with UTM parameters;
- ``pos`` (Segment, server side): store tills, member orders by member number;
- ``delivery-apps`` (Segment, server side): Meituan / Ele.me orders, keyed by phone;
- ``douyin-life`` (Segment, server side): Douyin group-buy vouchers, keyed by phone;
- ``wechat-oa`` (Segment, server side): official-account follows and article reads.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from siyu.demo import brand
from siyu.demo.population import VENUE, Customers, Orders
from siyu.demo.timeline import KINDS

SOURCES = {  # key -> (name, kind)
    "mp": ("mini-program", "sensors"),
    "h5": ("h5-shop", "segment"),
    "pos": ("pos", "segment"),
    "delivery": ("delivery-apps", "segment"),
    "douyin": ("douyin-life", "segment"),
    "oa": ("wechat-oa", "segment"),
}
VENUE_SOURCE = {VENUE["mp"]: "mp", VENUE["pos"]: "pos", VENUE["h5"]: "h5", VENUE["delivery"]: "delivery",
                VENUE["douyin"]: "douyin"}
VENUE_CHANNEL = {VENUE["mp"]: "mini_program", VENUE["pos"]: "pos", VENUE["h5"]: "h5_shop",
                 VENUE["douyin"]: "douyin"}
DELIVERY = (("meituan", "MT", "mt_"), ("eleme", "ELE", "elm_"))
CAMPAIGNS = {
    "douyin": ("douyin", "kol_video", "山茶乌龙夏日上新"),
    "xiaohongshu": ("xiaohongshu", "note", "城市探店打卡"),
}
MP_SCREENS = (("pages/index/index", "首页"), ("pages/menu/index", "点单"), ("pages/member/index", "会员中心"),
              ("pages/coupon/list", "我的优惠券"), ("pages/activity/index", "活动"))
H5_PAGES = (("/", "首页"), ("/menu", "菜单"), ("/activity", "活动专题"), ("/stores", "门店"))
ARTICLES = ("秋天的第一杯桂花龙井", "门店新开｜苏州金鸡湖", "会员日双倍积分", "中秋礼盒预售开启", "山茶乌龙的一片叶子")
LEVELS = {1: "银卡会员", 4: "金卡会员", 11: "黑金会员"}  # order rank at which the level is reached
_PRODUCTS = range(len(brand.PRODUCTS))
_PRODUCT_CUM = [float(x) for x in brand.PRODUCT_WEIGHT.cumsum()]
MP_LIB = {"$lib": "MiniProgram", "$lib_version": "1.20.4"}
H5_LIBRARY = {"library": {"name": "analytics.js", "version": "5.2.0"}, "locale": "zh-CN"}


@dataclass
class Raw:
    """One message before parsing: which source sends it, in which protocol shape."""

    source: str
    msg_type: str  # Segment type, or "sensors"
    body: dict[str, Any]
    ms: int  # event time, epoch milliseconds


@dataclass(frozen=True)
class Ids:
    user_id: str
    member_no: str
    phone: str
    name: str
    mp_anon: str
    h5_anon: str
    openid: str
    unionid: str
    oa_openid: str


def _token(key: int, person: bytes, size: int = 21) -> str:
    digest = hashlib.blake2b(key.to_bytes(8, "little"), digest_size=size, person=person).digest()
    return base64.urlsafe_b64encode(digest).decode()


def _uuid_like(key: int, person: bytes) -> str:
    h = hashlib.blake2b(key.to_bytes(8, "little"), digest_size=16, person=person).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Renderer:
    """Turns sessions into ``Raw`` messages; deterministic for a seed and a chunk of sessions."""

    def __init__(self, c: Customers, o: Orders, seed: int) -> None:
        self.c, self.o = c, o
        self.seed = seed
        self._ids: dict[int, Ids] = {}
        self._dispatch = {KINDS.index(name): getattr(self, f"_{name}") for name in KINDS}
        self.begin(0)

    # -- public --------------------------------------------------------------
    def begin(self, chunk: int) -> None:
        """Start rendering chunk ``chunk``: its randomness and message ids depend on nothing else,
        so chunks can be rendered in any process, in any order, with the same result."""
        self.rnd = random.Random(self.seed * 1_000_003 + chunk)
        self.chunk = chunk
        self.count = 0

    def session(self, kind: int, i: int, t: int, aux: int) -> list[Raw]:
        out: list[Raw] = []
        self._dispatch[kind](out, i, t * 1000 + self.rnd.randrange(1000), aux)
        return out

    # -- ids -------------------------------------------------------------------
    def ids(self, i: int) -> Ids:
        ids = self._ids.get(i)
        if ids is None:
            if len(self._ids) > 200_000:
                self._ids.clear()
            k = int(self.c.key[i])
            female = bool(self.c.female[i])
            given = brand.GIVEN_FEMALE if female else brand.GIVEN_MALE
            name = brand.SURNAMES[k % len(brand.SURNAMES)] + given[(k >> 8) % len(given)]
            if (k >> 16) % 3:
                name += given[(k >> 24) % len(given)]
            ids = Ids(
                user_id=f"u{k:x}", member_no=f"CY{int(self.c.member_no[i])}", phone=str(int(self.c.phone[i])),
                name=name, mp_anon=_uuid_like(k, b"mp-anon"), h5_anon=_uuid_like(k, b"h5-anon"),
                openid="o" + _token(k, b"mp-openid")[:27], unionid="o" + _token(k, b"unionid")[:27],
                oa_openid="o" + _token(k, b"oa-openid")[:27],
            )
            self._ids[i] = ids
        return ids

    def _member(self, i: int, ms: int) -> bool:
        m = int(self.c.member_t[i])
        return 0 <= m * 1000 <= ms

    def _traits(self, i: int) -> dict[str, Any]:
        ids, c = self.ids(i), self.c
        birth = datetime.fromtimestamp(int(c.birth[i]) * 86_400, UTC).date()
        traits = {"name": ids.name, "phone": ids.phone, "gender": "female" if c.female[i] else "male",
                  "birthday": birth.isoformat(), "city": brand.STORES[c.store[i]].city,
                  "home_store": brand.STORES[c.store[i]].code, "member_no": ids.member_no}
        if c.email[i]:
            traits["email"] = self._email(i)
        return traits

    def _email(self, i: int) -> str:
        k = int(self.c.key[i])
        if k % 5 < 3:
            return f"{10_000_000 + k % 3_000_000_000}@qq.com"
        return f"cy{k % 10**8:x}@{brand.EMAIL_DOMAINS[k % len(brand.EMAIL_DOMAINS)]}"

    # -- message builders ------------------------------------------------------
    def _next(self) -> int:
        self.count += 1
        return self.chunk * 10_000_000 + self.count

    def _sensors(self, out: list[Raw], i: int, ms: int, rtype: str, event: str | None,
                 props: dict[str, Any], login: bool, identities: dict[str, str] | None = None) -> None:
        ids = self.ids(i)
        body: dict[str, Any] = {"type": rtype, "time": ms, "_track_id": self._next(), "lib": MP_LIB,
                                "properties": props}
        if event:
            body["event"] = event
        if login:
            body.update(distinct_id=ids.user_id, login_id=ids.user_id, anonymous_id=ids.mp_anon)
            body["identities"] = identities or {"$identity_mp_openid": ids.openid}
        else:
            body["distinct_id"] = ids.mp_anon
            body["identities"] = identities or self._anonymous_identities(i, ms)
        out.append(Raw("mp", "sensors", body, ms))

    def _anonymous_identities(self, i: int, ms: int) -> dict[str, str]:
        ids = self.ids(i)
        # WeChat reveals the unionid to a mini program once the user follows the brand's official account.
        if 0 <= self.c.follow_t[i] * 1000 <= ms:
            return {"$identity_mp_openid": ids.openid, "$identity_mp_unionid": ids.unionid}
        return {"$identity_mp_openid": ids.openid}

    def _segment(self, out: list[Raw], source: str, msg_type: str, ms: int, body: dict[str, Any]) -> None:
        body["messageId"] = f"d{self.seed}-{self._next():x}"  # unique: chunk and position in it
        body["timestamp"] = _iso(ms)
        out.append(Raw(source, msg_type, body, ms))

    def _h5(self, out: list[Raw], i: int, ms: int, msg_type: str, extra: dict[str, Any], login: bool,
            anon: str | None = None) -> None:
        ids = self.ids(i)
        body = {"anonymousId": anon or ids.h5_anon, "context": H5_LIBRARY, **extra}
        if login:
            body["userId"] = ids.user_id
        self._segment(out, "h5", msg_type, ms, body)

    # -- pieces of sessions ------------------------------------------------------
    def _browse_products(self, out: list[Raw], i: int, ms: int, n: int, mp: bool, login: bool) -> int:
        for _ in range(n):
            ms += self.rnd.randrange(4_000, 40_000)
            props = _product_props(self.rnd.choices(_PRODUCTS, cum_weights=_PRODUCT_CUM)[0])
            if mp:
                self._sensors(out, i, ms, "track", "Product Viewed", props, login)
            else:
                self._h5(out, i, ms, "track", {"event": "Product Viewed", "properties": props}, login)
        return ms

    def _mp_open(self, out: list[Raw], i: int, ms: int, login: bool, props: dict[str, Any] | None = None,
                 screens: int = 1) -> int:
        self._sensors(out, i, ms, "track", "$MPLaunch", props or {}, login)
        for _ in range(screens):
            ms += self.rnd.randrange(2_000, 20_000)
            path, title = self.rnd.choice(MP_SCREENS)
            self._sensors(out, i, ms, "track", "$MPViewScreen", {"$url_path": path, "$title": title}, login)
        return ms

    def _mp_signup(self, out: list[Raw], i: int, ms: int) -> int:
        ids = self.ids(i)
        ms += self.rnd.randrange(10_000, 60_000)
        identities = {"$identity_login_id": ids.user_id, "$identity_mp_openid": ids.openid,
                      "$identity_mp_unionid": ids.unionid, "$identity_mobile": ids.phone,
                      "$identity_member_no": ids.member_no}
        if self.c.email[i]:
            identities["$identity_email"] = self._email(i)
        body = {"type": "track_signup", "event": "$SignUp", "time": ms, "_track_id": self._next(),
                "distinct_id": ids.user_id, "login_id": ids.user_id, "original_id": ids.mp_anon,
                "identities": identities, "lib": MP_LIB, "properties": {"member_no": ids.member_no}}
        out.append(Raw("mp", "sensors", body, ms))
        ms += self.rnd.randrange(500, 3_000)
        self._sensors(out, i, ms, "profile_set", None, self._traits(i), True)
        return ms

    def _h5_identify(self, out: list[Raw], i: int, ms: int, anon: str | None = None) -> int:
        ms += self.rnd.randrange(10_000, 60_000)
        self._h5(out, i, ms, "identify", {"traits": self._traits(i)}, True, anon)
        return ms

    def _first_touch(self, i: int) -> dict[str, Any]:
        ch = brand.CHANNELS[self.c.channel[i]].key
        store = brand.STORES[self.c.store[i]].code
        if ch == "store_qr":
            return {"$scene": 1047, "qr_scene": f"{store}-table", "store": store, "channel": ch}
        if ch == "referral":
            ref = int(self.c.referrer[i])
            return {"$scene": 1007, "referrer_code": _invite_code(ref), "channel": ch}
        if ch == "wechat_oa":
            return {"$scene": 1035, "channel": ch}
        return {"$scene": self.rnd.choice((1001, 1005, 1037)), "channel": "mini_program"}

    # -- sessions ------------------------------------------------------------------
    def _acquire(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        c = self.c
        signs = 0 <= int(c.member_t[i]) - int(c.acq_t[i]) < 1_800
        if brand.PLATFORMS[c.platform[i]] == "mp":
            ms = self._mp_open(out, i, ms, False, self._first_touch(i), screens=self.rnd.randint(1, 3))
            ms = self._browse_products(out, i, ms, self.rnd.randint(0, 3), True, False)
            if signs:
                self._mp_signup(out, i, ms)
            return
        source, medium, campaign = CAMPAIGNS[brand.CHANNELS[c.channel[i]].key]
        self._h5(out, i, ms, "page", {"name": "活动落地页", "properties": {"path": "/landing"},
                                      "context": {**H5_LIBRARY, "campaign": {"source": source, "medium": medium,
                                                                             "name": campaign}}}, False)
        ms = self._browse_products(out, i, ms, self.rnd.randint(1, 4), False, False)
        if signs:
            self._h5_identify(out, i, ms)

    def _signup(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        c = self.c
        if brand.PLATFORMS[c.platform[i]] == "h5" or (brand.PLATFORMS[c.platform[i]] == "douyin"
                                                      and not c.voucher[i]):
            self._h5(out, i, ms, "page", {"name": "会员注册", "properties": {"path": "/member/join"}}, False)
            self._h5_identify(out, i, ms)
            return
        oa = c.channel[i] == brand.CHANNEL_INDEX["wechat_oa"]
        props = {"$scene": 1035, "channel": "wechat_oa"} if oa else {"$scene": 1089, "channel": "mini_program"}
        ms = self._mp_open(out, i, ms, False, props, screens=1)
        self._mp_signup(out, i, ms)

    def _browse(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        c = self.c
        login = self._member(i, ms)
        if c.follow_t[i] >= 0 and c.follow_t[i] * 1000 <= ms and self.rnd.random() < 0.25:
            self._oa(out, i, ms, "Article Read", {"article": self.rnd.choice(ARTICLES)})
            return
        plat = brand.PLATFORMS[c.platform[i]]
        if plat == "h5" or (plat == "douyin" and not c.voucher[i]) or (login and self.rnd.random() < 0.1):
            page, title = self.rnd.choice(H5_PAGES)
            self._h5(out, i, ms, "page", {"name": title, "properties": {"path": page}}, login)
            self._browse_products(out, i, ms, self.rnd.randint(1, 4), False, login)
            return
        ms = self._mp_open(out, i, ms, login, screens=self.rnd.randint(1, 3))
        self._browse_products(out, i, ms, self.rnd.randint(0, 4), True, login)

    def _checkin(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        ms = self._mp_open(out, i, ms, True, screens=0)
        self._sensors(out, i, ms + self.rnd.randrange(2_000, 9_000), "track", "Checked In", {"points": 2}, True)

    def _follow(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        first = self.c.channel[i] == brand.CHANNEL_INDEX["wechat_oa"]
        store = brand.STORES[self.c.store[i]].code
        if first:
            props = {"qr_scene": f"oa-poster-{store}", "store": store, "channel": "wechat_oa"}
        elif self.c.member_t[i] < 0 or self.c.member_t[i] > self.c.follow_t[i]:
            # Delivery and voucher customers find the account through the QR code on the bag.
            props = {"qr_scene": "oa-delivery-bag", "channel": "wechat_oa"}
        else:
            props = {"via": self.rnd.choice(("menu", "article", "order_page"))}
        self._oa(out, i, ms, "Followed Official Account", props)

    def _oa(self, out: list[Raw], i: int, ms: int, event: str, props: dict[str, Any]) -> None:
        ids = self.ids(i)
        self._segment(out, "oa", "track", ms, {
            "anonymousId": ids.oa_openid, "event": event, "properties": props,
            "context": {"traits": {"wechat_openid": ids.oa_openid, "unionid": ids.unionid}},
        })

    def _invite(self, out: list[Raw], i: int, ms: int, _invitee: int) -> None:
        self._sensors(out, i, ms, "track", "Invite Shared",
                      {"invite_code": _invite_code(i), "share_to": "wechat_friend"}, True)

    def _device2(self, out: list[Raw], i: int, ms: int, _aux: int) -> None:
        anon = _uuid_like(int(self.c.key[i]), b"second-device")
        for _ in range(self.rnd.randint(1, 3)):
            page, title = self.rnd.choice(H5_PAGES)
            self._h5(out, i, ms, "page", {"name": title, "properties": {"path": page}}, False, anon)
            ms += self.rnd.randrange(5_000, 60_000)
        self._h5_identify(out, i, ms, anon)

    # -- orders and refunds ------------------------------------------------------------
    def _order(self, out: list[Raw], i: int, ms: int, k: int) -> None:
        o, venue = self.o, int(self.o.venue[k])
        products = self._products(k)
        props = self._order_props(k, products)
        if venue in (VENUE["mp"], VENUE["h5"]):
            ms = self._checkout(out, i, ms, k, products, venue == VENUE["mp"])
        if venue == VENUE["mp"]:
            self._sensors(out, i, ms, "track", "Order Completed", props, True)
        elif venue == VENUE["h5"]:
            self._h5(out, i, ms, "track", {"event": "Order Completed", "properties": props}, True)
        elif venue == VENUE["pos"]:
            self._pos(out, i, ms, k, props)
        else:
            self._phone_order(out, i, ms, k, venue, "Order Completed", props)
        if venue != VENUE["douyin"] and self._member(i, ms):
            ms += self.rnd.randrange(1_000, 5_000)
            points = {"points": int(o.total[k]) // 100}
            self._sensors(out, i, ms, "profile_increment", None, points, True)
            level = LEVELS.get(int(o.rank[k]))
            if level:
                self._sensors(out, i, ms + 200, "profile_set", None, {"member_level": level}, True)

    def _checkout(self, out: list[Raw], i: int, ms: int, k: int, products: list[dict], mp: bool) -> int:
        if mp:
            ms = self._mp_open(out, i, ms, True, screens=1)
        else:
            self._h5(out, i, ms, "page", {"name": "菜单", "properties": {"path": "/menu"}}, True)
        steps: list[tuple[str, dict[str, Any]]] = []
        for p in products:
            steps.append(("Product Viewed", p))
            steps.append(("Product Added", {**p, "quantity": p["quantity"]}))
        total = {"order_id": self._order_id(k), "value": int(self.o.subtotal[k]) / 100, "currency": "CNY"}
        steps.append(("Checkout Started", total))
        coupon = int(self.o.coupon[k])
        if coupon >= 0:
            steps.append(("Coupon Applied", {"coupon": brand.COUPONS[coupon].code,
                                             "discount": int(self.o.discount[k]) / 100, "order_id": total["order_id"]}))
        for event, props in steps:
            ms += self.rnd.randrange(3_000, 30_000)
            if mp:
                self._sensors(out, i, ms, "track", event, props, True)
            else:
                self._h5(out, i, ms, "track", {"event": event, "properties": props}, True)
        return ms + self.rnd.randrange(5_000, 40_000)

    def _pos(self, out: list[Raw], i: int, ms: int, k: int, props: dict[str, Any]) -> None:
        ids = self.ids(i)
        body: dict[str, Any] = {"userId": ids.user_id, "event": "Order Completed", "properties": props}
        wrong = int(self.o.wrong_phone[k])
        if wrong >= 0:  # the cashier typed another member's phone: a conflict to review
            body["context"] = {"traits": {"phone": self.ids(wrong).phone}}
        self._segment(out, "pos", "track", ms, body)

    def _phone_order(self, out: list[Raw], i: int, ms: int, k: int, venue: int, event: str,
                     props: dict[str, Any]) -> None:
        ids = self.ids(i)
        key = int(self.c.key[i])
        if venue == VENUE["douyin"]:
            source, anon = "douyin", f"dy_{key % 16**12:012x}"
        else:
            source, anon = "delivery", DELIVERY[self.c.delivery_app[i]][2] + str(key % 10**10)
        self._segment(out, source, "track", ms, {
            "anonymousId": anon, "event": event, "properties": props,
            "context": {"traits": {"phone": ids.phone}},
        })

    def _refund(self, out: list[Raw], i: int, ms: int, k: int) -> None:
        venue = int(self.o.venue[k])
        props: dict[str, Any] = {"order_id": self._order_id(k), "currency": "CNY",
                                 "reason": self.rnd.choice(("出餐慢", "口味不符", "下错单", "门店缺货"))}
        if self.o.refund_amount[k]:
            props["total"] = int(self.o.refund_amount[k]) / 100
        if venue == VENUE["mp"]:
            self._sensors(out, i, ms, "track", "Order Refunded", props, True)
        elif venue == VENUE["h5"]:
            self._h5(out, i, ms, "track", {"event": "Order Refunded", "properties": props}, True)
        elif venue == VENUE["pos"]:
            self._segment(out, "pos", "track", ms, {"userId": self.ids(i).user_id, "event": "Order Refunded",
                                                    "properties": props})
        else:
            self._phone_order(out, i, ms, k, venue, "Order Refunded", props)

    def _products(self, k: int) -> list[dict[str, Any]]:
        o = self.o
        items = []
        for j in range(int(o.item_start[k]), int(o.item_start[k + 1])):
            product = int(o.product[j])
            props = _product_props(product) if product >= 0 else _voucher_props()
            props["quantity"] = int(o.qty[j])
            items.append(props)
        return items

    def _order_id(self, k: int) -> str:
        venue = int(self.o.venue[k])
        day = datetime.fromtimestamp(int(self.o.t[k]) + brand.UTC_OFFSET_S, UTC).strftime("%y%m%d")
        if venue == VENUE["delivery"]:
            prefix = DELIVERY[self.c.delivery_app[self.o.cust[k]]][1]
        else:
            prefix = {VENUE["mp"]: "CY", VENUE["pos"]: "POS", VENUE["h5"]: "WEB", VENUE["douyin"]: "DY"}[venue]
        return f"{prefix}{day}{k:08d}"

    def _order_props(self, k: int, products: list[dict[str, Any]]) -> dict[str, Any]:
        o, c = self.o, self.c
        venue, i = int(o.venue[k]), int(o.cust[k])
        channel = VENUE_CHANNEL.get(venue) or DELIVERY[c.delivery_app[i]][0]
        store = brand.STORES[c.store[i]] if self.rnd.random() < 0.85 else self.rnd.choice(brand.STORES)
        props: dict[str, Any] = {
            "order_id": self._order_id(k), "total": int(o.total[k]) / 100, "subtotal": int(o.subtotal[k]) / 100,
            "discount": int(o.discount[k]) / 100, "currency": "CNY", "products": products,
            "store": store.code, "channel": channel,
            "fulfilment": "delivery" if venue == VENUE["delivery"] else ("voucher" if venue == VENUE["douyin"]
                                                                          else "pickup"),
        }
        coupon = int(o.coupon[k])
        if coupon >= 0:
            props["coupon"] = brand.COUPONS[coupon].code
        return props


def _product_props(index: int) -> dict[str, Any]:
    p = brand.PRODUCTS[index]
    return {"product_id": p.sku, "sku": p.sku, "name": p.name, "category": p.category,
            "price": p.price / 100, "currency": "CNY"}


def _voucher_props() -> dict[str, Any]:
    v = brand.VOUCHER
    return {"product_id": v.sku, "sku": v.sku, "name": v.name, "category": v.category,
            "price": v.price / 100, "currency": "CNY"}


def _invite_code(i: int) -> str:
    return f"INV{np.base_repr(i * 7919 + 104_729, 36)}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
