"""``siyu segment …`` and ``siyu tag …``: parse, call one action or query, print (``--json`` for scripts).

Commands that evaluate rules open the event store, which one process owns: while
``siyu serve`` runs they say so and point at the API instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from siyu.cli import CliError, ask_server, customer_ref, emit, hours, json_object, offset, page_size


def _rule(text: str, option: str = "--rule") -> dict[str, Any]:
    return json_object(text, option, " (a rule: docs/segments.md)")


def _run(args: argparse.Namespace, work: Callable[[], Any], api: tuple[str, str, Any] | None = None) -> Any:
    """Run ``work`` against a synced event store, turning rule and store errors into CLI errors.

    While ``siyu serve`` holds the store, ``api`` (method, path, body) is sent to it instead:
    ``work`` returns what that endpoint answers, so the output is the same either way.
    """
    from siyu.analytics import sync
    from siyu.analytics.engine import EventStoreBusy, get_store
    from siyu.segments.rules import RuleError

    try:
        sync.sync_all(get_store())  # this process owns the store now: bring in what others recorded
        return work()
    except RuleError as exc:
        if args.json:
            print(json.dumps({"error": "invalid rule", "errors": exc.errors}, ensure_ascii=False, indent=2))
            sys.exit(2)
        raise CliError(f"invalid rule: {exc}") from None
    except EventStoreBusy as exc:
        if api is None:
            raise CliError(f"{exc}; ask the running server instead: /api/v1/segments") from None
        return ask_server(args, *api)
    except ValueError as exc:  # SegmentError
        raise CliError(str(exc)) from None


def _segment(ref: str):
    from siyu.segments.models import Segment

    segment = (Segment.objects.filter(pk=int(ref)).first() if ref.isdigit()
               else Segment.objects.filter(key=ref).first())
    if segment is None:
        raise CliError(f"no segment {ref!r} (an id, or a built-in key such as tier:high_value; see `siyu segment list`)")
    return segment


def _segment_dict(s) -> dict[str, Any]:
    """A segment as the API shows it."""
    from siyu.segments.schemas import SegmentOut, segment_out

    return SegmentOut(**segment_out(s)).model_dump(mode="json")


# -- segment ------------------------------------------------------------------------------------
def cmd_count(args: argparse.Namespace) -> None:
    from siyu.segments import queries

    rule = _rule(args.rule)
    data = _run(args, lambda: {"count": queries.count(rule)}, ("POST", "/api/v1/segments/count", {"rule": rule}))
    emit(args, data, lambda d: f"{d['count']:,} customers")


def cmd_list(args: argparse.Namespace) -> None:
    from siyu.segments.actions import ensure_builtin_segments
    from siyu.segments.models import Segment

    ensure_builtin_segments()
    rows = [_segment_dict(s) for s in Segment.objects.all()]
    emit(args, rows, lambda rs: "\n".join(
        f"#{r['id']:<5} {r['key'] or '-':<28} {r['name']:<30} size={'-' if r['size'] is None else r['size']}"
        for r in rs))


def cmd_create(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    rule = _rule(args.rule)
    body = {"name": args.name, "rule": rule, "description": args.description or "", "refresh": not args.no_refresh}

    def work() -> dict[str, Any]:
        segment = actions.create_segment(cli_actor(), args.name, rule, args.description or "")
        if not args.no_refresh:
            actions.refresh_segment(cli_actor(), segment)
        return _segment_dict(segment)

    emit(args, _run(args, work, ("POST", "/api/v1/segments", body)),
         lambda d: f"segment #{d['id']} {d['name']}: {d['size']} customers")


def cmd_delete(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    segment = _segment(args.segment)
    pk = segment.pk
    _run(args, lambda: actions.delete_segment(cli_actor(), segment))
    emit(args, {"deleted": pk}, lambda d: f"segment #{d['deleted']} deleted")


def cmd_refresh(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions
    from siyu.segments.schemas import RefreshOut, refresh_out

    if args.segment is None:
        emit(args, _run(args, lambda: actions.refresh_all(cli_actor()), ("POST", "/api/v1/segments/refresh", None)),
             lambda d: f"refreshed {d['segments']} segments and {d['rule_tags']} rule tags in {d['seconds']} s")
        return
    segment = _segment(args.segment)
    data = _run(args, lambda: RefreshOut(**refresh_out(actions.refresh_segment(cli_actor(), segment)))
                .model_dump(mode="json"), ("POST", f"/api/v1/segments/{segment.pk}/refresh", None))
    emit(args, data, lambda d: f"{d['size']:,} members ({d['entered']:,} entered, {d['left']:,} left)"
                               f" in {d['duration_ms']} ms")


def cmd_members(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import queries
    from siyu.segments.schemas import MembersOut

    segment = _segment(args.segment)

    def work() -> dict[str, Any]:
        page = queries.stored_members(segment.pk, cli_actor(), offset=args.offset, limit=args.limit)
        return MembersOut(**page).model_dump(mode="json")

    path = f"/api/v1/segments/{segment.pk}/members?limit={max(args.limit, 1)}&offset={args.offset}"
    emit(args, _run(args, work, ("GET", path, None)),
         lambda d: "\n".join(f"#{r['id']:<8} {r['display']:<16} orders={r['order_count']} spend={r['total_spend']}"
                             for r in d["items"]) + f"\n({d['count']:,} members)")


def cmd_changes(args: argparse.Namespace) -> None:
    from urllib.parse import quote

    from siyu.segments import queries
    from siyu.segments.schemas import ChangesOut

    segment = _segment(args.segment)
    since = datetime.now(UTC) - timedelta(hours=args.hours)
    data = _run(args, lambda: ChangesOut(**queries.changes(segment.pk, since)).model_dump(mode="json"),
                ("GET", f"/api/v1/segments/{segment.pk}/changes?since={quote(since.isoformat())}", None))
    emit(args, data, lambda d: f"since {d['since'][:16]}: {len(d['entered'])} entered, {len(d['left'])} left")


def cmd_persona(args: argparse.Namespace) -> None:
    from siyu.segments import queries

    if (args.segment is None) == (args.rule is None):
        raise CliError("give a segment (id or key) or --rule JSON")
    rule = _rule(args.rule) if args.rule is not None else _segment(args.segment).rule
    data = _run(args, lambda: queries.persona(rule).model_dump(mode="json"),
                ("POST", "/api/v1/segments/persona", {"rule": rule}))
    emit(args, data, _human_persona)


def _human_persona(d: dict) -> str:
    f = d["figures"]
    lines = [f"{f['customers']:,} customers, {f['buyers']:,} buyers, spend {f['total_spend']:,.2f},"
             f" AOV {f['average_order_value']}, repurchase {f['repurchase_rate']:.1%}"]
    for name, shares in d["dimensions"].items():
        lines.append(f"{name}: " + ", ".join(f"{s['value']} {s['share']:.0%}" for s in shares[:6]))
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments.actions import export_members

    segment = _segment(args.segment)
    lines = _run(args, lambda: list(export_members(cli_actor(), segment)))
    Path(args.file).write_text("".join(lines), encoding="utf-8")
    emit(args, {"file": args.file, "rows": len(lines) - 1}, lambda d: f"wrote {d['rows']:,} members to {d['file']}")


def cmd_tiers(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions
    from siyu.segments.models import TierSettings

    values = {}
    for item in args.set or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--set takes NAME=VALUE, not {item!r}")
        values[name.strip()] = value.strip()
    try:
        tiers = actions.update_tier_settings(cli_actor(), values) if values else TierSettings.current()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    emit(args, {name: str(getattr(tiers, name)) for name in actions.TIER_FIELDS},
         lambda d: "\n".join(f"{k:<18} {v}" for k, v in d.items()))


# -- tag ----------------------------------------------------------------------------------------
def cmd_tag_list(args: argparse.Namespace) -> None:
    from siyu.segments.models import Tag
    from siyu.segments.schemas import TagOut, tag_out

    rows = [TagOut(**tag_out(t)).model_dump(mode="json") for t in Tag.objects.all()]
    emit(args, rows, lambda rs: "\n".join(f"{r['name']:<24} {r['people']:>8,}  {'rule' if r['rule'] else 'manual'}"
                                          for r in rs) or "no tags")


def cmd_tag_create(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    rule = _rule(args.rule) if args.rule else None
    try:
        tag = actions.create_tag(cli_actor(), args.name, args.description or "", rule)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    done = _run(args, lambda: actions.refresh_rule_tag(cli_actor(), tag)) if rule else {"size": 0}
    emit(args, {"name": tag.name, "rule": tag.rule, "people": done["size"]},
         lambda d: f"tag {d['name']} created ({d['people']} customers)")


def _customers(values: list[str]) -> list[int]:
    from siyu.customers.queries import Lookup, NotFound, find_person

    ids = []
    for value in values:
        if value.isdigit():
            ids.append(int(value))
            continue
        try:
            ids.append(find_person(Lookup.parse(value)).pk)
        except (ValueError, NotFound) as exc:
            raise CliError(f"--customer {value}: {exc}") from None
    return ids


def cmd_tag_add(args: argparse.Namespace) -> None:
    _tag_people(args, add=True)


def cmd_tag_remove(args: argparse.Namespace) -> None:
    _tag_people(args, add=False)


def _tag_people(args: argparse.Namespace, *, add: bool) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    change = actions.add_tag if add else actions.remove_tag
    try:
        changed = change(cli_actor(), args.name, _customers(args.customer))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    emit(args, {"changed": changed}, lambda d: f"{'tagged' if add else 'untagged'} {d['changed']} customers")


def cmd_tag_import(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no file {args.file}")
    try:
        result = actions.import_tag_csv(cli_actor(), args.name, path.read_bytes(), dry_run=args.dry_run)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    data = {"rows": result.rows, "tagged": result.tagged, "dry_run": result.dry_run, "errors": result.errors}
    emit(args, data, lambda d: "\n".join(
        [f"{d['rows']} rows: {d['tagged']} customers {'would be ' if d['dry_run'] else ''}tagged"]
        + [f"  row {e['row']} {e['field']}: {e['reason']}" for e in d["errors"]]))
    if result.errors and args.strict:
        sys.exit(1)


def cmd_tag_from_segment(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions

    segment = _segment(args.segment)
    changed = _run(args, lambda: actions.tag_segment(cli_actor(), args.name, segment))
    emit(args, {"changed": changed}, lambda d: f"tagged {d['changed']} customers")


def cmd_tag_refresh(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.segments import actions
    from siyu.segments.models import Tag

    tag = Tag.objects.filter(name=args.name).first()
    if tag is None:
        raise CliError(f"no tag {args.name!r}")
    emit(args, _run(args, lambda: actions.refresh_rule_tag(cli_actor(), tag)),
         lambda d: f"{d['size']} customers ({d['added']} added, {d['removed']} removed)")


RULE_EXAMPLE = ('{"and": [{"type": "event", "event": "Order Completed", "within_days": 90, '
                '"count": {"op": "gte", "value": 2}}, {"type": "attribute", "field": "p_alive", "op": "lt", '
                '"value": 0.3}]}')


def register(sub, add: Callable[..., argparse.ArgumentParser]) -> None:
    """Add ``segment`` and ``tag`` to the ``siyu`` parser."""
    seg = sub.add_parser("segment", help="Segments: count, save, refresh, members, persona.").add_subparsers(
        dest="sub", required=True)
    c = add("count", cmd_count, "Count the customers a rule matches now (the rule form of docs/segments.md).",
            parent=seg)
    c.add_argument("--rule", required=True, metavar="JSON", help=f"a rule, e.g. '{RULE_EXAMPLE}'")
    add("list", cmd_list, "List segments (built-in and custom) with their size at the last refresh.", parent=seg)
    cr = add("create", cmd_create, "Save a segment and compute its members.", parent=seg)
    cr.add_argument("--name", required=True)
    cr.add_argument("--rule", required=True, metavar="JSON")
    cr.add_argument("--description")
    cr.add_argument("--no-refresh", action="store_true", help="save only (the server refreshes it later)")
    de = add("delete", cmd_delete, "Delete a custom segment.", parent=seg)
    de.add_argument("segment", metavar="SEGMENT", help="id or built-in key")
    rf = add("refresh", cmd_refresh, "Recompute one segment's members, or every segment and rule tag.",
             parent=seg)
    rf.add_argument("segment", nargs="?", metavar="SEGMENT", help="id or key (default: all)")
    mb = add("members", cmd_members, "List a segment's members (as of its last refresh).", parent=seg)
    mb.add_argument("segment", metavar="SEGMENT")
    mb.add_argument("--limit", type=page_size, default=50, help="members to show, 1 to 500 (default 50)")
    mb.add_argument("--offset", type=offset, default=0)
    ch = add("changes", cmd_changes, "Who entered and left a segment recently.", parent=seg)
    ch.add_argument("segment", metavar="SEGMENT")
    ch.add_argument("--hours", type=hours, default=24, help="look back N hours (default 24)")
    pe = add("persona", cmd_persona, "The make-up and key figures of a segment or a rule.", parent=seg)
    pe.add_argument("segment", nargs="?", metavar="SEGMENT")
    pe.add_argument("--rule", metavar="JSON")
    ex = add("export", cmd_export, "Write a segment's members to a CSV file.", parent=seg)
    ex.add_argument("segment", metavar="SEGMENT")
    ex.add_argument("file")
    ti = add("tiers", cmd_tiers, "Show or change the value-tier and lifecycle thresholds.", parent=seg)
    ti.add_argument("--set", action="append", metavar="NAME=VALUE",
                    help="high_value_spend, high_value_orders, lookback_days, active_days, silent_after, "
                         "churned_after")

    tag = sub.add_parser("tag", help="Tags on customers.").add_subparsers(dest="sub", required=True)
    add("list", cmd_tag_list, "List tags and how many customers carry each.", parent=tag)
    tc = add("create", cmd_tag_create, "Create a tag (with --rule: kept on the customers the rule matches).",
             parent=tag)
    tc.add_argument("name")
    tc.add_argument("--description")
    tc.add_argument("--rule", metavar="JSON")
    for name, func, text in (("add", cmd_tag_add, "Tag customers (the tag is created when new)."),
                             ("remove", cmd_tag_remove, "Untag customers.")):
        sp = add(name, func, text, parent=tag)
        sp.add_argument("name")
        sp.add_argument("--customer", action="append", required=True, metavar="ID", type=customer_ref,
                        help="a customer number or KIND:VALUE (repeat for several)")
    ti = add("import", cmd_tag_import, "Tag the customers a CSV names (customer_id, phone, email, ... column).",
             parent=tag)
    ti.add_argument("name")
    ti.add_argument("file")
    ti.add_argument("--dry-run", action="store_true", help="report; tag nobody")
    ti.add_argument("--strict", action="store_true", help="exit 1 when any row names nobody")
    fs = add("from-segment", cmd_tag_from_segment, "Tag every member of a segment.", parent=tag)
    fs.add_argument("name")
    fs.add_argument("segment", metavar="SEGMENT")
    tr = add("refresh", cmd_tag_refresh, "Re-apply a rule tag's rule now.", parent=tag)
    tr.add_argument("name")
