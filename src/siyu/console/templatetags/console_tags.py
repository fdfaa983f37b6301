"""Formatting filters for console templates."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.conf import settings
from django.utils.translation import gettext as _

from siyu.console import labels
from siyu.console.explanations import kind_label as _kind_label

register = template.Library()

CURRENCY_SIGNS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}


@register.filter
def money(value: Any) -> str:
    """Decimal amount in the brand's currency: ¥12,345.60."""
    if value in (None, ""):
        return "—"
    amount = Decimal(value)
    sign = CURRENCY_SIGNS.get(settings.SIYU_CURRENCY, settings.SIYU_CURRENCY + " ")
    return f"{'-' if amount < 0 else ''}{sign}{abs(amount):,.2f}"


@register.filter
def num(value: Any) -> str:
    return "—" if value is None else f"{value:,}"


@register.filter
def pct(value: float) -> str:
    return f"{value * 100:.1f}%"


@register.filter
def kind_label(kind: str) -> str:
    return _kind_label(kind)


@register.filter
def iso_dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@register.filter
def compact_json(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@register.filter
def channel_label(channel: str | None) -> str:
    """A channel code's label ("Unknown" for none); a code we do not know as sent."""
    return labels.channel_label(channel)


@register.filter
def trait_label(key: str) -> str:
    return labels.trait_label(key)


@register.filter
def trait_value(value: Any, key: str) -> Any:
    return labels.trait_value(key, value)


@register.filter
def reason_label(reason: str | None) -> str:
    """A stored (English) rejection reason in the reader's language."""
    return labels.reason_label(reason)


@register.filter
def pii_label(key: str) -> str:
    labels = {
        "name": _("Name"), "first_name": _("First name"), "last_name": _("Last name"),
        "phone": _("Phone"), "email": _("Email"), "address": _("Address"), "id_card": _("ID card number"),
    }
    return labels.get(key, key)


TOUCH_KEYS = ("channel", "utm_source", "utm_medium", "utm_campaign", "store", "qr_scene", "referrer")


@register.filter
def touch_items(touch: dict | None) -> list[tuple[str, Any]]:
    """A touch's attribution facts in a fixed order, with translated names."""
    touch = touch or {}
    names = {
        "channel": _("Channel"), "utm_source": "utm_source", "utm_medium": "utm_medium",
        "utm_campaign": "utm_campaign", "store": _("Store"), "qr_scene": _("QR code scene"),
        "referrer": _("Referral code"),
    }
    return [(names[k], labels.channel_label(touch[k]) if k == "channel" else touch[k])
            for k in TOUCH_KEYS if touch.get(k)]


@register.filter
def event_type_label(kind: str) -> str:
    labels = {
        "track": _("Event"), "page": _("Page view"), "screen": _("Screen view"),
        "identify": _("Profile update"), "group": _("Group"), "alias": _("Alias"),
    }
    return labels.get(kind, kind)
