"""Console labels: acquisition channels, trait keys and values, and rejection reasons read in the
reader's language, while URLs, filters, the database and the API keep the codes and English."""

from __future__ import annotations

import html as html_lib

import pytest
from django.utils import translation
from pydantic import BaseModel

from siyu.accounts.actions import create_user
from siyu.analytics.engine import get_store
from siyu.analytics.queries import clear_cache
from siyu.analytics.sync import sync_all
from siyu.console import labels
from siyu.console.segment_queries import value_label
from siyu.customers.queries import Lookup, find_person
from siyu.ingest.models import DeadLetter

pytestmark = pytest.mark.django_db(transaction=True)

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


def login(client, role: str):
    user, _pw = create_user(f"u-{role}", role, password="pw-12345678")
    client.force_login(user)
    return user


def page(client, url: str, headers: dict, **params) -> str:
    response = client.get(url, params, **headers)
    assert response.status_code == 200
    return response.content.decode()


@pytest.fixture
def channels(post_segment):
    """Three customers, first seen through 饿了么, the official account and a brand's own channel."""
    batch = [
        {"type": "track", "userId": f"u-{channel}", "event": "Product Viewed", "messageId": f"m-{channel}",
         "properties": {"channel": channel}}
        for channel in ("eleme", "wechat_oa", "brand_own_channel")
    ]
    batch.append({"type": "identify", "userId": "u-eleme", "messageId": "m-traits",
                  "traits": {"gender": "male", "birthday": "1990-05-01", "city": "上海", "shoe_size": "42"}})
    response = post_segment("/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.content
    assert response.json()["accepted"] == 4
    return {c: find_person(Lookup("user_id", f"u-{c}")) for c in ("eleme", "wechat_oa", "brand_own_channel")}


# -- channels -------------------------------------------------------------------------------------
def test_home_lists_channels_by_label_and_links_by_code(client, channels):
    login(client, "ops_lead")
    html = page(client, "/", ZH)
    assert ">饿了么</a>" in html and ">微信公众号</a>" in html
    assert ">eleme<" not in html and ">wechat_oa<" not in html
    assert "?channel=eleme" in html and "?channel=wechat_oa" in html
    assert ">brand_own_channel</a>" in html  # a brand's own channel: as sent

    html = page(client, "/", EN)
    assert ">Ele.me</a>" in html and ">WeChat official account</a>" in html


def test_customer_list_filter_and_table_show_channel_labels(client, channels):
    login(client, "data_analyst")
    html = page(client, "/customers/", ZH)
    assert '<option value="eleme">饿了么</option>' in html
    assert '<option value="wechat_oa">微信公众号</option>' in html
    assert '<option value="brand_own_channel">brand_own_channel</option>' in html
    assert "<td>饿了么</td>" in html and "<td>eleme</td>" not in html

    response = client.get("/customers/", {"channel": "eleme"}, **ZH)
    assert response.context["page"].paginator.count == 1
    assert '<option value="eleme" selected>饿了么</option>' in response.content.decode()

    assert "<td>Ele.me</td>" in page(client, "/customers/", EN)


def test_customer_detail_labels_the_channel_first_touch_and_timeline(client, channels):
    login(client, "data_analyst")
    html = page(client, f"/customers/{channels['wechat_oa'].pk}/", ZH)
    assert "<dd>微信公众号</dd>" in html
    assert "渠道: 微信公众号" in html
    assert '<span class="pill">微信公众号</span>' in html
    assert ">wechat_oa<" not in html and ": wechat_oa<" not in html  # the raw properties still hold it


def test_segment_values_of_the_acquisition_channel_are_labelled():
    with translation.override("zh-hans"):
        assert value_label("acquisition_channel", "douyin") == "抖音"
        assert value_label("acquisition_channel", "store_qr") == "门店二维码"
        assert value_label("acquisition_channel", "mini_program") == "小程序"
        assert value_label("acquisition_channel", "brand_own_channel") == "brand_own_channel"
        assert value_label("gender", "female") == "女"
    with translation.override("en"):
        assert value_label("acquisition_channel", "store_qr") == "Store QR code"


def test_channel_label_reads_unknown_for_none_and_unknown_codes_as_sent():
    with translation.override("zh-hans"):
        assert labels.channel_label("") == "未知"
        assert labels.channel_label(None) == "未知"
        assert labels.channel_label("xiaohongshu") == "小红书"
        assert labels.channel_label("meituan") == "美团"
        assert labels.channel_label("某个渠道") == "某个渠道"


class _Line(BaseModel):
    label: str
    breakdown: str | None


class _Result(BaseModel):
    kind: str
    series: list[_Line]


def test_channel_breakdowns_are_labelled_on_a_copy():
    result = _Result(kind="trends", series=[_Line(label="orders", breakdown="eleme"),
                                            _Line(label="orders", breakdown="mine"),
                                            _Line(label="orders", breakdown=None)])
    with translation.override("zh-hans"):
        shown = labels.label_breakdowns({"breakdown": {"on": "event", "field": "channel"}}, result)
        assert [line.breakdown for line in shown.series] == ["饿了么", "mine", None]
        assert labels.label_breakdowns({"breakdown": {"on": "event", "field": "store"}}, result) is result
        assert labels.label_breakdowns({}, result) is result
    assert result.series[0].breakdown == "eleme"


def test_an_insight_broken_down_by_channel_shows_labels(client, post_segment):
    batch = [{"type": "track", "userId": f"u-{i}", "event": "Order Completed",
              "timestamp": "2026-01-05T10:00:00+08:00",
              "properties": {"order_id": f"o-{i}", "total": "10.00", "channel": channel}}
             for i, channel in enumerate(("eleme", "douyin"))]
    assert post_segment("/v1/batch", {"batch": batch}).status_code == 200
    sync_all(get_store())
    clear_cache()
    from siyu.console.analytics_views import answer

    body = {"kind": "trends", "date_from": "2026-01-05", "date_to": "2026-01-06", "interval": "day",
            "series": [{"event": "Order Completed", "math": "count", "label": "orders"}],
            "breakdown": {"on": "event", "field": "channel"}}
    with translation.override("zh-hans"):
        outcome = answer(body)
    assert "error" not in outcome, outcome
    shown = set(outcome["figures"].frame["series"])
    assert any("饿了么" in s for s in shown) and any("抖音" in s for s in shown)
    assert not any("eleme" in s for s in shown)


# -- traits ---------------------------------------------------------------------------------------
def test_customer_detail_labels_well_known_traits_and_gender(client, channels):
    login(client, "data_analyst")
    html = page(client, f"/customers/{channels['eleme'].pk}/", ZH)
    traits = html.split('id="traits"')[1].split("</section>")[0]
    assert '<dt title="gender">性别</dt><dd>男</dd>' in traits
    assert '<dt title="birthday">生日</dt><dd>1990-05-01</dd>' in traits
    assert '<dt title="city">城市</dt><dd>上海</dd>' in traits
    assert "<dt>shoe_size</dt><dd>42</dd>" in traits  # unknown keys and free text: as sent
    assert ">gender<" not in traits and "male" not in traits

    traits = page(client, f"/customers/{channels['eleme'].pk}/", EN).split('id="traits"')[1]
    assert '<dt title="gender">Gender</dt><dd>Male</dd>' in traits
    assert '<dt title="birthday">Birthday</dt>' in traits


# -- rejection reasons ------------------------------------------------------------------------------
BAD_MESSAGES = [
    ({"type": "track", "event": "X", "messageId": "no-id"}, "userId 和 anonymousId 至少需要一个"),
    ({"type": "shout", "userId": "u", "messageId": "bad-type"}, "必须是以下之一：identify, track"),
    ({"type": "track", "userId": "u", "event": "X", "timestamp": "yesterday", "messageId": "bad-time"},
     "不是 ISO-8601 时间：&#x27;yesterday&#x27;"),
    ({"type": "track", "userId": "u", "messageId": "no-event"}, "track 消息需要事件名"),
    ({"type": "track", "userId": "u", "event": "Order Completed", "messageId": "no-order",
      "properties": {"total": "1"}}, "Order Completed 需要 order_id"),
    ({"type": "track", "userId": "u", "event": "Order Completed", "messageId": "no-total",
      "properties": {"order_id": "o"}}, "Order Completed 需要 total（或 revenue）"),
    ({"type": "track", "userId": "u", "event": "X", "messageId": "bad-props", "properties": [1]}, "必须是对象"),
]


def test_sources_page_shows_rejection_reasons_in_chinese_with_the_english_kept(client, post_segment):
    response = post_segment("/v1/batch", {"batch": [m for m, _zh in BAD_MESSAGES]})
    english = [r["reason"] for r in response.json()["rejected"]]
    assert "either userId or anonymousId is required" in english  # the API stays English
    assert DeadLetter.objects.count() == len(BAD_MESSAGES)
    assert set(DeadLetter.objects.values_list("reason", flat=True)) == set(english)  # so does the database

    login(client, "developer")
    html = page(client, "/sources/", ZH)
    for _message, chinese in BAD_MESSAGES:
        assert chinese in html
    assert '<td title="either userId or anonymousId is required">' in html
    assert ">either userId or anonymousId is required<" not in html

    html = page(client, "/sources/", EN)
    assert "<td>either userId or anonymousId is required</td>" in html
    assert "<td>track needs an event name</td>" in html


@pytest.mark.parametrize(("reason", "chinese"), [
    ("messageId", None),  # not a reason we know: as stored
    ("must be a non-empty string of at most 200 characters", "必须是不超过 200 个字符的非空字符串"),
    ("not a phone number", "不是电话号码"),
    ("not a valid phone number for its region", "不是所属地区的有效电话号码"),
    ("message is over the 32768-byte limit", "消息超过 32768 字节的上限"),
    ("decompressed payload is over the 1048576-byte limit", "解压后的数据超过 1048576 字节的上限"),
    ("nested deeper than 64 levels", "嵌套超过 64 层"),
    ("body is not valid JSON: nested deeper than 64 levels", "请求体不是有效的 JSON：nested deeper than 64 levels"),
    ("contains a NUL character (\\u0000), which cannot be stored", "含有 NUL 字符（\\u0000），无法存储"),
    ("longer than 200 characters", "超过 200 个字符"),
    ("phone is empty", "手机号 为空"),
    ("Order Refunded needs an order_id", "Order Refunded 需要 order_id"),
    ("accepted, then failed in processing: KeyError: 'x'", "已接收，但处理时失败：KeyError: 'x'"),
    ("is before the year 2000 (Sensors' time is epoch milliseconds, such as 1767225600000)",
     "早于 2000 年（神策的 time 是毫秒时间戳，例如 1767225600000）"),
])
def test_reason_label_translates_fixed_and_patterned_reasons(reason, chinese):
    with translation.override("zh-hans"):
        assert labels.reason_label(reason) == (chinese or reason)
    with translation.override("en"):
        assert labels.reason_label(reason) == reason


def test_a_phone_that_is_no_phone_number_is_shown_in_chinese(client, post_segment):
    post_segment("/v1/batch", {"batch": [{"type": "identify", "userId": "u", "messageId": "bad-phone",
                                          "traits": {"phone": "12"}}]})
    reasons = list(DeadLetter.objects.values_list("reason", flat=True))
    login(client, "developer")
    html = html_lib.unescape(page(client, "/sources/", ZH))
    for reason in reasons:
        assert labels.reason_label(reason) != reason or not reason
        with translation.override("zh-hans"):
            assert labels.reason_label(reason) in html
