"""The REST API: one NinjaAPI, one router per app. OpenAPI at /api/openapi.json."""

from __future__ import annotations

from typing import Annotated, Any

from django.db import DataError
from django.http import HttpRequest
from django.middleware.csrf import CsrfViewMiddleware
from ninja import NinjaAPI, security
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import Field

from siyu.accounts.auth import api_auth
from siyu.db import MAX_INT

# -- bounded integers ----------------------------------------------------------------------------
# Every integer a caller sends that reaches a database (an offset, an id in a body) is bounded
# here, once: a number past what the databases store (SQLite, PostgreSQL and DuckDB integers are
# signed 64-bit) is a 422 naming the field, never a 500. The CLI checks the same bounds
# (``siyu.cli``; a test compares them).

#: A position in a list (``offset``): 0 or more.
Offset = Annotated[int, Field(ge=0, le=MAX_INT)]
#: The number of a stored row (a customer number, a segment id) given in a body.
RowId = Annotated[int, Field(ge=1, le=MAX_INT)]


class SessionAuth(security.SessionAuth):
    """The console's session cookie, CSRF-checked as Django checks a form, but only when the
    request carries the cookie: a request without it (a script with no or a wrong token) has no
    ambient credential to forge, and gets the documented 401 rather than a 403 about CSRF.

    Built on ninja's public surface only: its own check is switched off (``csrf=False``) and
    this one runs in ``__call__``, with Django's ``CsrfViewMiddleware``."""

    def __init__(self) -> None:
        super().__init__(csrf=False)

    def __call__(self, request: HttpRequest) -> Any:
        if self.param_name not in request.COOKIES:
            return None
        if _csrf_refused(request):
            raise HttpError(403, "CSRF check Failed")
        return super().__call__(request)


def _csrf_refused(request: HttpRequest) -> bool:
    """Whether Django's CSRF check refuses ``request`` (API views are exempt from the middleware's
    own pass, so it is run here, as for a view that is not)."""
    check = CsrfViewMiddleware(lambda _request: None)
    request.csrf_processing_done = False
    check.process_request(request)
    return check.process_view(request, _checked_view, (), {}) is not None


def _checked_view(request: HttpRequest) -> None:  # what the CSRF check is told it guards
    return None


def _auth() -> list:
    # Same callbacks as ``api_auth`` (bearer token first, then the session), with the session's
    # CSRF check applied only to requests that carry a session cookie.
    return [SessionAuth() if isinstance(a, security.SessionAuth) else a for a in api_auth()]


api = NinjaAPI(
    title="siyu API",
    version="1",
    description="Customer data, identity and ingestion management for siyu. "
    "Authenticate with `Authorization: Bearer <token>` (create one with `siyu token create`). "
    "Event ingestion uses write keys on /v1/* (Segment) and /sa (Sensors), documented in docs/ingestion.md.",
    auth=_auth(),
    urls_namespace="api",
)


@api.exception_handler(ValidationError)
def validation_error(request: HttpRequest, exc: ValidationError):
    errors = [{"field": _field(e), "reason": e.get("msg", "invalid")} for e in exc.errors]
    return api.create_response(request, {"error": "invalid request", "errors": errors}, status=422)


def _field(error: dict) -> str:
    """Where the error is, as a dotted path: ``query.kind``, ``body.trends.interval`` (a body
    that is one of several typed queries names the one its ``kind`` chose)."""
    loc = [str(p) for p in error.get("loc", [])]
    if loc[:2] == ["body", "body"]:  # a body parameter named ``body``
        loc = loc[1:]
    if error.get("type") == "union_tag_invalid":
        loc.append("kind")
    return ".".join(loc)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError):
    # ninja answers 400 "Cannot parse request body" to a body that is not JSON; the API's rule
    # for bad input is 422 naming the field (docs/api.md, "Errors").
    if exc.status_code == 400 and str(exc).startswith("Cannot parse request body"):
        errors = [{"field": "body", "reason": _parse_failure(exc.__cause__)}]
        return api.create_response(request, {"error": "invalid request", "errors": errors}, status=422)
    return api.create_response(request, {"detail": str(exc)}, status=exc.status_code)


def _parse_failure(cause: BaseException | None) -> str:
    lineno, colno, msg = (getattr(cause, name, None) for name in ("lineno", "colno", "msg"))
    if msg and lineno is not None:
        return f"not valid JSON: {msg} at line {lineno} column {colno}"
    return "not valid JSON"


@api.exception_handler(AuthenticationError)
def auth_error(request: HttpRequest, exc: AuthenticationError):
    return api.create_response(request, {"error": "authentication required: send a Bearer token"}, status=401)


@api.exception_handler(DataError)
def data_error(request: HttpRequest, exc: DataError):
    # The database refused a value the caller sent (PostgreSQL: a NUL character, a
    # number out of range): the caller's error, not the server's.
    return api.create_response(request, {"error": "invalid value", "detail": str(exc).strip()}, status=422)


def require(request: HttpRequest, perm: str) -> None:
    """Raise 403 unless the caller's role grants ``perm``."""
    if not request.user.has_perm(perm):
        raise HttpError(403, f"your role lacks the permission {perm}")


def _mount() -> None:
    from siyu.accounts.api import router as accounts_router
    from siyu.analytics.api import router as analytics_router
    from siyu.customers.api import router as customers_router
    from siyu.imports.api import router as imports_router
    from siyu.ingest.api import router as ingest_router
    from siyu.segments.api import router as segments_router
    from siyu.segments.api import tags_router
    from siyu.valuation.api import router as valuation_router

    api.add_router("/v1/customers", customers_router)
    api.add_router("/v1/sources", ingest_router)
    api.add_router("/v1/imports", imports_router)
    api.add_router("/v1/analytics", analytics_router)
    api.add_router("/v1/segments", segments_router)
    api.add_router("/v1/tags", tags_router)
    api.add_router("/v1/clv", valuation_router)
    api.add_router("/v1", accounts_router)


_mount()
