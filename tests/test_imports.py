"""File imports of customers and orders: given a file, when imported, then counted, stored and reported."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from siyu.accounts.actor import Actor
from siyu.analytics.engine import get_store
from siyu.customers.models import Identity, MergeConflict, Person, PersonMerge
from siyu.customers.profile import read_pii
from siyu.customers.queries import Lookup, find_person
from siyu.imports import values
from siyu.imports.actions import ImportFileError, import_file
from siyu.imports.errors import ValueProblem
from siyu.imports.models import ImportJob
from siyu.orders.models import Order

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("test-import")

CUSTOMERS_CSV = (
    "phone,member_no,name,email,gender,birthday,city,level\n"
    "13800000001,M001,Alice Wang,alice@example.com,F,1990-05-01,Shanghai,gold\n"
    "13800000002,M002,Bob Li,,M,,Beijing,silver\n"
)
ORDERS_CSV = (
    "order_id,member_no,placed_at,amount,store,channel,coupon\n"
    "A1,M001,2024-05-01 13:45:00,199.00,Jing'an,store,SPRING\n"
    "A2,M001,2024-05-03 09:00:00,\"1,200.50\",Jing'an,store,\n"
    "A3,M002,2024/5/4 20:15,¥88,Xuhui,miniapp,\n"
)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def person(kind: str, value: str) -> Person:
    return find_person(Lookup(kind, value))


def snapshot() -> dict[str, int]:
    """Counts of every table an import may change."""
    return {"persons": Person.objects.count(), "identities": Identity.objects.count(),
            "orders": Order.objects.count(), "merges": PersonMerge.objects.count(),
            "conflicts": MergeConflict.objects.count()}


def shanghai(*args: int) -> datetime:
    """A wall-clock time in the brand's time zone (TIME_ZONE, Asia/Shanghai by default)."""
    return datetime(*args, tzinfo=ZoneInfo("Asia/Shanghai"))


# -- customers ---------------------------------------------------------------
def test_customers_csv_creates_profiles_with_encrypted_personal_data(tmp_path):
    path = write(tmp_path, "crm.csv", CUSTOMERS_CSV)

    result = import_file(ACTOR, "customers", path)

    assert (result["accepted"], result["rejected"], result["skipped"]) == (2, 0, 0)
    assert result["errors"] == []
    assert result["customers_created"] == 2
    assert result["mapping"] == {"phone": "phone", "member_no": "member_no", "name": "name", "email": "email",
                                 "gender": "gender", "birthday": "birthday", "city": "city",
                                 "level": "trait:level"}
    alice = person("member_no", "M001")
    assert person("phone", "13800000001") == alice
    assert person("email", "alice@example.com") == alice
    assert alice.traits == {"gender": "female", "birthday": "1990-05-01", "city": "Shanghai", "level": "gold"}
    assert read_pii(alice) == {"name": "Alice Wang", "phone": "+8613800000001", "email": "alice@example.com"}
    assert "Alice" not in alice.pii_enc
    assert alice.first_seen is None  # an import is not activity


def test_gbk_csv_with_chinese_headers_is_read_and_mapped(tmp_path):
    text = ("手机号,会员卡号,姓名,性别,生日,地区,会员等级,身份证号\n"
            "13800000003,VIP-9,张三,男,1988年3月5日,杭州,金卡,330100198803050011\n")
    path = write(tmp_path, "会员.csv", text, encoding="gbk")

    result = import_file(ACTOR, "customers", path)

    assert result["accepted"] == 1
    assert result["file_format"] == {"format": "csv", "encoding": "gb18030", "delimiter": "comma"}
    assert result["mapping"] == {"手机号": "phone", "会员卡号": "member_no", "姓名": "name", "性别": "gender",
                                 "生日": "birthday", "地区": "city", "会员等级": "trait:会员等级",
                                 "身份证号": "personal:身份证号"}
    zhang = person("member_no", "VIP-9")
    assert zhang.traits == {"gender": "male", "birthday": "1988-03-05", "city": "杭州", "会员等级": "金卡"}
    # An unknown column that looks like personal data is encrypted, never a plain trait.
    assert read_pii(zhang) == {"name": "张三", "phone": "+8613800000003", "身份证号": "330100198803050011"}


