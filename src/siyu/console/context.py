"""Template context every console page shares: navigation, languages, currency."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from siyu.console.language import current_choice

# (url name, label, any of these permissions)
NAV = [
    ("home", _("Home"), ("customers.view_person",)),
    ("customers", _("Customers"), ("customers.view_person",)),
    ("conflicts", _("Merge conflicts"), ("customers.view_personmerge", "customers.change_mergeconflict")),
    ("analytics", _("Analytics"), ("analytics.view_dashboard", "analytics.view_insight")),
    ("segments", _("Segments"), ("segments.view_segment",)),
    ("sources", _("Sources"), ("ingest.view_source",)),
    ("settings", _("Settings"), ()),
]


def may(user, perms: tuple[str, ...]) -> bool:
    return not perms or any(user.has_perm(p) for p in perms)


def console(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    here = match.url_name if match else ""
    nav = []
    if user is not None and user.is_authenticated:
        head = (here or "").split("_")[0]
        section = {"customer": "customers", "conflict": "conflicts", "source": "sources"}.get(head, head)
        nav = [{"url": reverse(name), "label": label, "active": section == name}
               for name, label, perms in NAV if may(user, perms)]
    return {
        "console_nav": nav,
        "console_languages": settings.LANGUAGES,
        "console_language_choice": current_choice(request),
        "console_currency": settings.SIYU_CURRENCY,
    }
