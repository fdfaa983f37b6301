"""Sentences the console shows for merges and conflicts, in the reader's language."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _

from siyu.customers.models import IdentityKind


def kind_label(kind: str) -> str:
    try:
        return str(IdentityKind(kind).label)
    except ValueError:
        return kind


def kinds_text(kinds: list[str]) -> str:
    return ", ".join(kind_label(k) for k in kinds) or _("ids")


def explain_merge(merge: dict[str, Any]) -> str:
    """Why ``merge`` (a row of ``customers.queries.merge_history``) happened, as one sentence."""
    evidence = merge.get("evidence") or {}
    params = {"merged": merge["merged"], "into": merge["into"], "ids": kinds_text(evidence.get("ids", [])),
              "actor": merge.get("actor", ""), "reason": merge.get("reason", "")}
    if evidence.get("conflict"):
        return _("Customer #%(merged)s was merged into #%(into)s by %(actor)s after reviewing "
                 "conflict %(conflict)s (%(ids)s).") % {**params, "conflict": evidence["conflict"]}
    if evidence.get("message_id"):
        return _("Customer #%(merged)s was merged into #%(into)s: they were seen together (%(ids)s) "
                 "in a %(reason)s message, id %(message)s.") % {**params, "message": evidence["message_id"]}
    if evidence.get("row"):
        return _("Customer #%(merged)s was merged into #%(into)s: they were seen together (%(ids)s) "
                 "in import row %(row)s.") % {**params, "row": evidence["row"]}
    return _("Customer #%(merged)s was merged into #%(into)s: they were seen together (%(ids)s).") % params


def explain_conflict(conflict: Any) -> str:
    """Why two customers were queued for review instead of being merged."""
    evidence = conflict.evidence or {}
    params = {"a": conflict.person_a_id, "b": conflict.person_b_id,
              "kinds": kinds_text(conflict.conflicting_kinds)}
    if evidence.get("message_id"):
        return _("A message (id %(message)s) linked #%(a)s and #%(b)s, but they hold different "
                 "%(kinds)s, so they were not merged automatically.") % {
                     **params, "message": evidence["message_id"]}
    return _("#%(a)s and #%(b)s were linked, but they hold different %(kinds)s, so they were not "
             "merged automatically.") % params