@pytest.mark.parametrize(("encoding", "delimiter"), [("utf-8-sig", ","), ("utf-8", ";"), ("utf-8", "\t")])
def test_bom_and_delimiters_are_detected(tmp_path, encoding, delimiter):
    text = CUSTOMERS_CSV.replace(",", delimiter)
    path = write(tmp_path, "crm.csv", text, encoding=encoding)

    result = import_file(ACTOR, "customers", path)

    assert (result["accepted"], result["rejected"]) == (2, 0)
    assert result["mapping"]["phone"] == "phone"


def test_broken_customer_rows_are_reported_and_the_others_imported(tmp_path):
    text = ("phone,member_no,name,email\n"
            "13800000001,M001,Alice,alice@example.com\n"
            "12,M002,Bob,bob@example.com\n"
            "13800000003,M003,Carol\n"
            "13800000004,M004,Dan,not-an-email\n"
            "13800000005,M005,Eve,eve@example.com\n")
    path = write(tmp_path, "crm.csv", text)

    result = import_file(ACTOR, "customers", path)

    assert (result["accepted"], result["rejected"], result["skipped"]) == (2, 3, 0)
    assert result["errors"] == [
        {"row": 3, "field": "phone", "column": "phone", "reason": "not a valid phone number for its region"},
        {"row": 4, "field": "columns", "column": "", "reason": "has 3 cells but the header has 4 columns"},
        {"row": 5, "field": "email", "column": "email", "reason": "not an email address"},
    ]
    assert sorted(Identity.objects.filter(kind="member_no").values_list("person_id", flat=True)) == sorted(
        [person("member_no", "M001").pk, person("member_no", "M005").pk])
    assert Person.objects.count() == 2


def test_customer_row_without_any_id_is_rejected(tmp_path):
    path = write(tmp_path, "crm.csv", "phone,name\n,Nobody\n13800000001,Alice\n")

    result = import_file(ACTOR, "customers", path)

    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["errors"] == [{"row": 2, "field": "ids", "column": "",
                                 "reason": "no customer id in this row: fill in at least one of phone"}]


def test_reimporting_the_same_customers_is_skipped_and_changes_are_applied(tmp_path):
    path = write(tmp_path, "crm.csv", CUSTOMERS_CSV)
    first = import_file(ACTOR, "customers", path)
    before = snapshot()

    again = import_file(ACTOR, "customers", path)

    assert (again["accepted"], again["rejected"], again["skipped"]) == (0, 0, 2)
    assert again["previous_job_id"] == first["job_id"]
    assert snapshot() == before

    changed = write(tmp_path, "crm2.csv", CUSTOMERS_CSV.replace("silver", "gold"))
    update = import_file(ACTOR, "customers", changed)

    assert (update["accepted"], update["skipped"], update["customers_created"]) == (1, 1, 0)
    assert person("member_no", "M002").traits["level"] == "gold"
    assert snapshot() == before


def test_the_last_row_about_a_customer_wins_even_when_it_matches_the_stored_profile(tmp_path):
    import_file(ACTOR, "customers", write(tmp_path, "a.csv", "member_no,level\nM1,silver\n"))

    result = import_file(ACTOR, "customers", write(tmp_path, "b.csv", "member_no,level\nM1,gold\nM1,silver\n"))

    assert (result["accepted"], result["skipped"]) == (2, 0)
    assert person("member_no", "M1").traits == {"level": "silver"}


def test_a_row_linking_two_known_customers_merges_them_with_import_evidence(tmp_path):
    import_file(ACTOR, "customers", write(tmp_path, "a.csv", "member_no,email\nM001,a@example.com\n"))
    import_file(ACTOR, "customers", write(tmp_path, "b.csv", "user_id\nu-1\n"))
    member, user = person("member_no", "M001"), person("user_id", "u-1")

    result = import_file(ACTOR, "customers", write(tmp_path, "link.csv", "name,member_no,user_id\nAl,M001,u-1\n"))

    assert result["merges"] == 1
    merge = PersonMerge.objects.get()
    assert (merge.merged_id, merge.into_id) == (member.pk, user.pk)
    assert merge.evidence == {"reason": "import", "row": 2, "file": "link.csv", "job_id": result["job_id"],
                              "ids": ["member_no", "user_id"]}


