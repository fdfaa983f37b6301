"""The demo brand: 山茶集 Camellia Tea House, a tea-drink and bakery chain in the Yangtze delta.

Everything here is plain data (stores, channels, products, coupons, the
calendar), so docs/demo.md can describe it and tests can check against it.
Money is in fen (integer hundredths of a yuan) so totals add up exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

BRAND = "山茶集 Camellia Tea House"
UTC_OFFSET_S = 8 * 3600  # Asia/Shanghai has no daylight saving


@dataclass(frozen=True)
class Store:
    code: str
    city: str
    name: str
    weight: float  # share of customers whose home store this is


STORES: tuple[Store, ...] = (
    Store("SH01", "上海", "静安嘉里中心店", 0.17),
    Store("SH02", "上海", "徐家汇港汇店", 0.14),
    Store("SH03", "上海", "陆家嘴正大店", 0.13),
    Store("SH04", "上海", "五角场合生汇店", 0.10),
    Store("HZ01", "杭州", "湖滨银泰in77店", 0.15),
    Store("HZ02", "杭州", "滨江龙湖天街店", 0.09),
    Store("SZ01", "苏州", "观前街店", 0.12),
    Store("SZ02", "苏州", "金鸡湖圆融店", 0.10),
)


@dataclass(frozen=True)
class Channel:
    """An acquisition channel and the customers it tends to bring.

    ``rate`` scales the purchase rate, ``churn`` is the (a, b) of the Beta the
    per-customer drop-out probability is drawn from, ``convert`` the share of
    sign-ups who ever buy, ``basket`` scales the items per order.
    """

    key: str
    label: str
    share: float
    rate: float
    churn: tuple[float, float]
    convert: float
    basket: float
    platform: str  # mp (mini program), h5 (web shop), delivery (delivery apps), douyin


CHANNELS: tuple[Channel, ...] = (
    Channel("store_qr", "门店扫码", 0.28, 1.25, (1.2, 9.0), 0.92, 1.0, "mp"),
    Channel("wechat_oa", "公众号", 0.13, 1.10, (1.2, 7.0), 0.80, 1.0, "mp"),
    Channel("mini_program", "小程序分享/搜索", 0.10, 1.00, (1.2, 6.0), 0.78, 1.0, "mp"),
    Channel("douyin", "抖音", 0.16, 0.70, (1.5, 3.5), 0.85, 0.9, "douyin"),
    Channel("xiaohongshu", "小红书", 0.10, 0.90, (1.3, 5.0), 0.70, 1.2, "h5"),
    Channel("meituan", "美团外卖", 0.10, 0.95, (1.3, 4.5), 1.00, 1.6, "delivery"),
    Channel("eleme", "饿了么", 0.05, 0.85, (1.4, 4.0), 1.00, 1.5, "delivery"),
    Channel("referral", "老带新", 0.08, 1.20, (1.2, 10.0), 0.90, 1.0, "mp"),
)
CHANNEL_INDEX = {c.key: i for i, c in enumerate(CHANNELS)}

# Where an order is placed, by the customer's platform: mini program, POS in store,
# web shop, delivery app. Rows follow PLATFORMS, columns VENUES.
VENUES = ("mp", "pos", "h5", "delivery")
PLATFORMS = ("mp", "h5", "delivery", "douyin")
VENUE_MIX = np.array([
    [0.66, 0.28, 0.00, 0.06],
    [0.22, 0.30, 0.42, 0.06],
    [0.15, 0.10, 0.00, 0.75],
    [0.30, 0.45, 0.20, 0.05],
])
REFUND_RATE = {"mp": 0.015, "pos": 0.005, "h5": 0.02, "delivery": 0.04, "douyin": 0.06}


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    category: str
    price: int  # fen
    season: str = ""  # "", "mid_autumn", "cny", "summer", "autumn"
    weight: float = 1.0  # popularity when the product is on the menu


PRODUCTS: tuple[Product, ...] = (
    Product("CY-D01", "山茶乌龙拿铁", "drink", 2200, weight=1.5),
    Product("CY-D02", "桂花龙井奶绿", "drink", 1900, weight=1.2),
    Product("CY-D03", "茉莉鲜柠茶", "drink", 1600, weight=1.0),
    Product("CY-D04", "芒果椰椰冻", "drink", 2400, "summer", 1.1),
    Product("CY-D05", "白桃乌龙气泡", "drink", 2100, "summer", 0.8),
    Product("CY-D06", "黑糖珍珠鲜奶", "drink", 1800, weight=1.0),
    Product("CY-D07", "生椰冷萃", "drink", 2300, weight=0.9),
    Product("CY-D08", "桂花酒酿圆子", "drink", 2600, "autumn", 0.9),
    Product("CY-B01", "肉松小贝", "bakery", 1200, weight=1.2),
    Product("CY-B02", "葡式蛋挞(2只)", "bakery", 1400, weight=1.1),
    Product("CY-B03", "海盐芝士贝果", "bakery", 1600, weight=0.8),
    Product("CY-B04", "抹茶千层", "bakery", 3200, weight=0.6),
    Product("CY-B05", "伯爵红茶戚风", "bakery", 2800, weight=0.5),
    Product("CY-G01", "山茶乌龙茶叶礼盒", "gift", 16800, weight=0.10),
    Product("CY-G02", "中秋月饼礼盒", "gift", 23800, "mid_autumn", 0.0),
    Product("CY-G03", "新春茶礼盒", "gift", 19800, "cny", 0.0),
    Product("CY-M01", "品牌随行杯", "merch", 5900, weight=0.12),
)
SKU_INDEX = {p.sku: i for i, p in enumerate(PRODUCTS)}
VOUCHER = Product("CY-V01", "抖音双杯套餐券", "voucher", 2990)
PRODUCT_PRICE = np.array([p.price for p in PRODUCTS], dtype=np.int64)
PRODUCT_WEIGHT = np.array([p.weight for p in PRODUCTS]) / sum(p.weight for p in PRODUCTS)


@dataclass(frozen=True)
class Coupon:
    code: str
    label: str
    min_spend: int  # fen
    discount: int  # fen; 0 means "second drink half price"


COUPONS: tuple[Coupon, ...] = (
    Coupon("NEW10", "新人立减10元", 3000, 1000),
    Coupon("MAN50-8", "满50减8", 5000, 800),
    Coupon("BOGO-HALF", "第二杯半价", 0, 0),
    Coupon("REF-15", "邀请有礼15元券", 4000, 1500),
    Coupon("618-15", "618 满80减15", 8000, 1500),
    Coupon("D11-20", "双11 满100减20", 10000, 2000),
    Coupon("MID-AUTUMN-30", "中秋礼盒减30", 15000, 3000),
    Coupon("CNY-30", "新春礼盒减30", 15000, 3000),
    Coupon("MT-5", "外卖满30减5", 3000, 500),
)
COUPON_INDEX = {c.code: i for i, c in enumerate(COUPONS)}

# Lunar festivals (no library computes them offline; extend the table as years pass).
SPRING_FESTIVAL = {2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17),
                   2027: date(2027, 2, 6), 2028: date(2028, 1, 26), 2029: date(2029, 2, 13),
                   2030: date(2030, 2, 3)}
MID_AUTUMN = {2024: date(2024, 9, 17), 2025: date(2025, 10, 6), 2026: date(2026, 9, 25),
              2027: date(2027, 9, 15), 2028: date(2028, 10, 3), 2029: date(2029, 9, 22),
              2030: date(2030, 9, 12)}
QIXI = {2024: date(2024, 8, 10), 2025: date(2025, 8, 29), 2026: date(2026, 8, 19),
        2027: date(2027, 8, 8), 2028: date(2028, 8, 26), 2029: date(2029, 8, 16), 2030: date(2030, 8, 5)}

# Cold drinks sell in summer; January-February are slow outside the New Year gift rush.
MONTH_FACTOR = np.array([0.82, 0.80, 0.90, 0.98, 1.05, 1.12, 1.22, 1.24, 1.10, 1.02, 0.98, 0.92])
WEEKDAY_FACTOR = np.array([0.90, 0.88, 0.92, 0.95, 1.08, 1.18, 1.09])  # Monday first
# Share of a day's visits per local hour: lunch, afternoon tea and evening peaks.
HOUR_WEIGHTS = np.array([0.4, 0.2, 0.1, 0.05, 0.05, 0.1, 0.3, 1.2, 2.0, 2.2, 3.0, 5.5, 6.0, 4.2,
                         4.8, 5.6, 5.0, 3.6, 3.8, 4.4, 4.2, 3.0, 1.8, 0.9])


@dataclass(frozen=True)
class Calendar:
    """Per-day factors for the window ``[start, start + days)`` (local dates)."""

    start: date
    demand: np.ndarray  # purchase intensity
    acquisition: np.ndarray  # new-customer intensity
    coupon: np.ndarray  # index into COUPONS of the day's campaign coupon, -1 if none
    gift_season: np.ndarray  # index into PRODUCTS of the season's gift box, -1 if none
    summer: np.ndarray  # bool: summer drinks on the menu
    autumn: np.ndarray  # bool: autumn drinks on the menu


def _bump(days: np.ndarray, peak: int, amplitude: float, before: float, after: float) -> np.ndarray:
    """1 + a smooth peak ``amplitude`` at day ``peak`` (ramping ``before`` days up, ``after`` down)."""
    d = days - peak
    width = np.where(d < 0, before, after)
    return 1 + amplitude * np.exp(-0.5 * (d / width) ** 2)


def calendar(start: date, days: int) -> Calendar:
    """The brand's seasonality over the window: months, weekdays and festivals."""
    dates = [start + timedelta(days=i) for i in range(days)]
    idx = np.arange(days)
    demand = MONTH_FACTOR[[d.month - 1 for d in dates]] * WEEKDAY_FACTOR[[d.weekday() for d in dates]]
    acquisition = np.ones(days)
    coupon = np.full(days, -1)
    gift = np.full(days, -1)
    for year in range(dates[0].year - 1, dates[-1].year + 2):
        _festivals(year, start, idx, demand, acquisition, coupon, gift)
    months = np.array([d.month for d in dates])
    return Calendar(start=start, demand=demand, acquisition=acquisition * np.sqrt(demand),
                    coupon=coupon, gift_season=gift, summer=(months >= 5) & (months <= 9),
                    autumn=(months >= 9) & (months <= 11))


