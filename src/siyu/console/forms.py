"""Forms behind the console's POSTs: input parsing and messages in the reader's language."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from siyu.ingest.models import Source


class SourceForm(forms.Form):
    name = forms.CharField(label=pgettext_lazy("source", "Name"), max_length=100,
                           help_text=_("Sensors SDKs send it as ?project=NAME."))
    kind = forms.ChoiceField(label=_("Kind"), choices=Source.Kind.choices, initial=Source.Kind.SEGMENT)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if Source.objects.filter(name=name).exists():
            raise forms.ValidationError(_("A source named %(name)s already exists."), params={"name": name})
        return name


class LanguageForm(forms.Form):
    language = forms.ChoiceField(label=_("Language"), required=False)
    next = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = [("", _("Follow the browser")), *settings.LANGUAGES]


class ResolveForm(forms.Form):
    action = forms.ChoiceField(choices=[("merge", _("Merge")), ("dismiss", _("Dismiss"))])
