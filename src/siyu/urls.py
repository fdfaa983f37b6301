from django.http import HttpRequest, JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from siyu.api import api
from siyu.ingest import views as ingest_views
from siyu.ingest.views import SEGMENT_TYPES


# API clients get JSON for a path nobody serves, in the shape of the endpoints beside it; the
# console's HTML 404 page is for browsers. Exempt from CSRF: they change nothing, and a POST to a
# wrong path should hear "not found", not a CSRF refusal.
@csrf_exempt
def api_not_found(request: HttpRequest) -> JsonResponse:
    """A path under /api/ that no endpoint serves: the API's own 404."""
    return JsonResponse({"detail": "Not Found"}, status=404)


@csrf_exempt
def segment_not_found(request: HttpRequest) -> JsonResponse:
    """A path under /v1/ that is not one of Segment's endpoints: the Segment-style error body."""
    endpoints = ", ".join(f"/v1/{t}" for t in SEGMENT_TYPES.split("|"))
    return JsonResponse({"success": False, "error": f"no such endpoint {request.path}: use one of {endpoints}"},
                        status=404)


urlpatterns = [
    re_path(rf"^v1/(?P<msg_type>{SEGMENT_TYPES})/?$", ingest_views.segment_endpoint),
    re_path(r"^v1/", segment_not_found),
    re_path(r"^sa(?:\.gif)?/?$", ingest_views.sensors_endpoint),
    path("api/", api.urls),
    re_path(r"^api/", api_not_found),
    path("", include("siyu.console.urls")),
]