def test_two_different_phones_in_a_row_are_never_merged_silently(tmp_path):
    import_file(ACTOR, "customers", write(tmp_path, "a.csv", "member_no,phone\nM1,13800000001\nM2,13800000002\n"))

    result = import_file(ACTOR, "customers", write(tmp_path, "b.csv", "member_no,user_id\nM1,u1\nM2,u1\n"))

    assert (result["accepted"], result["merges"], result["conflicts"]) == (2, 0, 1)
    conflict = MergeConflict.objects.get()
    assert conflict.conflicting_kinds == ["member_no", "phone"]
    assert conflict.evidence["row"] == 3


# -- orders ------------------------------------------------------------------
def test_orders_csv_records_money_times_and_attribution(tmp_path):
    import_file(ACTOR, "customers", write(tmp_path, "crm.csv", CUSTOMERS_CSV))

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", ORDERS_CSV))

    assert (result["accepted"], result["rejected"], result["skipped"]) == (3, 0, 0)
    assert result["customers_created"] == 0
    a1, a2, a3 = (Order.objects.get(external_id=i) for i in ("A1", "A2", "A3"))
    assert (a1.amount, a2.amount, a3.amount) == (Decimal("199.00"), Decimal("1200.50"), Decimal("88.00"))
    assert a1.placed_at == shanghai(2024, 5, 1, 13, 45)  # naive times are in the brand's time zone
    assert a3.placed_at == shanghai(2024, 5, 4, 20, 15)
    assert (a1.store, a1.channel, a1.coupon, a1.currency) == ("Jing'an", "store", "SPRING", "CNY")
    assert a1.origin == f"import:{result['job_id']}"
    alice = person("member_no", "M001")
    assert (a1.person_id, alice.order_count, alice.total_spend) == (alice.pk, 2, Decimal("1399.50"))


def test_gbk_orders_with_chinese_headers(tmp_path):
    text = ("订单号,会员号,下单时间,实付金额,订单金额,门店,渠道,优惠券,备注\n"
            "S-1,M001,2024年5月1日 13:45,￥99.90,120.00,静安店,门店,满100减20,老客\n")
    path = write(tmp_path, "订单.csv", text, encoding="gbk")

    result = import_file(ACTOR, "orders", path)

    assert result["accepted"] == 1
    assert result["mapping"] == {"订单号": "order_id", "会员号": "customer_member_no", "下单时间": "placed_at",
                                 "实付金额": "amount", "门店": "store", "渠道": "channel", "优惠券": "coupon"}
    assert result["unmapped_columns"] == ["订单金额", "备注"]
    order = Order.objects.get(external_id="S-1")
    assert (order.amount, order.store, order.coupon) == (Decimal("99.90"), "静安店", "满100减20")
    assert order.placed_at == shanghai(2024, 5, 1, 13, 45)


def test_broken_order_rows_in_the_middle_are_reported_and_the_others_imported(tmp_path):
    text = ("order_id,member_no,placed_at,amount\n"
            "B1,M001,2024-05-01 10:00,10\n"
            "B2,M001,2024-05-01 11:00,ten yuan\n"
            "B3,M001,2024-05-01 12:00,12,extra\n"
            "B4,M001,yesterday,-4\n"
            "B5,,2024-05-01 14:00,14\n"
            "B6,M001,2024-05-01 15:00,15\n")
    path = write(tmp_path, "orders.csv", text)

    result = import_file(ACTOR, "orders", path)

    assert (result["rows"], result["accepted"], result["rejected"], result["skipped"]) == (6, 2, 4, 0)
    assert result["error_count"] == 5
    assert [(e["row"], e["field"], e["reason"]) for e in result["errors"]] == [
        (3, "amount", "is not a number: 'ten yuan'"),
        (4, "columns", "has 5 cells but the header has 4 columns"),
        (5, "placed_at", "is not a date and time: 'yesterday' (use e.g. 2024-05-01 13:45:00 or 2024/5/1 13:45)"),
        (5, "amount", "must not be negative (refunds go in the status or refund_amount column)"),
        (6, "customer", "is empty; every order needs a customer id"),
    ]
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["B1", "B6"]


