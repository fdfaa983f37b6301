"""The team's roles (MISSION R16) as Django groups with their permissions."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.utils.translation import gettext_lazy as _

# codename lists use "<app_label>.<codename>"; "*" means every permission.
ROLES: dict[str, dict] = {
    "admin": {"label": _("Administrator"), "perms": ["*"]},
    "ops_lead": {
        "label": _("Operations lead"),
        "perms": [
            "customers.view_person", "customers.change_person", "customers.view_personmerge",
            "customers.change_mergeconflict", "orders.view_order", "ingest.view_source",
            "imports.add_importjob", "imports.view_importjob", "privacy.view_auditevent",
            "analytics.view_insight", "analytics.add_insight", "analytics.change_insight",
            "analytics.view_dashboard", "analytics.add_dashboard", "analytics.change_dashboard",
            "valuation.view_clvmodel",
            "segments.view_segment", "segments.add_segment", "segments.change_segment",
            "segments.delete_segment", "segments.view_tag", "segments.add_tag", "segments.change_tag",
            "segments.delete_tag", "segments.change_tiersettings",
        ],
    },
    "community_manager": {
        "label": _("Community manager"),
        "perms": ["customers.view_person", "orders.view_order", "analytics.view_insight",
                  "analytics.view_dashboard", "valuation.view_clvmodel",
                  "segments.view_segment", "segments.view_tag", "segments.add_tag", "segments.change_tag"],
    },
    "content_specialist": {"label": _("Content specialist"), "perms": ["customers.view_person"]},
    "data_analyst": {
        "label": _("Data analyst"),
        "perms": ["customers.view_person", "customers.view_personmerge", "orders.view_order",
                  "ingest.view_source", "imports.view_importjob",
                  "analytics.view_insight", "analytics.add_insight", "analytics.change_insight",
                  "analytics.delete_insight", "analytics.view_dashboard", "analytics.add_dashboard",
                  "analytics.change_dashboard", "analytics.delete_dashboard",
                  "valuation.view_clvmodel", "valuation.add_clvmodel",
                  "segments.view_segment", "segments.add_segment", "segments.change_segment",
                  "segments.delete_segment", "segments.view_tag", "segments.add_tag", "segments.change_tag",
                  "segments.delete_tag", "segments.change_tiersettings"],
    },
    "developer": {
        "label": _("Developer"),
        "perms": ["customers.view_person", "ingest.view_source", "ingest.add_source",
                  "ingest.change_source", "ingest.view_deadletter", "imports.add_importjob",
                  "imports.view_importjob", "accounts.add_apitoken"],
    },
    "customer_service": {
        "label": _("Customer service"),
        # Service staff must read a caller's phone number back to them.
        "perms": ["customers.view_person", "orders.view_order", "privacy.view_personal_data",
                  "segments.view_tag"],
    },
}


def ensure_roles() -> None:
    """Create or update one group per role with exactly its permissions."""
    for name, spec in ROLES.items():
        group, _created = Group.objects.get_or_create(name=name)
        if spec["perms"] == ["*"]:
            perms = list(Permission.objects.all())
        else:
            perms = []
            for dotted in spec["perms"]:
                app_label, codename = dotted.split(".")
                perms += list(
                    Permission.objects.filter(content_type__app_label=app_label, codename=codename)
                )
        group.permissions.set(perms)
