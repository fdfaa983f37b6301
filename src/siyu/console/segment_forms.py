"""Forms behind the segment, tag and value-tier pages, and the reader's-language wording of
the rule checker's and the segment actions' messages.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from siyu.segments.models import TierSettings

MAX_CSV_BYTES = 20 * 1024 * 1024


def rule_field(required: bool = True) -> forms.CharField:
    """The rule as JSON text: the builder keeps it in a hidden input."""
    return forms.CharField(label=gettext_lazy("Rule"), required=required, widget=forms.HiddenInput)


def parse_json_rule(text: str) -> dict[str, Any]:
    """The rule's JSON text as a dict. Only the syntax is checked here: the rule checker
    (``parse_rule``) names bad fields. Raises ValidationError."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise forms.ValidationError(_("The rule is not valid JSON: %(error)s") % {"error": exc}) from None
    if not isinstance(body, dict):
        raise forms.ValidationError(_("A rule is a JSON object."))
    return body


class SegmentForm(forms.Form):
    name = forms.CharField(label=pgettext_lazy("segment", "Name"), max_length=200)
    description = forms.CharField(label=gettext_lazy("Description"), max_length=500, required=False,
                                  widget=forms.Textarea(attrs={"rows": 2}))
    rule = rule_field()

    def clean_rule(self) -> dict[str, Any]:
        return parse_json_rule(self.cleaned_data["rule"])


class TagForm(forms.Form):
    name = forms.CharField(label=pgettext_lazy("tag", "Name"), max_length=64)
    description = forms.CharField(label=gettext_lazy("Description"), max_length=300, required=False)
    by_rule = forms.BooleanField(label=gettext_lazy("Keep this tag by a rule"), required=False,
                                 help_text=gettext_lazy("The tag then sits on exactly the customers the rule "
                                                        "matches, from each refresh on; nobody can set it by hand."))
    rule = rule_field(required=False)

    def clean_name(self) -> str:
        return clean_tag_name(self.cleaned_data["name"])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        text = data.get("rule") or ""
        data["rule"] = None
        if self.cleaned_data.get("by_rule"):
            if not text.strip():
                self.add_error("rule", _("Build the rule, or untick “Keep this tag by a rule”."))
            else:
                try:
                    data["rule"] = parse_json_rule(text)
                except forms.ValidationError as exc:
                    self.add_error("rule", exc)
        return data


def clean_tag_name(value: str) -> str:
    name = (value or "").strip()
    if not name:
        raise forms.ValidationError(_("Give the tag a name."))
    if any(ch in name for ch in ",\n\t"):
        raise forms.ValidationError(_("A tag name cannot contain commas, tabs or line breaks."))
    return name


class TagNameForm(forms.Form):
    """One tag by name: add it to a customer, to a segment's members, or take it off."""

    tag = forms.CharField(label=gettext_lazy("Tag"), max_length=64)

    def clean_tag(self) -> str:
        return clean_tag_name(self.cleaned_data["tag"])


