"""Console pages. Each view parses input, checks permission, calls one query or action, renders."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from siyu.accounts.actor import Actor
from siyu.accounts.roles import ROLES
from siyu.console import queries
from siyu.console.actions import set_language
from siyu.console.charts import bar_chart
from siyu.console.explanations import explain_conflict, explain_merge
from siyu.console.forms import LanguageForm, ResolveForm, SourceForm
from siyu.console.language import current_choice, remember
from siyu.customers import actions as customer_actions
from siyu.customers import queries as customer_queries
from siyu.customers.models import IdentityKind, MergeConflict, Person
from siyu.ingest import actions as ingest_actions
from siyu.ingest.models import Source
from siyu.ingest.writer import settle

PAGE_SIZE = 25


def console_view(*perms: str, any_of: bool = False) -> Callable:
    """Sign-in required; then every permission in ``perms`` (or one, with ``any_of``), else 403."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            granted = [request.user.has_perm(p) for p in perms]
            if perms and not (any(granted) if any_of else all(granted)):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorate


def is_htmx(request: HttpRequest) -> bool:
    """An htmx request that wants a fragment (a history restore wants the whole page)."""
    return (request.headers.get("HX-Request") == "true"
            and request.headers.get("HX-History-Restore-Request") != "true")


def render_page(request: HttpRequest, page: str, fragment: str, context: dict) -> HttpResponse:
    """The fragment for htmx, the whole page otherwise; caches keep the two apart."""
    response = render(request, fragment if is_htmx(request) else page, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def actor_of(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


# -- home ------------------------------------------------------------------------
@require_GET
@console_view("customers.view_person")
def home(request: HttpRequest) -> HttpResponse:
    stats = queries.home_stats()
    top = max((n for _c, n in stats.channels), default=0)
    return render(request, "console/home.html", {
        "stats": stats,
        "events_chart": bar_chart(stats.events_per_day),
        "new_customers_chart": bar_chart(stats.new_customers_per_day),
        "channels": [{"channel": c, "count": n, "width": round(100 * n / top, 1) if top else 0}
                     for c, n in stats.channels],
    })


# -- customers ---------------------------------------------------------------------
@require_GET
@console_view("customers.view_person")
def customer_list(request: HttpRequest) -> HttpResponse:
    settle()
    raw_q = request.GET.get("q", "").strip()
    channel = request.GET.get("channel", "").strip()
    q = queries.normalise_search(raw_q)
    hint = search_hint(q)
    persons = customer_queries.search(q, channel)
    page = Paginator(persons, PAGE_SIZE).get_page(request.GET.get("page"))
    return render_page(request, "console/customers.html", "console/_customer_table.html", {
        "q": raw_q,
        "channel": channel,
        "channels": [] if is_htmx(request) else queries.channel_choices(),
        "hint": hint,
        "page": page,
        "rows": queries.customer_rows(page.object_list, actor_of(request)),
        "filters": urlencode({k: v for k, v in (("q", raw_q), ("channel", channel)) if v}),
    })


def search_hint(q: str) -> str:
    """Why a KIND:VALUE search cannot match, or ''."""
    if ":" not in q:
        return ""
    try:
        customer_queries.Lookup.parse(q)
    except ValueError:
        return _("Search by KIND:VALUE with KIND one of %(kinds)s.") % {"kinds": ", ".join(IdentityKind.values)}
    return ""


def surviving_or_404(pk: int) -> Person:
    person = get_object_or_404(Person, pk=pk)
    if person.erased_at is not None:
        raise Http404
    return person


@require_GET
@console_view("customers.view_person")
def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    settle()
    person = surviving_or_404(pk)
    if person.merged_into_id:
        survivor = customer_queries.surviving(person)
        messages.info(request, _("Customer #%(old)s was merged into #%(new)s.") % {"old": pk, "new": survivor.pk})
        return redirect("customer_detail", pk=survivor.pk)
    return render(request, "console/customer_detail.html", detail_context(request, person))


def personal_context(request: HttpRequest, person: Person, *, revealed: bool = False) -> dict:
    """Identities and personal data: masked, or in clear (and audited by ``profile``) when revealed."""
    actor = actor_of(request)
    return {
        "person": person,
        "profile": customer_queries.profile(person, actor if revealed else queries.masked(actor)),
        "revealed": revealed,
        "may_reveal": actor.can_see_pii,
    }


def detail_context(request: HttpRequest, person: Person, *, revealed: bool = False) -> dict:
    user = request.user
    merges = customer_queries.merge_history(person) if user.has_perm("customers.view_personmerge") else []
    return {
        **personal_context(request, person, revealed=revealed),
        "name": queries.masked_name(person, actor_of(request)),
        "merges": [{**m, "text": explain_merge(m)} for m in merges],
        "conflicts": [{"conflict": c, "text": explain_conflict(c)}
                      for c in customer_queries.open_conflicts(person)],
        "orders": queries.person_orders(person) if user.has_perm("orders.view_order") else [],
        "timeline": queries.timeline_page(person),
    }


@require_POST
@console_view("customers.view_person", "privacy.view_personal_data")
def customer_reveal(request: HttpRequest, pk: int) -> HttpResponse:
    """Show one customer's personal data in clear; ``profile`` writes the audit event."""
    person = surviving_or_404(pk)
    if is_htmx(request):
        return render(request, "console/_personal.html", personal_context(request, person, revealed=True))
    return render(request, "console/customer_detail.html", detail_context(request, person, revealed=True))


@require_GET
@console_view("customers.view_person")
def customer_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    person = surviving_or_404(pk)
    try:
        timeline = queries.timeline_page(person, request.GET.get("cursor") or None)
    except ValueError:
        return HttpResponse(_("Invalid cursor."), status=400)
    return render(request, "console/_timeline_items.html", {"person": person, "timeline": timeline})


# -- merge conflicts -----------------------------------------------------------------
@require_GET
@console_view("customers.view_personmerge", "customers.change_mergeconflict", any_of=True)
def conflict_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    viewer = queries.masked(actor)
    rows = [
        {"conflict": c, "text": explain_conflict(c),
         "a": customer_queries.profile(c.person_a, viewer), "b": customer_queries.profile(c.person_b, viewer),
         "a_name": queries.masked_name(c.person_a, actor), "b_name": queries.masked_name(c.person_b, actor)}
        for c in queries.open_conflicts()
    ]
    return render(request, "console/conflicts.html", {"rows": rows})


@require_POST
@console_view("customers.change_mergeconflict")
def conflict_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    conflict = get_object_or_404(MergeConflict, pk=pk)
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return HttpResponse(_("Choose merge or dismiss."), status=400)
    action = form.cleaned_data["action"]
    try:
        customer_actions.resolve_conflict(actor_of(request), conflict, action)
    except ValueError:
        messages.error(request, _("Conflict %(id)s was already resolved.") % {"id": pk})
        return redirect("conflicts")
    if action == "merge":
        messages.success(request, _("Merged #%(b)s into #%(a)s.") % {"a": conflict.person_a_id,
                                                                     "b": conflict.person_b_id})
    else:
        messages.success(request, _("Dismissed: #%(a)s and #%(b)s stay separate customers.") % {
            "a": conflict.person_a_id, "b": conflict.person_b_id})
    return redirect("conflicts")


# -- sources ----------------------------------------------------------------------------
@console_view("ingest.view_source")
def source_list(request: HttpRequest) -> HttpResponse:
    form = SourceForm()
    if request.method == "POST":
        if not request.user.has_perm("ingest.add_source"):
            raise PermissionDenied
        form = SourceForm(request.POST)
        if form.is_valid():
            return create_source(request, form)
    elif request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "console/sources.html", sources_context(request, form),
                  status=400 if form.errors else 200)


def create_source(request: HttpRequest, form: SourceForm) -> HttpResponse:
    try:
        source = ingest_actions.create_source(actor_of(request), form.cleaned_data["name"],
                                              form.cleaned_data["kind"])
    except ingest_actions.SourceError as exc:
        form.add_error("name", str(exc))
        return render(request, "console/sources.html", sources_context(request, form), status=400)
    messages.success(request, _("Source %(name)s created. Its write key is below.") % {"name": source.name})
    return redirect(f"{request.path}#source-{source.pk}")


def sources_context(request: HttpRequest, form: SourceForm) -> dict:
    rows = [
        {"source": s, "sensors_endpoint": request.build_absolute_uri("/sa?" + urlencode({"project": s.name}))}
        for s in Source.objects.order_by("name")
    ]
    show_dead = request.user.has_perm("ingest.view_deadletter")
    return {
        "rows": rows,
        "form": form,
        "segment_endpoint": request.build_absolute_uri("/v1/batch"),
        "dead_letters": queries.dead_letters() if show_dead else [],
        "show_dead_letters": show_dead,
    }


@require_POST
@console_view("ingest.change_source")
def source_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    source = get_object_or_404(Source, pk=pk)
    ingest_actions.rotate_write_key(actor_of(request), source)
    messages.success(request, _("New write key for %(name)s. Update every client that sends with the old one.")
                     % {"name": source.name})
    return redirect(f"/sources/#source-{source.pk}")


# -- settings and language ---------------------------------------------------------------
@require_GET
@console_view()
def settings_page(request: HttpRequest) -> HttpResponse:
    form = LanguageForm(initial={"language": current_choice(request)})
    roles = [str(ROLES[g.name]["label"]) if g.name in ROLES else g.name
             for g in request.user.groups.order_by("name")]
    return render(request, "console/settings.html", {
        "form": form, "roles": roles, "can_see_pii": actor_of(request).can_see_pii,
    })


@require_POST
def language(request: HttpRequest) -> HttpResponse:
    """Switch the console language; signed-in users keep the choice for their next visit."""
    form = LanguageForm(request.POST)
    if not form.is_valid():
        return HttpResponse(_("Unknown language."), status=400)
    choice = form.cleaned_data["language"]
    remember(request, choice)
    if request.user.is_authenticated:
        set_language(request.user, choice)
    target = form.cleaned_data["next"]
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = "/"
    return redirect(target)
