"""Which file column feeds which field: automatic mapping from common headers, and overrides.

Headers are compared after normalising (lower case, no spaces, underscores,
hyphens, asterisks or trailing units such as ``(元)``), so ``Order No``,
``order_no`` and ``订单号*`` all match. A mapping given by the user
(``{column: field}``) wins over the automatic one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.utils.translation import gettext as _

from siyu.customers.models import IdentityKind
from siyu.imports.errors import ImportFileError

ID_KINDS: tuple[str, ...] = tuple(IdentityKind.values)
IGNORE = "ignore"
TRAIT_PREFIX, PERSONAL_PREFIX = "trait:", "personal:"

# Header aliases per identity kind, shared by customer files and (as customer_<kind>) order files.
ID_ALIASES: dict[str, list[str]] = {
    "user_id": ["user_id", "userid", "uid", "用户id", "用户编号", "账号id"],
    "member_no": ["member_no", "member_number", "membership_no", "card_no", "会员号", "会员卡号",
                  "会员编号", "会员卡", "卡号"],
    "phone": ["phone", "mobile", "mobile_phone", "mobile_no", "mobile_number", "cellphone", "phone_number",
              "phone_no", "contact_phone", "tel", "telephone",
              "手机号", "手机号码", "手机", "电话", "电话号码", "联系电话", "联系方式"],
    "email": ["email", "e-mail", "email_address", "mail", "邮箱", "电子邮箱", "电子邮件", "邮件"],
    "unionid": ["unionid", "union_id", "wechat_unionid", "微信unionid"],
    "openid": ["openid", "open_id", "wechat_openid", "微信openid", "公众号openid", "小程序openid"],
    "wecom_id": ["wecom_id", "external_userid", "wecom_external_userid", "企业微信id", "企微id"],
    "anonymous_id": ["anonymous_id", "anonymousid", "device_id", "设备id"],
}
# A "customer id" of the shop's own system: a member number unless told otherwise.
GENERIC_CUSTOMER_ALIASES = ["customer_id", "customerid", "customer_no", "member_id", "memberid", "客户id",
                            "客户编号", "会员id", "顾客id"]

CUSTOMER_ALIASES: dict[str, list[str]] = {
    **{kind: list(aliases) for kind, aliases in ID_ALIASES.items()},
    "name": ["name", "full_name", "customer_name", "member_name", "姓名", "名字", "客户姓名", "会员姓名",
             "客户名称", "顾客姓名"],
    "gender": ["gender", "sex", "性别"],
    "birthday": ["birthday", "birth_date", "date_of_birth", "dob", "生日", "出生日期", "出生年月日"],
    "city": ["city", "城市", "所在城市", "地区", "所在地区"],
    "province": ["province", "state", "省份", "省", "所在省份"],
    "address": ["address", "street_address", "地址", "详细地址", "联系地址", "收货地址"],
}
CUSTOMER_ALIASES["member_no"] += GENERIC_CUSTOMER_ALIASES

ORDER_ALIASES: dict[str, list[str]] = {
    "order_id": ["order_id", "order_no", "order_number", "orderid", "订单号", "订单编号", "订单id", "单号",
                 "小票号", "流水号", "交易单号"],
    "placed_at": ["placed_at", "order_time", "ordered_at", "order_date", "created_at", "paid_at", "time",
                  "date", "下单时间", "订单时间", "交易时间", "支付时间", "付款时间", "消费时间", "创建时间",
                  "日期", "时间"],
    # Paid amounts first: when a file has both 实付金额 and 订单金额, the money received wins.
    "amount": ["amount", "paid_amount", "paid", "实付金额", "实收金额", "支付金额", "实付", "金额",
               "订单金额", "order_amount", "total", "消费金额", "交易金额"],
    "currency": ["currency", "币种", "货币"],
    "store": ["store", "store_name", "store_id", "shop", "门店", "门店名称", "门店编号", "店铺", "店铺名称"],
    "channel": ["channel", "source", "sales_channel", "渠道", "销售渠道", "来源", "订单来源"],
    "coupon": ["coupon", "coupon_code", "优惠券", "优惠券码", "券码"],
    "status": ["status", "order_status", "状态", "订单状态", "交易状态"],
    "refund_amount": ["refund_amount", "refunded_amount", "退款金额", "已退款金额"],
    "customer": GENERIC_CUSTOMER_ALIASES,
    **{f"customer_{kind}": list(aliases) for kind, aliases in ID_ALIASES.items()},
}

# Words in a header that mark personal data: such unmapped customer columns are
# stored encrypted with the profile's personal data, never as plain traits.
PERSONAL_MARKERS = ("phone", "mobile", "tel", "mail", "name", "address", "birth", "id_card", "idcard",
                    "passport", "wechat", "手机", "电话", "邮箱", "姓名", "名字", "昵称", "地址", "身份证",
                    "护照", "微信", "联系人", "收货人")


def normalise_header(header: str) -> str:
    """``订单金额（元）*`` -> ``订单金额``; ``Order No`` -> ``orderno``."""
    text = re.sub(r"\s*[(（][^)）]*[)）]\s*$", "", header.strip())
    return re.sub(r"[\s_\-*.:：]+", "", text).lower()


@dataclass(frozen=True)
class Catalog:
    """The fields one kind of import understands."""

    kind: str
    aliases: dict[str, list[str]]
    multi: frozenset[str]  # fields that may come from several columns (ids)
    unmapped_as_traits: bool

    def lookup(self) -> dict[str, tuple[str, int]]:
        """normalised alias -> (field, rank); a lower rank wins when two columns match one field."""
        # A header that is a field's own name always means that field.
        out: dict[str, tuple[str, int]] = {normalise_header(f): (f, -1) for f in self.aliases}
        for fname, aliases in self.aliases.items():
            for rank, alias in enumerate(aliases):
                out.setdefault(normalise_header(alias), (fname, rank))
        return out

    def is_field(self, name: str) -> bool:
        if name in self.aliases or name == IGNORE:
            return True
        prefixed = name.startswith((TRAIT_PREFIX, PERSONAL_PREFIX)) and name.split(":", 1)[1].strip()
        return bool(self.unmapped_as_traits and prefixed)


CUSTOMERS = Catalog("customers", CUSTOMER_ALIASES, frozenset(ID_KINDS), unmapped_as_traits=True)
ORDERS = Catalog("orders", ORDER_ALIASES, frozenset({"customer", *(f"customer_{k}" for k in ID_KINDS)}),
                 unmapped_as_traits=False)


@dataclass
class ColumnMap:
    """The decided mapping: column index -> field, and what was left over."""

    headers: list[str]
    fields: dict[int, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)

    def columns_of(self, fname: str) -> list[int]:
        return [i for i, f in self.fields.items() if f == fname]

    def has(self, fname: str) -> bool:
        return fname in self.fields.values()

    def as_dict(self) -> dict[str, str]:
        return {self.headers[i]: f for i, f in sorted(self.fields.items())}


def build_mapping(catalog: Catalog, headers: list[str], overrides: dict[str, str]) -> ColumnMap:
    """Decide which column feeds which field; raises ImportFileError for an unusable mapping."""
    _check_headers(headers)
    _check_overrides(catalog, headers, overrides)
    result = ColumnMap(headers)
    taken: dict[str, tuple[int, int]] = {}  # field -> (rank, column) of the best automatic match
    lookup = catalog.lookup()
    for index, header in enumerate(headers):
        if not header:
            continue
        if header in overrides:
            if overrides[header] != IGNORE:
                result.fields[index] = overrides[header]
            continue
        match = lookup.get(normalise_header(header))
        if match is None:
            continue
        fname, rank = match
        if fname in catalog.multi:
            result.fields[index] = fname
        elif fname not in taken or rank < taken[fname][0]:
            taken[fname] = (rank, index)
    overridden = set(overrides.values())
    for fname, (_rank, index) in taken.items():
        if fname not in overridden:
            result.fields[index] = fname
    _leftovers(catalog, result, overrides)
    return result


def _leftovers(catalog: Catalog, result: ColumnMap, overrides: dict[str, str]) -> None:
    for index, header in enumerate(result.headers):
        if not header or index in result.fields or overrides.get(header) == IGNORE:
            continue
        if catalog.unmapped_as_traits:
            personal = any(m in normalise_header(header) for m in PERSONAL_MARKERS)
            result.fields[index] = (PERSONAL_PREFIX if personal else TRAIT_PREFIX) + header
        else:
            result.unmapped.append(header)


def _check_headers(headers: list[str]) -> None:
    seen: dict[str, int] = {}
    for index, header in enumerate(headers):
        if not header:
            continue
        if header in seen:
            raise ImportFileError(
                _("the column name %(name)r appears twice (columns %(a)d and %(b)d); rename one of them")
                % {"name": header, "a": seen[header] + 1, "b": index + 1}
            )
        seen[header] = index


def _check_overrides(catalog: Catalog, headers: list[str], overrides: dict[str, str]) -> None:
    for column, fname in overrides.items():
        if column not in headers:
            raise ImportFileError(
                _("the mapping names the column %(column)r, which is not in the file; its columns are: %(columns)s")
                % {"column": column, "columns": ", ".join(h for h in headers if h)}
            )
        if not catalog.is_field(fname):
            raise ImportFileError(
                _("cannot map column %(column)r to %(field)r: %(kind)s imports know the fields %(fields)s")
                % {"column": column, "field": fname, "kind": catalog.kind, "fields": describe_fields(catalog)}
            )
    counts: dict[str, list[str]] = {}
    for column, fname in overrides.items():
        counts.setdefault(fname, []).append(column)
    for fname, columns in counts.items():
        if len(columns) > 1 and fname not in catalog.multi and fname != IGNORE:
            raise ImportFileError(_("the columns %(columns)s are all mapped to %(field)s; map only one")
                                  % {"columns": ", ".join(repr(c) for c in columns), "field": fname})


def describe_fields(catalog: Catalog) -> str:
    extra = [IGNORE] + ([f"{TRAIT_PREFIX}NAME", f"{PERSONAL_PREFIX}NAME"] if catalog.unmapped_as_traits else [])
    return ", ".join([*catalog.aliases, *extra])