def test_an_unclosed_quote_is_reported_at_its_row(tmp_path):
    text = 'order_id,member_no,placed_at,amount\nC1,M1,2024-05-01,1\nC2,"M1,2024-05-01,2\nC3,M1,2024-05-01,3\n'
    path = write(tmp_path, "orders.csv", text)

    result = import_file(ACTOR, "orders", path)

    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["errors"][0]["row"] == 3
    assert "never closed" in result["errors"][0]["reason"]


def test_duplicate_order_ids_within_one_file_are_refused(tmp_path):
    text = "order_id,member_no,placed_at,amount\nD1,M1,2024-05-01,1\nD1,M1,2024-05-02,2\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["errors"] == [{"row": 3, "field": "order_id", "column": "order_id",
                                 "reason": "order D1 already appears in row 2 of this file"}]
    assert Order.objects.get().amount == Decimal("1.00")


def test_reimporting_the_same_orders_is_idempotent(tmp_path):
    path = write(tmp_path, "orders.csv", ORDERS_CSV)
    first = import_file(ACTOR, "orders", path)
    before = snapshot()

    again = import_file(ACTOR, "orders", path)

    assert (again["accepted"], again["rejected"], again["skipped"]) == (0, 0, 3)
    assert again["previous_job_id"] == first["job_id"]
    assert snapshot() == before
    assert person("member_no", "M001").total_spend == Decimal("1399.50")
    assert ImportJob.objects.filter(file_sha256=first["sha256"]).count() == 2


def test_orders_for_unknown_customer_ids_create_the_customer(tmp_path):
    text = "order_id,customer_id,placed_at,amount\nN1,C-77,2024-05-01,50\nN2,C-77,2024-05-02,25\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert (result["accepted"], result["customers_created"]) == (2, 1)
    buyer = person("member_no", "C-77")  # a generic customer id is a member number by default
    assert (buyer.order_count, buyer.total_spend) == (2, Decimal("75.00"))


def test_customer_column_takes_a_kind_option_or_a_kind_prefix(tmp_path):
    text = "order_id,customer,placed_at,amount\nK1,13800000009,2024-05-01,1\nK2,user_id:u-9,2024-05-01,2\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text), customer_kind="phone")

    assert result["accepted"] == 2
    assert Order.objects.get(external_id="K1").person_id == person("phone", "+8613800000009").pk
    assert Order.objects.get(external_id="K2").person_id == person("user_id", "u-9").pk


def test_an_unknown_kind_before_a_colon_is_refused_not_read_as_a_member_number(tmp_path):
    text = "order_id,customer_id,placed_at,amount\nQ1,qq:1,2024-05-01,1\nQ2,VIP:7,2024-05-01,2\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert (result["accepted"], result["rejected"]) == (1, 1)
    error = result["errors"][0]
    assert (error["row"], error["field"], error["column"]) == (2, "customer", "customer_id")
    assert error["reason"].startswith("'qq' before the colon is not a kind of id (")
    assert "customer_member_no" in error["reason"]
    assert Order.objects.get(external_id="Q2").person_id == person("member_no", "VIP:7").pk  # not a kind's spelling
    # Mapped to a field that names the kind, the whole cell is the id.
    again = import_file(ACTOR, "orders", write(tmp_path, "o2.csv", text), mapping={"customer_id": "customer_member_no"})
    assert again["accepted"] == 1 and person("member_no", "qq:1") is not None


def test_refund_errors_name_their_column(tmp_path):
    text = ("order_id,member_no,placed_at,amount,status,退款金额\n"
            "P1,M1,2024-05-01,100,部分退款,\nP2,M1,2024-05-01,100,completed,200\n")

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert [(e["row"], e["field"], e["column"]) for e in result["errors"]] == [
        (2, "refund_amount", "退款金额"), (3, "refund_amount", "退款金额")]


