"""One endpoint for every insight: ``POST /api/v1/analytics/query`` with ``{"kind": ...}``."""

from __future__ import annotations

from typing import Annotated, Any, Union

from django.http import HttpRequest
from ninja import Body, Router, Schema, Status
from pydantic import Field

from siyu.analytics.engine import EventStoreBusy
from siyu.analytics.queries import REGISTRY, QueryError, kinds, run_query
from siyu.api import require

router = Router(tags=["analytics"])
VIEW_PERMISSION = "analytics.view_insight"


class FieldError(Schema):
    field: str
    reason: str


class QueryErrorOut(Schema):
    error: str
    errors: list[FieldError]


def _union(models: list[type]) -> Any:
    if len(models) == 1:
        return models[0]
    return Union[tuple(models)]  # noqa: UP007 - built at runtime from the registry


_QUERIES = [REGISTRY[k].query_model for k in kinds()]
_RESULTS = [REGISTRY[k].result_model for k in kinds()]
QueryIn = Annotated[_union(_QUERIES), Field(discriminator="kind")] if len(_QUERIES) > 1 else _union(_QUERIES)
QueryOut = _union(_RESULTS)


@router.post(
    "/query",
    response={200: QueryOut, 422: QueryErrorOut, 503: QueryErrorOut},
    summary="Run an insight query (trends, retention, funnel, repurchase, ltv, rfm, lifecycle, overview)",
)
def query(request: HttpRequest, body: Annotated[QueryIn, Body()]):
    """The body's ``kind`` picks the insight; see docs/analytics.md for each kind's fields and
    definitions. Answers are cached until new events arrive (``cached: true``)."""
    require(request, VIEW_PERMISSION)
    try:
        return Status(200, run_query(body))
    except QueryError as exc:
        return Status(422, {"error": "invalid query", "errors": exc.errors})
    except EventStoreBusy as exc:
        return Status(503, {"error": str(exc), "errors": []})
