"""Apply a signed-in user's chosen language before Django's locale negotiation."""

from __future__ import annotations

from django.conf import settings
from django.utils import translation


class UserLanguageMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        lang = request.session.get("siyu_language") if hasattr(request, "session") else None
        if lang and lang in dict(settings.LANGUAGES):
            # LocaleMiddleware reads the cookie; setting it on the request keeps
            # one mechanism for both "chosen in settings" and "chosen by browser".
            request.COOKIES[settings.LANGUAGE_COOKIE_NAME] = lang
            translation.activate(lang)
        return self.get_response(request)
