"""Forms behind the analytics pages: the date range and breakdown filter, insights, dashboards."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.analytics.actions import MAX_DASHBOARD_DAYS
from siyu.analytics.queries.base import MAX_RANGE_DAYS, today

PRESETS = ("7", "30", "90")
RANGE_CHOICES = [("7", _("Last 7 days")), ("30", _("Last 30 days")), ("90", _("Last 90 days")),
                 ("custom", _("Custom range"))]
# The dashboard's breakdown choices, as the ``breakdown`` of a query body.
BREAKDOWNS: dict[str, dict[str, str] | None] = {
    "": None,
    "channel": {"on": "event", "field": "channel", "limit": 5},
    "store": {"on": "event", "field": "store", "limit": 5},
    "source": {"on": "event", "field": "utm_source", "limit": 5},
    "acquisition_channel": {"on": "person", "field": "acquisition_channel", "limit": 5},
}
BREAKDOWN_CHOICES = [("", _("No breakdown")), ("channel", _("Channel")), ("store", _("Store")),
                     ("source", _("Traffic source (utm_source)")),
                     ("acquisition_channel", _("Acquisition channel"))]


class RangeForm(forms.Form):
    """A date range: the last 7/30/90 days (ending today, brand time) or two dates."""

    range = forms.ChoiceField(label=_("Date range"), choices=RANGE_CHOICES, required=False)
    date_from = forms.DateField(label=_("From"), required=False,
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    # The dates the page showed: a date input changed while a preset is selected means a custom range.
    shown_from = forms.DateField(required=False, widget=forms.HiddenInput)
    shown_to = forms.DateField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, default_days: int = 30, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_days = default_days

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        choice = data.get("range") or ""
        if choice in PRESETS and self._dates_edited(data):
            choice = "custom"  # the dates were changed while a preset was still selected
        if choice == "custom" or (not choice and (data.get("date_from") or data.get("date_to"))):
            start, end = data.get("date_from"), data.get("date_to")
            if not start or not end:
                raise forms.ValidationError(_("A custom range needs both dates."))
            if start > end:
                raise forms.ValidationError(_("The first day is after the last day."))
            if (end - start).days > MAX_RANGE_DAYS:
                raise forms.ValidationError(_("A range may span at most three years."))
            data["range"] = "custom"
        else:
            days = int(choice or self.default_days)
            end = today()
            data["date_from"], data["date_to"] = end - timedelta(days=days - 1), end
            data["range"] = choice or (str(days) if str(days) in PRESETS else "custom")
        return data

    @staticmethod
    def _dates_edited(data: dict[str, Any]) -> bool:
        """The date inputs differ from the dates the page showed (``shown_from``/``shown_to``)."""
        given = (data.get("date_from"), data.get("date_to"))
        shown = (data.get("shown_from"), data.get("shown_to"))
        return all(given) and all(shown) and given != shown

    def dates(self) -> tuple[date, date]:
        return self.cleaned_data["date_from"], self.cleaned_data["date_to"]

    def params(self) -> dict[str, str]:
        """The query string that reproduces this range."""
        if self.cleaned_data["range"] == "custom":
            start, end = self.dates()
            return {"range": "custom", "date_from": start.isoformat(), "date_to": end.isoformat()}
        return {"range": self.cleaned_data["range"]}


class OverviewForm(RangeForm):
    breakdown = forms.ChoiceField(label=_("Breakdown"), choices=BREAKDOWN_CHOICES, required=False)

    def breakdown_body(self) -> dict[str, str] | None:
        return BREAKDOWNS[self.cleaned_data.get("breakdown") or ""]

    def params(self) -> dict[str, str]:
        extra = {"breakdown": self.cleaned_data["breakdown"]} if self.cleaned_data.get("breakdown") else {}
        return {**super().params(), **extra}


class InsightForm(forms.Form):
    """The insight builder: a JSON body, simple fields for the common parts, and a name when saving.

    The simple fields carry their initial values (``show_hidden_initial``): only a field the
    user changed overrides the JSON, so an edit made in the JSON is never undone by them.
    """

    query = forms.CharField(label=_("Query (JSON)"),
                            widget=forms.Textarea(attrs={"rows": 14, "spellcheck": "false"}))
    date_from = forms.DateField(label=_("From"), required=False, show_hidden_initial=True,
                                widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("To"), required=False, show_hidden_initial=True,
                              widget=forms.DateInput(attrs={"type": "date"}))
    interval = forms.ChoiceField(label=_("Interval"), required=False, show_hidden_initial=True)
    breakdown = forms.ChoiceField(label=_("Breakdown"), required=False, show_hidden_initial=True)
    name = forms.CharField(label=pgettext_lazy("insight", "Name"), max_length=200, required=False)

    def __init__(self, *args: Any, kind: str, intervals: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind
        labels = {"day": _("Day"), "week": _("Week"), "month": _("Month")}
        if intervals:
            self.fields["interval"].choices = [(i, labels.get(i, i)) for i in intervals]
        else:
            del self.fields["interval"]
        self.fields["breakdown"].choices = [("json", _("As in the JSON")), *BREAKDOWN_CHOICES]

    @classmethod
    def initial_for(cls, body: dict[str, Any]) -> dict[str, Any]:
        """The simple fields' values read from a body."""
        found = [k for k, v in BREAKDOWNS.items()
                 if (v is None and not body.get("breakdown"))
                 or (v is not None and isinstance(body.get("breakdown"), dict)
                     and all(body["breakdown"].get(x, "event") == y for x, y in v.items() if x != "limit"))]
        return {"query": json.dumps(body, ensure_ascii=False, indent=2),
                "date_from": body.get("date_from"), "date_to": body.get("date_to"),
                "interval": body.get("interval", ""), "breakdown": found[0] if found else "json"}

    def clean_query(self) -> dict[str, Any]:
        try:
            body = json.loads(self.cleaned_data["query"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(_("Not valid JSON: %(error)s"), params={"error": str(exc)}) from None
        if not isinstance(body, dict):
            raise forms.ValidationError(_("The query must be a JSON object."))
        if body.setdefault("kind", self.kind) != self.kind:
            raise forms.ValidationError(_("This builder runs %(kind)s queries."), params={"kind": self.kind})
        return body

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        body = data.get("query")
        if isinstance(body, dict):
            data["query"] = self.merged(body, data)
        return data

    def merged(self, body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the simple fields the user changed applied."""
        body = dict(body)
        for key in ("date_from", "date_to"):
            if key in self.changed_data:
                if data.get(key):
                    body[key] = data[key].isoformat()
                else:
                    body.pop(key, None)
        if "interval" in self.changed_data and data.get("interval"):
            body["interval"] = data["interval"]
        if "breakdown" in self.changed_data and data.get("breakdown", "json") != "json":
            choice = BREAKDOWNS[data["breakdown"]]
            if choice is None:
                body.pop("breakdown", None)
            else:
                body["breakdown"] = dict(choice)
        return body


class DashboardForm(forms.Form):
    name = forms.CharField(label=pgettext_lazy("insight", "Name"), max_length=200)
    days = forms.IntegerField(label=_("Default range in days"), min_value=1, max_value=MAX_DASHBOARD_DAYS,
                              initial=30)


class AddToDashboardForm(forms.Form):
    dashboard = forms.IntegerField(widget=forms.HiddenInput)
