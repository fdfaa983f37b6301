"""Segment, tag and value-tier pages.

Views parse input, check permission, call one query (``siyu.segments.queries``,
``console.segment_queries``) or one action (``siyu.segments.actions``) and render.
The builder keeps the rule as JSON in a hidden input (``static/console/segments.js``);
every edit asks ``segment_count`` for the live count and a masked preview.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from siyu.analytics.engine import EventStoreBusy
from siyu.console import queries as console_queries
from siyu.console import segment_queries
from siyu.console.segment_charts import PersonaDimension, SizeHistory, spec_of
from siyu.console.segment_forms import (
    SegmentForm,
    TagForm,
    TagImportForm,
    TagNameForm,
    TierForm,
    field_errors,
    translated,
)
from siyu.console.views import actor_of, console_view, is_htmx, render_page, surviving_or_404
from siyu.segments import actions, queries
from siyu.segments.actions import SegmentError
from siyu.segments.models import Segment, Tag, TierSettings
from siyu.segments.rules import LIFECYCLE_STAGES, VALUE_TIERS, RuleError

VIEW_SEGMENT, ADD_SEGMENT = "segments.view_segment", "segments.add_segment"
CHANGE_SEGMENT, DELETE_SEGMENT = "segments.change_segment", "segments.delete_segment"
VIEW_TAG, ADD_TAG, CHANGE_TAG, DELETE_TAG = ("segments.view_tag", "segments.add_tag", "segments.change_tag",
                                             "segments.delete_tag")
CHANGE_TIERS = "segments.change_tiersettings"
MEMBERS_PAGE = 25
NEW_RULE = {"and": [{"type": "event", "event": "Order Completed", "within_days": 90,
                     "count": {"op": "gte", "value": 2}}]}


def busy() -> str:
    return _("The event store is busy; try again in a moment.")


def rule_message(exc: RuleError) -> str:
    return "; ".join(f"{e['field']}: {e['reason']}" for e in field_errors(exc.errors))


def may_use_tag(request: HttpRequest, name: str) -> bool:
    """Tagging someone with a new name creates the tag: that needs ``add_tag`` too."""
    return request.user.has_perm(ADD_TAG) or Tag.objects.filter(name=name).exists()


# -- the list --------------------------------------------------------------------------------------
@require_GET
@console_view(VIEW_SEGMENT)
def segment_list(request: HttpRequest) -> HttpResponse:
    actions.ensure_builtin_segments()
    return render(request, "console/segments/list.html", {"groups": segment_queries.segment_groups()})


@require_POST
@console_view(CHANGE_SEGMENT)
def segment_refresh_all(request: HttpRequest) -> HttpResponse:
    try:
        done = actions.refresh_all(actor_of(request))
    except EventStoreBusy:
        messages.error(request, busy())
    except RuleError as exc:
        messages.error(request, rule_message(exc))
    else:
        messages.success(request, _("Refreshed %(segments)s segments and %(tags)s rule tags in %(seconds)s s.")
                         % {"segments": done["segments"], "tags": done["rule_tags"], "seconds": done["seconds"]})
    return redirect("segments")


# -- the builder -----------------------------------------------------------------------------------
@console_view(ADD_SEGMENT)
def segment_new(request: HttpRequest) -> HttpResponse:
    return segment_editor(request, None)


@console_view(CHANGE_SEGMENT)
def segment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    if segment.builtin:
        messages.error(request, translated("built-in segments follow their definition"))
        return redirect("segments_detail", pk=pk)
    return segment_editor(request, segment)


def segment_editor(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    """GET: the form (a segment's rule, or a starting rule); POST: save it, then refresh it."""
    if request.method == "POST":
        form = SegmentForm(request.POST)
        if form.is_valid():
            return save_segment(request, form, segment)
    elif request.method == "GET":
        body = segment.rule if segment else NEW_RULE
        form = SegmentForm(initial={"name": segment.name if segment else "",
                                    "description": segment.description if segment else "",
                                    "rule": json.dumps(body, ensure_ascii=False)})
    else:
        return HttpResponse(status=405)
    return render_editor(request, form, segment)


def render_editor(request: HttpRequest, form: SegmentForm, segment: Segment | None,
                  rule_errors: list[dict[str, str]] | None = None) -> HttpResponse:
    failed = bool(form.errors or rule_errors)
    return render(request, "console/segments/builder.html", {
        "form": form, "segment": segment, "rule_errors": rule_errors or [],
        "options": segment_queries.builder_options(segment),
    }, status=400 if failed else 200)


def save_segment(request: HttpRequest, form: SegmentForm, segment: Segment | None) -> HttpResponse:
    actor, data = actor_of(request), form.cleaned_data
    try:
        if segment is None:
            segment = actions.create_segment(actor, data["name"], data["rule"], data["description"])
        else:
            segment = actions.update_segment(actor, segment, data["name"], data["rule"], data["description"])
    except RuleError as exc:
        return render_editor(request, form, segment, field_errors(exc.errors))
    except SegmentError as exc:
        form.add_error(None, translated(str(exc)))
        return render_editor(request, form, segment)
    except EventStoreBusy:
        form.add_error(None, busy())
        return render_editor(request, form, segment)
    refresh_after_save(request, segment)
    return redirect("segments_detail", pk=segment.pk)


def refresh_after_save(request: HttpRequest, segment: Segment) -> None:
    try:
        refresh = actions.refresh_segment(actor_of(request), segment)
    except (EventStoreBusy, RuleError) as exc:
        error = busy() if isinstance(exc, EventStoreBusy) else rule_message(exc)
        messages.warning(request, _("Saved %(name)s, but its members could not be computed: %(error)s")
                         % {"name": segment.name, "error": error})
        return
    messages.success(request, ngettext("Saved %(name)s: %(size)s customer.", "Saved %(name)s: %(size)s customers.",
                                       refresh.size) % {"name": segment.name, "size": refresh.size})


@require_POST
@console_view(VIEW_SEGMENT, ADD_TAG, any_of=True)
def segment_count(request: HttpRequest) -> HttpResponse:
    """The live count and the first customers of the rule in ``rule`` (JSON), or what is wrong with it."""
    context: dict[str, Any] = {"errors": []}
    segment = None
    if (request.POST.get("segment") or "").isdigit():
        segment = Segment.objects.filter(pk=int(request.POST["segment"])).first()
    try:
        body = json.loads(request.POST.get("rule") or "")
    except ValueError:
        body, context["errors"] = None, [{"field": "rule", "reason": _("not valid JSON")}]
    try:
        if not context["errors"]:
            segment_queries.check_references(body, segment)
            context["count"] = queries.count(body)
            if request.user.has_perm("customers.view_person"):
                context["rows"] = console_queries.customer_rows(segment_queries.preview(body), actor_of(request))
    except RuleError as exc:
        context["errors"] = field_errors(exc.errors)
    except EventStoreBusy:
        context["errors"] = [{"field": "", "reason": busy()}]
    status = 400 if context["errors"] and not is_htmx(request) else 200
    return render(request, "console/segments/_live_count.html", context, status=status)


# -- a segment -------------------------------------------------------------------------------------
def members_page(request: HttpRequest, segment: Segment) -> dict[str, Any]:
    page = Paginator(segment_queries.StoredMembers(segment.pk), MEMBERS_PAGE).get_page(request.GET.get("page"))
    return {"segment": segment, "page": page,
            "rows": console_queries.customer_rows(page.object_list, actor_of(request))}


@require_GET
@console_view(VIEW_SEGMENT)
def segment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    if is_htmx(request):  # a page of members
        return render_page(request, "console/segments/detail.html", "console/segments/_members.html",
                           members_page(request, segment))
    history = SizeHistory(refreshes=segment_queries.size_history(segment))
    may_tag = request.user.has_perm(CHANGE_TAG)
    return render(request, "console/segments/detail.html", {
        **members_page(request, segment),
        "label": segment_queries.segment_label(segment),
        "rule_text": segment_queries.describe(segment.rule),
        "rule_json": json.dumps(segment.rule, ensure_ascii=False, indent=2),
        "size_spec": spec_of(history), "history": history.refreshes,
        "changes": segment_queries.recent_changes(segment),
        "tag_form": TagNameForm() if may_tag else None,
        "tag_names": segment_queries.manual_tag_names() if may_tag else [],
    })


@require_GET
@console_view(VIEW_SEGMENT)
def segment_persona(request: HttpRequest, pk: int) -> HttpResponse:
    """The persona of the segment's customers as of now: key figures and one chart per dimension."""
    segment = get_object_or_404(Segment, pk=pk)
    try:
        persona = queries.persona(segment.rule)
    except EventStoreBusy:
        return render(request, "console/segments/_persona.html", {"error": busy()})
    except RuleError as exc:
        return render(request, "console/segments/_persona.html", {"error": rule_message(exc)})
    dimensions = [{"key": name, "spec_id": f"persona-{name}", "spec": spec_of(PersonaDimension(name, shares))}
                  for name, shares in persona.dimensions.items()]
    return render(request, "console/segments/_persona.html",
                  {"figures": persona.figures, "dimensions": dimensions, "segment": segment})


@require_POST
@console_view(CHANGE_SEGMENT)
def segment_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    try:
        refresh = actions.refresh_segment(actor_of(request), segment)
    except EventStoreBusy:
        messages.error(request, busy())
    except RuleError as exc:
        messages.error(request, rule_message(exc))
    else:
        messages.success(request, _("Refreshed: %(size)s customers; %(entered)s entered, %(left)s left.")
                         % {"size": refresh.size, "entered": refresh.entered, "left": refresh.left})
    return redirect("segments_detail", pk=pk)


@require_GET
@console_view(VIEW_SEGMENT, "customers.view_person")
def segment_export(request: HttpRequest, pk: int) -> HttpResponse:
    """The members at the last refresh as CSV; personal data masked unless the role may export it
    (``actions.export_members`` audits an unmasked export)."""
    segment = get_object_or_404(Segment, pk=pk)
    response = StreamingHttpResponse(actions.export_members(actor_of(request), segment),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="segment-{segment.pk}.csv"'
    return response


@require_POST
@console_view(VIEW_SEGMENT, CHANGE_TAG)
def segment_tag(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a tag on every member (as of the last refresh)."""
    segment = get_object_or_404(Segment, pk=pk)
    form = TagNameForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["tag"]))
        return redirect("segments_detail", pk=pk)
    name = form.cleaned_data["tag"]
    if not may_use_tag(request, name):
        raise PermissionDenied
    try:
        tagged = actions.tag_segment(actor_of(request), name, segment)
    except SegmentError as exc:
        messages.error(request, translated(str(exc)))
    else:
        messages.success(request, ngettext("%(count)s more customer now carries the tag %(tag)s.",
                                           "%(count)s more customers now carry the tag %(tag)s.", tagged)
                         % {"count": tagged, "tag": name})
    return redirect("segments_detail", pk=pk)


@require_POST
@console_view(DELETE_SEGMENT)
def segment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    segment = get_object_or_404(Segment, pk=pk)
    try:
        actions.delete_segment(actor_of(request), segment)
    except SegmentError as exc:
        messages.error(request, translated(str(exc)))
        return redirect("segments_detail", pk=pk)
    messages.success(request, _("Deleted segment %(name)s.") % {"name": segment.name})
    return redirect("segments")


# -- tags ------------------------------------------------------------------------------------------
def tags_context(request: HttpRequest, form: TagForm | None = None, import_form: TagImportForm | None = None,
                 **extra: Any) -> dict[str, Any]:
    may_add = request.user.has_perm(ADD_TAG)
    return {"tags": segment_queries.tag_rows(), "form": form or TagForm(),
            "import_form": import_form or TagImportForm(),
            "options": segment_queries.builder_options() if may_add else None,
            "rule_errors": [], **extra}


@console_view(VIEW_TAG)
def tag_list(request: HttpRequest) -> HttpResponse:
    """GET: the tags; POST: create one (with a rule, which is then applied)."""
    if request.method == "POST":
        if not request.user.has_perm(ADD_TAG):
            raise PermissionDenied
        form = TagForm(request.POST)
        if form.is_valid():
            return create_tag(request, form)
        return render(request, "console/segments/tags.html", tags_context(request, form), status=400)
    if request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "console/segments/tags.html", tags_context(request))


def create_tag(request: HttpRequest, form: TagForm) -> HttpResponse:
    data, actor = form.cleaned_data, actor_of(request)
    try:
        tag = actions.create_tag(actor, data["name"], data["description"], data["rule"])
    except RuleError as exc:
        return render(request, "console/segments/tags.html",
                      tags_context(request, form, rule_errors=field_errors(exc.errors)), status=400)
    except (SegmentError, EventStoreBusy) as exc:
        form.add_error("name" if isinstance(exc, SegmentError) else None,
                       translated(str(exc)) if isinstance(exc, SegmentError) else busy())
        return render(request, "console/segments/tags.html", tags_context(request, form), status=400)
    if tag.is_rule:
        refresh_tag(request, tag)
    else:
        messages.success(request, _("Created the tag %(name)s.") % {"name": tag.name})
    return redirect(reverse("segments_tags") + f"#tag-{tag.pk}")


def refresh_tag(request: HttpRequest, tag: Tag) -> None:
    try:
        done = actions.refresh_rule_tag(actor_of(request), tag)
    except EventStoreBusy:
        messages.error(request, busy())
    except RuleError as exc:
        messages.error(request, rule_message(exc))
    else:
        messages.success(request, _("%(name)s: %(size)s customers (%(added)s added, %(removed)s removed).")
                         % {"name": tag.name, **done})


@require_POST
@console_view(CHANGE_TAG)
def tag_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    tag = get_object_or_404(Tag, pk=pk)
    if not tag.is_rule:
        messages.error(request, _("Tag %(name)s has no rule.") % {"name": tag.name})
    else:
        refresh_tag(request, tag)
    return redirect(reverse("segments_tags") + f"#tag-{tag.pk}")


@require_POST
@console_view(DELETE_TAG)
def tag_delete(request: HttpRequest, pk: int) -> HttpResponse:
    tag = get_object_or_404(Tag, pk=pk)
    actions.delete_tag(actor_of(request), tag)
    messages.success(request, _("Deleted the tag %(name)s.") % {"name": tag.name})
    return redirect("segments_tags")


@require_POST
@console_view(VIEW_TAG, CHANGE_TAG)
def tag_import(request: HttpRequest) -> HttpResponse:
    """Tag the customers a CSV names: ``action=dry_run`` checks every row and changes nothing,
    ``action=apply`` tags the rows that name a customer. Bad rows are listed by number."""
    form = TagImportForm(request.POST, request.FILES)
    context: dict[str, Any] = {"import_form": form}
    if form.is_valid():
        name, dry_run = form.cleaned_data["tag"], form.cleaned_data["action"] != "apply"
        if not may_use_tag(request, name):
            raise PermissionDenied
        try:
            if Tag.objects.filter(name=name, rule__isnull=False).exists():  # a dry run would not say so
                raise SegmentError(f"tag {name!r} is kept by its rule")
            result = actions.import_tag_csv(actor_of(request), name, form.cleaned_data["file"].read(),
                                            dry_run=dry_run)
        except SegmentError as exc:
            form.add_error("file", translated(str(exc)))
        else:
            context["result"] = result
            context["row_errors"] = [{**e, "reason": translated(e["reason"])} for e in result.errors]
            context["tag"] = name
    status = 400 if form.errors and not is_htmx(request) else 200
    if is_htmx(request):
        return render(request, "console/segments/_import_result.html", context, status=status)
    return render(request, "console/segments/tags.html", tags_context(request, **context), status=status)


@console_view("customers.view_person", VIEW_TAG)
def customer_tags(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: a customer's tags (a fragment of the customer page); POST ``op=add|remove``: change one."""
    person = surviving_or_404(pk)
    error = ""
    if request.method == "POST":
        if not request.user.has_perm(CHANGE_TAG):
            raise PermissionDenied
        error = change_customer_tag(request, person.pk)
        if not is_htmx(request):
            if error:
                messages.error(request, error)
            return redirect(reverse("customer_detail", args=[person.pk]) + "#tags")
    elif request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "console/segments/_customer_tags.html", {
        "person": person, "person_tags": segment_queries.person_tags(person), "error": error,
        "tag_names": segment_queries.manual_tag_names() if request.user.has_perm(CHANGE_TAG) else [],
    })


def change_customer_tag(request: HttpRequest, person_id: int) -> str:
    """Add or remove the posted tag; returns what went wrong, or ''."""
    form = TagNameForm(request.POST)
    if not form.is_valid():
        return " ".join(form.errors["tag"])
    name, op = form.cleaned_data["tag"], request.POST.get("op")
    try:
        if op == "add":
            if not may_use_tag(request, name):
                return _("Your role may not create tags; choose an existing one.")
            actions.add_tag(actor_of(request), name, [person_id])
        elif op == "remove":
            actions.remove_tag(actor_of(request), name, [person_id])
        else:
            return _("Unknown change.")
    except SegmentError as exc:
        return translated(str(exc))
    return ""


# -- value tiers -----------------------------------------------------------------------------------
@console_view(VIEW_SEGMENT)
def tier_settings(request: HttpRequest) -> HttpResponse:
    """GET: the thresholds and what each tier and stage means; POST: change the thresholds."""
    if request.method == "POST":
        if not request.user.has_perm(CHANGE_TIERS):
            raise PermissionDenied
        form = TierForm(request.POST, instance=TierSettings.current())
        if form.is_valid():
            try:
                actions.update_tier_settings(actor_of(request), form.values())
            except SegmentError as exc:
                form.add_error(None, translated(str(exc)))
            else:
                messages.success(request, _("Thresholds saved. Refresh the segments to apply them."))
                return redirect("segments_tiers")
    elif request.method == "GET":
        form = TierForm(instance=TierSettings.current())
    else:
        return HttpResponse(status=405)
    settings = TierSettings.current()
    return render(request, "console/segments/tiers.html",
                  {"form": form, "settings": settings, "tiers": tier_explanations(settings),
                   "stages": stage_explanations(settings)}, status=400 if form.errors else 200)


def tier_explanations(t: TierSettings) -> list[dict[str, str]]:
    meaning = {
        "high_value": _("At least %(orders)s orders and %(spend)s spent in the last %(days)s days.")
        % {"orders": t.high_value_orders, "spend": t.high_value_spend, "days": t.lookback_days},
        "potential": _("Not high-value, but active in the last %(days)s days.") % {"days": t.active_days},
        "low_activity": _("Neither: no activity in the last %(days)s days, or never active.")
        % {"days": t.active_days},
    }
    return [{"key": v, "en": queries.label("tier", v, "en"), "zh": queries.label("tier", v, "zh-hans"),
             "meaning": meaning[v]} for v in VALUE_TIERS]


def stage_explanations(t: TierSettings) -> list[dict[str, str]]:
    days = {"silent": t.silent_after, "churned": t.churned_after}
    meaning = {
        "new": _("First activity ever within the last %(silent)s days.") % days,
        "active": _("Active within the last %(silent)s days, and active before them.") % days,
        "reactivated": _("Active within the last %(silent)s days after more than %(churned)s days without "
                         "activity.") % days,
        "silent": _("Last activity %(silent)s to %(churned)s days ago.") % days,
        "churned": _("No activity for more than %(churned)s days.") % days,
    }
    return [{"key": v, "en": queries.label("lifecycle", v, "en"), "zh": queries.label("lifecycle", v, "zh-hans"),
             "meaning": meaning[v]} for v in LIFECYCLE_STAGES]