class TagImportForm(forms.Form):
    tag = forms.CharField(label=gettext_lazy("Tag"), max_length=64)
    file = forms.FileField(label=gettext_lazy("CSV file"),
                           help_text=gettext_lazy("UTF-8, one customer per row, with a header naming the id "
                                                  "column: customer_id, phone, email, user_id, member_no, ..."))
    action = forms.ChoiceField(choices=[("dry_run", "dry_run"), ("apply", "apply")], initial="dry_run",
                               required=False)

    def clean_tag(self) -> str:
        return clean_tag_name(self.cleaned_data["tag"])

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(_("The file is larger than %(mb)s MB.") % {"mb": MAX_CSV_BYTES // 2**20})
        return upload


class TierForm(forms.ModelForm):
    """The value-tier and lifecycle thresholds; the action checks them again."""

    class Meta:
        model = TierSettings
        fields = ["high_value_spend", "high_value_orders", "lookback_days", "active_days", "silent_after",
                  "churned_after"]
        labels = {
            "high_value_spend": gettext_lazy("High-value: spent at least"),
            "high_value_orders": gettext_lazy("High-value: orders at least"),
            "lookback_days": gettext_lazy("High-value: counted over the last days"),
            "active_days": gettext_lazy("Potential: active within the last days"),
            "silent_after": gettext_lazy("Lifecycle: silent after days without activity"),
            "churned_after": gettext_lazy("Lifecycle: churned after days without activity"),
        }
        help_texts = {name: "" for name in fields}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["high_value_spend"].min_value = Decimal("0")
        self.fields["high_value_spend"].validators.append(_at_least(Decimal("0")))
        for name in ("high_value_orders", "lookback_days", "active_days", "silent_after", "churned_after"):
            field = self.fields[name]
            field.validators.append(_at_least(1))
            field.widget.attrs["min"] = 1
            if name != "high_value_orders":
                field.validators.append(_at_most(3650))
                field.widget.attrs["max"] = 3650

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        silent, churned = data.get("silent_after"), data.get("churned_after")
        if silent is not None and churned is not None and silent >= churned:
            self.add_error("churned_after", _("Must be larger than “silent after” (%(days)s days).")
                           % {"days": silent})
        return data

    def values(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.Meta.fields}


def _at_least(low: Any) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and value < low:
            raise forms.ValidationError(_("Must be at least %(low)s.") % {"low": low})

    return check


def _at_most(high: Any) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is not None and value > high:
            raise forms.ValidationError(_("Must be at most %(high)s.") % {"high": high})

    return check


# -- the rule checker's and the actions' messages, in the reader's language -----------------------
# The backend words its errors in English; each pattern here names one of them and how to say
# it in the reader's language (its groups fill the placeholders). Unknown messages stay as they are.
MESSAGES: list[tuple[re.Pattern[str], Any]] = [(re.compile(p), m) for p, m in (
    # pydantic
    (r"^Field required$", gettext_lazy("required")),
    (r"^Extra inputs are not permitted$", gettext_lazy("not a field of this kind of condition")),
    (r"^Input should be a valid integer", gettext_lazy("must be a whole number")),
    (r"^Input should be a valid number", gettext_lazy("must be a number")),
    (r"^Input should be a valid string", gettext_lazy("must be text")),
    (r"^Input should be a valid date", gettext_lazy("must be a date (YYYY-MM-DD)")),
    (r"^Input should be a valid list", gettext_lazy("must be a list")),
    (r"^Input should be (?P<choices>'.*')$", gettext_lazy("must be one of %(choices)s")),
    (r"^Input should be greater than or equal to (?P<n>\S+)$", gettext_lazy("must be at least %(n)s")),
    (r"^Input should be less than or equal to (?P<n>\S+)$", gettext_lazy("must be at most %(n)s")),
    (r"^String should have at least (?P<n>\d+) characters?$", gettext_lazy("needs at least %(n)s characters")),
    (r"^String should have at most (?P<n>\d+) characters?$", gettext_lazy("may have at most %(n)s characters")),
    (r"^List should have at least 1 item", gettext_lazy("a group needs at least one condition")),
    (r"^List should have at most (?P<n>\d+) items?", gettext_lazy("at most %(n)s items")),
    (r"^a node is \{", gettext_lazy('a node is {"and": [...]}, {"or": [...]}, {"not": node} or a condition '
                                    'whose "type" is attribute, trait, tag, event or segment')),
    # siyu.segments.rules and .compiler
    (r"^a rule is a JSON object$", gettext_lazy("A rule is a JSON object.")),
    (r"^unknown attribute (?P<field>'[^']*'): use one of", gettext_lazy("unknown attribute %(field)s")),
    (r"^`(?P<op>\w+)` needs a non-empty list as value$", gettext_lazy("“%(op)s” needs a non-empty list of values")),
    (r"^`(?P<op>\w+)` needs one value \(a string or a number\)$",
     gettext_lazy("“%(op)s” needs one value (text or a number)")),
    (r"^`(?P<op>\w+)` compares numbers: value must be a number$",
     gettext_lazy("“%(op)s” compares numbers: the value must be a number")),
    (r"^(?P<field>\w+) is a number: value must be a number$",
     gettext_lazy("%(field)s is a number: the value must be a number")),
    (r"^(?P<field>\w+) has no value (?P<value>.+?): use one of (?P<choices>.+)$",
     gettext_lazy("%(field)s has no value %(value)s; use one of %(choices)s")),
    (r"^aggregate\.field must be", gettext_lazy("the aggregated field must be revenue, source_id or "
                                                "properties.<key>")),
    (r"^an event condition filters on event fields only",
     gettext_lazy("an event condition filters on event fields only; test customer attributes with an "
                  "attribute condition beside it")),
    (r"^give within_days or date_from/date_to, not both$",
     gettext_lazy("give “in the last N days” or dates, not both")),
    (r"^date_from is after date_to$", gettext_lazy("the first day is after the last day")),
    (r"^count\.value must be a whole number$", gettext_lazy("the count must be a whole number")),
    (r"^groups nest (?P<depth>\d+) deep; at most (?P<max>\d+)$",
     gettext_lazy("groups nest %(depth)s deep; at most %(max)s")),
    (r"^(?P<count>\d+) conditions; at most (?P<max>\d+)$", gettext_lazy("%(count)s conditions; at most %(max)s")),
    (r"^segment (?P<id>\d+) refers to itself$", gettext_lazy("segment %(id)s refers to itself")),
    (r"^segments nest more than (?P<max>\d+) deep$", gettext_lazy("segments nest more than %(max)s deep")),
    (r"^no segment (?P<id>\d+)$", gettext_lazy("there is no segment %(id)s")),
    # siyu.segments.actions
    (r"^a segment cannot contain itself", gettext_lazy("A segment cannot contain itself.")),
    (r"^name must be 1-(?P<n>\d+) characters$", gettext_lazy("The name must be 1 to %(n)s characters.")),
    (r"^built-in segments follow their definition",
     gettext_lazy("Built-in segments follow their definition; change the value-tier thresholds instead.")),
    (r"^built-in segments cannot be deleted$", gettext_lazy("Built-in segments cannot be deleted.")),
    (r"^segment (?P<id>\d+) is used by: (?P<names>.+)$",
     gettext_lazy("Segment %(id)s is used by: %(names)s. Change those first.")),
    (r"^(?P<name>\w+): unknown setting", gettext_lazy("%(name)s: unknown setting")),
    (r"^silent_after must be smaller than churned_after$",
     gettext_lazy("“Silent after” must be smaller than “churned after”.")),
    (r"^a tag name cannot contain commas", gettext_lazy("A tag name cannot contain commas, tabs or line breaks.")),
    (r"^a tag named (?P<name>'.*') already exists$", gettext_lazy("A tag named %(name)s already exists.")),
    (r"^a rule tag cannot test itself$", gettext_lazy("A rule tag cannot test itself.")),
    (r"^tag (?P<name>'.*') is kept by its rule", gettext_lazy("Tag %(name)s is kept by its rule; it cannot be "
                                                             "set or removed by hand.")),
    (r"^no tag (?P<name>'.*')$", gettext_lazy("There is no tag %(name)s.")),
    (r"^tag (?P<name>'.*') has no rule$", gettext_lazy("Tag %(name)s has no rule.")),
    (r"^no customers given$", gettext_lazy("No customers given.")),
    (r"^(?P<n>\d+) unknown or merged customer ids: (?P<ids>.+)$",
     gettext_lazy("%(n)s unknown or merged customer numbers: %(ids)s")),
    (r"^segment (?P<id>\d+) has not been refreshed yet$",
     gettext_lazy("Segment %(id)s has not been refreshed yet: refresh it first.")),
    (r"^the file is not UTF-8 text", gettext_lazy("The file is not UTF-8 text (save the CSV as UTF-8).")),
    (r"^the CSV needs a header with one of: (?P<columns>.+)$",
     gettext_lazy("The CSV needs a header with one of: %(columns)s")),
    # tag import rows
    (r"^(?P<value>'.*') is not a customer number$", gettext_lazy("%(value)s is not a customer number")),
    (r"^no customer (?P<id>\d+)$", gettext_lazy("no customer %(id)s")),
    (r"^no customer with this (?P<kind>\w+)$", gettext_lazy("no customer with this %(kind)s")),
    (r"^empty: no id on this row$", gettext_lazy("empty: no id on this row")),
)]


def translated(message: str) -> str:
    """A backend message in the reader's language (as it is when no pattern knows it)."""
    for pattern, template in MESSAGES:
        match = pattern.match(message)
        if match:
            return str(template) % match.groupdict() if match.groupdict() else str(template)
    return message


def field_errors(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """A RuleError's ``errors`` with each reason in the reader's language."""
    return [{"field": e.get("field", ""), "reason": translated(e.get("reason", ""))} for e in errors]
