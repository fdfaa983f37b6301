"""One endpoint for every insight: ``POST /api/v1/analytics/query`` with ``{"kind": ...}``."""

from __future__ import annotations

from typing import Annotated, Union

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


# Built from the registry, which always holds every kind (``queries.RUNNER_MODULES``).
QueryIn = Annotated[Union[tuple(REGISTRY[k].query_model for k in kinds())],  # noqa: UP007
                    Field(discriminator="kind")]
QueryOut = Union[tuple(REGISTRY[k].result_model for k in kinds())]  # noqa: UP007


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