def test_refunded_orders_are_refunded_once_and_move_forward_on_reimport(tmp_path):
    first = ("order_id,member_no,placed_at,amount,status,refund_amount\n"
             "R1,M1,2024-05-01,100,已退款,\n"
             "R2,M1,2024-05-01,100,completed,\n"
             "R3,M1,2024-05-01,100,部分退款,30\n")
    import_file(ACTOR, "orders", write(tmp_path, "a.csv", first))
    later = first.replace("R2,M1,2024-05-01,100,completed,", "R2,M1,2024-05-01,100,refunded,")

    result = import_file(ACTOR, "orders", write(tmp_path, "b.csv", later))
    repeat = import_file(ACTOR, "orders", write(tmp_path, "b.csv", later))

    assert (result["accepted"], result["skipped"]) == (1, 2)
    assert (repeat["accepted"], repeat["skipped"]) == (0, 3)
    refunded = dict(Order.objects.values_list("external_id", "refunded_amount"))
    assert refunded == {"R1": Decimal("100.00"), "R2": Decimal("100.00"), "R3": Decimal("30.00")}
    assert person("member_no", "M1").total_spend == Decimal("70.00")


def test_cancelled_orders_are_refused_with_the_reason(tmp_path):
    text = "order_id,member_no,placed_at,amount,订单状态\nX1,M1,2024-05-01,10,已取消\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert result["errors"] == [{"row": 2, "field": "status", "column": "订单状态",
                                 "reason": "'已取消' orders are not imported: only paid orders (completed or"
                                           " refunded) are"}]


def test_imported_orders_reach_the_event_store(tmp_path):
    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", ORDERS_CSV))

    assert result["event_store"] == "synced"
    rows = get_store().cursor().execute(
        "SELECT event, order_id, revenue FROM events ORDER BY order_id").fetchall()
    assert rows == [("Order Completed", "A1", Decimal("199.00")), ("Order Completed", "A2", Decimal("1200.50")),
                    ("Order Completed", "A3", Decimal("88.00"))]


def test_rows_are_written_in_chunks_that_see_each_other(tmp_path, monkeypatch):
    monkeypatch.setattr("siyu.imports.actions.CHUNK_ROWS", 2)
    text = "order_id,member_no,placed_at,amount\n" + "".join(
        f"W{i},M{i % 2},2024-05-0{i + 1},{i + 1}\n" for i in range(5))

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text))

    assert (result["accepted"], result["customers_created"]) == (5, 2)
    assert [person(k, v).order_count for k, v in (("member_no", "M0"), ("member_no", "M1"))] == [3, 2]


def test_a_run_that_fails_midway_keeps_committed_chunks_and_a_rerun_completes_it(tmp_path, monkeypatch):
    from siyu.imports.orders import OrderImporter

    monkeypatch.setattr("siyu.imports.actions.CHUNK_ROWS", 2)
    real_commit = OrderImporter.commit
    calls = []

    def failing_commit(self, plan, report):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        real_commit(self, plan, report)

    text = "order_id,member_no,placed_at,amount\n" + "".join(
        f"F{i},M1,2024-05-0{i + 1},1\n" for i in range(5))
    path = write(tmp_path, "orders.csv", text)
    monkeypatch.setattr(OrderImporter, "commit", failing_commit)

    with pytest.raises(RuntimeError):
        import_file(ACTOR, "orders", path)

    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["F0", "F1"]
    failed = ImportJob.objects.get()
    assert (failed.status, failed.message) == ("failed", "RuntimeError: database went away")
    monkeypatch.setattr(OrderImporter, "commit", real_commit)
    rerun = import_file(ACTOR, "orders", path)
    assert (rerun["accepted"], rerun["skipped"]) == (3, 2)
    assert Order.objects.count() == 5


# -- mapping -----------------------------------------------------------------
def test_mapping_overrides_the_automatic_one(tmp_path):
    text = "单据,卡,日期,合计,Total\nM1,VIP1,2024-05-01,10,999\n"

    result = import_file(ACTOR, "orders", write(tmp_path, "orders.csv", text),
                         mapping={"单据": "order_id", "卡": "customer_member_no", "合计": "amount",
                                  "Total": "ignore"})

    assert result["mapping"] == {"单据": "order_id", "卡": "customer_member_no", "日期": "placed_at",
                                 "合计": "amount"}
    assert Order.objects.get(external_id="M1").amount == Decimal("10.00")


