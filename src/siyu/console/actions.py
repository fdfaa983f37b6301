"""State changes people make from the console that belong to no other app."""

from __future__ import annotations

from django.conf import settings

from siyu.accounts.models import UserSettings


class LanguageError(ValueError):
    pass


def set_language(user, language: str) -> UserSettings:
    """Remember ``user``'s console language ('' follows the browser); raises LanguageError."""
    if language and language not in dict(settings.LANGUAGES):
        raise LanguageError(f"unknown language {language!r}")
    row, _created = UserSettings.objects.update_or_create(user=user, defaults={"language": language})
    return row


def saved_language(user) -> str | None:
    """The user's saved choice ('' = follow the browser), or None when they never chose."""
    return UserSettings.objects.filter(user=user).values_list("language", flat=True).first()
