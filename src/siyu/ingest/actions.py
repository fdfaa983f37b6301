"""State changes for sources."""

from __future__ import annotations

from django.db import transaction

from siyu.accounts.actor import Actor
from siyu.ingest.models import Source
from siyu.privacy.actions import audit


class SourceError(ValueError):
    pass


def create_source(actor: Actor, name: str, kind: str = Source.Kind.SEGMENT) -> Source:
    """Create a source with a fresh write key; raises SourceError for a bad or taken name."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise SourceError("name must be 1-100 characters")
    if kind not in Source.Kind.values:
        raise SourceError(f"kind must be one of {', '.join(Source.Kind.values)}")
    with transaction.atomic():
        if Source.objects.filter(name=name).exists():
            raise SourceError(f"a source named {name!r} already exists")
        source = Source.objects.create(name=name, kind=kind, created_by=actor.label)
        audit(actor, "change", "source", source.pk, op="create", name=name, kind=kind)
    return source


def rotate_write_key(actor: Actor, source: Source) -> Source:
    """Give the source a new write key; the old one stops working at once in this process."""
    from siyu.ingest.models import new_write_key
    from siyu.ingest.views import forget_write_key

    old_key = source.write_key
    with transaction.atomic():
        source.write_key = new_write_key()
        source.save(update_fields=["write_key"])
        audit(actor, "change", "source", source.pk, op="rotate_key")
        transaction.on_commit(lambda: forget_write_key(old_key))
    return source


def endpoints_for(source: Source) -> dict[str, str]:
    """Where this source's SDK should send data (only the protocol it speaks)."""
    if source.kind == Source.Kind.SENSORS:
        return {"sensors": f"/sa?project={source.name}"}
    if source.kind == Source.Kind.SEGMENT:
        return {"segment": "/v1/batch"}
    return {}


def source_dict(source: Source) -> dict:
    return {
        "id": source.pk,
        "name": source.name,
        "kind": source.kind,
        "write_key": source.write_key,
        "enabled": source.enabled,
        "created_at": source.created_at.isoformat(),
        "created_by": source.created_by,
        "endpoints": endpoints_for(source),
    }