def test_mapping_to_an_unknown_field_refuses_the_file(tmp_path):
    path = write(tmp_path, "orders.csv", ORDERS_CSV)

    with pytest.raises(ImportFileError, match=r"cannot map column 'amount' to 'price': orders imports know"):
        import_file(ACTOR, "orders", path, mapping={"amount": "price"})

    assert ImportJob.objects.get().status == ImportJob.Status.REFUSED
    assert Order.objects.count() == 0


def test_an_orders_file_without_required_columns_is_refused_naming_them(tmp_path):
    path = write(tmp_path, "orders.csv", "order_id,amount\nZ1,1\n")

    with pytest.raises(ImportFileError) as exc:
        import_file(ACTOR, "orders", path)

    assert str(exc.value).startswith("the file has no column for placed_at, customer;")
    # The message is also the job's record, read from any interface: it names no option's syntax.
    assert exc.value.needs_mapping and "--map" not in str(exc.value) and "mapping=" not in str(exc.value)
    assert ImportJob.objects.get().message == str(exc.value)


# -- dry run -----------------------------------------------------------------
def test_dry_run_reports_what_would_happen_and_changes_nothing(tmp_path):
    import_file(ACTOR, "customers", write(tmp_path, "crm.csv", CUSTOMERS_CSV))
    text = ORDERS_CSV + "A4,M404,2024-05-05 10:00,5,,,\nA5,M404,2024-05-05 11:00,oops,,,\n"
    path = write(tmp_path, "orders.csv", text)
    before = snapshot()

    result = import_file(ACTOR, "orders", path, dry_run=True)

    assert result["dry_run"] is True
    assert (result["accepted"], result["rejected"], result["skipped"], result["customers_created"]) == (4, 1, 0, 1)
    assert result["errors"] == [{"row": 6, "field": "amount", "column": "amount",
                                 "reason": "is not a number: 'oops'"}]
    assert snapshot() == before
    assert person("member_no", "M001").order_count == 0
    real = import_file(ACTOR, "orders", path)
    assert (real["accepted"], real["rejected"], real["customers_created"]) == (4, 1, 1)


def test_dry_run_of_customers_changes_nothing(tmp_path):
    path = write(tmp_path, "crm.csv", CUSTOMERS_CSV)

    result = import_file(ACTOR, "customers", path, dry_run=True)

    assert (result["accepted"], result["customers_created"]) == (2, 2)
    assert snapshot() == {"persons": 0, "identities": 0, "orders": 0, "merges": 0, "conflicts": 0}
    assert ImportJob.objects.get().dry_run is True


# -- Excel -------------------------------------------------------------------
def xlsx(tmp_path: Path, rows: list[list], merge: list[str] = (), name: str = "book.xlsx", title: str = "Sheet1"):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = title
    for row in rows:
        sheet.append(row)
    for ref in merge:
        sheet.merge_cells(ref)
    path = tmp_path / name
    book.save(path)
    return path


def test_xlsx_orders_with_typed_cells(tmp_path):
    path = xlsx(tmp_path, [
        ["订单号", "手机号", "下单时间", "实付金额"],
        [20240001, 13800000001, datetime(2024, 5, 1, 13, 45), 19.9],
        ["20240002", "13800000001", "2024-05-02 08:00", 1200],
    ], title="订单")

    result = import_file(ACTOR, "orders", path)

    assert (result["accepted"], result["rejected"]) == (2, 0)
    assert result["file_format"] == {"format": "xlsx", "sheet": "订单"}
    first = Order.objects.get(external_id="20240001")
    assert (first.amount, first.placed_at) == (Decimal("19.90"), shanghai(2024, 5, 1, 13, 45))
    assert first.person_id == person("phone", "13800000001").pk


def test_xlsx_sheet_is_chosen_by_name(tmp_path):
    from openpyxl import load_workbook

    path = xlsx(tmp_path, [["note"], ["not data"]])
    book = load_workbook(path)
    book.create_sheet("会员").append(["会员号", "姓名"])
    book["会员"].append(["M9", "Ann"])
    book.save(path)

    result = import_file(ACTOR, "customers", path, sheet="会员")

    assert result["accepted"] == 1
    with pytest.raises(ImportFileError, match=r"the workbook has no sheet 'Nope'; its sheets are: Sheet1, 会员"):
        import_file(ACTOR, "customers", path, sheet="Nope")


