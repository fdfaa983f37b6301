"""The CLV model page (/analytics/clv/): the newest fit, its quality and distributions, a fit form.

GET shows the newest ``ClvModel``; POST (``valuation.add_clvmodel``) runs
``siyu.valuation.fitting.fit_and_predict`` with the form's settings and comes back to the page.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from siyu.analytics import charts
from siyu.console.views import actor_of, console_view
from siyu.valuation import charts as clv_charts
from siyu.valuation.fitting import ClvError, fit_and_predict
from siyu.valuation.models import ClvModel
from siyu.valuation.predict import MAX_DISCOUNT_RATE, MAX_HORIZON_DAYS
from siyu.valuation.queries import latest_model

VIEW = "valuation.view_clvmodel"
ADD = "valuation.add_clvmodel"


class FitForm(forms.Form):
    calibration_end = forms.DateField(
        label=gettext_lazy("Calibration end"), required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text=gettext_lazy("Fit on orders up to this day; the later orders measure the fit. "
                               "Empty: fit on every order."))
    time_unit = forms.ChoiceField(label=gettext_lazy("Time unit"), choices=ClvModel.TimeUnit.choices,
                                  initial=ClvModel.TimeUnit.WEEK)
    horizon_days = forms.IntegerField(label=gettext_lazy("Horizon (days)"), min_value=1,
                                      max_value=MAX_HORIZON_DAYS, initial=365)
    discount_rate = forms.FloatField(label=gettext_lazy("Annual discount rate"), min_value=0,
                                     max_value=MAX_DISCOUNT_RATE, initial=0.1,
                                     help_text=gettext_lazy("0.1 means 10 per cent a year"))

    @classmethod
    def like(cls, model: ClvModel | None) -> FitForm:
        """An empty form with the newest fit's settings (a refit repeats them)."""
        if model is None:
            return cls()
        return cls(initial={"calibration_end": model.calibration_end, "time_unit": model.time_unit,
                            "horizon_days": model.horizon_days, "discount_rate": model.discount_rate})


@console_view(VIEW)
def clv_model(request: HttpRequest) -> HttpResponse:
    model = latest_model()
    form = FitForm.like(model)
    if request.method == "POST":
        if not request.user.has_perm(ADD):
            raise PermissionDenied
        form = FitForm(request.POST)
        if form.is_valid():
            try:
                fitted = fit_and_predict(actor_of(request), **form.cleaned_data)
            except ClvError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, _("Fitted CLV model #%(id)s: %(customers)s customers have a prediction.")
                                 % {"id": fitted.pk, "customers": f"{fitted.customers:,}"})
                return redirect("analytics_clv")
    elif request.method != "GET":
        return HttpResponse(status=405)
    return render(request, "console/analytics/clv.html", {"model": model, "form": form, **page_charts(model)},
                  status=400 if form.errors else 200)


def page_charts(model: ClvModel | None) -> dict[str, Any]:
    """The specs and figures the page draws from a stored fit."""
    if model is None:
        return {}
    out: dict[str, Any] = {}
    if model.quality:
        quality = clv_charts.quality_figures(model.quality)
        out.update(quality=quality, quality_spec=charts.spec(clv_charts.quality_chart(quality)))
    if model.distribution:
        value, alive = clv_charts.clv_figures(model.distribution), clv_charts.alive_figures(model.distribution)
        out.update(value_spec=charts.spec(clv_charts.histogram_chart(value)),
                   alive_spec=charts.spec(clv_charts.histogram_chart(alive)))
    return out
