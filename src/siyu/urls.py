from django.urls import include, path, re_path

from siyu.api import api
from siyu.ingest import views as ingest_views

urlpatterns = [
    re_path(r"^v1/(?P<msg_type>identify|track|page|screen|group|alias|batch)/?$", ingest_views.segment_endpoint),
    re_path(r"^sa(?:\.gif)?/?$", ingest_views.sensors_endpoint),
    path("api/", api.urls),
    path("", include("siyu.console.urls")),
]