def test_xlsx_merged_cells_reject_the_rows_they_cover(tmp_path):
    path = xlsx(tmp_path, [
        ["order_id", "member_no", "placed_at", "amount"],
        ["E1", "M1", "2024-05-01", 1],
        ["E2", "M1", "2024-05-01", 2],
        ["E3", None, "2024-05-01", "three"],
        ["E4", "M2", "2024-05-01", 4],
    ], merge=["B3:B4"])

    result = import_file(ACTOR, "orders", path)

    assert (result["accepted"], result["rejected"]) == (2, 2)
    reason = "cell B3 is part of the merged cells B3:B4; unmerge them and fill in the value on every row"
    # The row's other bad cell is reported too: one pass finds every error.
    assert result["errors"] == [{"row": 3, "field": "customer_member_no", "column": "member_no", "reason": reason},
                                {"row": 4, "field": "customer_member_no", "column": "member_no", "reason": reason},
                                {"row": 4, "field": "amount", "column": "amount", "reason": "is not a number: 'three'"}]
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["E1", "E4"]


def test_xlsx_value_without_a_header_rejects_its_row(tmp_path):
    path = xlsx(tmp_path, [["member_no", "name"], ["M1", "Ann"], ["M2", "Bo", "stray note"]])

    result = import_file(ACTOR, "customers", path)

    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["errors"] == [{"row": 3, "field": "columns", "column": "",
                                 "reason": "has a value in column C, which has no header"}]


def test_xlsx_with_a_merged_header_is_refused(tmp_path):
    path = xlsx(tmp_path, [["phone", None, "name"], ["13800000001", "x", "Ann"]], merge=["A1:B1"])

    with pytest.raises(ImportFileError) as exc:
        import_file(ACTOR, "customers", path)

    assert str(exc.value) == ("the header row has merged cells (A1:B1); unmerge them so every column has its"
                              " own name")
    assert snapshot()["persons"] == 0


def test_old_xls_files_are_refused_clearly(tmp_path):
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 60)

    with pytest.raises(ImportFileError, match=r"old Excel .xls files are not supported"):
        import_file(ACTOR, "customers", path)


# -- values ------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "expected"), [
    ("199", "199.00"), ("¥1,234.50", "1234.50"), ("￥ 88 元", "88.00"), ("RMB 5.5", "5.50"), (19.9, "19.90"),
    (1200, "1200.00"), ("0", "0.00"),
])
def test_amounts_are_read_as_decimal(raw, expected):
    assert values.parse_amount(raw) == Decimal(expected)


@pytest.mark.parametrize(("raw", "reason"), [
    ("-5", "must not be negative"), ("(5.00)", "must not be negative"), ("abc", "is not a number: 'abc'"),
    ("1.005", "has more than two decimal places: 1.005"), ("1e13", "is too large"),
])
def test_bad_amounts_are_refused_with_a_reason(raw, reason):
    with pytest.raises(ValueProblem, match=rf"^{reason}"):
        values.parse_amount(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("cny", "CNY"), ("人民币", "CNY"), (" ￥ ", "CNY"), ("US$", "USD"), ("港币", "HKD"), ("eur", "EUR"), ("XYZ", None),
    ("RMB元", None), ("", None),
])
def test_currencies_are_iso_codes_or_their_usual_names(raw, expected):
    if expected:
        assert values.parse_currency(raw) == expected
    else:
        with pytest.raises(ValueProblem, match="is not a currency code"):
            values.parse_currency(raw)


@pytest.mark.parametrize("raw", [
    "2024-05-01 13:45:00", "2024-05-01T13:45", "2024/5/1 13:45", "2024.05.01 13:45:00", "2024年5月1日 13:45",
    "20240501134500", "2024-05-01T05:45:00Z", "2024-05-01 13:45:00+08:00", "1714542300000",
])
def test_order_times_in_common_formats(raw):
    assert values.parse_time(raw) == shanghai(2024, 5, 1, 13, 45)


