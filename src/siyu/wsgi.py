import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "siyu.settings")
application = get_wsgi_application()

from siyu.ingest.wsgi import TrackingFastPath  # noqa: E402 - after Django is set up

application = TrackingFastPath(application)
