"""Recording attributable actions in the audit log."""

from __future__ import annotations

from typing import Any

from siyu.accounts.actor import Actor
from siyu.privacy.models import AuditEvent


def audit(actor: Actor, action: str, object_type: str, object_id: Any = "", **detail: Any) -> AuditEvent:
    """Write one audit event for ``actor``."""
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_id=str(object_id),
        detail=detail,
    )
