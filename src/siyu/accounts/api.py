"""Who am I, and my roles."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

router = Router(tags=["team"])


class MeOut(Schema):
    username: str
    roles: list[str]
    can_see_personal_data: bool


@router.get("/me", response=MeOut, summary="The caller and their roles")
def me(request: HttpRequest):
    user = request.user
    return {
        "username": user.get_username(),
        "roles": sorted(g.name for g in user.groups.all()) + (["superuser"] if user.is_superuser else []),
        "can_see_personal_data": user.has_perm("privacy.view_personal_data"),
    }
