"""Authentication for the management API: bearer tokens or the console session."""

from __future__ import annotations

from django.utils import timezone
from ninja.security import HttpBearer, django_auth

from siyu.accounts.models import ApiToken


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        try:
            api_token = ApiToken.objects.select_related("user").get(token_hash=ApiToken.hash(token))
        except ApiToken.DoesNotExist:
            return None
        if not api_token.user.is_active:
            return None
        ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=timezone.now())
        request.user = api_token.user
        return api_token.user


def api_auth():
    """Management endpoints accept a token or a signed-in console session."""
    return [TokenAuth(), django_auth]
