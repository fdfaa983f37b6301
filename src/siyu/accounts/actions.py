"""Team changes: members and their roles."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction

from siyu.accounts.roles import ROLES, ensure_roles


class TeamError(ValueError):
    pass


def create_user(username: str, role: str, password: str | None = None, *, superuser: bool = False):
    """Create a team member in ``role``; returns (user, password). Raises TeamError."""
    if role not in ROLES:
        raise TeamError(f"unknown role {role!r}; roles: {', '.join(sorted(ROLES))}")
    if not username or len(username) > 150:
        raise TeamError("username must be 1-150 characters")
    User = get_user_model()
    try:
        User.username_validator(username)
        if password is not None:
            validate_password(password, User(username=username))
    except ValidationError as exc:
        raise TeamError(" ".join(exc.messages)) from None
    password = password or secrets.token_urlsafe(12)
    with transaction.atomic():
        if User.objects.filter(username=username).exists():
            raise TeamError(f"user {username!r} already exists")
        if not Group.objects.filter(name=role).exists():
            ensure_roles()
        user = User.objects.create_user(username=username, password=password,
                                        is_staff=superuser, is_superuser=superuser)
        user.groups.add(Group.objects.get(name=role))
    return user, password