@pytest.mark.parametrize(("raw", "expected"), [
    ("1990-05-01", "1990-05-01"), ("1990/5/1", "1990-05-01"), ("19900501", "1990-05-01"),
    ("05-01", "--05-01"), ("5月1日", "--05-01"),
])
def test_birthdays(raw, expected):
    assert values.parse_birthday(raw) == expected


# -- CLI and API -------------------------------------------------------------
def test_cli_import_prints_counts_and_errors_as_json(tmp_path, capsys):
    from siyu.cli import main

    text = ORDERS_CSV + "A9,M009,2024-05-09,nine,,,\n"
    path = write(tmp_path, "orders.csv", text)

    main(["import", "orders", str(path), "--json"])

    out = json.loads(capsys.readouterr().out)
    assert (out["kind"], out["file"], out["dry_run"]) == ("orders", "orders.csv", False)
    assert (out["accepted"], out["rejected"], out["skipped"]) == (3, 1, 0)
    assert out["errors"] == [{"row": 5, "field": "amount", "column": "amount", "reason": "is not a number: 'nine'"}]
    assert out["job_id"] == ImportJob.objects.get().pk


def test_cli_dry_run_with_a_mapping(tmp_path, capsys):
    from siyu.cli import main

    path = write(tmp_path, "crm.csv", "Mobile No.,Card\n13800000001,M1\n")

    main(["import", "customers", str(path), "--dry-run", "--map", "Card=member_no"])

    assert capsys.readouterr().out == "dry run: 1 accepted, 0 rejected, 0 already imported\n"
    assert Person.objects.count() == 0


def test_cli_refused_file_exits_2_with_the_reason(tmp_path, capsys):
    from siyu.cli import main

    path = write(tmp_path, "orders.csv", "order_id\nQ1\n")

    with pytest.raises(SystemExit) as exc:
        main(["import", "orders", str(path), "--json"])

    assert exc.value.code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error.startswith("the file has no column for placed_at, amount,")
    assert error.endswith("Map a column with --map COLUMN=FIELD.")


def test_api_upload_imports_and_lists_jobs(api_client, admin_user):
    client = api_client(admin_user)
    upload = SimpleUploadedFile("orders.csv", ORDERS_CSV.encode(), content_type="text/csv")

    response = client.post("/api/v1/imports/orders", {"file": upload, "dry_run": "false",
                                                      "mapping": json.dumps({"store": "ignore"})})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["file"], body["accepted"], body["rejected"], body["dry_run"]) == ("orders.csv", 3, 0, False)
    assert "store" not in body["mapping"]
    assert Order.objects.get(external_id="A1").store == ""
    listed = client.get("/api/v1/imports").json()
    assert [(j["job_id"], j["kind"], j["actor"]) for j in listed] == [(body["job_id"], "orders", "admin")]
    detail = client.get(f"/api/v1/imports/{body['job_id']}").json()
    assert detail["sha256"] == body["sha256"]


def test_api_dry_run_upload_of_excel(api_client, admin_user, tmp_path):
    path = xlsx(tmp_path, [["会员号", "姓名"], ["M1", "Ann"]])
    upload = SimpleUploadedFile("members.xlsx", path.read_bytes())

    response = api_client(admin_user).post("/api/v1/imports/customers", {"file": upload, "dry_run": "true"})

    assert response.status_code == 200, response.content
    assert (response.json()["accepted"], response.json()["dry_run"]) == (1, True)
    assert Person.objects.count() == 0


def test_api_refuses_a_role_without_the_import_permission(api_client, analyst):
    upload = SimpleUploadedFile("orders.csv", ORDERS_CSV.encode())

    response = api_client(analyst).post("/api/v1/imports/orders", {"file": upload})

    assert response.status_code == 403
    assert Order.objects.count() == 0
    assert ImportJob.objects.count() == 0


def test_api_reports_a_refused_file_and_a_bad_mapping_as_422(api_client, admin_user):
    client = api_client(admin_user)

    refused = client.post("/api/v1/imports/orders", {"file": SimpleUploadedFile("o.csv", b"order_id\n1\n")})
    bad_json = client.post("/api/v1/imports/orders", {"file": SimpleUploadedFile("o.csv", b"x"), "mapping": "{"})

    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("the file has no column for placed_at")
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"].startswith("mapping is not valid JSON")
