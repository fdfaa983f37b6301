"""The REST API: one NinjaAPI, one router per app. OpenAPI at /api/openapi.json."""

from __future__ import annotations

from django.db import DataError
from django.http import HttpRequest
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from siyu.accounts.auth import api_auth

api = NinjaAPI(
    title="siyu API",
    version="1",
    description="Customer data, identity and ingestion management for siyu. "
    "Authenticate with `Authorization: Bearer <token>` (create one with `siyu token create`). "
    "Event ingestion uses write keys on /v1/* (Segment) and /sa (Sensors), documented in docs/ingestion.md.",
    auth=api_auth(),
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
