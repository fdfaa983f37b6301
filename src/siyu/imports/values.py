"""Reading one cell as the field it is mapped to: text, money, times, dates, codes.

Every parser raises ``ValueProblem`` with a reason a shop manager can act on.
Reasons quote the cell only for fields that are not personal data.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from siyu.customers.profile import GENDERS
from siyu.imports.errors import ValueProblem
from siyu.orders.currency import currency_code

MAX_AMOUNT = Decimal("1e12")
MIN_PLACED_AT = datetime(2000, 1, 1, tzinfo=UTC)
MAX_FUTURE_SKEW = timedelta(days=1)
CENT = Decimal("0.01")

_DATE_TIME_RE = re.compile(
    r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?"
    r"(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d{2}:?\d{2})?$"
)
_COMPACT_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[ T]?(\d{2})(\d{2})(\d{2}))?$")
_MONTH_DAY_RE = re.compile(r"^(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?$")
_THOUSANDS_RE = re.compile(r"^\d{1,3}(,\d{3})+(\.\d+)?$")
_MONEY_NOISE_RE = re.compile(r"(?i)(¥|￥|\$|元|rmb|cny|\s)")
UNKNOWN_GENDERS = {"unknown", "u", "0", "未知", "保密", "其他", "other", "-"}

COMPLETED, REFUNDED, PARTIALLY_REFUNDED = "completed", "refunded", "partially_refunded"
STATUSES = {
    COMPLETED: ["completed", "complete", "paid", "success", "succeeded", "finished", "done", "shipped",
                "delivered", "已完成", "完成", "已支付", "已付款", "支付成功", "交易成功", "交易完成", "待发货",
                "已发货", "待收货", "已收货", "已签收"],
    REFUNDED: ["refunded", "refund", "returned", "已退款", "退款", "全额退款", "退款成功", "已退货", "退货"],
    PARTIALLY_REFUNDED: ["partially_refunded", "partially refunded", "partial_refund", "部分退款"],
}
NOT_PAID = ["cancelled", "canceled", "closed", "unpaid", "pending", "failed", "已取消", "取消", "交易关闭",
            "已关闭", "待付款", "未付款", "待支付", "支付失败"]
_STATUS_OF = {alias.lower(): status for status, aliases in STATUSES.items() for alias in aliases}


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def text(value: Any) -> str:
    """A cell as text: numbers without a spurious ``.0``, times in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value).strip()


def plain(value: Any) -> Any:
    """A cell as a JSON value for a trait: numbers stay numbers, times become ISO text."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (bool, int, float)):
        return value
    return text(value)


def bounded_text(value: Any, limit: int) -> str:
    out = text(value)
    if len(out) > limit:
        raise ValueProblem(_("is longer than %(limit)d characters") % {"limit": limit})
    return out


# -- money -------------------------------------------------------------------
def parse_amount(value: Any) -> Decimal:
    """A non-negative amount with at most two decimals; currency signs and thousands separators allowed."""
    if isinstance(value, bool):
        raise ValueProblem(_("must be an amount of money"))
    amount = _from_number(value) if isinstance(value, (int, float)) else _from_text(str(value))
    if not amount.is_finite():
        raise ValueProblem(_("must be an amount of money"))
    if amount < 0:
        raise ValueProblem(_("must not be negative (refunds go in the status or refund_amount column)"))
    if amount >= MAX_AMOUNT:
        raise ValueProblem(_("is too large (at most 999,999,999,999.99)"))
    rounded = amount.quantize(CENT)
    if rounded != amount:
        raise ValueProblem(_("has more than two decimal places: %(value)s") % {"value": value})
    return rounded


def _from_number(value: int | float) -> Decimal:
    if isinstance(value, int):
        return Decimal(value)
    amount = Decimal(repr(value))
    if amount.is_finite() and abs(amount - amount.quantize(CENT)) < Decimal("1e-6"):
        # Excel stores 19.9 as 19.899999999999999; the cell shows two decimals.
        return amount.quantize(CENT)
    return amount


def _from_text(raw: str) -> Decimal:
    cleaned = _MONEY_NOISE_RE.sub("", raw.strip())
    negative = cleaned.startswith("(") and cleaned.endswith(")")
    cleaned = cleaned.strip("()")
    if _THOUSANDS_RE.match(cleaned.lstrip("+-")):
        cleaned = cleaned.replace(",", "")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise ValueProblem(_("is not a number: %(value)r") % {"value": raw[:40]}) from None
    return -amount if negative else amount


def parse_currency(value: Any) -> str:
    raw = text(value)
    code = currency_code(raw)
    if code is None:
        raise ValueProblem(_("is not a currency code (ISO 4217, such as CNY): %(value)r") % {"value": raw[:20]})
    return code


# -- times and dates ---------------------------------------------------------
def parse_time(value: Any, now: datetime | None = None) -> datetime:
    """An aware datetime; times without a zone are in the brand's time zone (TIME_ZONE)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueProblem(_("is a number, not a date and time; format the column as a date in Excel"))
    else:
        parsed = _time_from_text(text(value))
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    now = now or timezone.now()
    if parsed > now + MAX_FUTURE_SKEW:
        raise ValueProblem(_("is in the future: %(value)s") % {"value": parsed.isoformat()})
    if parsed < MIN_PLACED_AT:
        raise ValueProblem(_("is before the year 2000: %(value)s") % {"value": parsed.isoformat()})
    return parsed


