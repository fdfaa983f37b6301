"""The console language: the user's saved choice, else the browser's (Accept-Language).

The choice lives in the session key ``siyu_language``, which
``siyu.accounts.middleware.UserLanguageMiddleware`` applies before Django's
locale negotiation; it is also saved on ``accounts.UserSettings`` so that it
follows the user to their next sign-in.
"""

from __future__ import annotations

from django.http import HttpRequest

from siyu.console.actions import saved_language

SESSION_KEY = "siyu_language"


def remember(request: HttpRequest, language: str) -> None:
    """Use ``language`` for this session ('' = follow the browser)."""
    if language:
        request.session[SESSION_KEY] = language
    else:
        request.session.pop(SESSION_KEY, None)


def current_choice(request: HttpRequest) -> str:
    session = getattr(request, "session", None)
    return session.get(SESSION_KEY, "") if session is not None else ""


def restore_on_login(sender, request: HttpRequest | None, user, **kwargs) -> None:
    """On sign-in, bring back the language the user chose last time, if they ever chose."""
    if request is None or not hasattr(request, "session"):
        return
    language = saved_language(user)
    if language is not None:
        remember(request, language)
