"""State changes on customers that people make: resolving refused merges."""

from __future__ import annotations

from django.db import transaction

from siyu.accounts.actor import Actor
from siyu.customers.identity import merge_persons
from siyu.customers.models import MergeConflict
from siyu.privacy.actions import audit


def resolve_conflict(actor: Actor, conflict: MergeConflict, action: str) -> MergeConflict:
    """Merge the two persons (b into a) or dismiss; raises ValueError for a closed conflict."""
    if conflict.status != MergeConflict.Status.OPEN:
        raise ValueError(f"conflict {conflict.pk} is already {conflict.status}")
    if action not in ("merge", "dismiss"):
        raise ValueError("action must be 'merge' or 'dismiss'")
    with transaction.atomic():
        if action == "merge":
            merge_persons(conflict.person_b_id, conflict.person_a_id, reason="manual",
                          evidence={"conflict": conflict.pk, "ids": conflict.conflicting_kinds},
                          actor_label=actor.label)
        conflict.status = MergeConflict.Status.MERGED if action == "merge" else MergeConflict.Status.DISMISSED
        conflict.resolved_by = actor.label
        conflict.save(update_fields=["status", "resolved_by"])
        audit(actor, "change", "merge_conflict", conflict.pk, op=action)
    return conflict

