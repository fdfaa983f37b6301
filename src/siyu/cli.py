"""The ``siyu`` command. Each subcommand parses, calls one action, prints (``--json`` for scripts)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from siyu.db import MAX_INT, row_number


class CliError(Exception):
    """A user error: printed without a traceback, exit status 2."""


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    django.setup()
    ensure_migrated()


def ensure_migrated() -> None:
    """Apply pending migrations (cheap when there are none): every command works on a fresh folder."""
    import fcntl

    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from siyu.conf import data_dir

    executor = MigrationExecutor(connection)
    if not executor.migration_plan(executor.loader.graph.leaf_nodes()):
        return
    # Two commands started together on a fresh folder must not both create tables.
    with open(data_dir() / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        executor = MigrationExecutor(connection)
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            call_command("migrate", verbosity=0, interactive=False)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str] | None = None) -> None:
    if getattr(args, "json", False) or human is None:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(human(data))


def json_object(text: str, option: str, what: str = "") -> dict[str, Any]:
    """The JSON object an option holds; CliError naming the option and where the JSON breaks."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(body, dict):
        raise CliError(f"{option} must be a JSON object{what}")
    return body


def ask_server(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """``siyu serve`` holds the event store: send the same request to it (``accounts.local``)."""
    from siyu.accounts import local

    info = local.running_server()
    if info is None:
        raise CliError("the event store is in use by another siyu process (not a server); try again when it ends")
    status, data = local.ask(info, method, path, body)
    if status == 422 and isinstance(data, dict):
        if getattr(args, "json", False):
            print(json.dumps(data, ensure_ascii=False, indent=2))
            sys.exit(2)
        reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in data.get("errors", []))
        raise CliError(f"{data.get('error') or data.get('detail')}{': ' + reasons if reasons else ''}")
    if status >= 400:
        detail = data.get("detail") or data.get("error") if isinstance(data, dict) else data
        raise CliError(f"the server at {info['url']} answered {status}: {detail}")
    return data


# -- serve / demo ------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> None:
    from siyu.server import serve

    serve(args.host, args.port, threads=args.threads)


def cmd_demo(args: argparse.Namespace) -> None:
    from siyu.demo.build import DemoError, build_demo

    try:
        result = build_demo(customers=args.customers, seed=args.seed, progress=not args.json, fresh=args.fresh)
    except DemoError as exc:
        raise CliError(str(exc)) from None
    emit(args, result, lambda r: "\n".join(f"{k}: {v}" for k, v in r.items()))
    if not args.no_serve:
        from siyu.server import serve

        serve(args.host, args.port, threads=args.threads)