def _time_from_text(raw: str) -> datetime:
    if re.fullmatch(r"\d{13}|\d{10}", raw):  # epoch milliseconds / seconds (app exports)
        seconds = int(raw) / (1000 if len(raw) == 13 else 1)
        return datetime.fromtimestamp(seconds, tz=UTC)
    match = _DATE_TIME_RE.match(raw) or _COMPACT_RE.match(raw)
    if not match:
        raise ValueProblem(
            _("is not a date and time: %(value)r (use e.g. 2024-05-01 13:45:00 or 2024/5/1 13:45)")
            % {"value": raw[:40]}
        )
    parts = [int(p) if p else 0 for p in match.groups()[:6]]
    groups = match.groups()
    micro = int((groups[6] or "0").ljust(6, "0")) if len(groups) > 6 else 0
    try:
        parsed = datetime(*parts, micro)  # type: ignore[misc]
    except ValueError as exc:
        raise ValueProblem(_("is not a valid date: %(value)r (%(error)s)") % {"value": raw[:40], "error": exc}) from None
    offset = groups[7] if len(groups) > 7 else None
    if offset:
        parsed = datetime.fromisoformat(parsed.isoformat() + ("+00:00" if offset == "Z" else _iso_offset(offset)))
    return parsed


def _iso_offset(offset: str) -> str:
    digits = offset[1:].replace(":", "")
    return f"{offset[0]}{digits[:2]}:{digits[2:]}"


def parse_birthday(value: Any) -> str:
    """``YYYY-MM-DD``, or ``--MM-DD`` (ISO 8601) when the file gives only month and day."""
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        day = value
    else:
        raw = text(value)
        month_day = _MONTH_DAY_RE.match(raw)
        if month_day:
            return _month_day(raw, int(month_day.group(1)), int(month_day.group(2)))
        match = _DATE_TIME_RE.match(raw) or _COMPACT_RE.match(raw)
        if not match:
            raise ValueProblem(_("is not a date: use e.g. 1990-05-01, 1990/5/1 or 05-01"))
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise ValueProblem(_("is not a valid date")) from None
    if day > timezone.localdate() or day.year < 1900:
        raise ValueProblem(_("is not a plausible birthday (between 1900 and today)"))
    return day.isoformat()


def _month_day(raw: str, month: int, day: int) -> str:
    try:
        date(2000, month, day)  # a leap year: 02-29 is a birthday
    except ValueError:
        raise ValueProblem(_("is not a valid month and day")) from None
    return f"--{month:02d}-{day:02d}"


# -- codes -------------------------------------------------------------------
def parse_gender(value: Any) -> str | None:
    """``male``, ``female``, or None when the file says unknown."""
    raw = text(value).lower()
    if raw in GENDERS:  # one spelling table for imports and SDK traits
        return GENDERS[raw]
    if raw in UNKNOWN_GENDERS:
        return None
    raise ValueProblem(_("must be male or female (男/女, M/F, 1/2): %(value)r") % {"value": raw[:20]})


def parse_status(value: Any) -> str:
    """completed, refunded or partially_refunded; unpaid and cancelled orders are refused."""
    raw = text(value)
    status = _STATUS_OF.get(raw.lower())
    if status:
        return status
    if raw.lower() in NOT_PAID:
        raise ValueProblem(_("%(value)r orders are not imported: only paid orders (completed or refunded) are")
                           % {"value": raw})
    raise ValueProblem(_("unknown order status %(value)r; use completed, refunded or partially_refunded")
                       % {"value": raw[:30]})


def default_currency() -> str:
    return getattr(settings, "SIYU_CURRENCY", "CNY")
