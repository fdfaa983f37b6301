"""How stored codes read in the console: acquisition channels, trait keys and values, and the
reasons messages were rejected for.

Everything here is display only. Channel codes stay as sent in URLs, filters and the API;
rejection reasons stay English in the database and in the API answers SDKs read. A code or
text we do not know is shown as sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from pydantic import BaseModel

from siyu.console.explanations import kind_label

# -- acquisition channels ----------------------------------------------------------------------
# The codes siyu itself writes (``store_qr`` for a store QR scan without a channel) and the ones
# the demo brand's sources send; brands may send any other name, shown as sent.
CHANNELS: dict[str, Promise] = {
    "store_qr": pgettext_lazy("channel", "Store QR code"),
    "wechat_oa": pgettext_lazy("channel", "WeChat official account"),
    "mini_program": pgettext_lazy("channel", "Mini program"),
    "douyin": pgettext_lazy("channel", "Douyin"),
    "xiaohongshu": pgettext_lazy("channel", "Xiaohongshu"),
    "meituan": pgettext_lazy("channel", "Meituan"),
    "eleme": pgettext_lazy("channel", "Ele.me"),
    "referral": pgettext_lazy("channel", "Referral"),
    "pos": pgettext_lazy("channel", "In-store POS"),
    "h5_shop": pgettext_lazy("channel", "Web shop (H5)"),
}
# Breakdown fields (``{"on": ..., "field": ...}`` of an analytics query) whose values are channels.
CHANNEL_FIELDS = frozenset({"channel", "acquisition_channel"})


def channel_label(code: str | None) -> str:
    """A channel code as people read it; '' (no known channel) reads "Unknown"."""
    if not code:
        return _("Unknown")
    label = CHANNELS.get(code)
    return str(label) if label is not None else code


# -- traits -------------------------------------------------------------------------------------
# Well-known trait keys (Segment's reserved traits, Sensors' preset profile properties, what
# imports and the demo write). Personal data (names, phones, emails, addresses) is not a plain
# trait: it is kept encrypted and shown by ``_personal.html``.
TRAITS: dict[str, Promise] = {
    "gender": gettext_lazy("Gender"),
    "birthday": gettext_lazy("Birthday"),
    "birth_date": gettext_lazy("Birthday"),
    "birthdate": gettext_lazy("Birthday"),
    "birth_year": gettext_lazy("Year of birth"),
    "age": gettext_lazy("Age"),
    "city": gettext_lazy("City"),
    "$city": gettext_lazy("City"),
    "province": gettext_lazy("Province"),
    "$province": gettext_lazy("Province"),
    "country": gettext_lazy("Country"),
    "$country": gettext_lazy("Country"),
    "company": gettext_lazy("Company"),
    "title": gettext_lazy("Job title"),
    "website": gettext_lazy("Website"),
    "avatar": gettext_lazy("Avatar"),
    "description": gettext_lazy("Description"),
    "createdAt": gettext_lazy("Account created"),
    "created_at": gettext_lazy("Account created"),
}
GENDERS: dict[str, Promise] = {
    "male": gettext_lazy("Male"),
    "female": gettext_lazy("Female"),
}


def trait_label(key: str) -> str:
    label = TRAITS.get(key)
    return str(label) if label is not None else key


def gender_label(value: Any) -> str:
    label = GENDERS.get(value) if isinstance(value, str) else None
    return str(label) if label is not None else str(value)


def trait_value(key: str, value: Any) -> Any:
    """A trait's value as shown: gender's stored codes translated, anything else as sent."""
    return gender_label(value) if key == "gender" and isinstance(value, str) else value


# -- analytics breakdowns ---------------------------------------------------------------------------
def label_breakdowns(body: dict[str, Any], result: Any) -> Any:
    """``result`` with its breakdown values labelled when ``body`` breaks down by a channel.

    The result is copied, never changed: the query cache keeps the codes."""
    breakdown = body.get("breakdown")
    if not isinstance(breakdown, dict) or breakdown.get("field") not in CHANNEL_FIELDS:
        return result
    return _relabel(result, channel_label)


def _relabel(value: Any, label: Callable[[str], str]) -> Any:
    """Every ``breakdown`` string of ``value`` (a result model, its lists and sub-models) labelled;
    '' and None (no breakdown, everyone) stay."""
    if isinstance(value, BaseModel):
        update = {}
        for name in type(value).model_fields:
            item = getattr(value, name)
            if name == "breakdown" and isinstance(item, str) and item:
                update[name] = label(item)
            elif isinstance(item, (BaseModel, list)):
                new = _relabel(item, label)
                if new is not item:
                    update[name] = new
        return value.model_copy(update=update) if update else value
    if isinstance(value, list):
        items = [_relabel(v, label) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


# -- rejection reasons ------------------------------------------------------------------------------
# The reasons ``siyu.ingest`` (segment, sensors, messages, bodies), ``customers.identity`` and
# ``privacy.crypto`` give, in English as stored. Fixed texts are looked up by their English
# text; texts with a variable part by a pattern whose named groups fill the translation.
FIXED_REASONS: tuple[Promise, ...] = (
    pgettext_lazy("rejection reason", "must be an object"),
    pgettext_lazy("rejection reason", "a message must be a JSON object"),
    pgettext_lazy("rejection reason", "a record must be a JSON object"),
    pgettext_lazy("rejection reason", "body must be a JSON object"),
    pgettext_lazy("rejection reason", "either userId or anonymousId is required"),
    pgettext_lazy("rejection reason", "alias needs both userId and previousId"),
    pgettext_lazy("rejection reason", "Order Completed needs total (or revenue)"),
    pgettext_lazy("rejection reason", "must be a non-empty string of at most 200 characters"),
    pgettext_lazy("rejection reason", "track needs an event name"),
    pgettext_lazy("rejection reason", "must be a string"),
    pgettext_lazy("rejection reason", "group needs a groupId"),
    pgettext_lazy("rejection reason", "contains a NUL character (\\u0000), which cannot be stored"),
    pgettext_lazy("rejection reason", "must be an ISO-8601 time or epoch milliseconds"),
    pgettext_lazy("rejection reason", "epoch milliseconds out of range"),
    pgettext_lazy("rejection reason", "is more than a day in the future"),
    pgettext_lazy("rejection reason", "is before the year 2000"),
    pgettext_lazy("rejection reason", "must be a number"),
    pgettext_lazy("rejection reason", "must be a non-negative amount below 10^12"),
    pgettext_lazy("rejection reason", "not valid base64"),
    pgettext_lazy("rejection reason", "gzip flag set but the payload is not gzip"),
    pgettext_lazy("rejection reason", "gzip flag set but the payload is not gzip (truncated)"),
    pgettext_lazy("rejection reason", "Content-Encoding is gzip but the body is not valid gzip"),
    pgettext_lazy("rejection reason", "is required"),
    pgettext_lazy("rejection reason", "form field data or data_list is required"),
    pgettext_lazy("rejection reason", "profile_increment needs a number"),
    pgettext_lazy("rejection reason", "profile_append needs a list"),
    pgettext_lazy("rejection reason", "cannot be stored as JSON"),
    pgettext_lazy("rejection reason", "not a phone number"),
    pgettext_lazy("rejection reason", "not a valid phone number for its region"),
    pgettext_lazy("rejection reason", "not an email address"),
    pgettext_lazy("rejection reason", "is not a currency code (ISO 4217, such as CNY)"),
)
# (pattern over the whole English reason, translation with the pattern's named groups)
PATTERN_REASONS: tuple[tuple[re.Pattern[str], Promise], ...] = (
    (re.compile(r"(?P<event>.+) needs an order_id"),
     pgettext_lazy("rejection reason", "%(event)s needs an order_id")),
    (re.compile(r"must be one of (?P<values>.+)"),
     pgettext_lazy("rejection reason", "must be one of %(values)s")),
    (re.compile(r"longer than (?P<count>\d+) characters"),
     pgettext_lazy("rejection reason", "longer than %(count)s characters")),
    (re.compile(r"track needs an event name of at most (?P<count>\d+) characters"),
     pgettext_lazy("rejection reason", "track needs an event name of at most %(count)s characters")),
    (re.compile(r"not an ISO-8601 time: (?P<value>.*)"),
     pgettext_lazy("rejection reason", "not an ISO-8601 time: %(value)s")),
    (re.compile(r"not a number: (?P<value>.*)"),
     pgettext_lazy("rejection reason", "not a number: %(value)s")),
    (re.compile(r"not valid JSON after base64 decoding: (?P<error>.*)"),
     pgettext_lazy("rejection reason", "not valid JSON after base64 decoding: %(error)s")),
    (re.compile(r"body is not valid JSON: (?P<error>.*)"),
     pgettext_lazy("rejection reason", "body is not valid JSON: %(error)s")),
    (re.compile(r"nested deeper than (?P<levels>\d+) levels"),
     pgettext_lazy("rejection reason", "nested deeper than %(levels)s levels")),
    (re.compile(r"message is over the (?P<limit>\d+)-byte limit"),
     pgettext_lazy("rejection reason", "message is over the %(limit)s-byte limit")),
    (re.compile(r"decompressed payload is over the (?P<limit>\d+)-byte limit"),
     pgettext_lazy("rejection reason", "decompressed payload is over the %(limit)s-byte limit")),
    (re.compile(r"body is over the (?P<limit>\d+)-byte limit"),
     pgettext_lazy("rejection reason", "body is over the %(limit)s-byte limit")),
    (re.compile(r"body of (?P<length>\d+) bytes is over the (?P<limit>\d+)-byte limit"),
     pgettext_lazy("rejection reason", "body of %(length)s bytes is over the %(limit)s-byte limit")),
    (re.compile(r"must be a string, not (?P<type>.+)"),
     pgettext_lazy("rejection reason", "must be a string, not %(type)s")),
    (re.compile(r"decompressed body is over the (?P<limit>\d+)-byte limit"),
     pgettext_lazy("rejection reason", "decompressed body is over the %(limit)s-byte limit")),
    (re.compile(r"unknown identity kind (?P<kind>.+)"),
     pgettext_lazy("rejection reason", "unknown identity kind %(kind)s")),
    (re.compile(r"(?P<kind>\w+) must be a string or number"),
     pgettext_lazy("rejection reason", "%(kind)s must be a string or number")),
    (re.compile(r"(?P<kind>\w+) is empty"),
     pgettext_lazy("rejection reason", "%(kind)s is empty")),
    (re.compile(r"(?P<kind>\w+) is longer than (?P<count>\d+) characters"),
     pgettext_lazy("rejection reason", "%(kind)s is longer than %(count)s characters")),
    (re.compile(r"accepted, then failed in processing: (?P<error>.*)", re.DOTALL),
     pgettext_lazy("rejection reason", "accepted, then failed in processing: %(error)s")),
)
_SENSORS_TIME = re.compile(r"(?P<reason>.+) \(Sensors' time is epoch milliseconds, such as (?P<example>\d+)\)")
# Groups that name an identity kind read as the kind's label (phone -> 手机号).
_KIND_GROUPS = frozenset({"kind"})


@cache
def _fixed_by_english() -> dict[str, Promise]:
    with translation.override(None):  # no catalogue: each message reads as its English msgid
        return {str(message): message for message in FIXED_REASONS}


def reason_label(reason: str | None) -> str:
    """A stored rejection reason in the reader's language; one we do not know stays as stored."""
    if not reason:
        return ""
    hint = _SENSORS_TIME.fullmatch(reason)
    if hint:  # a bad Sensors time: the reason, then the hint that time is in milliseconds
        return str(pgettext_lazy("rejection reason", "%(reason)s (Sensors' time is epoch milliseconds, such as"
                                 " %(example)s)")) % {"reason": reason_label(hint["reason"]),
                                                      "example": hint["example"]}
    fixed = _fixed_by_english().get(reason)
    if fixed is not None:
        return str(fixed)
    for index, (pattern, message) in enumerate(PATTERN_REASONS):
        match = pattern.fullmatch(reason)
        if match:
            template = str(message)
            if template == _english_patterns()[index]:
                return reason  # no translation (English): exactly as stored
            values = {k: kind_label(v) if k in _KIND_GROUPS else v for k, v in match.groupdict().items()}
            return template % values
    return reason


@cache
def _english_patterns() -> tuple[str, ...]:
    with translation.override(None):
        return tuple(str(message) for _pattern, message in PATTERN_REASONS)