# -- sources -----------------------------------------------------------------
def cmd_source_create(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.ingest import actions

    try:
        source = actions.create_source(cli_actor(), args.name, args.kind)
    except actions.SourceError as exc:
        raise CliError(str(exc)) from None
    emit(args, actions.source_dict(source), lambda d: f"source {d['name']} created\nwrite key: {d['write_key']}")


def cmd_source_list(args: argparse.Namespace) -> None:
    from siyu.ingest import actions
    from siyu.ingest.models import Source

    rows = [actions.source_dict(s) for s in Source.objects.all()]
    emit(args, rows, lambda rs: "\n".join(f"{r['name']:<24} {r['kind']:<8} {r['write_key']}" for r in rs))


# -- imports -----------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> None:
    from django.utils.translation import gettext as _

    from siyu.accounts.actor import cli_actor
    from siyu.imports.actions import ImportFileError, import_file

    mapping = {}
    for item in args.map or []:
        column, sep, field = item.partition("=")
        if not sep:
            raise CliError(f"--map takes COLUMN=FIELD, got {item!r}")
        mapping[column] = field
    if os.path.isdir(args.file):
        raise CliError(f"{args.file} is a directory, not a file: give the CSV or Excel file to import")
    try:
        result = import_file(cli_actor(), args.kind, args.file, mapping=mapping, dry_run=args.dry_run,
                             sheet=args.sheet, customer_kind=args.customer_kind)
    except ImportFileError as exc:
        raise CliError(exc.hinted(_("%(refusal)s. Map a column with --map COLUMN=FIELD."))) from None
    emit(args, result, _human_import)
    if result.get("rejected") and args.strict:
        sys.exit(1)


def _human_import(r: dict) -> str:
    lines = [f"{'dry run: ' if r['dry_run'] else ''}{r['accepted']} accepted, {r['rejected']} rejected,"
             f" {r['skipped']} already imported"]
    lines += [f"  row {e['row']}: {e['field']}: {e['reason']}" for e in r["errors"][:50]]
    return "\n".join(lines)


# -- customers ---------------------------------------------------------------
def _lookup(text: str):
    from siyu.customers import queries

    kind, sep, value = text.partition(":")
    if sep and kind and not value.strip():
        raise CliError(f"{text!r}: the value after {kind + ':'!r} is empty (e.g. phone:13800138000)")
    try:
        return queries.find_person(queries.Lookup.parse(text))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except queries.NotFound as exc:
        raise CliError(str(exc)) from None


def settle_server() -> None:
    """Beside a running server, first let it process what it has answered ``200`` for (up to a few
    seconds), so that a customer read right after sending sees it."""
    from siyu.accounts import local

    info = local.running_server()
    if info is not None:
        with contextlib.suppress(OSError):  # the server is stopping: read what the database holds
            local.ask(info, "GET", "/api/v1/sources/ingestion?wait=5")


def cmd_customer_show(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.customers import queries

    settle_server()
    person = _lookup(args.id)
    data = queries.profile(person, cli_actor())
    data["merges"] = queries.merge_history(person)
    emit(args, data, _human_profile)


def _human_profile(d: dict) -> str:
    lines = [f"customer #{d['id']}", "ids:"]
    lines += [f"  {i['kind']:<20} {i['value']}" for i in d["identities"]]
    lines += ["personal data:"] + [f"  {k:<20} {v}" for k, v in d["personal"].items()]
    lines += ["computed:"] + [f"  {k:<20} {v}" for k, v in d["computed"].items() if v not in (None, {}, "")]
    lines += ["traits:"] + [f"  {k:<20} {v}" for k, v in d["traits"].items()]
    lines += ["merges:"] + [f"  {m['explanation']}" for m in d.get("merges", [])] if d.get("merges") else []
    return "\n".join(lines)


def cmd_customer_list(args: argparse.Namespace) -> None:
    from siyu.accounts.actor import cli_actor
    from siyu.customers import queries

    settle_server()
    actor = cli_actor()
    qs = queries.search(args.q or "", args.channel or "")
    rows = [
        {"id": p.pk, "display": queries.display_name(p, actor), "order_count": p.order_count,
         "total_spend": str(p.total_spend), "acquisition_channel": p.acquisition_channel or None,
         "last_seen": p.last_seen.isoformat() if p.last_seen else None}
        for p in qs[args.offset : args.offset + args.limit]
    ]
    emit(args, {"count": qs.count(), "items": rows},
         lambda d: "\n".join(f"#{r['id']:<8} {r['display']:<16} orders={r['order_count']} spend={r['total_spend']}"
                             for r in d["items"]) + f"\n({d['count']} customers)")


def cmd_customer_merges(args: argparse.Namespace) -> None:
    from siyu.customers import queries

    settle_server()
    rows = queries.merge_history(_lookup(args.id))
    emit(args, rows, lambda rs: "\n".join(r["explanation"] for r in rs) or "no merges")


# -- team --------------------------------------------------------------------
def cmd_user_create(args: argparse.Namespace) -> None:
    from siyu.accounts.actions import TeamError, create_user

    try:
        user, password = create_user(args.username, args.role, password=args.password)
    except TeamError as exc:
        raise CliError(str(exc)) from None
    emit(args, {"username": user.username, "role": args.role, "password": password},
         lambda d: f"user {d['username']} ({d['role']}) password: {d['password']}")


def cmd_token_create(args: argparse.Namespace) -> None:
    from django.contrib.auth import get_user_model

    from siyu.accounts.models import ApiToken

    user = get_user_model().objects.filter(username=args.username).first()
    if user is None:
        raise CliError(f"no user {args.username!r} (create one with `siyu user create`)")
    token, raw = ApiToken.issue(user, args.name)
    emit(args, {"username": user.username, "name": token.name, "token": raw},
         lambda d: f"token for {d['username']}: {d['token']}\n(shown once; store it now)")


# -- analytics ---------------------------------------------------------------
def cmd_query(args: argparse.Namespace) -> None:
    from siyu.analytics import sync
    from siyu.analytics.engine import EventStoreBusy, get_store
    from siyu.analytics.queries import QueryError, run_query

    body = json_object(args.query, "--query") if args.query else {}
    body = {**body, "kind": args.kind} if "kind" not in body else body
    if body["kind"] != args.kind:
        raise CliError(f"the body's kind {body['kind']!r} differs from the command's {args.kind!r}")
    try:
        sync.sync_all(get_store())  # this process owns the store now: bring in what others recorded
        result = run_query(body)
    except QueryError as exc:
        if args.json:
            print(json.dumps({"error": "invalid query", "errors": exc.errors}, ensure_ascii=False, indent=2))
            sys.exit(2)
        raise CliError(f"invalid query: {exc}") from None
    except EventStoreBusy:
        emit(args, ask_server(args, "POST", "/api/v1/analytics/query", body))
        return
    emit(args, result.model_dump(mode="json"))


def cmd_analytics_export(args: argparse.Namespace) -> None:
    from siyu.analytics import sync
    from siyu.analytics.engine import EventStoreBusy, get_store

    try:
        store = get_store()
    except EventStoreBusy as exc:
        raise CliError(str(exc)) from None
    sync.sync_all(store)
    counts = store.export_parquet(args.directory)
    emit(args, {"directory": args.directory, **counts},
         lambda d: f"wrote {d['events']:,} events and {d['persons']:,} persons to {d['directory']}")


def _query_help(kind: str) -> str:
    from siyu.analytics.queries import REGISTRY

    runner = REGISTRY[kind]
    schema = runner.query_model.model_json_schema()
    lines = [f"Run a {kind} query and print the answer (the same body and answer as"
             " POST /api/v1/analytics/query; definitions in docs/analytics.md).", "", "body fields:"]
    for name, spec in schema.get("properties", {}).items():
        if name == "kind":
            continue
        lines.append(f"  {name}: {spec.get('description') or spec.get('title', '')}")
    example = json.dumps(runner.example, ensure_ascii=False)
    lines += ["", "example:", f"  siyu query {kind} --query '{example}' --json"]
    return "\n".join(lines)


# -- customer value (CLV) ----------------------------------------------------
def cmd_clv_fit(args: argparse.Namespace) -> None:
    from datetime import date

    from siyu.accounts.actor import cli_actor
    from siyu.valuation.fitting import ClvError, fit_and_predict
    from siyu.valuation.queries import model_dict

    calibration_end = None
    if args.calibration_end:
        try:
            calibration_end = date.fromisoformat(args.calibration_end)
        except ValueError:
            raise CliError(f"--calibration-end must be a date YYYY-MM-DD, not {args.calibration_end!r}") from None
    try:
        model = fit_and_predict(cli_actor(), calibration_end=calibration_end, time_unit=args.time_unit,
                                horizon_days=args.horizon_days, discount_rate=args.discount_rate)
    except ClvError as exc:
        raise CliError(str(exc)) from None
    emit(args, model_dict(model), _human_clv)


def cmd_clv_show(args: argparse.Namespace) -> None:
    from siyu.valuation.queries import latest_model, model_dict

    model = latest_model()
    if model is None:
        raise CliError("no CLV model has been fitted yet: run `siyu clv fit`")
    emit(args, model_dict(model), _human_clv)


def _human_clv(d: dict) -> str:
    bg, pn, gg = d["bgnbd"], d["pareto_nbd"], d["gamma_gamma"]
    lines = [f"CLV model #{d['model_id']} ({d['created_at'][:16]}, {d['status']}) by {d['actor']}",
             f"  fitted on orders up to {d['calibration_end'] or d['observation_end']}, in {d['time_unit']}s;"
             f" predictions as of {d['observation_end']} over {d['horizon_days']} days,"
             f" discounted {d['discount_rate']:.1%} a year",
             f"  {d['customers']:,} customers ({d['predictions']:,} predictions), {d['orders']:,} orders",
             f"  BG/NBD      r={bg['r']:.4f} alpha={bg['alpha']:.4f} a={bg['a']:.4f} b={bg['b']:.4f}"
             f" LL={bg['log_likelihood']:.2f}",
             f"  Pareto/NBD  r={pn['r']:.4f} alpha={pn['alpha']:.4f} s={pn['s']:.4f} beta={pn['beta']:.4f}"
             f" LL={pn['log_likelihood']:.2f}",
             f"  Gamma-Gamma p={gg['p']:.4f} q={gg['q']:.4f} gamma={gg['gamma']:.4f}"]
    if d["quality"]:
        total = d["quality"]["total"]
        lines.append(f"  hold-out ({d['quality']['holdout_days']} days): {total['predicted']:,.1f} repeat purchases"
                     f" predicted, {total['actual']:,.0f} made")
    clv = d["distribution"].get("clv", {})
    if clv:
        lines.append(f"  CLV: total {clv['total']:,.2f}, mean {clv['mean']:,.2f}, median {clv['median']:,.2f}")
    return "\n".join(lines)


# -- developer tools ---------------------------------------------------------
def cmd_openapi(args: argparse.Namespace) -> None:
    from pathlib import Path

    from siyu.api import api

    text = json.dumps(api.get_openapi_schema(), ensure_ascii=False, indent=2, default=str) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


# -- parser ------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse that also reports bad arguments as JSON when ``--json`` was asked for."""

    def error(self, message: str):  # type: ignore[override]
        if "--json" in sys.argv[1:]:
            print(json.dumps({"error": f"{self.prog}: {message}"}, ensure_ascii=False))
        super().error(message)


# -- bounded numbers -----------------------------------------------------------
# Every number an option takes is checked while parsing, against the same bounds as the API
# (``siyu.db.MAX_INT``, its 1–500 pages; a test compares them): a bad one is
# "argument --offset: …" with exit status 2 (and {"error": …} with --json), never a traceback.
PAGE_SIZE = (1, 500)  # rows a list command shows at once, as the API's ``limit``
MAX_HOURS = 24 * 366 * 100  # a look-back of a century


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def bounded(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, or an error saying so."""

    def whole_number(text: str) -> int:
        body = text.strip()
        digits = body[1:] if body[:1] in ("+", "-") else body
        if not (digits.isdecimal() and digits.isascii()):
            raise argparse.ArgumentTypeError(f"not a whole number: {_shown(text)}")
        # Past 30 digits a number is beyond every bound here (and int() refuses 4300 digits).
        value = int(body) if len(digits) <= 30 else None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be a whole number from {low} to {high}, not {_shown(text)}")
        return value

    return whole_number


offset = bounded(0, MAX_INT)
page_size = bounded(*PAGE_SIZE)
hours = bounded(0, MAX_HOURS)


def customer_ref(text: str) -> str:
    """``--customer``: a customer number (1 to MAX_INT) or KIND:VALUE, left for the command to look up."""
    if text.strip().isdigit() and row_number(text) is None:
        raise argparse.ArgumentTypeError(f"a customer number runs from 1 to {MAX_INT}, not {_shown(text)}"
                                         " (or give KIND:VALUE, e.g. phone:13800138000)")
    return text


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def build_parser() -> argparse.ArgumentParser:
    from siyu.accounts.roles import ROLES
    from siyu.customers.models import IdentityKind

    p = _Parser(prog="siyu", description="siyu: private-domain customer operations platform.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable, help_: str, parent=sub, json_flag: bool = True) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        if json_flag:
            sp.add_argument("--json", action="store_true", help="print JSON for scripts")
        return sp

    def server_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="127.0.0.1")
        sp.add_argument("--port", type=bounded(1, 65535), default=8000)
        sp.add_argument("--threads", type=bounded(1, 1000), default=16, help="request threads (default 16)")

    server_args(add("serve", cmd_serve, "Serve the console, REST API and ingestion endpoints.", json_flag=False))
    demo = add("demo", cmd_demo, "Build the demo brand (then serve unless --no-serve).")
    demo.add_argument("--customers", type=int, default=20_000, help="customers to generate (default 20000)")
    demo.add_argument("--seed", type=bounded(0, MAX_INT), default=7)
    demo.add_argument("--no-serve", action="store_true", help="build and exit")
    demo.add_argument("--fresh", action="store_true", help="wipe this data folder's database and events first")
    server_args(demo)

    source = sub.add_parser("source", help="Sources and write keys.").add_subparsers(dest="sub", required=True)
    sc = add("create", cmd_source_create, "Create a source and print its write key.", parent=source)
    sc.add_argument("name")
    sc.add_argument("--kind", default="segment", choices=["segment", "sensors", "webhook", "import"])
    add("list", cmd_source_list, "List sources.", parent=source)

    imp = add("import", cmd_import, "Import customers or orders from a CSV or Excel file.")
    imp.add_argument("kind", choices=["customers", "orders"])
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="validate and report; change nothing")
    imp.add_argument("--map", action="append", metavar="COLUMN=FIELD", help="map a file column to a field")
    imp.add_argument("--sheet", help="Excel sheet name (default: the first)")
    imp.add_argument("--strict", action="store_true", help="exit 1 when any row is rejected")
    imp.add_argument("--customer-kind", choices=IdentityKind.values,
                     help="orders: the id kind of the customer column (default member_no)")

    cust = sub.add_parser("customer", help="Look up customers.").add_subparsers(dest="sub", required=True)
    kinds = ", ".join(IdentityKind.values)
    show = add("show", cmd_customer_show, "Show one customer's profile.", parent=cust)
    show.add_argument("id", metavar="KIND:VALUE", help=f"KIND is one of {kinds}")
    ls = add("list", cmd_customer_list, "List or search customers.", parent=cust)
    ls.add_argument("--q", help="an exact id value or KIND:VALUE")
    ls.add_argument("--channel", help="acquisition channel")
    ls.add_argument("--limit", type=page_size, default=50, help="customers to show, 1 to 500 (default 50)")
    ls.add_argument("--offset", type=offset, default=0)
    mg = add("merges", cmd_customer_merges, "Explain why a profile is one person.", parent=cust)
    mg.add_argument("id", metavar="KIND:VALUE")

    user = sub.add_parser("user", help="Team members.").add_subparsers(dest="sub", required=True)
    uc = add("create", cmd_user_create, "Create a team member with a role.", parent=user)
    uc.add_argument("username")
    uc.add_argument("--role", required=True, choices=sorted(ROLES))
    uc.add_argument("--password", help="default: generated and printed")
    token = sub.add_parser("token", help="API tokens.").add_subparsers(dest="sub", required=True)
    tc = add("create", cmd_token_create, "Create an API token for a user.", parent=token)
    tc.add_argument("username")
    tc.add_argument("--name", type=_non_empty, default="cli", help="a label for the token (default cli)")

    from siyu.analytics.queries import kinds as query_kinds

    qp = sub.add_parser("query", help="Run an analytics query (trends, retention, funnel, ...).")
    qsub = qp.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind in query_kinds():
        kp = qsub.add_parser(kind, help=f"{kind} insight", description=_query_help(kind),
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        kp.set_defaults(func=cmd_query)
        kp.add_argument("--query", metavar="JSON", default="{}", help="the query body as JSON (see above)")
        kp.add_argument("--json", action="store_true", help="print JSON for scripts")
    an = sub.add_parser("analytics", help="The event store's analytics data.").add_subparsers(dest="sub",
                                                                                             required=True)
    ex = add("export", cmd_analytics_export, "Export events and persons as Parquet (for Spark).", parent=an)
    ex.add_argument("directory")

    clv = sub.add_parser("clv", help="Predicted customer value (CLV models).").add_subparsers(dest="sub",
                                                                                            required=True)
    cf = add("fit", cmd_clv_fit, "Fit the CLV models and store every customer's prediction.", parent=clv)
    cf.add_argument("--calibration-end", metavar="DATE",
                    help="fit on orders up to this day (YYYY-MM-DD); later orders measure the fit")
    cf.add_argument("--time-unit", choices=["day", "week"], default="week", help="default week")
    cf.add_argument("--horizon-days", type=int, default=365, help="predict over N days (default 365)")
    cf.add_argument("--discount-rate", type=float, default=0.1, help="annual discount rate (default 0.1)")
    add("show", cmd_clv_show, "Show the newest CLV fit.", parent=clv)

    from siyu.segments.cli import register as register_segments

    register_segments(sub, add)

    oa = add("openapi", cmd_openapi, "Print the REST API's OpenAPI schema (docs/openapi.json).", json_flag=False)
    oa.add_argument("--output", metavar="FILE", help="write to FILE instead of standard output")
    return p


def _fail(args: argparse.Namespace | None, message: str) -> None:
    if args is not None and getattr(args, "json", False):
        print(json.dumps({"error": message}, ensure_ascii=False))
    print(f"siyu: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
    import django

    try:
        django.setup()  # resolves SIYU_DATA_DIR and creates it
    except OSError as exc:
        _fail(None, f"cannot use the data folder: {exc.strerror or exc}: {exc.filename or ''}")
    args = build_parser().parse_args(argv)
    try:
        ensure_migrated()
        args.func(args)
    except BrokenPipeError:  # `siyu … | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except OSError as exc:
        _fail(args, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
    except CliError as exc:
        _fail(args, str(exc))

if __name__ == "__main__":
    main()
