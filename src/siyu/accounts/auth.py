"""Authentication for the management API: bearer tokens or the console session."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from ninja.security import HttpBearer, django_auth

from siyu.accounts import local
from siyu.accounts.models import ApiToken

LAST_USED_GRANULARITY = timedelta(minutes=1)


class TokenAuth(HttpBearer):
    def authenticate(self, request, token: str):
        operator = local.operator_for(token, request.headers.get(local.CLI_USER_HEADER))
        if operator is not None:  # a `siyu` command beside this server
            request.user = operator
            return operator
        try:
            api_token = ApiToken.objects.select_related("user").get(token_hash=ApiToken.hash(token))
        except ApiToken.DoesNotExist:
            return None
        if not api_token.user.is_active:
            return None
        now = timezone.now()
        # Record use at most once a minute: a write per API call would cost a disk sync each.
        if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_GRANULARITY:
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        request.user = api_token.user
        return api_token.user


def api_auth():
    """Management endpoints accept a token or a signed-in console session."""
    return [TokenAuth(), django_auth]
