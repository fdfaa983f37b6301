"""The tracking endpoints straight from WSGI, past Django's middleware.

Every tracking request went through the whole middleware stack (sessions, locale, CSRF,
authentication, messages, security headers), none of which these endpoints use: they answer
SDKs, authenticate by write key and keep no session. Under load that cost the server ~0.65 ms
of CPU a request, a third of what it spent on one. ``TrackingFastPath`` wraps the WSGI
application: the paths that ``siyu.urls`` routes to the Segment and Sensors endpoints go to
those views directly, as Django's handler would call them (the request signals, which close
stale database connections, and its answers to an exception); every other path goes to Django
as before. The Django test client, which does not pass through here, reaches the same views
through the URLconf.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from django.core import signals
from django.core.handlers.exception import response_for_exception
from django.core.handlers.wsgi import WSGIRequest, get_script_name
from django.http import HttpResponseBase
from django.urls import set_script_prefix
from django.utils.log import log_response

from siyu.ingest.views import SEGMENT_TYPES, segment_endpoint, sensors_endpoint

_SEGMENT = re.compile(rf"/v1/({SEGMENT_TYPES})/?")
_SENSORS = re.compile(r"/sa(?:\.gif)?/?")


class TrackingFastPath:
    def __init__(self, application: Callable[..., Iterable[bytes]]) -> None:
        self.application = application

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/v1/") and (match := _SEGMENT.fullmatch(path)):
            view, kwargs = segment_endpoint, {"msg_type": match.group(1)}
        elif path.startswith("/sa") and _SENSORS.fullmatch(path):
            view, kwargs = sensors_endpoint, {}
        else:
            return self.application(environ, start_response)
        set_script_prefix(get_script_name(environ))
        signals.request_started.send(sender=self.__class__, environ=environ)
        request = WSGIRequest(environ)
        try:
            request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it
            response = view(request, **kwargs)
        except Exception as exc:  # as Django's handler answers it: 400 for a bad request, else 500 (logged)
            response = response_for_exception(request, exc)
        else:
            if response.status_code >= 400:  # logged as Django's handler logs them
                log_response("%s: %s", response.reason_phrase, request.path, response=response, request=request)
        response._handler_class = self.__class__  # the sender of request_finished
        response._resource_closers.append(request.close)
        return _send(response, start_response)


def _send(response: HttpResponseBase, start_response: Callable) -> HttpResponseBase:
    """Start the WSGI response as ``WSGIHandler`` does, with the ``Content-Length`` that
    ``CommonMiddleware`` adds (without it the server answers chunked and closes the connection,
    so keep-alive clients reconnect for every request). The server calls ``response.close()``
    once it is sent, which sends ``request_finished``."""
    if not response.streaming and not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    response.setdefault("X-Content-Type-Options", "nosniff")
    headers = [*response.items(), *(("Set-Cookie", c.output(header="")) for c in response.cookies.values())]
    start_response(f"{response.status_code} {response.reason_phrase}", headers)
    return response