def _festivals(year: int, start: date, idx: np.ndarray, demand: np.ndarray, acquisition: np.ndarray,
               coupon: np.ndarray, gift: np.ndarray) -> None:
    def at(d: date) -> int:
        return (d - start).days

    def window(first: date, last: date) -> np.ndarray:
        return (idx >= at(first)) & (idx <= at(last))

    # 618 and Double 11: platform shopping festivals, with coupons and new-customer pushes.
    demand *= _bump(idx, at(date(year, 6, 18)), 0.6, 6, 1.5)
    acquisition *= _bump(idx, at(date(year, 6, 18)), 0.9, 8, 2)
    coupon[window(date(year, 6, 1), date(year, 6, 18))] = COUPON_INDEX["618-15"]
    demand *= _bump(idx, at(date(year, 11, 11)), 1.3, 5, 1.2)
    acquisition *= _bump(idx, at(date(year, 11, 11)), 1.6, 7, 2)
    coupon[window(date(year, 11, 1), date(year, 11, 11))] = COUPON_INDEX["D11-20"]
    # 520 and Qixi: couples buy two drinks; National Day: Hangzhou tourists.
    demand *= _bump(idx, at(date(year, 5, 20)), 0.45, 1.5, 0.8)
    if year in QIXI:
        demand *= _bump(idx, at(QIXI[year]), 0.5, 1.5, 0.8)
    demand *= _bump(idx, at(date(year, 10, 3)), 0.25, 2, 3)
    if year in MID_AUTUMN:
        day = MID_AUTUMN[year]
        demand *= _bump(idx, at(day) - 3, 0.35, 10, 2)
        coupon[window(day - timedelta(days=21), day)] = COUPON_INDEX["MID-AUTUMN-30"]
        gift[window(day - timedelta(days=28), day)] = SKU_INDEX["CY-G02"]
    if year in SPRING_FESTIVAL:
        day = SPRING_FESTIVAL[year]
        demand *= _bump(idx, at(day) - 7, 0.3, 8, 3)
        # The holiday week itself is quiet: people go home, stores shorten hours.
        demand *= np.where(window(day - timedelta(days=1), day + timedelta(days=6)), 0.55, 1.0)
        coupon[window(day - timedelta(days=24), day - timedelta(days=2))] = COUPON_INDEX["CNY-30"]
        gift[window(day - timedelta(days=30), day - timedelta(days=1))] = SKU_INDEX["CY-G03"]


# -- people ------------------------------------------------------------------
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈"
            "姚卢姜崔钟谭陆汪范金石廖贾夏韦傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严")
GIVEN_FEMALE = "婷静敏丽娟艳芳颖雪琳欣怡佳悦晨萱雨涵梓诗思彤瑶洁慧玲倩琪璐薇嘉妍蕾菲晓"
GIVEN_MALE = "伟强磊军洋勇杰涛明超辉鹏浩宇轩博文俊晨昊然子航一凡睿泽哲阳天宁"
PHONE_PREFIXES = (130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 153, 155, 156, 157, 158,
                  159, 166, 173, 177, 180, 181, 182, 183, 185, 186, 187, 188, 189, 191, 199)
EMAIL_DOMAINS = ("qq.com", "163.com", "126.com", "gmail.com", "foxmail.com", "outlook.com", "sina.com")
